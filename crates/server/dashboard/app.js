/**
 * Dashboard entry point: the user actions (select, filter, send an event,
 * create), loading from the REST API, the live WebSocket feed, the four views
 * (live, audit trail, dead letters, runtimes) and the wiring of the page's static controls.
 */

import { LiveFeed, api } from './api.js';
import { applyHealth, initAudit, openTrail, searchNow } from './audit.js';
import { initCreateDialog, openCreateDialog } from './create.js';
import { applyDeadLettersHealth, initDeadLetters, loadDeadLetters, refreshDeadCount } from './deadletters.js';
import { byId, dismissToast, shortId, toast } from './dom.js';
import { renderDetailPanel, renderDiagramCard, renderFilters, renderList } from './panels.js';
import { followRuntimes, initRuntimes, loadRuntimes, showRuntimes } from './runtimes.js';
import { describe, renderFeed, renderStats, renderTree, runtimeCount } from './sidebar.js';
import {
  FEED_MAX,
  PAGE_SIZE,
  actions,
  componentDef,
  flashIds,
  invalidate,
  isEnded,
  machinesOf,
  onRender,
  state,
  terminalStatus,
  upsertInstance,
} from './store.js';

// ---------------------------------------------------------------- actions

function setFilter(patch) {
  Object.assign(state.filters, patch);
  if (patch.machine && patch.machine !== state.machine && machinesOf().has(patch.machine)) state.machine = patch.machine;
  invalidate('filters', 'list', 'diagram', 'tree');
}

function selectComponent(name, machine) {
  const def = componentDef(name);
  if (!def) return;
  const changed = state.component !== name;
  state.component = name;
  state.machine = machine || (changed ? def.entryMachine || def.stateMachines?.[0]?.name : state.machine) || null;
  if (changed) state.filters = { ...state.filters, machine: '', state: '' };
  invalidate('tree', 'filters', 'list', 'diagram');
}

function selectMachine(component, machine) {
  selectComponent(component, machine);
  state.machine = machine;
  if (state.selectedId) {
    const sel = state.instances.get(state.selectedId);
    if (sel && sel.machineName !== machine) selectInstance(null);
  }
  setFilter({ machine, state: '' });
}

async function selectInstance(id) {
  state.selectedId = id;
  state.reply = null;
  state.history = null;
  if (!id) {
    state.detail = null;
    history.replaceState(null, '', location.pathname + location.search);
    invalidate('list', 'diagram', 'detail');
    return;
  }
  history.replaceState(null, '', `#instance=${encodeURIComponent(id)}`);
  const known = state.instances.get(id);
  if (known && known.componentName !== state.component) selectComponent(known.componentName);
  if (known) state.machine = known.machineName;
  state.detail = known ? { ...known, availableTransitions: [], pendingTimeouts: [], fetchedAt: performance.now() } : null;
  invalidate('tree', 'list', 'diagram', 'detail');
  await refreshDetail();
}

/**
 * Instances this page created that its server does not show yet, with the reads left before one
 * is taken as not found. With runtimes in other processes, the server learns of an instance from
 * the owner's events, which may come after the owner's answer to the creation: until then a read
 * answers 404, which must not make the new instance look ended.
 */
const awaitingCreation = new Map();
/** Reads of an instance created by this page before its 404 is believed (10 s in all). */
const CREATION_READS = 20;
/** Pause between two of those reads. */
const CREATION_READ_PAUSE_MS = 500;
/** Instances awaited at once (past it, the oldest is dropped: it is read like any other). */
const AWAITING_CREATION_MAX = 100;

/** The pending re-read of the selected instance (one at a time). */
let detailTimer = 0;

function awaitCreation(id) {
  if (awaitingCreation.size >= AWAITING_CREATION_MAX) awaitingCreation.delete(awaitingCreation.keys().next().value);
  awaitingCreation.set(id, CREATION_READS);
}

