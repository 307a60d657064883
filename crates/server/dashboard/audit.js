/**
 * The audit-trail view: search over finished and live instances
 * (`/api/history/instances`), the event table of the chosen instance and the
 * sequence diagram of its causal chain across instances and components
 * (`/api/history/correlated/:id`).
 */

import { api } from './api.js';
import { byId, formatAgo, formatDateTime, h, mount, shortId, textWidth } from './dom.js';
import { historyTable } from './history.js';
import { normalizeInstance } from './instances.js';
import { renderSequence } from './sequence.js';

let hooks = { onOpenInstance: () => {} };
let currentTrail = null;
/** Number of the latest search: an older answer arriving late is dropped. */
let searchSeq = 0;

function statusChip(status) {
  return h('span', { class: `status status-${status || 'active'}` }, status || 'active');
}

async function runSearch(ev) {
  ev?.preventDefault();
  const form = byId('history-search');
  const data = new FormData(form);
  const params = Object.fromEntries([...data.entries()].map(([k, v]) => [k, String(v).trim()]));
  const tbody = byId('history-results').querySelector('tbody');
  const seq = ++searchSeq;
  mount(tbody, h('tr', null, h('td', { colspan: '4', class: 'empty' }, 'Searching…')));
  try {
    const found = await api.searchHistory(params);
    if (seq !== searchSeq) return;
    const rows = found.map((raw) => ({ ...normalizeInstance(raw), eventCount: raw.eventCount ?? raw.event_count ?? null }));
    if (!rows.length) {
      mount(tbody, h('tr', null, h('td', { colspan: '4', class: 'empty' }, 'No instance found.')));
      return;
    }
    mount(
      tbody,
      rows.map((r) =>
        h(
          'tr',
          { class: `clickable${currentTrail === r.id ? ' is-selected' : ''}`, 'data-id': r.id, onClick: () => openTrail(r.id) },
          h(
            'td',
            null,
            h('button', { type: 'button', class: 'btn btn-link', 'aria-label': `Open the audit trail of ${r.id}`, title: r.id }, r.machineName || '?', ' ', h('span', { class: 'mono' }, shortId(r.id))),
            h('div', { class: 'muted small' }, r.componentName || ''),
          ),
          h('td', null, h('div', null, r.currentState), statusChip(r.status)),
          h('td', { class: 'num' }, r.eventCount ?? '—'),
          h('td', { class: 'nowrap small', title: formatDateTime(r.updatedAt) }, formatAgo(r.updatedAt)),
        ),
      ),
    );
  } catch (err) {
    if (seq !== searchSeq) return;
    mount(tbody, h('tr', null, h('td', { colspan: '4', class: 'empty error-text' }, `Search failed: ${err.message}`)));
  }
}

async function loadEvents(id) {
  try {
    return await api.historyEvents(id);
  } catch {
    return api.history(id);
  }
}

/** Shows the audit trail of instance `id` (events table and sequence diagram). */
export async function openTrail(id) {
  currentTrail = id;
  history.replaceState(null, '', `#audit=${encodeURIComponent(id)}`);
  for (const row of byId('history-results').querySelectorAll('tbody tr')) row.classList.toggle('is-selected', row.dataset.id === id);
  const el = byId('trail');
  mount(el, h('div', { class: 'card-head' }, h('h2', { id: 'trail-title' }, 'Audit trail ', h('span', { class: 'mono muted' }, shortId(id)))), h('p', { class: 'empty' }, 'Loading…'));
  const [events, chain] = await Promise.allSettled([loadEvents(id), api.correlated(id)]);
  if (currentTrail !== id) return;
  const list = events.status === 'fulfilled' ? events.value : [];
  const first = list[0] || {};
  const seqBlock =
    chain.status === 'fulfilled'
      ? chain.value.length
        ? h(
            'div',
            { class: 'sequence-wrap', id: 'sequence' },
            renderSequence(chain.value, {
              focusId: id,
              onLaneClick: (laneId) => {
                if (laneId !== id) openTrail(laneId);
              },
              measure: textWidth,
            }),
          )
        : h('p', { class: 'empty' }, 'No correlated event.')
      : h('p', { class: 'empty error-text' }, `Causal chain unavailable: ${chain.reason?.message || 'error'}`);
  const instancesInChain = chain.status === 'fulfilled' ? new Set(chain.value.map((e) => e.instanceId || `${e.componentName}/${e.machineName}`)).size : 0;
  mount(
    el,
    h(
      'div',
      { class: 'card-head' },
      h('h2', { id: 'trail-title' }, `Audit trail · ${first.machineName || ''} `, h('span', { class: 'mono muted', title: id }, shortId(id))),
      h('div', { class: 'head-actions' }, h('button', { type: 'button', class: 'btn btn-sm', onClick: () => hooks.onOpenInstance(id, first.componentName) }, 'Show in live view')),
    ),
    first.componentName ? h('p', { class: 'muted small trail-sub' }, `${first.componentName} · ${id}`) : null,
    events.status === 'fulfilled'
      ? historyTable(list, { caption: `Events of ${id}` })
      : h('p', { class: 'empty error-text' }, `History unavailable: ${events.reason?.message || 'error'}`),
    h(
      'section',
      { class: 'block' },
      h('h3', null, 'Causal chain ', h('span', { class: 'muted small' }, chain.status === 'fulfilled' ? `${chain.value.length} event(s) across ${instancesInChain} instance(s)` : '')),
      seqBlock,
    ),
  );
}

/** Shows or hides the "no database" banner from the `/health` answer. */
export function applyHealth(health) {
  const banner = byId('audit-banner');
  if (health && health.database === false) {
    banner.hidden = false;
    banner.textContent = 'No database configured: event history and the audit trail only cover what this server keeps in memory.';
  } else {
    banner.hidden = true;
  }
}

/** Wires the search form; `onOpenInstance(id, component)` switches to the live view. */
export function initAudit(options) {
  hooks = { ...hooks, ...options };
  byId('history-search').addEventListener('submit', runSearch);
}

/** Runs the search with the current form values (used when the view opens). */
export function searchNow() {
  return runSearch();
}
