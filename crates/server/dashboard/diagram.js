/**
 * State diagram of one machine, drawn as SVG from the component definition.
 *
 * Geometry comes from `layout.js`; this module only turns it into SVG nodes:
 * rounded boxes per state type (entry / regular / final / error), the
 * initial-state marker, curved edges with arrowheads, event labels and a badge
 * for timeout / auto / inter_machine / cross_component transitions. With a
 * current state, that state is highlighted, its outgoing edges emphasised and
 * every state it can no longer reach greyed.
 */

import { FONT_STACK, s, textWidth } from './dom.js';
import { layoutMachine, reachableFrom } from './layout.js';

const EDGE_KINDS = ['regular', 'timeout', 'auto', 'inter_machine', 'cross_component', 'next', 'muted'];

/** Measures text with the same fonts the SVG uses (see app.css). */
function measure(text, kind) {
  const font = kind === 'state' ? `600 13px ${FONT_STACK}` : kind === 'badge' ? `600 10px ${FONT_STACK}` : `600 11px ${FONT_STACK}`;
  return textWidth(text, font);
}

/** Normalised edge class used for colours and arrowheads. */
function edgeClass(type) {
  return EDGE_KINDS.includes(type) ? type : 'regular';
}

function arrowDefs(idPrefix) {
  return s(
    'defs',
    null,
    EDGE_KINDS.map((kind) =>
      s(
        'marker',
        {
          id: `${idPrefix}-arrow-${kind}`,
          class: `arrow arrow-${kind}`,
          viewBox: '0 0 10 10',
          refX: '9',
          refY: '5',
          markerWidth: '7',
          markerHeight: '7',
          orient: 'auto-start-reverse',
        },
        s('path', { d: 'M0,0 L10,5 L0,10 z' }),
      ),
    ),
  );
}

function stateTitle(node, count) {
  const st = node.state || {};
  const lines = [`${node.name} (${node.type}${node.initial ? ', initial' : ''})`];
  const entry = st.onEntry || st.entryMethod;
  const exit = st.onExit || st.exitMethod;
  if (entry) lines.push(`onEntry: ${entry}`);
  if (exit) lines.push(`onExit: ${exit}`);
  if (st.description) lines.push(String(st.description));
  if (count) lines.push(`${count} instance(s) here`);
  return lines.join('\n');
}

function edgeTitle(t) {
  const lines = [`${t.from} → ${t.to} on ${t.event} (${t.type || 'regular'})`];
  if (t.timeoutMs !== undefined && t.timeoutMs !== null) lines.push(`delay: ${t.timeoutMs} ms`);
  if (t.targetComponent) lines.push(`target component: ${t.targetComponent}`);
  if (t.targetMachine) lines.push(`target machine: ${t.targetMachine}`);
  if (t.targetEvent) lines.push(`target event: ${t.targetEvent}`);
  if (t.guard) lines.push(`guard: ${typeof t.guard === 'string' ? t.guard : t.guard.expression}`);
  for (const rule of t.matchingRules || []) {
    lines.push(`match: ${rule.instanceProperty} ${rule.operator || '==='} event.${rule.eventProperty}`);
  }
  if (t.description) lines.push(String(t.description));
  return lines.join('\n');
}

let diagramSeq = 0;

/**
 * Builds the SVG for `machine`.
 * options: `currentState`, `counts` (Map state → live instances), `selectedState`,
 * `onStateClick(name)`, `label` (accessible name).
 */
