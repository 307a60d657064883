/**
 * The runtimes view: the runtimes this server knows (`/api/runtimes`), one
 * row each with its name, components (for a component shared by replicas, the
 * partitions it owns), address, last heartbeat and since when it is known. A server hosting its components shows itself alone; a
 * distributed dashboard shows every runtime heard on the bus. Reloaded every
 * few seconds while the view is shown, and replaced at once when the live
 * feed reports runtimes come or gone (`runtimes_update`,
 * `runtime_connected`, `runtime_disconnected`).
 */

import { api } from './api.js';
import { byId, formatAgo, formatDateTime, h, mount, shortId } from './dom.js';

/** How often the view reloads while shown (ms). */
export const RUNTIMES_REFRESH_MS = 3000;
const COLUMNS = 5;

let hooks = { onCount: () => {} };
let runtimes = null;
let timer = 0;
/** Number of the latest load: an older answer arriving late is dropped. */
let loadSeq = 0;

function message(text, kind = 'empty') {
  mount(byId('runtimes').querySelector('tbody'), h('tr', null, h('td', { colspan: String(COLUMNS), class: kind }, text)));
}

/**
 * A hosted component; for one shared by replicas (`runtime --replicas`), with
 * the share of its partitions this runtime owns (the list in the tooltip).
 */
function componentChip(name, partitions) {
  if (!partitions || !Array.isArray(partitions.owned)) return h('span', { class: 'chip' }, name);
  const owned = partitions.owned;
  const title = owned.length ? `partitions ${owned.join(', ')} of ${partitions.count}` : `no partition of ${partitions.count}`;
  return h('span', { class: 'chip rt-partitions', title, 'data-partitions': owned.join(',') }, `${name} · ${owned.length}/${partitions.count}`);
}

function row(runtime) {
  const components = runtime.components?.length ? runtime.components : runtime.componentName ? [runtime.componentName] : [];
  const address = runtime.host && runtime.port ? `${runtime.host}:${runtime.port}` : '—';
  return h(
    'tr',
    { 'data-id': runtime.runtimeId },
    h(
      'td',
      null,
      h('span', { class: 'rt-name', title: runtime.runtimeId }, runtime.name || shortId(runtime.runtimeId)),
      runtime.local ? h('span', { class: 'chip rt-local' }, 'this process') : null,
    ),
    h('td', { class: 'rt-components' }, components.map((name) => componentChip(name, runtime.partitions?.[name]))),
    h('td', { class: 'mono small' }, address),
    h('td', { class: 'nowrap small rt-seen', title: formatDateTime(runtime.lastSeen) }, runtime.local ? 'now' : formatAgo(runtime.lastSeen)),
    h('td', { class: 'nowrap small', title: formatDateTime(runtime.startedAt) }, formatAgo(runtime.startedAt)),
  );
}

function render() {
  if (runtimes === null) return message('Loading…');
  if (!runtimes.length) return message('No runtime heard of yet.');
  mount(byId('runtimes').querySelector('tbody'), runtimes.map(row));
}

/** Shows this list (from `/api/runtimes` or a `runtimes_update` message). */
export function showRuntimes(list) {
  if (!Array.isArray(list)) return;
  runtimes = list.filter((r) => r && typeof r === 'object');
  hooks.onCount(runtimes.length);
  render();
}

/** Reloads the list from the server. */
export async function loadRuntimes() {
  const seq = ++loadSeq;
  try {
    const list = await api.runtimes();
    if (seq === loadSeq) showRuntimes(list);
  } catch (err) {
    if (seq === loadSeq && runtimes === null) message(`Could not load the runtimes: ${err.message}`, 'form-error');
  }
}

/** Starts (`true`) or stops the periodic reload, as the view is shown or left. */
export function followRuntimes(shown) {
  clearInterval(timer);
  timer = 0;
  if (!shown) return;
  loadRuntimes();
  timer = setInterval(loadRuntimes, RUNTIMES_REFRESH_MS);
}

/** `onCount(n)` is told the number of runtimes whenever the list changes. */
export function initRuntimes(options) {
  hooks = { ...hooks, ...options };
  byId('runtimes-refresh').addEventListener('click', loadRuntimes);
  render();
}
