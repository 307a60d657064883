/**
 * Layered layout of a state machine, left to right (pure functions, no DOM).
 *
 * 1. Ranks: breadth-first from the initial state (states not reachable from it
 *    start new searches), so every forward edge spans exactly one rank.
 * 2. Edges going back more than one rank get invisible "dummy" points in the
 *    ranks they cross, so they are routed between the states, never through them.
 * 3. Order inside a rank: a few barycenter sweeps, keeping the order with the
 *    fewest crossings.
 * 4. Coordinates: columns sized to their widest state and their widest label;
 *    inside a column, states are pulled towards their neighbours and pushed
 *    apart so they never overlap.
 *
 * The result holds boxes for states and ready-to-draw SVG path data for edges.
 */

export const NODE_H = 40;
const ROW_GAP = 26;
const DUMMY_H = 14;
const MARGIN = 24;
const INITIAL_MARKER = 34;
const SELF_LOOP_H = 30;
const LABEL_H = 18;

/** Rough text width used when no real measuring function is given (tests, Node). */
export function approxTextWidth(text, fontSize = 13) {
  return String(text).length * fontSize * 0.6;
}

/** Ranks by breadth-first search from `initial`; unreachable states seed new searches. */
export function computeRanks(names, edges, initial) {
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) if (out.has(e.from) && out.has(e.to)) out.get(e.from).push(e.to);
  const rank = new Map();
  const order = [];
  const bfs = (start, startRank) => {
    rank.set(start, startRank);
    order.push(start);
    const queue = [start];
    while (queue.length) {
      const cur = queue.shift();
      for (const next of out.get(cur)) {
        if (!rank.has(next)) {
          rank.set(next, rank.get(cur) + 1);
          order.push(next);
          queue.push(next);
        }
      }
    }
  };
  if (names.includes(initial)) bfs(initial, 0);
  for (const name of names) {
    if (rank.has(name)) continue;
    // Place an orphan right after a ranked predecessor when it has one.
    const pred = edges.find((e) => e.to === name && rank.has(e.from));
    bfs(name, pred ? rank.get(pred.from) + 1 : 0);
  }
  return { rank, order };
}

/** States reachable from `start` (including itself). */
export function reachableFrom(start, transitions) {
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length) {
    const cur = queue.shift();
    for (const t of transitions) {
      if (t.from === cur && !seen.has(t.to)) {
        seen.add(t.to);
        queue.push(t.to);
      }
    }
  }
  return seen;
}

/** Number of crossings between two adjacent layers for the given links. */
function crossingsBetween(upper, lower, links) {
  const posU = new Map(upper.map((n, i) => [n, i]));
  const posL = new Map(lower.map((n, i) => [n, i]));
  const pairs = [];
  for (const [a, b] of links) {
    if (posU.has(a) && posL.has(b)) pairs.push([posU.get(a), posL.get(b)]);
    else if (posU.has(b) && posL.has(a)) pairs.push([posU.get(b), posL.get(a)]);
  }
  let count = 0;
  for (let i = 0; i < pairs.length; i++) {
    for (let j = i + 1; j < pairs.length; j++) {
      const [a1, b1] = pairs[i];
      const [a2, b2] = pairs[j];
      if ((a1 - a2) * (b1 - b2) < 0) count++;
    }
  }
  return count;
}

function totalCrossings(layers, links) {
  let total = 0;
  for (let i = 0; i + 1 < layers.length; i++) total += crossingsBetween(layers[i], layers[i + 1], links);
  return total;
}

/** Barycenter ordering; returns the best layering seen. */
function orderLayers(layers, links) {
  const neighbours = new Map();
  for (const [a, b] of links) {
    if (!neighbours.has(a)) neighbours.set(a, []);
    if (!neighbours.has(b)) neighbours.set(b, []);
    neighbours.get(a).push(b);
    neighbours.get(b).push(a);
  }
  let best = layers.map((l) => [...l]);
  let bestCount = totalCrossings(best, links);
  let current = best.map((l) => [...l]);
  const sweep = (from, to, step) => {
    for (let i = from; i !== to; i += step) {
      const ref = new Map(current[i - step].map((n, idx) => [n, idx]));
      const layer = current[i];
      const keyed = layer.map((node, idx) => {
        const ps = (neighbours.get(node) || []).filter((n) => ref.has(n)).map((n) => ref.get(n));
        const bary = ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : idx;
        return { node, key: bary, idx };
      });
      keyed.sort((a, b) => a.key - b.key || a.idx - b.idx);
      current[i] = keyed.map((k) => k.node);
    }
  };
  for (let iter = 0; iter < 6 && current.length > 1; iter++) {
    if (iter % 2 === 0) sweep(1, current.length, 1);
    else sweep(current.length - 2, -1, -1);
    const count = totalCrossings(current, links);
    if (count < bestCount) {
      bestCount = count;
      best = current.map((l) => [...l]);
    }
  }
  return { layers: best, crossings: bestCount };
}

