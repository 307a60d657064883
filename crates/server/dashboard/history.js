/**
 * The audit-trail table of one instance: sequence number, time, event,
 * state before → after, causation (a link to the causing row when it is in
 * the table), source component and payload preview.
 */

import { compactJson, formatDateTime, formatTime, h, shortId } from './dom.js';

/** Sorts history events by sequence number, then time. */
export function sortHistory(events) {
  return [...events].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0) || String(a.timestamp).localeCompare(String(b.timestamp)));
}

/** Builds the table element. `caption` is read by screen readers. */
export function historyTable(events, { caption = 'Event history', newestFirst = false, compact = false } = {}) {
  const sorted = sortHistory(events);
  if (newestFirst) sorted.reverse();
  const ids = new Set(sorted.map((e) => e.id).filter(Boolean));
  const rows = sorted.map((ev) => {
    const cause = ev.causationId
      ? ids.has(ev.causationId)
        ? h(
            'a',
            {
              href: '#',
              class: 'mono',
              title: `Caused by event ${ev.causationId}`,
              onClick: (e) => {
                e.preventDefault();
                const target = e.currentTarget.closest('table').querySelector(`tr[data-event-id="${CSS.escape(ev.causationId)}"]`);
                if (target) {
                  target.classList.remove('flash');
                  void target.getBoundingClientRect();
                  target.classList.add('flash');
                  target.scrollIntoView({ block: 'nearest' });
                }
              },
            },
            `↖ ${shortId(ev.causationId)}`,
          )
        : h('span', { class: 'mono', title: `Caused by event ${ev.causationId}` }, shortId(ev.causationId))
      : h('span', { class: 'muted' }, '—');
    const payload = compactJson(ev.payload, 60);
    return h(
      'tr',
      { 'data-event-id': ev.id || '', class: ev.status === 'ignored' || ev.status === 'failed' ? 'is-muted' : null },
      h('td', { class: 'num' }, ev.seq ?? ''),
      h('td', { class: 'nowrap', title: `${formatDateTime(ev.timestamp)} (${formatTime(ev.timestamp)})` }, compact ? formatTime(ev.timestamp).slice(0, 8) : formatTime(ev.timestamp)),
      h('td', null, h('span', { class: 'event-name', title: compact && payload ? `payload: ${compactJson(ev.payload, 2000)}` : null }, ev.eventType || '—')),
      h('td', null, h('span', { class: 'muted' }, ev.stateBefore || '∅'), ' → ', h('strong', null, ev.stateAfter || '?')),
      h('td', null, cause, ev.sourceComponent && ev.sourceComponent !== ev.componentName ? h('span', { class: 'src-comp' }, ` from ${ev.sourceComponent}`) : null),
      compact ? null : h('td', { class: 'payload mono', title: compactJson(ev.payload, 2000) }, payload || h('span', { class: 'muted' }, '—')),
    );
  });
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table history-table' },
      h('caption', { class: 'sr-only' }, caption),
      h(
        'thead',
        null,
        h('tr', null, ['#', 'Time', 'Event', 'Before → after', 'Causation', compact ? null : 'Payload'].filter(Boolean).map((t) => h('th', { scope: 'col' }, t))),
      ),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: compact ? '5' : '6', class: 'empty' }, 'No event recorded.'))),
    ),
  );
}
