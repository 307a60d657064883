/**
 * Unit tests of the pure modules (no browser): the diagram layout and the
 * sequence-diagram model, on the fixture components.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { computeRanks, layoutMachine, reachableFrom } from '../../dashboard/layout.js';
import { buildSequence } from '../../dashboard/sequence.js';

const fixture = (name) => JSON.parse(readFileSync(new URL(`../fixtures/${name}.json`, import.meta.url), 'utf8'));
const machines = ['order-component', 'payment-component', 'support-component'].flatMap((f) => fixture(f).stateMachines);
const order = fixture('order-component').stateMachines[0];

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

test('ranks come from a breadth-first search from the initial state', () => {
  const { rank } = computeRanks(order.states.map((s) => s.name), order.transitions, order.initialState);
  assert.deepEqual(Object.fromEntries(rank), { Created: 0, PendingPayment: 1, Cancelled: 1, Paid: 2, Shipped: 3, Completed: 4 });
});

test('every state gets a box, no two boxes overlap, and the layout fits its size', () => {
  for (const m of machines) {
    const layout = layoutMachine(m);
    assert.equal(layout.nodes.length, m.states.length, m.name);
    assert.equal(layout.edges.length, m.transitions.length, m.name);
    for (let i = 0; i < layout.nodes.length; i++) {
      const n = layout.nodes[i];
      assert.ok(n.x >= 0 && n.y >= 0 && n.x + n.w <= layout.width && n.y + n.h <= layout.height, `${m.name}.${n.name} inside`);
      for (let j = i + 1; j < layout.nodes.length; j++) assert.ok(!overlaps(n, layout.nodes[j]), `${m.name}: ${n.name} overlaps ${layout.nodes[j].name}`);
    }
    for (const e of layout.edges) assert.match(e.d, /^M[\d.-]+,[\d.-]+( [CL][\d., -]+)+$/, `${m.name} ${e.event} path`);
  }
});

test('the Order machine is drawn without crossings, left to right', () => {
  const layout = layoutMachine(order);
  assert.equal(layout.crossings, 0);
  const x = Object.fromEntries(layout.nodes.map((n) => [n.name, n.x]));
  assert.ok(x.Created < x.PendingPayment && x.PendingPayment < x.Paid && x.Paid < x.Shipped && x.Shipped < x.Completed);
  const submit = layout.edges.find((e) => e.event === 'SUBMIT');
  assert.equal(submit.type, 'cross_component');
  assert.equal(submit.badge, '⇢ PaymentComponent');
});

test('self-loops, back edges and type badges of the Support machines', () => {
  const support = fixture('support-component');
  const desk = layoutMachine(support.stateMachines[0]);
  const loop = desk.edges.find((e) => e.event === 'NEW_TICKET');
  assert.equal(loop.kind, 'self');
  assert.equal(loop.badge, '→ Ticket');
  const open = desk.nodes.find((n) => n.name === 'Open');
  assert.ok(loop.label.y < open.y, 'self-loop label sits above its state');
  const ticket = layoutMachine(support.stateMachines[1]);
  const kinds = Object.fromEntries(ticket.edges.map((e) => [`${e.from}>${e.event}`, e]));
  assert.equal(kinds['Assigned>SLA_EXPIRED'].badge, 'timeout 45s');
  assert.equal(kinds['Reopened>REQUEUE'].kind, 'back');
  assert.equal(kinds['Reopened>REQUEUE'].badge, 'auto');
  assert.equal(kinds['Waiting>CUSTOMER_REPLIED'].kind, 'back');
});

test('reachability from a current state', () => {
  assert.deepEqual([...reachableFrom('Paid', order.transitions)].sort(), ['Completed', 'Paid', 'Shipped']);
  assert.deepEqual([...reachableFrom('Completed', order.transitions)], ['Completed']);
});

test('sequence model: lifelines per instance and arrows from the causing instance', () => {
  const t = (s) => `2026-01-01T00:00:0${s}.000Z`;
  const events = [
    { id: 'e3', instanceId: 'p1', componentName: 'PaymentComponent', machineName: 'Payment', eventType: 'INSTANCE_CREATED', stateBefore: null, stateAfter: 'Pending', timestamp: t(2), causationId: 'e2' },
    { id: 'e1', instanceId: 'o1', componentName: 'OrderComponent', machineName: 'Order', eventType: 'INSTANCE_CREATED', stateBefore: null, stateAfter: 'Created', timestamp: t(0) },
    { id: 'e2', instanceId: 'o1', componentName: 'OrderComponent', machineName: 'Order', eventType: 'SUBMIT', stateBefore: 'Created', stateAfter: 'PendingPayment', timestamp: t(1) },
    { id: 'e4', instanceId: 'p1', componentName: 'PaymentComponent', machineName: 'Payment', eventType: 'COMPLETE', stateBefore: 'Validated', stateAfter: 'Completed', timestamp: t(3) },
    { id: 'e5', instanceId: 'o1', componentName: 'OrderComponent', machineName: 'Order', eventType: 'PAYMENT_CONFIRMED', stateBefore: 'PendingPayment', stateAfter: 'Paid', timestamp: t(4), sourceComponent: 'PaymentComponent' },
  ];
  const { lanes, messages } = buildSequence(events);
  assert.deepEqual(lanes.map((l) => l.instanceId), ['o1', 'p1']);
  assert.deepEqual(messages.map((m) => [m.ev.id, m.from, m.to]), [['e1', 0, 0], ['e2', 0, 0], ['e3', 0, 1], ['e4', 1, 1], ['e5', 1, 0]]);
  assert.ok(messages[0].creation && messages[2].creation && !messages[1].creation);
});

test('edge labels never cover each other (fixtures and the order-payment example)', async () => {
  const { parse } = await import('yaml');
  const example = ['order', 'payment'].map((f) => parse(readFileSync(new URL(`../../../../examples/order-payment/${f}.yaml`, import.meta.url), 'utf8')));
  const box = (e) => ({ x: e.label.x - e.labelW / 2, y: e.label.y - e.labelH / 2, w: e.labelW, h: e.labelH });
  for (const m of [...machines, ...example.flatMap((c) => c.stateMachines)]) {
    const { edges } = layoutMachine(m);
    for (let i = 0; i < edges.length; i++) {
      for (let j = i + 1; j < edges.length; j++) {
        assert.ok(!overlaps(box(edges[i]), box(edges[j])), `${m.name}: label ${edges[i].event} covers ${edges[j].event}`);
      }
    }
  }
});
