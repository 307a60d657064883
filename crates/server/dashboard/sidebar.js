/**
 * The sidebar and header parts: totals in the top bar, the tree of
 * components and machines (entry machine starred, live counts), and the live
 * event feed (last messages, newest first, each linking to its instance).
 */

import { byId, formatTime, h, mount, shortId } from './dom.js';
import { actions, state } from './store.js';

export function renderStats() {
  const machines = state.components.reduce((n, c) => n + (c.stateMachines || []).length, 0);
  const active = [...state.instances.values()].filter((i) => i.status === 'active' && !i.disposed).length;
  byId('stat-components').textContent = String(state.components.length);
  byId('stat-machines').textContent = String(machines);
  byId('stat-instances').textContent = String(active);
  byId('stat-runtimes').textContent = state.runtimes === null ? '–' : String(state.runtimes);
}

export function renderTree() {
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
          { type: 'button', class: 'tree-component', 'aria-expanded': c.name === state.component ? 'true' : 'false', onClick: () => actions.selectComponent(c.name) },
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
                  'data-component': c.name,
                  'data-machine': m.name,
                  'aria-label': `Machine ${m.name} of ${c.name}${m.name === c.entryMachine ? ', entry machine' : ''}, ${count} active`,
                  onClick: () => actions.selectMachine(c.name, m.name),
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


export function runtimeCount(d) {
  if (typeof d === 'number') return d;
  if (Array.isArray(d)) return d.length;
  if (d && Array.isArray(d.runtimes)) return d.runtimes.length;
  if (d && typeof d.connectedRuntimes === 'number') return d.connectedRuntimes;
  if (d && typeof d.count === 'number') return d.count;
  return null;
}


/** One feed line for a WebSocket message: `{kind, text, sub}`. */
export function describe(msg) {
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
    case 'effect_error':
      return { kind: 'warn', text: who, sub: `message not delivered${d.error ? `: ${d.error}` : ''}` };
    case 'runtimes_update':
      return { kind: 'info', text: 'Runtimes updated', sub: runtimeCount(d) === null ? '' : `${runtimeCount(d)} connected` };
    case 'slow_consumer':
      return { kind: 'warn', text: 'Feed fell behind', sub: 'resynchronising…' };
    case 'components_list':
      return { kind: 'info', text: 'Components updated', sub: '' };
    case 'error':
      return { kind: 'warn', text: 'Live feed error', sub: d.message || d.code || '' };
    default:
      return { kind: 'info', text: msg.type, sub: '' };
  }
}

export function renderFeed() {
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
          ? h('button', { type: 'button', class: 'feed-text btn-link', onClick: () => actions.selectInstance(item.instanceId), title: item.instanceId }, item.text)
          : h('span', { class: 'feed-text' }, item.text),
        item.sub ? h('span', { class: 'feed-sub', title: String(item.sub) }, String(item.sub)) : null,
      ),
    ),
  );
}

