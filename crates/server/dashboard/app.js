/**
 * Dashboard entry point: application state, the live WebSocket feed, and the
 * wiring between the sidebar, the state diagram, the instance list, the
 * instance detail, the event feed and the audit view.
 *
 * Rendering is batched: handlers mark parts of the page dirty with
 * `invalidate(...)` and one animation frame redraws them, so a burst of
 * WebSocket messages costs one redraw.
 */

import { LiveFeed, api } from './api.js';
import { applyHealth, initAudit, openTrail, searchNow } from './audit.js';
import { initCreateDialog, openCreateDialog } from './create.js';
import { renderDetail } from './detail.js';
import { renderDiagram } from './diagram.js';
import { byId, formatTime, h, mount, shortId, toast } from './dom.js';
import { matchesFilters, normalizeInstance, renderInstanceList, sortInstances } from './instances.js';

const FEED_MAX = 100;
const LIST_MAX = 2000;
const PAGE_SIZE = 500;

const state = {
  components: [],
  component: null,
  machine: null,
  filters: { machine: '', state: '', q: '', activeOnly: false },
  instances: new Map(),
  nextCursor: null,
  selectedId: null,
  detail: null,
  history: null,
  reply: null,
  busy: false,
  feed: [],
  feedPaused: false,
  runtimes: null,
  view: 'live',
  auditOpened: false,
};

// ---------------------------------------------------------------- helpers

const componentDef = (name = state.component) => state.components.find((c) => c.name === name);
const machinesOf = (name = state.component) => new Map((componentDef(name)?.stateMachines || []).map((m) => [m.name, m]));

/** The machine shown in the diagram: the selected instance's, else the sidebar's. */
function diagramMachine() {
  const machines = machinesOf();
  const inst = state.selectedId ? state.instances.get(state.selectedId) || state.detail : null;
  if (inst && inst.componentName === state.component && machines.has(inst.machineName)) return machines.get(inst.machineName);
  return machines.get(state.machine) || [...machines.values()][0] || null;
}

/** `completed` or `error` when `stateName` is a final or error state of the machine, else null. */
function terminalStatus(componentName, machineName, stateName) {
  const type = machinesOf(componentName).get(machineName)?.states?.find((st) => st.name === stateName)?.type;
  return type === 'final' ? 'completed' : type === 'error' ? 'error' : null;
}

function isEnded(inst) {
  return Boolean(inst && (inst.disposed || inst.status !== 'active'));
}

function upsertInstance(raw, fallbackComponent) {
  const inst = normalizeInstance(raw, fallbackComponent);
  if (!inst.id) return null;
  const prev = state.instances.get(inst.id);
  const merged = prev ? { ...prev, ...Object.fromEntries(Object.entries(inst).filter(([, v]) => v !== '' && v !== null)) } : inst;
  state.instances.set(inst.id, merged);
  if (state.instances.size > LIST_MAX) {
    // Drop the oldest ended instances first, then the oldest of all.
    const victims = sortInstances([...state.instances.values()]).reverse();
    const ended = victims.filter((i) => i.status !== 'active' || i.disposed);
    for (const v of [...ended, ...victims]) {
      if (state.instances.size <= LIST_MAX) break;
      if (v.id !== state.selectedId) state.instances.delete(v.id);
    }
  }
  return merged;
}

// ---------------------------------------------------------------- batched rendering

const dirty = new Set();
let frame = 0;

function invalidate(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has('tree')) renderTree();
  if (parts.has('filters')) renderFilters();
  if (parts.has('list')) renderList();
  if (parts.has('diagram')) renderDiagramCard();
  if (parts.has('detail')) renderDetailPanel();
  if (parts.has('feed')) renderFeed();
  renderStats();
}

function renderStats() {
  const machines = state.components.reduce((n, c) => n + (c.stateMachines || []).length, 0);
  const active = [...state.instances.values()].filter((i) => i.status === 'active' && !i.disposed).length;
  byId('stat-components').textContent = String(state.components.length);
  byId('stat-machines').textContent = String(machines);
  byId('stat-instances').textContent = String(active);
  byId('stat-runtimes').textContent = state.runtimes === null ? '–' : String(state.runtimes);
}

