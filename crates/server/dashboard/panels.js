/**
 * The main panels of the live view: list filters, the instance list, the
 * state-diagram card (current state, counts per state, click-to-filter) and
 * the instance detail, all drawn from the shared state.
 */

import { renderDetail } from './detail.js';
import { renderDiagram } from './diagram.js';
import { byId, h, mount, shortId } from './dom.js';
import { matchesFilters, renderInstanceList, sortInstances } from './instances.js';
import { actions, componentDef, flashIds, machinesOf, state } from './store.js';

/** The machine shown in the diagram: the selected instance's, else the sidebar's. */
function diagramMachine() {
  const machines = machinesOf();
  const inst = state.selectedId ? state.instances.get(state.selectedId) || state.detail : null;
  if (inst && inst.componentName === state.component && machines.has(inst.machineName)) return machines.get(inst.machineName);
  return machines.get(state.machine) || [...machines.values()][0] || null;
}

function option(value, label, selected) {
  return h('option', { value, selected }, label);
}

export function renderFilters() {
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

export function renderList() {
  const list = visibleInstances();
  const total = [...state.instances.values()].filter((i) => i.componentName === state.component).length;
  byId('instances-count').textContent = list.length === total ? String(total) : `${list.length} / ${total}`;
  renderInstanceList(byId('instance-list'), list, {
    selectedId: state.selectedId,
    onSelect: (id) => actions.selectInstance(id),
    machines: machinesOf(),
    entryMachine: componentDef()?.entryMachine,
    emptyText: total ? 'No instance matches the filters.' : 'No instance yet. Create one with “+ New instance”.',
  });
  for (const id of flashIds) byId('instance-list').querySelector(`[data-id="${CSS.escape(id)}"]`)?.classList.add('flash');
  flashIds.clear();
  byId('load-more').hidden = !state.nextCursor;
}


export function renderDiagramCard() {
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
    state.filters.state ? h('button', { type: 'button', class: 'btn btn-link btn-sm', onClick: () => actions.setFilter({ state: '' }) }, `Clear state filter (${state.filters.state})`) : null,
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
        actions.setFilter({ machine: machine.name, state: same ? '' : name });
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

export function renderDetailPanel() {
  const detail = state.detail && state.detail.id === state.selectedId ? { ...state.detail, ...pickLive(state.detail.id) } : null;
  renderDetail(byId('detail'), {
    detail,
    machineDef: detail ? machinesOf(detail.componentName).get(detail.machineName) : null,
    machines: detail ? machinesOf(detail.componentName) : new Map(),
    history: state.history,
    reply: state.reply,
    busy: state.busy,
    onAction: actions.sendAction,
    onOpenAudit: (id) => actions.openAudit(id),
    onSelect: (id) => actions.selectInstance(id),
    onExpired: () => actions.scheduleDetailRefresh(),
  });
}

/** Fields the live feed may have updated after the detail was fetched. */
function pickLive(id) {
  const live = state.instances.get(id);
  if (!live) return {};
  return { disposed: live.disposed, status: live.status };
}