/** Vertical placement inside columns: pull towards neighbours, keep order and spacing. */
function placeVertically(layers, links, item) {
  const neighbours = new Map();
  for (const [a, b] of links) {
    for (const [x, y] of [[a, b], [b, a]]) {
      if (!neighbours.has(x)) neighbours.set(x, []);
      neighbours.get(x).push(y);
    }
  }
  const y = new Map();
  const span = (id) => item.get(id);
  // Start: each layer stacked and centred on 0.
  for (const layer of layers) {
    let total = 0;
    for (const id of layer) total += span(id).above + span(id).below + ROW_GAP;
    let cur = -total / 2;
    for (const id of layer) {
      cur += span(id).above;
      y.set(id, cur);
      cur += span(id).below + ROW_GAP;
    }
  }
  const settle = (layer) => {
    const desired = layer.map((id) => {
      const ns = neighbours.get(id) || [];
      return ns.length ? ns.reduce((acc, n) => acc + y.get(n), 0) / ns.length : y.get(id);
    });
    const pos = [...desired];
    for (let i = 1; i < layer.length; i++) {
      const min = pos[i - 1] + span(layer[i - 1]).below + ROW_GAP + span(layer[i]).above;
      if (pos[i] < min) pos[i] = min;
    }
    // Shift the block back so the total displacement is balanced, then fix the top.
    const shift = desired.reduce((acc, d, i) => acc + (d - pos[i]), 0) / Math.max(1, layer.length);
    for (let i = 0; i < pos.length; i++) pos[i] += shift;
    for (let i = layer.length - 2; i >= 0; i--) {
      const max = pos[i + 1] - span(layer[i + 1]).above - ROW_GAP - span(layer[i]).below;
      if (pos[i] > max) pos[i] = max;
    }
    layer.forEach((id, i) => y.set(id, pos[i]));
  };
  for (let iter = 0; iter < 8; iter++) {
    const seq = iter % 2 === 0 ? layers : [...layers].reverse();
    for (const layer of seq) settle(layer);
  }
  return y;
}

/** Point on a cubic Bézier at t. */
function bezierAt(p0, c1, c2, p1, t) {
  const u = 1 - t;
  return {
    x: u * u * u * p0.x + 3 * u * u * t * c1.x + 3 * u * t * t * c2.x + t * t * t * p1.x,
    y: u * u * u * p0.y + 3 * u * u * t * c1.y + 3 * u * t * t * c2.y + t * t * t * p1.y,
  };
}

const r1 = (v) => Math.round(v * 10) / 10;

/**
 * Lays out `machine` ({states, transitions, initialState}).
 * `measure(text, kind)` returns a text width in px (`kind`: 'state' | 'label' | 'badge').
 */