function renderTree() {
  const tree = byId('component-tree');
  if (!state.components.length) {
    mount(tree, h('p', { class: 'empty' }, 'No component loaded.'));
    return;
  }
  const counts = new Map();
  for (const i of state.instances.values()) {
    if (i.status !== 'active' || i.disposed) continue;
    const key = `${i.componentName}/${i.machineName}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  mount(
    tree,
    state.components.map((c) =>
      h(
        'div',
        { class: `tree-group${c.name === state.component ? ' is-open' : ''}` },
        h(
          'button',
          { type: 'button', class: 'tree-component', 'aria-expanded': c.name === state.component ? 'true' : 'false', onClick: () => selectComponent(c.name) },
          h('span', { class: 'tree-name' }, c.name),
          c.version ? h('span', { class: 'tree-version' }, `v${c.version}`) : null,
        ),
        h(
          'ul',
          { class: 'tree-machines' },
          (c.stateMachines || []).map((m) => {
            const active = c.name === state.component && m.name === state.machine;
            const count = counts.get(`${c.name}/${m.name}`) || 0;
            return h(
              'li',
              null,
              h(
                'button',
                {
                  type: 'button',
                  class: `tree-machine${active ? ' is-active' : ''}`,
                  'aria-current': active ? 'true' : null,
                  'data-machine': m.name,
                  'aria-label': `Machine ${m.name} of ${c.name}${m.name === c.entryMachine ? ', entry machine' : ''}, ${count} active`,
                  onClick: () => selectMachine(c.name, m.name),
                },
                h('span', { class: 'tree-name' }, m.name, m.name === c.entryMachine ? h('span', { class: 'entry-star', title: 'Entry machine' }, '★') : null),
                h('span', { class: 'count-pill' }, String(count)),
              ),
            );
          }),
        ),
      ),
    ),
  );
}

function option(value, label, selected) {
  return h('option', { value, selected }, label);
}

function renderFilters() {
  const machines = machinesOf();
  const f = state.filters;
  mount(byId('filter-machine'), option('', 'All machines', !f.machine), [...machines.keys()].map((m) => option(m, m, m === f.machine)));
  const states = new Set();
  for (const m of machines.values()) {
    if (f.machine && m.name !== f.machine) continue;
    for (const st of m.states || []) states.add(st.name);
  }
  if (f.state && !states.has(f.state)) states.add(f.state);
  mount(byId('filter-state'), option('', 'All states', !f.state), [...states].map((st) => option(st, st, st === f.state)));
  byId('filter-active').checked = f.activeOnly;
  if (byId('filter-q').value !== f.q) byId('filter-q').value = f.q;
}

function visibleInstances() {
  return sortInstances([...state.instances.values()].filter((i) => i.componentName === state.component && matchesFilters(i, state.filters)));
}

function renderList() {
  const list = visibleInstances();
  const total = [...state.instances.values()].filter((i) => i.componentName === state.component).length;
  byId('instances-count').textContent = list.length === total ? String(total) : `${list.length} / ${total}`;
  renderInstanceList(byId('instance-list'), list, {
    selectedId: state.selectedId,
    onSelect: (id) => selectInstance(id),
    machines: machinesOf(),
    entryMachine: componentDef()?.entryMachine,
    emptyText: total ? 'No instance matches the filters.' : 'No instance yet. Create one with “+ New instance”.',
  });
  for (const id of flashIds) byId('instance-list').querySelector(`[data-id="${CSS.escape(id)}"]`)?.classList.add('flash');
  flashIds.clear();
  byId('load-more').hidden = !state.nextCursor;
}

const flashIds = new Set();

function renderDiagramCard() {
  const machine = diagramMachine();
  const wrap = byId('diagram');
  const meta = byId('diagram-meta');
  if (!machine) {
    byId('diagram-title').textContent = 'State diagram';
    mount(meta);
    mount(wrap, h('p', { class: 'empty' }, 'No machine selected.'));
    return;
  }
  const selected = state.selectedId ? state.instances.get(state.selectedId) || state.detail : null;
  const current = selected && selected.machineName === machine.name && selected.componentName === state.component ? selected.currentState : null;
  const counts = new Map();
  for (const i of state.instances.values()) {
    if (i.componentName === state.component && i.machineName === machine.name && i.status === 'active' && !i.disposed) {
      counts.set(i.currentState, (counts.get(i.currentState) || 0) + 1);
    }
  }
  byId('diagram-title').textContent = `${machine.name} `;
  byId('diagram-title').appendChild(h('span', { class: 'muted small' }, `· ${state.component}`));
  mount(
    meta,
    current
      ? h('span', null, 'Instance ', h('span', { class: 'mono' }, shortId(selected.id)), ' is in ', h('strong', { id: 'diagram-current' }, current))
      : h('span', { class: 'muted' }, 'Click a state to filter the list'),
    state.filters.state ? h('button', { type: 'button', class: 'btn btn-link btn-sm', onClick: () => setFilter({ state: '' }) }, `Clear state filter (${state.filters.state})`) : null,
  );
  const keepScroll = wrap.scrollLeft;
  mount(
    wrap,
    renderDiagram(machine, {
      currentState: current,
      counts,
      selectedState: state.filters.machine === machine.name ? state.filters.state : null,
      label: `State diagram of ${machine.name}${current ? `, current state ${current}` : ''}`,
      onStateClick: (name) => {
        const same = state.filters.state === name && state.filters.machine === machine.name;
        setFilter({ machine: machine.name, state: same ? '' : name });
      },
    }),
  );
  wrap.scrollLeft = keepScroll;
  // On narrow screens the diagram scrolls: keep the current state in view.
  const node = current && wrap.scrollWidth > wrap.clientWidth ? wrap.querySelector('g.state.is-current') : null;
  if (node) {
    const box = node.getBoundingClientRect();
    const view = wrap.getBoundingClientRect();
    if (box.left < view.left || box.right > view.right) wrap.scrollLeft += box.left - view.left - (view.width - box.width) / 2;
  }
}

function renderDetailPanel() {
  const detail = state.detail && state.detail.id === state.selectedId ? { ...state.detail, ...pickLive(state.detail.id) } : null;
  renderDetail(byId('detail'), {
    detail,
    machineDef: detail ? machinesOf(detail.componentName).get(detail.machineName) : null,
    machines: detail ? machinesOf(detail.componentName) : new Map(),
    history: state.history,
    reply: state.reply,
    busy: state.busy,
    onAction: sendAction,
    onOpenAudit: (id) => {
      switchView('audit');
      openTrail(id);
    },
    onSelect: (id) => selectInstance(id),
    onExpired: () => scheduleDetailRefresh(),
  });
}

/** Fields the live feed may have updated after the detail was fetched. */
function pickLive(id) {
  const live = state.instances.get(id);
  if (!live) return {};
  return { disposed: live.disposed, status: live.status };
}

function describe(msg) {
  const d = msg.data || {};
  const who = d.machineName ? `${d.machineName} ${shortId(d.instanceId || d.id)}` : shortId(d.instanceId || d.id);
  switch (msg.type) {
    case 'state_change':
      return { kind: 'change', text: who, sub: `${d.event?.type || d.event || '?'}: ${d.previousState} → ${d.newState}` };
    case 'instance_created':
      return { kind: 'created', text: who, sub: `created${d.currentState ? ` in ${d.currentState}` : ''}` };
    case 'instance_completed':
      return { kind: 'completed', text: who, sub: `${d.status === 'error' ? 'failed' : 'completed'}${d.finalState ? ` in ${d.finalState}` : ''}` };
    case 'instance_disposed':
      return { kind: 'disposed', text: who, sub: 'left the live set' };
    case 'event_ignored':
      return { kind: 'ignored', text: who, sub: `ignored ${d.event?.type || d.eventType || d.event || 'event'}${d.reason ? `: ${d.reason}` : ''}` };
    case 'runtimes_update':
      return { kind: 'info', text: 'Runtimes updated', sub: runtimeCount(d) === null ? '' : `${runtimeCount(d)} connected` };
    case 'slow_consumer':
      return { kind: 'warn', text: 'Feed fell behind', sub: 'resynchronising…' };
    case 'components_list':
      return { kind: 'info', text: 'Components updated', sub: '' };
    default:
      return { kind: 'info', text: msg.type, sub: '' };
  }
}

function renderFeed() {
  const feed = byId('feed');
  if (!state.feed.length) {
    mount(feed, h('li', { class: 'empty' }, state.feedPaused ? 'Paused.' : 'Waiting for events…'));
    return;
  }
  mount(
    feed,
    state.feed.map((item) =>
      h(
        'li',
        { class: `feed-item feed-${item.kind}`, 'data-type': item.type },
        h('span', { class: 'feed-time mono' }, formatTime(item.at)),
        item.instanceId
          ? h('button', { type: 'button', class: 'feed-text btn-link', onClick: () => selectInstance(item.instanceId), title: item.instanceId }, item.text)
          : h('span', { class: 'feed-text' }, item.text),
        item.sub ? h('span', { class: 'feed-sub', title: String(item.sub) }, String(item.sub)) : null,
      ),
    ),
  );
}

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

let detailTimer = 0;
function scheduleDetailRefresh() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(refreshDetail, 120);
}

async function sendAction(event, payload) {
  const id = state.selectedId;
  state.busy = true;
  invalidate('detail');
  try {
    const res = await api.sendEvent(id, event, payload);
    state.reply = { ...res, event };
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
  toast(`Created ${machineName} ${shortId(id)}`, 'success');
  if (!state.instances.has(id)) {
    const initial = machinesOf().get(machineName)?.initialState || '';
    upsertInstance({ id, componentName: state.component, machineName, currentState: initial, context, status: 'active', createdAt: Date.now(), updatedAt: Date.now() });
  }
  if (state.filters.machine && state.filters.machine !== machineName) setFilter({ machine: '', state: '' });
  else if (state.filters.state) setFilter({ state: '' });
  await selectInstance(id);
}

// ---------------------------------------------------------------- loading

function runtimeCount(d) {
  if (typeof d === 'number') return d;
  if (Array.isArray(d)) return d.length;
  if (d && Array.isArray(d.runtimes)) return d.runtimes.length;
  if (d && typeof d.connectedRuntimes === 'number') return d.connectedRuntimes;
  if (d && typeof d.count === 'number') return d.count;
  return null;
}

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
    invalidate('stats');
  } catch {
    /* the health endpoint is informative only */
  }
}

async function resync() {
  await Promise.all([loadComponents().catch(() => {}), loadInstances(), loadHealth()]);
  if (state.selectedId) await refreshDetail();
}

// ---------------------------------------------------------------- live feed

function onMessage(msg) {
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
    case 'runtimes_update': {
      const n = runtimeCount(d);
      if (n !== null) state.runtimes = n;
      break;
    }
    case 'slow_consumer':
      toast('The live feed fell behind; reloading the current state.', 'info');
      resync();
      break;
    default:
      break;
  }
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
  if (view === 'live') history.replaceState(null, '', state.selectedId ? `#instance=${encodeURIComponent(state.selectedId)}` : location.pathname + location.search);
  for (const [name, tab, panel] of [
    ['live', 'tab-live', 'view-live'],
    ['audit', 'tab-audit', 'view-audit'],
  ]) {
    byId(tab).setAttribute('aria-selected', String(view === name));
    byId(panel).hidden = view !== name;
  }
  if (view === 'audit' && !state.auditOpened) {
    state.auditOpened = true;
    searchNow();
  }
}

function wire(feed) {
  byId('tab-live').addEventListener('click', () => switchView('live'));
  byId('tab-audit').addEventListener('click', () => switchView('audit'));
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
  if (params.get('audit')) {
    switchView('audit');
    openTrail(params.get('audit'));
  } else if (params.get('instance')) {
    selectInstance(params.get('instance'));
  }
}

async function boot() {
  initCreateDialog();
  initAudit({
    onOpenInstance: (id, component) => {
      if (component && componentDef(component)) selectComponent(component);
      switchView('live');
      selectInstance(id);
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
  await Promise.all([loadInstances(), loadHealth()]);
  feed.start();
  routeFromHash();
  window.addEventListener('hashchange', routeFromHash);
}

boot();