async function refreshDetail() {
  const id = state.selectedId;
  if (!id) return;
  const known = state.instances.get(id);
  const ended = isEnded(known);
  if (ended) {
    // Ended instances have left the live set: show what we know, read the history store.
    state.detail = { ...known, availableTransitions: [], pendingTimeouts: [], fetchedAt: performance.now() };
  } else try {
    const raw = await api.instance(id);
    awaitingCreation.delete(id);
    if (state.selectedId !== id) return;
    const inst = upsertInstance(raw);
    state.detail = { ...inst, availableTransitions: raw.availableTransitions || [], pendingTimeouts: raw.pendingTimeouts || [], fetchedAt: performance.now() };
    if (inst.componentName && inst.componentName !== state.component) selectComponent(inst.componentName);
    if (inst.machineName && state.machine !== inst.machineName) {
      state.machine = inst.machineName;
      invalidate('tree');
    }
  } catch (err) {
    if (state.selectedId !== id) return;
    const readsLeft = err.status === 404 ? awaitingCreation.get(id) : undefined;
    if (readsLeft > 1) {
      // Created here, not reported by its runtime yet: shown as created, read again shortly.
      awaitingCreation.set(id, readsLeft - 1);
      if (known) state.detail = { ...known, awaiting: true, availableTransitions: [], pendingTimeouts: [], fetchedAt: performance.now() };
      scheduleDetailRefresh(CREATION_READ_PAUSE_MS);
      invalidate('detail', 'diagram', 'list');
      return;
    }
    awaitingCreation.delete(id);
    if (err.status === 404) {
      const known = state.instances.get(id) || state.detail;
      const fromHistory = known ? null : await instanceFromHistory(id);
      if (state.selectedId !== id) return;
      const ended = known || (fromHistory && upsertInstance(fromHistory));
      if (ended) {
        ended.disposed = true;
        state.detail = { ...ended, availableTransitions: [], pendingTimeouts: [], fetchedAt: performance.now() };
        if (ended.componentName !== state.component) selectComponent(ended.componentName);
        state.machine = ended.machineName;
      } else {
        toast(`Instance ${shortId(id)} not found`, 'error');
      }
    } else {
      toast(`Could not load instance: ${err.message}`, 'error');
    }
  }
  invalidate('detail', 'diagram', 'list');
  try {
    const [first, second] = ended || isEnded(state.instances.get(id)) ? [api.historyEvents, api.history] : [api.history, api.historyEvents];
    let events;
    try {
      events = await first(id);
    } catch {
      events = await second(id);
    }
    if (state.selectedId === id) state.history = events;
  } catch {
    if (state.selectedId === id) state.history = [];
  }
  invalidate('detail');
}

/** Rebuilds an ended instance (no longer live) from its stored events, or null. */
async function instanceFromHistory(id) {
  try {
    const events = await api.historyEvents(id);
    if (!events.length) return null;
    const first = events[0];
    const last = events[events.length - 1];
    return {
      id,
      componentName: last.componentName,
      machineName: last.machineName,
      currentState: last.stateAfter,
      status: last.status && last.status !== 'active' ? last.status : 'completed',
      context: last.context ?? {},
      createdAt: first.timestamp,
      updatedAt: last.timestamp,
      disposed: true,
    };
  } catch {
    return null;
  }
}

/** Reads the selected instance again after `pauseMs` (one pending read at a time). */
function scheduleDetailRefresh(pauseMs = 120) {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(refreshDetail, pauseMs);
}

async function sendAction(event, payload) {
  const id = state.selectedId;
  state.busy = true;
  invalidate('detail');
  try {
    const res = await api.sendEvent(id, event, payload);
    state.reply = { ...res, event };
    dismissToast('error');
    if (res.outcome === 'transitioned') {
      const inst = state.instances.get(id);
      if (inst && res.newState) {
        inst.currentState = res.newState;
        inst.updatedAt = Date.now();
        inst.status = terminalStatus(inst.componentName, inst.machineName, res.newState) || inst.status;
      }
    }
  } catch (err) {
    state.reply = { error: err.message, event };
    toast(`Could not send ${event}: ${err.message}`, 'error');
  } finally {
    state.busy = false;
  }
  invalidate('list', 'diagram', 'detail');
  await refreshDetail();
}

