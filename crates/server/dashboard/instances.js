/**
 * The instance list: normalising instance records, client-side filters
 * (machine, state, free text, active only) and rendering of list rows.
 */

import { compactJson, displayValue, formatAgo, h, mount, shortId, toDate } from './dom.js';

/** Brings REST rows and WebSocket payloads to one shape. */
export function normalizeInstance(raw, fallbackComponent) {
  const src = raw && raw.instance && typeof raw.instance === 'object' ? { ...raw, ...raw.instance } : raw || {};
  return {
    id: src.id || src.instanceId || src.instance_id,
    componentName: src.componentName || src.component_name || src.component || fallbackComponent || '',
    machineName: src.machineName || src.machine_name || src.machine || '',
    currentState: src.currentState || src.current_state || src.newState || src.state || '',
    status: src.status || 'active',
    context: src.context ?? src.publicMember ?? {},
    createdAt: src.createdAt ?? src.created_at ?? src.timestamp ?? null,
    updatedAt: src.updatedAt ?? src.updated_at ?? src.timestamp ?? src.createdAt ?? null,
    parentInstanceId: src.parentInstanceId || src.parent?.instanceId || null,
    isEntryPoint: Boolean(src.isEntryPoint || src.entryPoint),
    disposed: Boolean(src.disposed),
  };
}

/** Whether a (normalised) instance passes the list filters. */
export function matchesFilters(inst, filters) {
  if (filters.machine && inst.machineName !== filters.machine) return false;
  if (filters.state && inst.currentState !== filters.state) return false;
  if (filters.activeOnly && (inst.status !== 'active' || inst.disposed)) return false;
  const q = (filters.q || '').trim().toLowerCase();
  if (q) {
    let hay = `${inst.id} ${inst.machineName} ${inst.currentState} ${inst.status}`;
    try {
      hay += ` ${JSON.stringify(inst.context)}`;
    } catch {
      /* unserialisable context: search the other fields only */
    }
    if (!hay.toLowerCase().includes(q)) return false;
  }
  return true;
}

/** Newest activity first. */
export function sortInstances(list) {
  const time = (i) => toDate(i.updatedAt)?.getTime() ?? 0;
  return [...list].sort((a, b) => time(b) - time(a) || String(a.id).localeCompare(String(b.id)));
}

/** CSS modifier for a state chip, from the state's declared type. */
export function stateChipClass(machineDef, stateName, status) {
  const st = machineDef?.states?.find((x) => x.name === stateName);
  if (status === 'error' || st?.type === 'error') return 'chip chip-error';
  if (status === 'completed' || st?.type === 'final') return 'chip chip-final';
  return 'chip chip-state';
}

/**
 * The first two data fields for a row: the ones the machine's contextSchema marks as required
 * first, then its other fields, then the rest (the server may send the keys in any order).
 */
function dataPreview(context, machineDef) {
  if (!context || typeof context !== 'object') return '';
  const schema = Object.entries(machineDef?.contextSchema || {});
  const rank = new Map([...schema.filter(([, f]) => f?.required), ...schema.filter(([, f]) => !f?.required)].map(([name], i) => [name, i]));
  const entries = Object.entries(context)
    .map((entry, i) => [entry, rank.get(entry[0]) ?? rank.size + i])
    .sort((a, b) => a[1] - b[1])
    .slice(0, 2)
    .map(([entry]) => entry);
  if (!entries.length) return '';
  return entries.map(([k, v]) => `${k}: ${displayValue(v)}`).join(' · ');
}

/**
 * Renders rows into `listEl`.
 * opts: `selectedId`, `onSelect(id)`, `machines` (definitions by name), `entryMachine`, `emptyText`.
 */
export function renderInstanceList(listEl, instances, opts) {
  if (!instances.length) {
    mount(listEl, h('li', { class: 'empty' }, opts.emptyText || 'No instance matches.'));
    return;
  }
  const now = Date.now();
  mount(
    listEl,
    instances.map((inst) => {
      const machineDef = opts.machines.get(inst.machineName);
      const selected = inst.id === opts.selectedId;
      const ended = inst.disposed || inst.status !== 'active';
      const entry = opts.entryMachine && inst.machineName === opts.entryMachine;
      const preview = dataPreview(inst.context, machineDef);
      return h(
        'li',
        { class: `instance-row${selected ? ' is-selected' : ''}${ended ? ' is-ended' : ''}`, 'data-id': inst.id },
        h(
          'button',
          {
            type: 'button',
            class: 'instance-btn',
            'aria-pressed': selected ? 'true' : 'false',
            'aria-label': `${inst.machineName} ${shortId(inst.id)} in ${inst.currentState}`,
            title: `${inst.id}\n${compactJson(inst.context, 300)}`,
            onClick: () => opts.onSelect(inst.id),
          },
          h(
            'span',
            { class: 'row-main' },
            h('span', { class: 'row-machine' }, inst.machineName, entry ? h('span', { class: 'entry-star', title: 'Entry machine', 'aria-label': 'entry machine' }, '★') : null),
            h('span', { class: 'row-id mono' }, shortId(inst.id)),
            h('span', { class: stateChipClass(machineDef, inst.currentState, inst.status), 'data-role': 'state' }, inst.currentState),
          ),
          h(
            'span',
            { class: 'row-sub' },
            h('span', { class: 'row-data' }, preview || (inst.parentInstanceId ? `child of ${shortId(inst.parentInstanceId)}` : '—')),
            h('span', { class: 'row-time' }, inst.disposed ? 'ended' : inst.status !== 'active' ? inst.status : formatAgo(inst.updatedAt, now)),
          ),
        ),
      );
    }),
  );
}
