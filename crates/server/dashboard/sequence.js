/**
 * Sequence diagram of a correlated chain of events, drawn as SVG.
 *
 * One lifeline per instance (header: machine, short id, component), one row per
 * event in time order. An event caused by an event of another instance (its
 * `causationId`, or else its `sourceComponent`) is an arrow from that instance's
 * lifeline; any other event is a self-arrow on its own lifeline. Each row shows
 * the time on the left and `before → after` under the event name.
 */

import { FONT_STACK, formatTime, s, shortId, toDate } from './dom.js';

const TIME_COL = 96;
const HEADER_H = 50;
const ROW_H = 46;
const LANE_MIN = 170;
const MARGIN = 16;

/** Lifeline key of an event: its instance, or component/machine when the server gives no instance id. */
export function laneKey(ev) {
  return ev.instanceId || ev.instance_id || `${ev.componentName || '?'}/${ev.machineName || '?'}`;
}

function isCreation(ev) {
  return !ev.stateBefore || /created/i.test(ev.eventType || '');
}

/** Sorts events by time, then by sequence number, keeping the server order for ties. */
export function sortChain(events) {
  return events
    .map((ev, i) => ({ ev, i, t: toDate(ev.timestamp)?.getTime() ?? 0 }))
    .sort((a, b) => a.t - b.t || (a.ev.seq ?? 0) - (b.ev.seq ?? 0) || a.i - b.i)
    .map((x) => x.ev);
}

/**
 * Computes lanes and messages (pure, exported for tests).
 * Returns `{lanes:[{key, componentName, machineName, instanceId}], messages:[{ev, from, to, self, creation}]}`.
 */
export function buildSequence(events) {
  const sorted = sortChain(events);
  const lanes = [];
  const laneIndex = new Map();
  const byId = new Map();
  const lastLaneOfComponent = new Map();
  const messages = [];
  for (const ev of sorted) {
    const key = laneKey(ev);
    if (!laneIndex.has(key)) {
      laneIndex.set(key, lanes.length);
      lanes.push({ key, componentName: ev.componentName, machineName: ev.machineName, instanceId: ev.instanceId || ev.instance_id || null });
    }
    const to = laneIndex.get(key);
    let from = to;
    const cause = ev.causationId ? byId.get(ev.causationId) : null;
    if (cause && laneIndex.get(laneKey(cause)) !== to) {
      from = laneIndex.get(laneKey(cause));
    } else if (!cause && ev.sourceComponent && ev.sourceComponent !== ev.componentName && lastLaneOfComponent.has(ev.sourceComponent)) {
      from = lastLaneOfComponent.get(ev.sourceComponent);
    }
    messages.push({ ev, from, to, self: from === to, creation: isCreation(ev) });
    if (ev.id) byId.set(ev.id, ev);
    lastLaneOfComponent.set(ev.componentName, to);
  }
  return { lanes, messages };
}

const font = (weight, size) => `${weight} ${size}px ${FONT_STACK}`;

/**
 * Renders the chain as an SVG element. `focusId` (an instance id) gets its lifeline
 * highlighted; `onLaneClick(instanceId)` makes headers clickable.
 */