async function createInstance(machineName, context) {
  const res = await api.createInstance(state.component, machineName, context);
  const id = res.instanceId || res.id;
  toast(`${res.status === 'accepted' ? 'Sent the creation of' : 'Created'} ${machineName} ${shortId(id)}`, 'success');
  if (!state.instances.has(id)) {
    awaitCreation(id);
    const initial = machinesOf().get(machineName)?.initialState || '';
    upsertInstance({ id, componentName: state.component, machineName, currentState: initial, context, status: 'active', createdAt: Date.now(), updatedAt: Date.now() });
  }
  if (state.filters.machine && state.filters.machine !== machineName) setFilter({ machine: '', state: '' });
  else if (state.filters.state) setFilter({ state: '' });
  await selectInstance(id);
}

// ---------------------------------------------------------------- loading

async function loadComponents(list) {
  const comps = list || (await api.components());
  state.components = comps.filter((c) => c && c.name).map((c) => ({ ...c, stateMachines: c.stateMachines || [] }));
  if (!componentDef()) {
    const first = state.components[0];
    state.component = first?.name || null;
    state.machine = first ? first.entryMachine || first.stateMachines[0]?.name || null : null;
  }
  invalidate('tree', 'filters', 'list', 'diagram');
}

async function loadInstances({ append = false } = {}) {
  try {
    const page = await api.instances({ limit: PAGE_SIZE, cursor: append ? state.nextCursor : undefined });
    if (!append) {
      const keep = new Map([...state.instances].filter(([id]) => id === state.selectedId));
      state.instances = keep;
    }
    for (const raw of page.items) upsertInstance(raw);
    state.nextCursor = page.nextCursor || null;
  } catch (err) {
    toast(`Could not load instances: ${err.message}`, 'error');
  }
  invalidate('tree', 'list', 'diagram');
}

async function loadHealth() {
  try {
    const health = await api.health();
    if (typeof health.connectedRuntimes === 'number') state.runtimes = health.connectedRuntimes;
    applyHealth(health);
    applyDeadLettersHealth(health);
    invalidate('stats');
  } catch {
    /* the health endpoint is informative only */
  }
}

/** Reads the health, then the dead-letter count (not asked for when the health says there is no store). */
async function loadHealthAndDeadCount() {
  await loadHealth();
  await refreshDeadCount();
}

async function resync() {
  await Promise.all([loadComponents().catch(() => {}), loadInstances(), loadHealthAndDeadCount()]);
  if (state.selectedId) await refreshDetail();
}

// ---------------------------------------------------------------- live feed

/** Replies to the page's own subscribe/ping messages: protocol, not events, so kept out of the feed. */
const PROTOCOL_REPLIES = new Set(['subscribed', 'unsubscribed', 'pong']);