export function layoutMachine(machine, measure = (t, k) => approxTextWidth(t, k === 'state' ? 13 : 11)) {
  const states = (machine.states || []).filter((st) => st && st.name);
  const names = states.map((st) => st.name);
  const known = new Set(names);
  const transitions = (machine.transitions || []).filter((t) => known.has(t.from) && known.has(t.to));
  const { rank, order } = computeRanks(names, transitions, machine.initialState);
  const maxRank = Math.max(0, ...rank.values());

  // Edge records with their geometry class.
  const edges = transitions.map((t, index) => {
    const rf = rank.get(t.from);
    const rt = rank.get(t.to);
    const kind = t.from === t.to ? 'self' : rt > rf ? 'forward' : rt === rf ? 'same' : 'back';
    const badge = badgeText(t);
    // The label is the event name with the badge (if any) stacked under it.
    const labelW = Math.max(measure(t.event || '', 'label'), badge ? measure(badge, 'badge') + 12 : 0) + 12;
    const labelH = badge ? LABEL_H * 2 : LABEL_H;
    return { index, t, kind, from: t.from, to: t.to, rf, rt, badge, labelW, labelH, dummies: [] };
  });

  // Items placed in columns: states and dummy points.
  const item = new Map();
  const stateByName = new Map(states.map((st) => [st.name, st]));
  for (const name of names) {
    const w = Math.max(96, Math.ceil(measure(name, 'state')) + 36);
    const loops = edges.filter((e) => e.kind === 'self' && e.from === name);
    const above = NODE_H / 2 + (loops.length ? SELF_LOOP_H + loops.reduce((acc, e) => acc + e.labelH, 0) : 0);
    item.set(name, { id: name, dummy: false, w, above, below: NODE_H / 2, rank: rank.get(name) });
  }
  const layers = Array.from({ length: maxRank + 1 }, () => []);
  for (const name of order) layers[rank.get(name)].push(name);
  const links = [];
  for (const e of edges) {
    if (e.kind === 'forward') links.push([e.from, e.to]);
    if (e.kind === 'back') {
      let prev = e.from;
      for (let r = e.rf - 1; r > e.rt; r--) {
        const id = `\u0000d${e.index}:${r}`;
        item.set(id, { id, dummy: true, w: 0, above: DUMMY_H / 2, below: DUMMY_H / 2, rank: r });
        layers[r].push(id);
        e.dummies.push(id);
        links.push([prev, id]);
        prev = id;
      }
      links.push([prev, e.to]);
    }
  }
  const ordered = orderLayers(layers, links);
  const yPos = placeVertically(ordered.layers, links, item);

  // Columns: width of the widest state, gap wide enough for the labels crossing it.
  const colW = ordered.layers.map((layer) => Math.max(40, ...layer.map((id) => item.get(id).w)));
  const gapW = Array.from({ length: maxRank }, () => 64);
  for (const e of edges) {
    if (e.kind === 'forward') gapW[e.rf] = Math.max(gapW[e.rf], e.labelW + 40);
    if (e.kind === 'back') {
      const g = e.rf - 1 - Math.floor((e.rf - e.rt - 1) / 2);
      gapW[g] = Math.max(gapW[g], e.labelW + 40);
    }
    if (e.kind === 'same' && e.rf < maxRank) gapW[e.rf] = Math.max(gapW[e.rf], e.labelW + 56);
  }
  let trailing = 0;
  for (const e of edges) if (e.kind === 'same' && e.rf === maxRank) trailing = Math.max(trailing, e.labelW + 48);
  const colX = [];
  let x = MARGIN + INITIAL_MARKER;
  for (let r = 0; r <= maxRank; r++) {
    colX.push(x);
    x += colW[r] + (gapW[r] || 0);
  }
  const width = x + Math.max(MARGIN, trailing);

  // Normalise y so the highest extent sits at the top margin.
  let minTop = Infinity;
  let maxBottom = -Infinity;
  for (const [id, it] of item) {
    minTop = Math.min(minTop, yPos.get(id) - it.above);
    maxBottom = Math.max(maxBottom, yPos.get(id) + it.below);
  }
  const dy = MARGIN - minTop;
  const pos = (id) => {
    const it = item.get(id);
    const cx = it.dummy ? colX[it.rank] + colW[it.rank] / 2 : colX[it.rank] + (colW[it.rank] - it.w) / 2 + it.w / 2;
    return { cx, cy: yPos.get(id) + dy, w: it.w };
  };

  const nodes = names.map((name) => {
    const p = pos(name);
    const st = stateByName.get(name);
    return {
      name,
      type: st.type || 'regular',
      initial: name === machine.initialState,
      rank: rank.get(name),
      x: r1(p.cx - p.w / 2),
      y: r1(p.cy - NODE_H / 2),
      w: p.w,
      h: NODE_H,
      state: st,
    };
  });
  const nodeBy = new Map(nodes.map((n) => [n.name, n]));

  // Ports: spread edge ends along each side of a state, sorted by the other end's height.
  const ports = new Map();
  const addPort = (name, side, e, end, otherY) => {
    const key = `${name}|${side}`;
    if (!ports.has(key)) ports.set(key, []);
    ports.get(key).push({ e, end, otherY });
  };
  for (const e of edges) {
    if (e.kind === 'self') continue;
    const firstAfter = e.dummies.length ? pos(e.dummies[0]).cy : nodeBy.get(e.to).y;
    const lastBefore = e.dummies.length ? pos(e.dummies[e.dummies.length - 1]).cy : nodeBy.get(e.from).y;
    if (e.kind === 'forward') {
      addPort(e.from, 'R', e, 'start', nodeBy.get(e.to).y);
      addPort(e.to, 'L', e, 'end', nodeBy.get(e.from).y);
    } else if (e.kind === 'back') {
      addPort(e.from, 'L', e, 'start', firstAfter + 0.5);
      addPort(e.to, 'R', e, 'end', lastBefore + 0.5);
    } else {
      addPort(e.from, 'R', e, 'start', nodeBy.get(e.to).y);
      addPort(e.to, 'R', e, 'end', nodeBy.get(e.from).y);
    }
  }
  const portY = new Map();
  for (const [key, list] of ports) {
    const [name] = key.split('|');
    const n = nodeBy.get(name);
    list.sort((a, b) => a.otherY - b.otherY || a.e.index - b.e.index);
    const usable = n.h - 16;
    list.forEach((p, i) => {
      const offset = list.length === 1 ? 0 : -usable / 2 + (usable * i) / (list.length - 1);
      portY.set(`${p.e.index}|${p.end}`, n.y + n.h / 2 + offset);
    });
  }

  // Forward and back edges: polyline through ports and dummy points, one curve per gap.
  const routed = new Map();
  const byGap = new Map();
  for (const e of edges) {
    if (e.kind !== 'forward' && e.kind !== 'back') continue;
    const a = nodeBy.get(e.from);
    const b = nodeBy.get(e.to);
    const pts = [];
    if (e.kind === 'forward') {
      pts.push({ x: a.x + a.w, y: portY.get(`${e.index}|start`) });
      pts.push({ x: b.x, y: portY.get(`${e.index}|end`) });
    } else {
      pts.push({ x: a.x, y: portY.get(`${e.index}|start`) });
      for (const id of e.dummies) {
        const p = pos(id);
        const r = item.get(id).rank;
        pts.push({ x: colX[r] + colW[r], y: p.cy });
        pts.push({ x: colX[r], y: p.cy });
      }
      pts.push({ x: b.x + b.w, y: portY.get(`${e.index}|end`) });
    }
    // Curved segments are pts[0→1], pts[2→3], …; the label goes on the middle one.
    const curves = Math.floor(pts.length / 2);
    const m = Math.floor((curves - 1) / 2);
    const p0 = pts[2 * m];
    const p1 = pts[2 * m + 1];
    const gap = e.kind === 'forward' ? e.rf : e.rf - 1 - m;
    const rec = { e, pts, m, label: { x: (p0.x + p1.x) / 2, y: (p0.y + p1.y) / 2 }, natural: (p0.y + p1.y) / 2 };
    routed.set(e.index, rec);
    if (!byGap.has(gap)) byGap.set(gap, []);
    byGap.get(gap).push(rec);
  }
  // Labels sharing a gap are stacked without overlap; the curves are then bent through them.
  for (const group of byGap.values()) {
    group.sort((p, q) => p.natural - q.natural || p.e.index - q.e.index);
    for (let i = 1; i < group.length; i++) {
      const min = group[i - 1].label.y + (group[i - 1].e.labelH + group[i].e.labelH) / 2 + 4;
      if (group[i].label.y < min) group[i].label.y = min;
    }
    const shift = group.reduce((acc, g) => acc + (g.natural - g.label.y), 0) / group.length;
    const topRoom = group[0].label.y + shift - group[0].e.labelH / 2 - 2;
    const applied = topRoom < 0 ? shift - topRoom : shift;
    for (const g of group) g.label.y += applied;
  }
  for (const rec of routed.values()) {
    const { pts, m } = rec;
    let path = `M${r1(pts[0].x)},${r1(pts[0].y)}`;
    for (let i = 0; i + 1 < pts.length; i++) {
      const p0 = pts[i];
      const p1 = pts[i + 1];
      if (i % 2 === 1) {
        path += ` L${r1(p1.x)},${r1(p1.y)}`;
        continue;
      }
      const dx = (p1.x - p0.x) / 2;
      const bend = i === 2 * m ? (rec.label.y - (p0.y + p1.y) / 2) / 0.75 : 0;
      path += ` C${r1(p0.x + dx)},${r1(p0.y + bend)} ${r1(p1.x - dx)},${r1(p1.y + bend)} ${r1(p1.x)},${r1(p1.y)}`;
    }
    rec.d = path;
    rec.label = { x: r1(rec.label.x), y: r1(rec.label.y) };
  }

  const outEdges = [];
  const selfSeen = new Map();
  const selfStack = new Map();
  for (const e of edges) {
    const a = nodeBy.get(e.from);
    const b = nodeBy.get(e.to);
    let d;
    let label;
    if (e.kind === 'self') {
      const k = selfSeen.get(e.from) || 0;
      selfSeen.set(e.from, k + 1);
      const cx = a.x + a.w / 2;
      const top = a.y;
      const hgt = SELF_LOOP_H - 6 + k * 4;
      const spread = 20 + k * 4;
      d = `M${r1(cx - spread / 2)},${r1(top)} C${r1(cx - spread * 1.6)},${r1(top - hgt)} ${r1(cx + spread * 1.6)},${r1(top - hgt)} ${r1(cx + spread / 2)},${r1(top)}`;
      const stacked = selfStack.get(e.from) || 0;
      selfStack.set(e.from, stacked + e.labelH);
      label = { x: r1(cx), y: r1(top - SELF_LOOP_H + 2 - stacked - e.labelH / 2) };
    } else if (e.kind === 'same') {
      const sx = a.x + a.w;
      const ex = b.x + b.w;
      const sy = portY.get(`${e.index}|start`);
      const ey = portY.get(`${e.index}|end`);
      const bulge = 36 + Math.abs(ey - sy) * 0.15;
      const far = Math.max(sx, ex) + bulge;
      d = `M${r1(sx)},${r1(sy)} C${r1(far)},${r1(sy)} ${r1(far)},${r1(ey)} ${r1(ex)},${r1(ey)}`;
      const mid = bezierAt({ x: sx, y: sy }, { x: far, y: sy }, { x: far, y: ey }, { x: ex, y: ey }, 0.5);
      label = { x: r1(mid.x + e.labelW / 2 + 4), y: r1(mid.y) };
    } else {
      const r = routed.get(e.index);
      d = r.d;
      label = r.label;
    }
    outEdges.push({
      index: e.index,
      from: e.from,
      to: e.to,
      event: e.t.event,
      type: e.t.type || 'regular',
      kind: e.kind,
      badge: e.badge,
      labelW: e.labelW,
      labelH: e.labelH,
      d,
      label,
      transition: e.t,
    });
  }

  // A same-rank arc's label sits beside its bulge, outside the stacking of the gaps: move it
  // past any label it would cover (below one that sits higher, above one that sits lower).
  const box = (e) => ({ x: e.label.x - e.labelW / 2, y: e.label.y - e.labelH / 2, w: e.labelW, h: e.labelH });
  const covers = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  for (const e of outEdges) {
    if (e.kind !== 'same') continue;
    for (let tries = 0; tries < outEdges.length; tries++) {
      const hit = outEdges.find((o) => o !== e && covers(box(e), box(o)));
      if (!hit) break;
      const step = (hit.labelH + e.labelH) / 2 + 4;
      const up = hit.label.y - step;
      const below = hit.label.y <= e.label.y || up - e.labelH / 2 < 2;
      e.label = { x: e.label.x, y: r1(below ? hit.label.y + step : up) };
    }
  }

  // Make room for labels of same-rank arcs and self-loops that stick out.
  let right = width;
  let bottom = maxBottom + dy + MARGIN;
  for (const e of outEdges) {
    right = Math.max(right, e.label.x + e.labelW / 2 + MARGIN);
    bottom = Math.max(bottom, e.label.y + e.labelH / 2 + MARGIN / 2);
  }
  return { nodes, edges: outEdges, width: Math.ceil(right), height: Math.ceil(bottom), crossings: ordered.crossings };
}

/** Short text for the type badge on an edge, or '' for plain transitions. */
export function badgeText(t) {
  switch (t.type) {
    case 'timeout':
      return t.timeoutMs !== undefined && t.timeoutMs !== null ? `timeout ${durationShort(t.timeoutMs)}` : 'timeout';
    case 'auto':
      return t.timeoutMs ? `auto ${durationShort(t.timeoutMs)}` : 'auto';
    case 'inter_machine':
      return `→ ${t.targetMachine || 'machine'}`;
    case 'cross_component':
      return `⇢ ${t.targetComponent || 'component'}`;
    default:
      return '';
  }
}

function durationShort(ms) {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60000) return `${+(ms / 1000).toFixed(1)}s`;
  if (ms < 3600000) return `${+(ms / 60000).toFixed(1)}m`;
  return `${+(ms / 3600000).toFixed(1)}h`;
}
