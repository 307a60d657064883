/**
 * Application state shared by the dashboard modules, the helpers that read
 * and update it, and batched rendering: `invalidate(...parts)` marks parts of
 * the page dirty and one animation frame redraws them, so a burst of
 * WebSocket messages costs one redraw. `actions` holds the user actions that
 * app.js defines, so views can call them without importing app.js.
 */

import { normalizeInstance, sortInstances } from './instances.js';

export const FEED_MAX = 100;
const LIST_MAX = 2000;
export const PAGE_SIZE = 500;

export const state = {
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

/** User actions, filled in by app.js (selectInstance, setFilter, sendAction, …). */
export const actions = {};

/** Ids of list rows to flash on the next list render (just created or changed). */
export const flashIds = new Set();

/** A component definition by name (default: the selected one). */
export const componentDef = (name = state.component) => state.components.find((c) => c.name === name);
/** The machines of a component, by name. */
export const machinesOf = (name = state.component) => new Map((componentDef(name)?.stateMachines || []).map((m) => [m.name, m]));

/** `completed` or `error` when `stateName` is a final or error state of the machine, else null. */
export function terminalStatus(componentName, machineName, stateName) {
  const type = machinesOf(componentName).get(machineName)?.states?.find((st) => st.name === stateName)?.type;
  return type === 'final' ? 'completed' : type === 'error' ? 'error' : null;
}

/** Whether an instance has left the live set (final/error state, or disposed). */
export function isEnded(inst) {
  return Boolean(inst && (inst.disposed || inst.status !== 'active'));
}

/** Adds or merges an instance record (REST row or WebSocket payload); bounded to LIST_MAX entries. */
export function upsertInstance(raw, fallbackComponent) {
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

const renderers = [];
const dirty = new Set();
let frame = 0;

/** Registers the function drawing `part` ('*' = on every flush); flushes run them in registration order. */
export function onRender(part, fn) {
  renderers.push([part, fn]);
}

/** Marks parts of the page to redraw on the next animation frame. */
export function invalidate(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  for (const [part, fn] of renderers) if (part === '*' || parts.has(part)) fn();
}