function onMessage(msg) {
  if (PROTOCOL_REPLIES.has(msg.type)) return;
  const d = msg.data || {};
  const instanceId = d.instanceId || d.id || null;
  if (!state.feedPaused) {
    const info = describe(msg);
    state.feed.unshift({ ...info, type: msg.type, at: d.timestamp || Date.now(), instanceId: msg.type === 'components_list' ? null : instanceId });
    if (state.feed.length > FEED_MAX) state.feed.length = FEED_MAX;
    invalidate('feed');
  }
  switch (msg.type) {
    case 'components_list': {
      const list = Array.isArray(d) ? d : d.components;
      if (Array.isArray(list) && list.every((c) => c && Array.isArray(c.stateMachines))) loadComponents(list);
      else loadComponents().catch(() => {});
      break;
    }
    case 'instance_created':
      upsertInstance(d);
      if (instanceId === state.selectedId && state.detail?.awaiting) scheduleDetailRefresh();
      flashIds.add(instanceId);
      invalidate('tree', 'list', 'diagram');
      break;
    case 'state_change': {
      const inst = state.instances.get(instanceId);
      const patch = { id: instanceId, componentName: d.componentName, machineName: d.machineName, currentState: d.newState, updatedAt: d.timestamp || Date.now() };
      if (d.context !== undefined) patch.context = d.context;
      const ending = terminalStatus(d.componentName || inst?.componentName, d.machineName || inst?.machineName, d.newState);
      if (ending) patch.status = ending;
      if (inst) Object.assign(inst, Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)));
      else upsertInstance(patch);
      flashIds.add(instanceId);
      if (instanceId === state.selectedId) {
        if (state.detail) state.detail = { ...state.detail, currentState: d.newState, context: d.context ?? state.detail.context };
        scheduleDetailRefresh();
      }
      invalidate('tree', 'list', 'diagram', 'detail');
      break;
    }
    case 'instance_completed': {
      const inst = state.instances.get(instanceId);
      if (inst) {
        inst.status = d.status || (inst.status === 'active' ? 'completed' : inst.status);
        if (d.finalState || d.currentState) inst.currentState = d.finalState || d.currentState;
        inst.updatedAt = d.timestamp || Date.now();
      }
      if (instanceId === state.selectedId) scheduleDetailRefresh();
      invalidate('tree', 'list', 'diagram', 'detail');
      break;
    }
    case 'instance_disposed': {
      const inst = state.instances.get(instanceId);
      if (inst) inst.disposed = true;
      invalidate('tree', 'list', 'diagram', 'detail');
      break;
    }
    case 'event_ignored':
      break;
    case 'effect_error':
      // A message that could not be delivered is a dead letter now (with a store).
      scheduleDeadCount();
      break;
    case 'runtimes_update': {
      const n = runtimeCount(d);
      if (n !== null) state.runtimes = n;
      if (Array.isArray(d.runtimes)) showRuntimes(d.runtimes);
      break;
    }
    case 'runtime_connected':
    case 'runtime_disconnected':
      loadRuntimes();
      break;
    case 'slow_consumer':
      toast('The live feed fell behind; reloading the current state.', 'info');
      resync();
      break;
    default:
      break;
  }
}

let deadCountTimer = 0;
/** Refreshes the dead-letter badge once a burst of failures has passed. */
function scheduleDeadCount() {
  clearTimeout(deadCountTimer);
  deadCountTimer = setTimeout(() => (state.view === 'dead' ? loadDeadLetters() : refreshDeadCount()), 500);
}

let everOpened = false;

function onStatus(status, delay) {
  const btn = byId('conn');
  btn.className = `conn is-${status}`;
  const text = status === 'open' ? 'Live' : status === 'connecting' ? 'Connecting…' : delay ? `Offline · retry in ${Math.ceil(delay / 1000)}s` : 'Offline';
  byId('conn-text').textContent = text;
  btn.setAttribute('aria-label', `Live connection: ${text}. Click to reconnect now.`);
}

function onOpen() {
  if (everOpened) resync();
  everOpened = true;
}

// ---------------------------------------------------------------- views and wiring

function switchView(view) {
  state.view = view;
  if ((view !== 'dead' && location.hash === '#dead-letters') || (view !== 'runtimes' && location.hash === '#runtimes')) history.replaceState(null, '', location.pathname + location.search);
  if (view === 'live') history.replaceState(null, '', state.selectedId ? `#instance=${encodeURIComponent(state.selectedId)}` : location.pathname + location.search);
  for (const [name, tab, panel] of [
    ['live', 'tab-live', 'view-live'],
    ['audit', 'tab-audit', 'view-audit'],
    ['dead', 'tab-dead', 'view-dead'],
    ['runtimes', 'tab-runtimes', 'view-runtimes'],
  ]) {
    byId(tab).setAttribute('aria-selected', String(view === name));
    byId(panel).hidden = view !== name;
  }
  if (view === 'audit' && !state.auditOpened) {
    state.auditOpened = true;
    searchNow();
  }
  if (view === 'dead') {
    history.replaceState(null, '', '#dead-letters');
    loadDeadLetters();
  }
  if (view === 'runtimes') history.replaceState(null, '', '#runtimes');
  followRuntimes(view === 'runtimes');
}

