/**
 * The original's Socket.IO clients against the real `xcomponent-ai serve`: a
 * `socket.io-client` connects (as the original dashboard and socket.io apps
 * do), gets `components_list`, and receives `instance_created` and
 * `state_change` — with the original's fields — for an order created and
 * submitted over REST. Every wait is bounded; the server is stopped whatever
 * the outcome.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';
import { startServer } from '../support/real-server.mjs';

const FILES = ['examples/order-payment/order.yaml', 'examples/order-payment/payment.yaml'];
const WAIT = 8000;

let server;
let dataDir;

before(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'xcai-socketio-'));
  server = await startServer({ files: FILES, dataDir });
});

after(async () => {
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Resolves with the first `event` whose payload passes `accept`, or rejects after WAIT ms. */
function next(socket, event, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${WAIT} ms`)), WAIT);
    const listener = (data) => {
      if (!accept(data)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(data);
    };
    socket.on(event, listener);
  });
}

async function post(pathname, body) {
  const res = await fetch(`${server.url}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${pathname}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

for (const transports of [['websocket'], ['polling']]) {
  test(`a socket.io-client (${transports[0]}) receives the original's events for a flow`, { timeout: 4 * WAIT }, async () => {
    const socket = io(server.url, { transports, reconnection: false, timeout: WAIT });
    try {
      const components = next(socket, 'components_list');
      await new Promise((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      });
      const list = await components;
      assert.deepEqual(
        list.components.map((c) => c.name),
        ['OrderComponent', 'PaymentComponent'],
      );
      const subscribed = next(socket, 'subscribed');
      socket.emit('subscribe_component', 'OrderComponent');
      assert.deepEqual(await subscribed, { componentName: 'OrderComponent' });

      const orderId = `SIO-${transports[0]}`;
      const created = next(socket, 'instance_created', (d) => d.context?.orderId === orderId);
      const { instanceId } = await post('/api/components/OrderComponent/instances', {
        machineName: 'Order',
        context: { orderId, amount: 10, paymentMethod: 'visa' },
      });
      const createdEvent = await created;
      assert.equal(createdEvent.instanceId, instanceId);
      assert.equal(createdEvent.componentName, 'OrderComponent');

      const changed = next(socket, 'state_change', (d) => d.instanceId === instanceId && d.event === 'SUBMIT');
      // The payment SUBMIT creates in the other component reaches the same client.
      const payment = next(socket, 'instance_created', (d) => d.componentName === 'PaymentComponent' && d.context?.orderId === orderId);
      await post(`/api/instances/${instanceId}/events`, { type: 'SUBMIT', payload: {}, timestamp: Date.now() });
      const change = await changed;
      assert.equal(change.componentName, 'OrderComponent');
      assert.equal(change.machineName, 'Order');
      assert.equal(change.previousState, 'Created');
      assert.equal(change.newState, 'PendingPayment');
      assert.equal(change.instance.id, instanceId);
      assert.equal(change.instance.currentState, 'PendingPayment');
      assert.equal(change.instance.context.orderId, orderId);
      assert.ok(change.eventId && change.timestamp, JSON.stringify(change));

      assert.equal((await payment).machineName, 'Payment');
    } finally {
      socket.close();
    }
  });
}
