/**
 * Browser tests of the dashboard against the Node mock of the server: real
 * headless Chromium, real WebSocket, the Order/Payment example. Screenshots
 * go to /tmp/dashboard-*.png for a human look.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, seedOrders, startSession } from '../support/browser.mjs';

const XSS = '<img src=x onerror=alert(1)>';

/** Waits until `fn` (run in the page) returns a truthy value. */
const until = (page, fn, arg, timeout = 5000) => page.waitForFunction(fn, arg, { timeout });

async function stateOfRow(page, id) {
  return page.locator(`#instance-list [data-id="${id}"] [data-role="state"]`).textContent();
}

describe('dashboard at 1280×800', () => {
  let s;
  let page;
  const wsUrls = [];

  before(async () => {
    s = await startSession({ width: 1280, height: 800 });
    page = s.page;
    page.on('websocket', (ws) => wsUrls.push(ws.url()));
    await page.goto(`${s.mock.url}/`);
    await page.waitForSelector('#conn.is-open');
    await page.waitForSelector('svg.diagram');
  });

  after(async () => {
    await s?.close();
  });

  test('loads with no console error and no request leaving localhost', async () => {
    const origin = new URL(s.mock.url);
    const foreign = [...s.requests, ...wsUrls].filter((u) => {
      const url = new URL(u);
      return !(url.hostname === origin.hostname && url.port === origin.port) && url.protocol !== 'data:';
    });
    assert.deepEqual(foreign, []);
    assert.ok(wsUrls.some((u) => u.endsWith('/ws')), 'the WebSocket feed is connected');
    assert.deepEqual(s.consoleErrors, []);
    assert.equal(await page.locator('#stat-components').textContent(), '3');
    assert.equal(await page.title(), 'xcomponent-ai · dashboard');
  });

  test('the Order diagram renders every state, edge and badge', async () => {
    await page.click('.tree-machine[data-machine="Order"]');
    const svg = page.locator('svg.diagram[data-machine="Order"]');
    await svg.waitFor();
    const states = await svg.locator('g.state').evaluateAll((els) => els.map((e) => e.dataset.state));
    assert.deepEqual(states.sort(), ['Cancelled', 'Completed', 'Created', 'Paid', 'PendingPayment', 'Shipped']);
    assert.equal(await svg.locator('g.edge').count(), 6);
    assert.equal(await svg.locator('g.state.is-initial').getAttribute('data-state'), 'Created');
    assert.equal(await svg.locator('g.state.state-final').count(), 2);
    const submit = svg.locator('g.edge[data-event="SUBMIT"]');
    assert.match(await submit.getAttribute('class'), /edge-cross_component/);
    assert.equal(await svg.locator('g.edge-label[data-event="SUBMIT"] .badge-text').textContent(), '⇢ PaymentComponent');
    assert.equal(await svg.locator('marker').count() > 0, true);
    await page.screenshot({ path: '/tmp/dashboard-diagram.png' });
  });

  let created;

  test('the + New instance form creates an instance that shows in the list', async () => {
    await page.click('#btn-new');
    const dialog = page.locator('#create-dialog');
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#create-machine').inputValue(), 'Order');
    assert.match(await page.locator('#create-machine option:checked').textContent(), /★ Order/);
    assert.equal(await page.locator('#create-fields input[required]').count(), 2);
    // Required fields are enforced by the browser: the dialog stays open.
    await page.click('#create-submit');
    assert.equal(await dialog.isVisible(), true);
    await page.fill('#create-fields input[name="orderId"]', 'ORD-T1');
    await page.fill('#create-fields input[name="amount"]', '99.5');
    await page.fill('#create-fields input[name="customerId"]', 'C-42');
    await page.screenshot({ path: '/tmp/dashboard-create-form.png' });
    await page.click('#create-submit');
    await dialog.waitFor({ state: 'hidden' });
    const row = page.locator('#instance-list .instance-row', { hasText: 'ORD-T1' });
    await row.waitFor();
    created = await row.getAttribute('data-id');
    assert.equal(await stateOfRow(page, created), 'Created');
    await until(page, () => document.querySelector('#detail-state')?.textContent === 'Created');
    const ctx = JSON.parse(await page.locator('#detail-context').textContent());
    assert.deepEqual(ctx, { orderId: 'ORD-T1', amount: 99.5, customerId: 'C-42' });
    assert.equal(await page.locator('svg.diagram g.state.is-current').getAttribute('data-state'), 'Created');
  });

  test('a bad JSON payload is refused before anything is sent', async () => {
    await page.fill('#payload-editor', '{bad');
    await page.click('#detail button[data-event="SUBMIT"]');
    assert.match(await page.locator('.field-error').textContent(), /Invalid payload/);
    assert.equal(await stateOfRow(page, created), 'Created');
    await page.fill('#payload-editor', '{"paymentMethod": "visa"}');
  });

  test('a quick action moves the instance and the highlight follows', async () => {
    await page.click('#detail button[data-event="SUBMIT"]');
    await until(page, () => document.querySelector('.reply-ok')?.textContent.includes('Created → PendingPayment'));
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'PendingPayment');
    assert.equal(await stateOfRow(page, created), 'PendingPayment');
    assert.match(await page.locator('svg.diagram g.state[data-state="Created"]').getAttribute('class'), /is-unreachable/);
    assert.doesNotMatch(await page.locator('svg.diagram g.state[data-state="Completed"]').getAttribute('class'), /is-unreachable/);
    assert.match(await page.locator('svg.diagram g.edge[data-event="PAYMENT_CONFIRMED"]').getAttribute('class'), /is-next/);
    const ctx = JSON.parse(await page.locator('#detail-context').textContent());
    assert.equal(ctx.paymentMethod, 'visa');
    // The cross-component effect: a Payment appears for this order (live, over the WebSocket).
    await until(page, () => [...document.querySelectorAll('#feed .feed-text')].some((e) => e.textContent.startsWith('Payment')));
    await page.screenshot({ path: '/tmp/dashboard-quick-action.png' });
  });

  test('an event the server ignores shows the reason and the allowed events', async () => {
    const { instanceId } = await call(s.mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId: 'ORD-STALE', amount: 7 } });
    await page.locator(`#instance-list [data-id="${instanceId}"] button`).click();
    await page.locator('#detail button[data-event="SUBMIT"]').waitFor();
    // The instance moves on the server while the page does not hear about it.
    await call(s.mock, 'POST', '/__mock/mute', { muted: true });
    try {
      await call(s.mock, 'POST', `/api/instances/${instanceId}/events`, { type: 'CANCEL', payload: {} });
      await page.click('#detail button[data-event="SUBMIT"]');
      const reply = page.locator('.reply-ignored');
      await reply.waitFor();
      assert.match(await reply.textContent(), /SUBMIT ignored: instance has ended/);
      // The page then reloads the instance, which has left the live set (404): it shows it as ended.
      await until(page, () => document.querySelector('#detail .status')?.textContent === 'ended');
      const expected = s.consoleErrors.filter((e) => /status of 404/.test(e));
      assert.ok(expected.length <= 1);
      s.consoleErrors.splice(0, s.consoleErrors.length, ...s.consoleErrors.filter((e) => !/status of 404/.test(e)));
    } finally {
      await call(s.mock, 'POST', '/__mock/mute', { muted: false });
    }
  });

  test('an instance its runtime reports late is shown as created, then accepts events', async () => {
    await call(s.mock, 'POST', '/__mock/late-creations', { ms: 1500 });
    try {
      await page.click('.tree-machine[data-machine="Order"]');
      await page.click('#btn-new');
      const dialog = page.locator('#create-dialog');
      await dialog.waitFor({ state: 'visible' });
      await page.fill('#create-fields input[name="orderId"]', 'ORD-LATE');
      await page.fill('#create-fields input[name="amount"]', '12');
      await page.click('#create-submit');
      await dialog.waitFor({ state: 'hidden' });
      // The server answers 404 for the new id until the instance exists: waiting, not ended.
      await page.locator('#detail [data-role="awaiting"]').waitFor();
      assert.equal(await page.locator('#detail-state').textContent(), 'Created');
      assert.equal(await page.locator('#detail .status').textContent(), 'active');
      await page.locator('#detail button[data-event="SUBMIT"]:not([disabled])').waitFor();
      assert.equal(await page.locator('#detail .status').textContent(), 'active');
      assert.deepEqual(JSON.parse(await page.locator('#detail-context').textContent()), { orderId: 'ORD-LATE', amount: 12 });
      s.consoleErrors.splice(0, s.consoleErrors.length, ...s.consoleErrors.filter((e) => !/status of 404/.test(e)));
    } finally {
      await call(s.mock, 'POST', '/__mock/late-creations', { ms: 0 });
    }
  });

  test('a WebSocket state_change updates the list without a reload', async () => {
    const { instanceId } = await call(s.mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId: 'ORD-WS', amount: 5 } });
    await page.locator(`#instance-list [data-id="${instanceId}"]`).waitFor();
    assert.equal(await stateOfRow(page, instanceId), 'Created');
    // Sent by the test only: the mock's store still says Created, so only the message can move the row.
    await call(s.mock, 'POST', '/__mock/push', {
      type: 'state_change',
      data: { instanceId, componentName: 'OrderComponent', machineName: 'Order', previousState: 'Created', newState: 'Paid', event: { type: 'TEST' }, context: { orderId: 'ORD-WS', amount: 5 }, timestamp: Date.now() },
    });
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'Paid', instanceId);
    assert.match(await page.locator('#feed .feed-item').first().textContent(), /Created → Paid/);
  });

  test('clicking a state filters the list by that state', async () => {
    await page.click('svg.diagram g.state[data-state="PendingPayment"]');
    await until(page, () => document.querySelector('#filter-state').value === 'PendingPayment');
    assert.match(await page.locator('svg.diagram g.state[data-state="PendingPayment"]').getAttribute('class'), /is-selected/);
    const states = await page.locator('#instance-list [data-role="state"]').allTextContents();
    assert.ok(states.length >= 1 && states.every((x) => x === 'PendingPayment'), states.join());
    await page.click('svg.diagram g.state[data-state="PendingPayment"]');
    await until(page, () => document.querySelector('#filter-state').value === '');
  });

  test('the history table and the sequence diagram of a correlated chain render', async () => {
    const ids = await seedOrders(s.mock);
    await page.locator(`#instance-list [data-id="${ids.shipped}"] button`).click();
    await until(page, () => document.querySelectorAll('#detail .history-table tbody tr').length >= 4);
    const events = await page.locator('#detail .history-table tbody tr td:nth-child(3)').allTextContents();
    assert.deepEqual(events, ['SHIP', 'PAYMENT_CONFIRMED', 'SUBMIT', 'INSTANCE_CREATED']);
    assert.match(await page.locator('#detail .history-table tbody tr').nth(1).textContent(), /from PaymentComponent/);
    await page.screenshot({ path: '/tmp/dashboard-detail.png' });

    await page.click('#detail button:has-text("Audit trail")');
    await page.locator('#view-audit').waitFor();
    const seq = page.locator('#sequence svg.sequence');
    await seq.waitFor();
    const lanes = await seq.locator('.seq-head-title').allTextContents();
    assert.equal(lanes.length, 2);
    assert.match(lanes[0], /^Order · [0-9a-f]{8}$/);
    assert.match(lanes[1], /^Payment · [0-9a-f]{8}$/);
    const msgs = await seq.locator('.seq-msg').evaluateAll((els) => els.map((e) => e.dataset.event));
    assert.deepEqual(msgs, ['INSTANCE_CREATED', 'SUBMIT', 'INSTANCE_CREATED', 'PROCESS', 'VALIDATE', 'COMPLETE', 'PAYMENT_CONFIRMED', 'SHIP']);
    assert.equal(await seq.locator('.seq-msg:not(.is-self)').count(), 2, 'two arrows cross lifelines');
    // Search lists finished and live instances (wait for the answer, not the placeholder row).
    await until(page, () => document.querySelectorAll('#history-results tbody tr[data-id]').length >= 5);
    await page.screenshot({ path: '/tmp/dashboard-audit.png' });

    // A link to an instance that has ended is rebuilt from its stored events.
    await page.evaluate((id) => {
      location.hash = `instance=${id}`;
    }, ids.payment);
    await until(page, () => document.querySelector('#detail-state')?.textContent === 'Completed');
    assert.equal(await page.locator('#detail .status').textContent(), 'ended');
    assert.equal(await page.locator('svg.diagram').getAttribute('data-machine'), 'Payment');
    assert.equal(await page.locator('svg.diagram g.state.is-current').getAttribute('data-state'), 'Completed');
    s.consoleErrors.splice(0, s.consoleErrors.length, ...s.consoleErrors.filter((e) => !/status of 404/.test(e)));
    await page.click('#tab-audit');

    await page.fill('#history-search input[name="q"]', 'ORD-1002');
    await page.click('#history-search button[type="submit"]');
    // Wait for the answer, not the "Searching…" placeholder row.
    await until(page, () => {
      const rows = document.querySelectorAll('#history-results tbody tr');
      return rows.length === 1 && !rows[0].textContent.includes('Searching');
    });
    assert.match(await page.locator('#history-results tbody tr').textContent(), /Cancelled/);
    await page.click('#tab-live');
  });

  test('instance data is shown as text, never as markup', async () => {
    await page.click('.tree-machine[data-machine="Order"]');
    const { instanceId } = await call(s.mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId: XSS, amount: 1, [XSS]: XSS } });
    await page.locator(`#instance-list [data-id="${instanceId}"] button`).click();
    await until(page, () => document.querySelector('#detail-context')?.textContent.includes('onerror'));
    assert.ok((await page.locator('#detail-context').textContent()).includes(`"orderId": "${XSS.replace(/"/g, '\\"')}"`));
    assert.match(await page.locator(`#instance-list [data-id="${instanceId}"] .row-data`).textContent(), /<img src=x onerror=alert\(1\)>/);
    await call(s.mock, 'POST', '/__mock/push', { type: 'event_ignored', data: { instanceId, machineName: XSS, event: XSS, reason: XSS } });
    await until(page, () => document.querySelector('#feed .feed-item')?.textContent.includes('onerror'));
    await call(s.mock, 'POST', `/api/instances/${instanceId}/events`, { type: 'CANCEL', payload: { note: XSS } });
    await until(page, () => document.querySelector('#detail .history-table tbody tr')?.textContent.includes('CANCEL'));
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    assert.equal(await page.evaluate(() => document.querySelectorAll('#detail img, #feed img, #instance-list img').length), 0);
    assert.deepEqual(s.consoleErrors, [], 'no alert dialog and no error');
  });

  test('a timeout shows a live countdown; the schema form covers select, number and boolean', async () => {
    await page.click('.tree-machine[data-machine="Ticket"]');
    await page.click('#btn-new');
    assert.equal(await page.locator('#create-machine').inputValue(), 'Desk', 'entry machine preselected');
    await page.selectOption('#create-machine', 'Ticket');
    await page.fill('#create-fields input[name="reference"]', 'bad ref');
    await page.fill('#create-fields input[name="effort"]', '99');
    await page.click('#create-submit');
    assert.equal(await page.locator('#create-dialog').isVisible(), true, 'pattern and max are enforced');
    await page.fill('#create-fields input[name="reference"]', 'T-1001');
    await page.fill('#create-fields input[name="effort"]', '3');
    await page.selectOption('#create-fields select[name="priority"]', { label: 'High' });
    await page.check('#create-fields input[name="vip"]');
    await page.click('#create-submit');
    await page.locator('#create-dialog').waitFor({ state: 'hidden' });
    await until(page, () => document.querySelector('#detail-state')?.textContent === 'New');
    const ctx = JSON.parse(await page.locator('#detail-context').textContent());
    assert.deepEqual(ctx, { reference: 'T-1001', priority: 'high', effort: 3, vip: true });
    await page.click('#detail button[data-event="ASSIGN"]');
    const countdown = page.locator('.countdown .countdown-text');
    await countdown.waitFor();
    const first = await countdown.textContent();
    await page.waitForTimeout(1300);
    const second = await countdown.textContent();
    assert.match(first, /^0:4\d$/);
    assert.notEqual(first, second, 'the countdown moves');
    assert.match(await page.locator('.countdown-label').textContent(), /SLA_EXPIRED → Escalated/);
    assert.equal(await page.locator('svg.diagram g.edge-label[data-event="SLA_EXPIRED"] .badge-text').textContent(), 'timeout 45s');
    await page.screenshot({ path: '/tmp/dashboard-timeout.png' });
  });

  test('a second singleton is refused with the server message', async () => {
    await page.click('#btn-new');
    await page.selectOption('#create-machine', 'Desk');
    await page.click('#create-submit');
    await until(page, () => document.querySelector('#create-error')?.textContent.includes('singleton'));
    await page.click('#create-cancel');
    await page.locator('#create-dialog').waitFor({ state: 'hidden' });
  });

  test('the live connection comes back by itself after a drop', async () => {
    s.mock.dropClients();
    await page.waitForSelector('#conn.is-closed, #conn.is-connecting', { timeout: 3000 });
    await page.waitForSelector('#conn.is-open', { timeout: 8000 });
    const { instanceId } = await call(s.mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId: 'ORD-AFTER' } });
    await page.click('.tree-machine[data-machine="Order"]');
    await page.locator(`#instance-list [data-id="${instanceId}"]`).waitFor();
    // The only error Chromium logged is the expected 409 of the singleton test.
    assert.deepEqual(s.consoleErrors.filter((e) => !/WebSocket|status of 409/.test(e)), []);
  });
});

describe('dashboard on a narrow screen', () => {
  test('390×844: no horizontal overflow, every part reachable', async () => {
    const s = await startSession({ width: 390, height: 844 });
    try {
      const ids = await seedOrders(s.mock);
      await s.page.goto(`${s.mock.url}/#instance=${ids.shipped}`);
      await s.page.waitForSelector('svg.diagram g.state.is-current');
      const overflow = await s.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `page is ${overflow}px too wide`);
      for (const sel of ['#btn-new', '#instance-list', '#detail', '#feed']) assert.ok(await s.page.locator(sel).isVisible(), sel);
      await s.page.screenshot({ path: '/tmp/dashboard-narrow.png', fullPage: true });
      assert.deepEqual(s.consoleErrors, []);
    } finally {
      await s.close();
    }
  });
});