function wire(feed) {
  byId('tab-live').addEventListener('click', () => switchView('live'));
  byId('tab-audit').addEventListener('click', () => switchView('audit'));
  byId('tab-dead').addEventListener('click', () => switchView('dead'));
  byId('tab-runtimes').addEventListener('click', () => switchView('runtimes'));
  byId('conn').addEventListener('click', () => feed.reconnectNow());
  byId('filter-machine').addEventListener('change', (e) => setFilter({ machine: e.target.value, state: '' }));
  byId('filter-state').addEventListener('change', (e) => setFilter({ state: e.target.value }));
  byId('filter-active').addEventListener('change', (e) => setFilter({ activeOnly: e.target.checked }));
  let qTimer = 0;
  byId('filter-q').addEventListener('input', (e) => {
    clearTimeout(qTimer);
    qTimer = setTimeout(() => setFilter({ q: e.target.value }), 150);
  });
  byId('load-more').addEventListener('click', () => loadInstances({ append: true }));
  byId('btn-new').addEventListener('click', () => {
    const def = componentDef();
    if (def) openCreateDialog(def, createInstance);
    else toast('No component loaded yet.', 'error');
  });
  byId('feed-pause').addEventListener('click', (e) => {
    state.feedPaused = !state.feedPaused;
    e.currentTarget.setAttribute('aria-pressed', String(state.feedPaused));
    e.currentTarget.textContent = state.feedPaused ? 'Resume' : 'Pause';
    invalidate('feed');
  });
  byId('feed-clear').addEventListener('click', () => {
    state.feed = [];
    invalidate('feed');
  });
  // Refresh the "x s ago" labels now and then.
  setInterval(() => invalidate('list'), 15000);
}

function routeFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has('dead-letters')) {
    switchView('dead');
  } else if (params.has('runtimes')) {
    switchView('runtimes');
  } else if (params.get('audit')) {
    switchView('audit');
    openTrail(params.get('audit'));
  } else if (params.get('instance')) {
    selectInstance(params.get('instance'));
  }
}

function registerRenderers() {
  onRender('tree', renderTree);
  onRender('filters', renderFilters);
  onRender('list', renderList);
  onRender('diagram', renderDiagramCard);
  onRender('detail', renderDetailPanel);
  onRender('feed', renderFeed);
  onRender('*', renderStats);
  Object.assign(actions, {
    selectComponent,
    selectMachine,
    selectInstance,
    setFilter,
    sendAction,
    scheduleDetailRefresh,
    openAudit: (id) => {
      switchView('audit');
      openTrail(id);
    },
  });
}

async function boot() {
  registerRenderers();
  initCreateDialog();
  initAudit({
    onOpenInstance: (id, component) => {
      if (component && componentDef(component)) selectComponent(component);
      switchView('live');
      selectInstance(id);
    },
  });
  initDeadLetters({
    onOpenInstance: (id, component) => {
      if (component && componentDef(component)) selectComponent(component);
      switchView('live');
      selectInstance(id);
    },
  });
  initRuntimes({
    onCount: (n) => {
      state.runtimes = n;
      invalidate('stats');
    },
  });
  const feed = new LiveFeed({ onMessage, onStatus, onOpen });
  wire(feed);
  invalidate('feed');
  try {
    await loadComponents();
  } catch (err) {
    toast(`Could not load components: ${err.message}`, 'error');
  }
  await Promise.all([loadInstances(), loadHealthAndDeadCount()]);
  feed.start();
  routeFromHash();
  window.addEventListener('hashchange', routeFromHash);
}

boot();