export function renderDiagram(machine, options = {}) {
  const { currentState, counts = new Map(), selectedState, onStateClick } = options;
  const layout = layoutMachine(machine, measure);
  const idPrefix = `dg${++diagramSeq}`;
  const reachable = currentState ? reachableFrom(currentState, machine.transitions || []) : null;

  const svg = s('svg', {
    class: 'diagram',
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    width: layout.width,
    height: layout.height,
    role: 'img',
    'aria-label': options.label || `State diagram of ${machine.name}`,
    'data-machine': machine.name,
  });
  svg.style.maxWidth = `${layout.width}px`;
  // Below this width labels get unreadable: the card scrolls instead.
  svg.style.minWidth = `${Math.min(layout.width, 560)}px`;
  svg.appendChild(arrowDefs(idPrefix));

  // Edges first so boxes sit on top of line ends.
  const edgeLayer = s('g', { class: 'edges' });
  const labelLayer = s('g', { class: 'edge-labels' });
  for (const e of layout.edges) {
    let kind = edgeClass(e.type);
    const classes = ['edge', `edge-${kind}`, `edge-${e.kind}`];
    if (reachable) {
      if (e.from === currentState) {
        classes.push('is-next');
        kind = 'next';
      } else if (!reachable.has(e.from)) {
        classes.push('is-muted');
        kind = 'muted';
      }
    }
    const group = s('g', { class: classes.join(' '), 'data-event': e.event, 'data-from': e.from, 'data-to': e.to });
    group.appendChild(s('title', null, edgeTitle(e.transition)));
    group.appendChild(s('path', { class: 'edge-hit', d: e.d }));
    group.appendChild(s('path', { class: 'edge-line', d: e.d, 'marker-end': `url(#${idPrefix}-arrow-${kind})` }));
    edgeLayer.appendChild(group);

    const lx = e.label.x;
    const top = e.label.y - e.labelH / 2;
    const lab = s('g', { class: `edge-label ${classes.slice(1).join(' ')}`, 'data-event': e.event });
    lab.appendChild(s('rect', { class: 'edge-label-bg', x: lx - e.labelW / 2, y: top, width: e.labelW, height: e.labelH, rx: 4 }));
    lab.appendChild(s('text', { class: 'edge-label-text', x: lx, y: top + 12.5, 'text-anchor': 'middle' }, e.event));
    if (e.badge) {
      const bw = measure(e.badge, 'badge') + 12;
      lab.appendChild(s('rect', { class: `badge badge-${edgeClass(e.type)}`, x: lx - bw / 2, y: top + 18, width: bw, height: 15, rx: 7.5 }));
      lab.appendChild(s('text', { class: 'badge-text', x: lx, y: top + 29, 'text-anchor': 'middle' }, e.badge));
    }
    labelLayer.appendChild(lab);
  }
  svg.appendChild(edgeLayer);

  const nodeLayer = s('g', { class: 'states' });
  for (const n of layout.nodes) {
    const count = counts.get(n.name) || 0;
    const classes = ['state', `state-${n.type}`];
    if (n.initial) classes.push('is-initial');
    if (currentState === n.name) classes.push('is-current');
    if (reachable && !reachable.has(n.name)) classes.push('is-unreachable');
    if (selectedState === n.name) classes.push('is-selected');
    const g = s('g', {
      class: classes.join(' '),
      'data-state': n.name,
      tabindex: onStateClick ? '0' : null,
      role: onStateClick ? 'button' : null,
      'aria-label': `State ${n.name}${currentState === n.name ? ' (current)' : ''}${count ? `, ${count} instance(s)` : ''}`,
    });
    g.appendChild(s('title', null, stateTitle(n, count)));
    if (n.initial) {
      const cy = n.y + n.h / 2;
      g.appendChild(s('circle', { class: 'initial-dot', cx: n.x - 26, cy, r: 5 }));
      g.appendChild(s('path', { class: 'initial-line', d: `M${n.x - 21},${cy} L${n.x - 2},${cy}`, 'marker-end': `url(#${idPrefix}-arrow-regular)` }));
    }
    g.appendChild(s('rect', { class: 'state-box', x: n.x, y: n.y, width: n.w, height: n.h, rx: 10 }));
    if (n.type === 'final') {
      g.appendChild(s('rect', { class: 'state-inner', x: n.x + 3, y: n.y + 3, width: n.w - 6, height: n.h - 6, rx: 7 }));
    }
    g.appendChild(s('text', { class: 'state-name', x: n.x + n.w / 2, y: n.y + n.h / 2 + 4.5, 'text-anchor': 'middle' }, n.name));
    if (count) {
      const label = String(count);
      const w = Math.max(18, label.length * 7 + 10);
      g.appendChild(s('rect', { class: 'count-bg', x: n.x + n.w - w / 2 - 4, y: n.y - 9, width: w, height: 18, rx: 9 }));
      g.appendChild(s('text', { class: 'count-text', x: n.x + n.w - 4, y: n.y + 4, 'text-anchor': 'middle' }, label));
    }
    if (onStateClick) {
      g.addEventListener('click', () => onStateClick(n.name));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          onStateClick(n.name);
        }
      });
    }
    nodeLayer.appendChild(g);
  }
  svg.appendChild(nodeLayer);
  svg.appendChild(labelLayer);
  return svg;
}