export function renderSequence(events, { focusId, onLaneClick, measure } = {}) {
  const { lanes, messages } = buildSequence(events);
  const width = (text, f) => (measure ? measure(text, f) : String(text).length * 7);
  const laneW = Math.max(
    LANE_MIN,
    ...lanes.map((l) => Math.max(width(`${l.machineName} · ${shortId(l.instanceId)}`, font(600, 12)), width(l.componentName || '', font(400, 11))) + 36),
    ...messages.map((m) => (m.self ? 0 : width(m.ev.eventType || '', font(600, 11)) + 30)),
  );
  const selfExtra = Math.max(0, ...messages.filter((m) => m.self).map((m) => width(`${m.ev.eventType}  ${m.ev.stateBefore || ''} → ${m.ev.stateAfter || ''}`, font(600, 11)) + 50 - laneW / 2));
  const totalW = TIME_COL + lanes.length * laneW + selfExtra + MARGIN;
  const totalH = HEADER_H + MARGIN * 2 + messages.length * ROW_H + 10;
  const cx = (i) => TIME_COL + laneW * i + laneW / 2;

  const svg = s('svg', {
    class: 'sequence',
    viewBox: `0 0 ${totalW} ${totalH}`,
    width: totalW,
    height: totalH,
    role: 'img',
    'aria-label': `Sequence diagram: ${lanes.length} instance(s), ${messages.length} event(s)`,
  });
  svg.style.maxWidth = `${totalW}px`;
  svg.appendChild(
    s('defs', null, s('marker', { id: 'seq-arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto' }, s('path', { class: 'seq-arrow-head', d: 'M0,0 L10,5 L0,10 z' }))),
  );

  const bottom = totalH - 6;
  lanes.forEach((lane, i) => {
    const focus = focusId && lane.instanceId === focusId;
    const g = s('g', { class: `seq-lane${focus ? ' is-focus' : ''}`, 'data-lane': lane.key });
    g.appendChild(s('line', { class: 'seq-lifeline', x1: cx(i), y1: MARGIN + HEADER_H, x2: cx(i), y2: bottom }));
    const head = s('g', {
      class: 'seq-head',
      tabindex: onLaneClick && lane.instanceId ? '0' : null,
      role: onLaneClick && lane.instanceId ? 'button' : null,
      'aria-label': `${lane.componentName} ${lane.machineName} ${lane.instanceId || ''}`,
    });
    head.appendChild(s('title', null, `${lane.componentName} / ${lane.machineName}\n${lane.instanceId || lane.key}`));
    head.appendChild(s('rect', { class: 'seq-head-box', x: cx(i) - laneW / 2 + 8, y: MARGIN, width: laneW - 16, height: HEADER_H - 8, rx: 8 }));
    head.appendChild(s('text', { class: 'seq-head-title', x: cx(i), y: MARGIN + 18, 'text-anchor': 'middle' }, `${lane.machineName || '?'} · ${shortId(lane.instanceId)}`));
    head.appendChild(s('text', { class: 'seq-head-sub', x: cx(i), y: MARGIN + 34, 'text-anchor': 'middle' }, lane.componentName || ''));
    if (onLaneClick && lane.instanceId) {
      head.addEventListener('click', () => onLaneClick(lane.instanceId));
      head.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') onLaneClick(lane.instanceId);
      });
    }
    g.appendChild(head);
    svg.appendChild(g);
  });

  messages.forEach((m, row) => {
    const y = MARGIN + HEADER_H + 22 + row * ROW_H;
    const ev = m.ev;
    const states = `${ev.stateBefore || '∅'} → ${ev.stateAfter || '?'}`;
    const g = s('g', { class: `seq-msg${m.self ? ' is-self' : ''}${m.creation ? ' is-creation' : ''}`, 'data-event': ev.eventType || '' });
    g.appendChild(s('title', null, `${ev.eventType}  ${states}\n${ev.componentName}/${ev.machineName}\n${ev.timestamp ?? ''}`));
    g.appendChild(s('text', { class: 'seq-time', x: 8, y: y + 4 }, formatTime(ev.timestamp)));
    if (m.self) {
      const x = cx(m.to);
      g.appendChild(s('rect', { class: 'seq-activation', x: x - 4, y: y - 10, width: 8, height: 22, rx: 2 }));
      g.appendChild(s('path', { class: 'seq-line', d: `M${x + 4},${y - 6} h26 v14 h-24`, 'marker-end': 'url(#seq-arrow)' }));
      g.appendChild(s('text', { class: 'seq-label', x: x + 38, y: y - 1 }, ev.eventType || ''));
      g.appendChild(s('text', { class: 'seq-states', x: x + 38, y: y + 13 }, states));
    } else {
      const x1 = cx(m.from);
      const x2 = cx(m.to);
      const dir = x2 > x1 ? 1 : -1;
      g.appendChild(s('rect', { class: 'seq-activation', x: x2 - 4, y: y - 4, width: 8, height: 16, rx: 2 }));
      g.appendChild(s('path', { class: 'seq-line seq-cross', d: `M${x1},${y} L${x2 - dir * 5},${y}`, 'marker-end': 'url(#seq-arrow)' }));
      const mid = (x1 + x2) / 2;
      g.appendChild(s('text', { class: 'seq-label', x: mid, y: y - 6, 'text-anchor': 'middle' }, ev.eventType || ''));
      g.appendChild(s('text', { class: 'seq-states', x: mid, y: y + 15, 'text-anchor': 'middle' }, states));
    }
    svg.appendChild(g);
  });
  return svg;
}
