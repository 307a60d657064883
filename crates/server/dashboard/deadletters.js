/**
 * The dead-letters view: messages between instances that the runtime could
 * not apply (`/api/dead-letters`), one row each with when, where to, which
 * event, why and how many attempts, and Replay / Discard buttons. Refreshed
 * every time the view opens and after every action; the count in the tab
 * badge is refreshed too (at start, after actions, and when the live feed
 * reports an effect that failed).
 */

import { api } from './api.js';
import { byId, formatAgo, formatDateTime, h, mount, shortId, toast } from './dom.js';

/** Dead letters read per page (and the most the tab badge counts before showing "N+"). */
const PAGE = 100;
const COLUMNS = 8;

let hooks = { onOpenInstance: () => {} };
let rows = [];
let nextCursor = null;
/** Number of the latest load: an older answer arriving late is dropped. */
let loadSeq = 0;
/** Ids with a replay or discard under way (their buttons are disabled). */
const busy = new Set();
/**
 * False once `/health` said the server has no store (a distributed dashboard
 * started without `--store`): dead letters are then not kept and not asked for.
 */
let kept = true;

/** Where the message was going: one instance, or a machine (with the selection it used). */
function target(letter) {
  const body = letter.message?.body || {};
  if (letter.instanceId) {
    const label = letter.action === 'create' ? `new ${letter.machine || 'instance'}` : 'instance';
    return h(
      'button',
      { type: 'button', class: 'btn btn-link', title: letter.instanceId, 'aria-label': `Show instance ${letter.instanceId}`, onClick: () => hooks.onOpenInstance(letter.instanceId, letter.component) },
      label,
      ' ',
      h('span', { class: 'mono' }, shortId(letter.instanceId)),
    );
  }
  const how = letter.action === 'broadcast' ? (body.state ? `broadcast · in ${body.state}` : 'broadcast') : 'selected instances';
  return h('span', null, letter.machine || '?', ' ', h('span', { class: 'muted small' }, how));
}

function kindChip(kind) {
  return h('span', { class: `chip dl-kind dl-kind-${kind}` }, kind || '?');
}

function row(letter) {
  const id = letter.messageId;
  const working = busy.has(id);
  return h(
    'tr',
    { 'data-id': id },
    h('td', { class: 'nowrap small', title: formatDateTime(letter.deadAt) }, formatAgo(letter.deadAt)),
    h('td', null, letter.component, letter.message?.sourceComponent ? h('div', { class: 'src-comp' }, `from ${letter.message.sourceComponent}`) : null),
    h('td', { 'data-role': 'target' }, target(letter)),
    h('td', null, letter.event ? h('span', { class: 'event-name' }, letter.event) : h('span', { class: 'muted' }, letter.action)),
    h('td', null, kindChip(letter.kind)),
    h('td', { class: 'dl-reason', 'data-role': 'reason', title: letter.reason }, letter.reason),
    h('td', { class: 'num' }, letter.attempts),
    h(
      'td',
      { class: 'nowrap' },
      h('div', { class: 'dl-actions' },
        h('button', { type: 'button', class: 'btn btn-sm', 'data-action': 'replay', disabled: working, 'aria-label': `Replay message ${id}`, onClick: () => replay(id) }, 'Replay'),
        h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'data-action': 'discard', disabled: working, 'aria-label': `Discard message ${id}`, onClick: () => discard(letter) }, 'Discard'),
      ),
    ),
  );
}

function message(text, kind = 'empty') {
  return h('tr', null, h('td', { colspan: String(COLUMNS), class: kind === 'error' ? 'empty error-text' : 'empty' }, text));
}

function render() {
  const tbody = byId('dead-letters').querySelector('tbody');
  mount(tbody, rows.length ? rows.map(row) : message('No dead letter: every message was applied.'));
  byId('dead-more').hidden = !nextCursor;
}

/** Sets the tab badge: the count, "N+" past one page, nothing at zero. */
function setBadge(count, more) {
  const badge = byId('dead-count');
  badge.textContent = count ? `${count}${more ? '+' : ''}` : '';
  badge.classList.toggle('is-alert', count > 0);
  badge.setAttribute('aria-label', count ? `${count}${more ? ' or more' : ''} dead letters` : 'no dead letter');
}

/** Says in the view that dead letters need a store, with an empty list and badge. */
function showNoStore() {
  rows = [];
  nextCursor = null;
  byId('dead-more').hidden = true;
  const banner = byId('dead-banner');
  banner.hidden = false;
  banner.textContent = 'No database configured: dead letters are only kept when the server runs with a store.';
  mount(byId('dead-letters').querySelector('tbody'), message('Dead letters need a store.'));
  setBadge(0, false);
}

/**
 * Takes the `/health` answer: a server with no store (`database` false and no
 * `databaseType`) keeps no dead letter, so the list is no longer asked for.
 */
export function applyDeadLettersHealth(health) {
  if (!health || typeof health !== 'object') return;
  kept = !(health.database === false && !health.databaseType);
}

/** Reads the first page again (or the next one with `append`) and redraws the table and badge. */
export async function loadDeadLetters({ append = false } = {}) {
  const seq = ++loadSeq;
  if (!kept) return showNoStore();
  const tbody = byId('dead-letters').querySelector('tbody');
  if (!append && !rows.length) mount(tbody, message('Loading…'));
  try {
    const page = await api.deadLetters({ limit: PAGE, cursor: append ? nextCursor : undefined });
    if (seq !== loadSeq) return;
    rows = append ? [...rows, ...page.items] : page.items;
    nextCursor = page.nextCursor;
    byId('dead-banner').hidden = true;
    render();
    if (!append) setBadge(rows.length, Boolean(nextCursor));
  } catch (err) {
    if (seq !== loadSeq) return;
    if (err.code === 'store_required') {
      kept = false;
      showNoStore();
      return;
    }
    rows = [];
    nextCursor = null;
    byId('dead-more').hidden = true;
    mount(tbody, message(`Could not load the dead letters: ${err.message}`, 'error'));
    setBadge(0, false);
  }
}

/** Refreshes only the tab badge (one small read; errors leave it as it was). */
export async function refreshDeadCount() {
  if (!kept) return;
  try {
    const page = await api.deadLetters({ limit: PAGE });
    setBadge(page.items.length, Boolean(page.nextCursor));
  } catch (err) {
    /* the server is away: the badge stays as it was; with no store, stop asking */
    if (err.code === 'store_required') kept = false;
  }
}

async function act(id, fn) {
  busy.add(id);
  render();
  try {
    await fn();
  } finally {
    busy.delete(id);
    await loadDeadLetters();
  }
}

function replay(id) {
  return act(id, async () => {
    try {
      const reply = await api.replayDeadLetter(id);
      if (reply?.outcome === 'delivered') toast(`Message ${shortId(id)} delivered`, 'success');
      else if (reply?.outcome === 'dead_again') toast(`Message ${shortId(id)} failed again: ${reply.deadLetter?.reason || reply.deadLetter?.kind || 'see the list'}`, 'error');
      else toast(`Message ${shortId(id)} sent again; the runtime is still busy`, 'info');
    } catch (err) {
      toast(`Could not replay ${shortId(id)}: ${err.message}`, 'error');
    }
  });
}

function discard(letter) {
  const id = letter.messageId;
  const what = letter.event ? `${letter.event} to ${letter.component}` : `${letter.action} in ${letter.component}`;
  if (!window.confirm(`Discard message ${shortId(id)} (${what})? It will never be applied.`)) return Promise.resolve();
  return act(id, async () => {
    try {
      await api.discardDeadLetter(id);
      toast(`Message ${shortId(id)} discarded`, 'success');
    } catch (err) {
      toast(`Could not discard ${shortId(id)}: ${err.message}`, 'error');
    }
  });
}

/** Wires the view's buttons; `onOpenInstance(id, component)` shows an instance in the live view. */
export function initDeadLetters(options) {
  hooks = { ...hooks, ...options };
  byId('dead-refresh').addEventListener('click', () => loadDeadLetters());
  byId('dead-more').addEventListener('click', () => loadDeadLetters({ append: true }));
}
