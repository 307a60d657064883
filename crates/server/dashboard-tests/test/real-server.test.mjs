/**
 * End-to-end browser tests against the real `xcomponent-ai serve` binary (not
 * the mock): the Order/Payment example served from a temporary SQLite data
 * dir, driven only through the dashboard in headless Chromium — creation form,
 * quick actions, live updates over the WebSocket, audit trail and sequence
 * diagram, a restart on the same data dir, and the API token prompt.
 * Screenshots go to /tmp/e2e-*.png. Every wait is bounded; the servers are
 * stopped even when a test fails.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser } from '../support/browser.mjs';
import { requireBinary, startServer } from '../support/real-server.mjs';

const FILES = ['examples/order-payment/order.yaml', 'examples/order-payment/payment.yaml'];
const WAIT = 8000;
const TEST_TIMEOUT = 20000;

/** Waits until `fn` (run in the page) returns a truthy value. */
const until = (page, fn, arg, timeout = WAIT) => page.waitForFunction(fn, arg, { timeout });

const rowState = (page, id) => page.locator(`#instance-list [data-id="${id}"] [data-role="state"]`).textContent();

/** Shows the instances of `machine` in the list (sidebar tree). */
async function showMachine(page, machine) {
  if (await page.locator('#view-live').isHidden()) await page.click('#tab-live');
  await page.click(`.tree-machine[data-machine="${machine}"]`);
  await until(page, (m) => document.querySelector('svg.diagram')?.dataset.machine === m && document.querySelector('#filter-machine').value === m, machine);
}

/** The `data-id` of the list row whose text contains `text` (e.g. an order id in the data preview). */
async function rowIdWith(page, text) {
  const row = page.locator('#instance-list .instance-row', { hasText: text });
  await row.first().waitFor({ timeout: WAIT });
  assert.equal(await row.count(), 1, `one row shows ${text}`);
  return row.getAttribute('data-id');
}

/** Selects the instance `id` in the list and waits for its detail. */
async function select(page, id) {
  await page.locator(`#instance-list [data-id="${id}"] button`).click();
  await until(page, (x) => document.querySelector('#detail-title .mono')?.getAttribute('title') === x && document.querySelector('#detail .history-table'), id);
}

/** Clicks the quick action `event` of the selected instance and waits for the server's reply line. */
async function quickAction(page, event, expectReply) {
  const button = page.locator(`#detail button[data-event="${event}"]:not([disabled])`);
  await button.waitFor({ timeout: WAIT });
  await button.click();
  await until(page, (text) => document.querySelector('#detail .reply-ok')?.textContent.includes(text), `${event}: ${expectReply}`);
}

/** `{id: state}` of every row the list shows for `machine`. */
async function listed(page, machine) {
  await showMachine(page, machine);
  return page.locator('#instance-list .instance-row').evaluateAll((rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.id, r.querySelector('[data-role="state"]').textContent])),
  );
}

/** Fills and submits the "+ New instance" form for an Order. */
async function createOrder(page, { orderId, amount, method }) {
  await showMachine(page, 'Order');
  await page.click('#btn-new');
  await page.locator('#create-dialog').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.locator('#create-machine').inputValue(), 'Order');
  await page.fill('#create-fields input[name="orderId"]', orderId);
  await page.fill('#create-fields input[name="amount"]', String(amount));
  await page.selectOption('#create-fields select[name="paymentMethod"]', { label: method });
  return page.locator('#create-dialog');
}

/** Console errors not matching `expected` (the matching ones are dropped from the list). */
function unexpectedErrors(errors, expected) {
  const rest = errors.filter((e) => !expected.some((re) => re.test(e)));
  errors.splice(0, errors.length, ...rest);
  return rest;
}

describe('dashboard against the real server', { timeout: 55000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'xc-e2e-data-'));
  let server;
  let b;
  let page;
  const ws = [];
  const frames = [];
  const ids = {};

  before(async () => {
    requireBinary();
    server = await startServer({ files: FILES, dataDir });
    b = await launchBrowser({ width: 1280, height: 900 });
    page = b.page;
    page.setDefaultTimeout(WAIT);
    page.setDefaultNavigationTimeout(10000);
    page.on('websocket', (socket) => {
      ws.push(socket.url());
      socket.on('framereceived', (frame) => frames.push(String(frame.payload)));
    });
  });

  after(async () => {
    await b?.close();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the page loads with no console error and no request leaving 127.0.0.1', { timeout: TEST_TIMEOUT }, async () => {
    assert.equal(server.health.status, 'ok');
    assert.equal(server.health.databaseType, 'sqlite');
    await page.goto(server.dashboardUrl);
    await page.waitForSelector('#conn.is-open');
    await page.waitForSelector('svg.diagram[data-machine="Order"]');
    await until(page, () => document.querySelector('#stat-runtimes').textContent === '1');
    assert.equal(await page.locator('#stat-components').textContent(), '2');
    assert.equal(await page.locator('#stat-machines').textContent(), '2');
    assert.equal(await page.title(), 'xcomponent-ai · dashboard');
    const foreign = [...b.requests, ...ws].filter((u) => {
      const url = new URL(u);
      return !(url.hostname === '127.0.0.1' && Number(url.port) === server.port) && url.protocol !== 'data:';
    });
    assert.deepEqual(foreign, []);
    assert.ok(ws.some((u) => u === `ws://127.0.0.1:${server.port}/ws`), `WebSocket connected (${ws.join()})`);
    const states = await page.locator('svg.diagram g.state').evaluateAll((els) => els.map((e) => e.dataset.state).sort());
    assert.deepEqual(states, ['Abandoned', 'Cancelled', 'Created', 'Delivered', 'Paid', 'PendingPayment', 'Shipped']);
    // The server acknowledges the page's subscribe message; that reply is not an event for the feed.
    for (const deadline = Date.now() + WAIT; !frames.some((f) => f.includes('"type":"subscribed"')); ) {
      assert.ok(Date.now() < deadline, 'the server acknowledges the subscription');
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    assert.equal(await page.locator('#feed .feed-item[data-type="subscribed"]').count(), 0);
    assert.ok(await page.locator('#feed .feed-item[data-type="runtimes_update"]').count());
    await page.screenshot({ path: '/tmp/e2e-loaded.png' });
    assert.deepEqual(b.consoleErrors, []);
  });

  test('+ New instance creates an Order from its contextSchema', { timeout: TEST_TIMEOUT }, async () => {
    const dialog = await createOrder(page, { orderId: 'ORD-E2E-1', amount: 250, method: 'Visa' });
    await page.fill('#create-fields input[name="customerId"]', 'C-7');
    await page.screenshot({ path: '/tmp/e2e-create-form.png' });
    await page.click('#create-submit');
    await dialog.waitFor({ state: 'hidden' });
    ids.order1 = await rowIdWith(page, 'ORD-E2E-1');
    assert.match(ids.order1, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, 'a UUID v7 from the server');
    assert.equal(await rowState(page, ids.order1), 'Created');
    await until(page, () => document.querySelector('#detail-state')?.textContent === 'Created');
    const ctx = JSON.parse(await page.locator('#detail-context').textContent());
    assert.deepEqual(ctx, { orderId: 'ORD-E2E-1', amount: 250, customerId: 'C-7', paymentMethod: 'visa' });
    assert.equal(await page.locator('svg.diagram g.state.is-current').getAttribute('data-state'), 'Created');
    // The stored creation event is listed in the detail history.
    await until(page, () => document.querySelector('#detail .history-table tbody tr td:nth-child(3)')?.textContent === 'INSTANCE_CREATED');
  });

  test('SUBMIT creates a Payment that shows up live, without a reload', { timeout: TEST_TIMEOUT }, async () => {
    await page.evaluate(() => {
      window.e2eMarker = 'same page';
    });
    const listCalls = () => b.requests.filter((u) => new URL(u).pathname === '/api/instances').length;
    const before = listCalls();
    await quickAction(page, 'SUBMIT', 'Created → PendingPayment');
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'PendingPayment');
    assert.equal(await rowState(page, ids.order1), 'PendingPayment');
    // The Payment comes from the server's cross_component effect, announced on the WebSocket.
    await until(page, () => document.querySelector('.tree-machine[data-machine="Payment"] .count-pill')?.textContent === '1');
    await until(page, () => [...document.querySelectorAll('#feed .feed-item')].some((e) => /Payment [0-9a-f]{8}/.test(e.textContent) && e.textContent.includes('created in Pending')));
    assert.equal(await page.evaluate(() => window.e2eMarker), 'same page');
    assert.equal(listCalls(), before, 'the instance list was not fetched again');
    // A pending timeout (PAYMENT_TIMEOUT, 10 min) counts down in the detail.
    await page.locator('#detail .countdown-label', { hasText: 'PAYMENT_TIMEOUT → Abandoned' }).waitFor();
    await page.screenshot({ path: '/tmp/e2e-submitted.png' });
  });

  test('PROCESS, VALIDATE, COMPLETE on the Payment make the Order Paid', { timeout: TEST_TIMEOUT }, async () => {
    await showMachine(page, 'Payment');
    ids.payment1 = await rowIdWith(page, 'ORD-E2E-1');
    await select(page, ids.payment1);
    assert.equal(await page.locator('svg.diagram g.state.is-current').getAttribute('data-state'), 'Pending');
    const ctx = JSON.parse(await page.locator('#detail-context').textContent());
    assert.deepEqual(ctx, { orderId: 'ORD-E2E-1', amount: 250, paymentMethod: 'visa' }, 'only the mapped fields travel');
    await quickAction(page, 'PROCESS', 'Pending → Processing');
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Processing');
    // VALIDATE has a guarded alternative: the button names both targets.
    const validate = page.locator('#detail button[data-event="VALIDATE"]');
    assert.equal(await validate.locator('.action-to').textContent(), '→ Review / Validated');
    assert.match(await validate.getAttribute('aria-label'), /Review if context\.amount > 10000, otherwise go to Validated/);
    // No business handler runs in `serve`: VALIDATE is sent by hand (250 is below the review guard).
    await quickAction(page, 'VALIDATE', 'Processing → Validated');
    await page.screenshot({ path: '/tmp/e2e-payment.png' });
    await quickAction(page, 'COMPLETE', 'Validated → Completed');
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Completed');
    await until(page, () => document.querySelector('#detail .status')?.textContent !== 'active');
    assert.match(await page.locator('#detail').textContent(), /This instance has ended/);

    await showMachine(page, 'Order');
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'Paid', ids.order1);
    await select(page, ids.order1);
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Paid');
    assert.equal(await page.locator('#detail-state').textContent(), 'Paid');
    assert.match(await page.locator('svg.diagram g.state[data-state="Created"]').getAttribute('class'), /is-unreachable/);
    assert.match(await page.locator('svg.diagram g.edge[data-event="SHIP"]').getAttribute('class'), /is-next/);
    await until(page, () => document.querySelectorAll('#detail .history-table tbody tr').length === 3);
    assert.match(await page.locator('#detail .history-table tbody tr').first().textContent(), /PAYMENT_CONFIRMED.*from PaymentComponent/);
    await page.screenshot({ path: '/tmp/e2e-order-paid.png' });
  });

  test('the audit trail lists the Order history and draws the correlated chain', { timeout: TEST_TIMEOUT }, async () => {
    await page.click('#detail button:has-text("Audit trail")');
    await page.locator('#view-audit').waitFor();
    const table = page.locator('#trail .history-table tbody tr');
    await until(page, () => document.querySelectorAll('#trail .history-table tbody tr').length === 3);
    const events = await table.locator('td:nth-child(3)').allTextContents();
    assert.deepEqual(events, ['INSTANCE_CREATED', 'SUBMIT', 'PAYMENT_CONFIRMED']);
    const moves = (await table.locator('td:nth-child(4)').allTextContents()).map((t) => t.replace(/\s+/g, ' '));
    assert.deepEqual(moves, ['∅ → Created', 'Created → PendingPayment', 'PendingPayment → Paid']);
    assert.match(await table.nth(2).locator('td:nth-child(5)').textContent(), /from PaymentComponent/);

    const seq = page.locator('#sequence svg.sequence');
    await seq.waitFor();
    const lanes = await seq.locator('.seq-lane').evaluateAll((els) => els.map((e) => e.dataset.lane));
    assert.deepEqual(lanes, [ids.order1, ids.payment1], 'one lifeline for the Order, one for the Payment');
    const titles = await seq.locator('.seq-head-title').allTextContents();
    // UUID v7 ids share their leading timestamp: the short form is the random tail, distinct per instance.
    assert.deepEqual(titles, [`Order · ${ids.order1.slice(-8)}`, `Payment · ${ids.payment1.slice(-8)}`]);
    assert.equal(await seq.locator('.seq-lifeline').count(), 2);
    assert.match(await seq.locator('.seq-lane').first().getAttribute('class'), /is-focus/);
    const msgs = await seq.locator('.seq-msg').evaluateAll((els) => els.map((e) => e.dataset.event));
    assert.deepEqual(msgs, ['INSTANCE_CREATED', 'SUBMIT', 'INSTANCE_CREATED', 'PROCESS', 'VALIDATE', 'COMPLETE', 'PAYMENT_CONFIRMED']);
    assert.equal(await seq.locator('.seq-msg:not(.is-self)').count(), 2, 'SUBMIT → Payment and COMPLETE → Order cross the lifelines');
    assert.match(await page.locator('#trail').textContent(), /7 event\(s\) across 2 instance\(s\)/);
    // The search lists the live Order and the finished Payment.
    await until(page, () => document.querySelectorAll('#history-results tbody tr[data-id]').length === 2);
    assert.match(await page.locator(`#history-results tr[data-id="${ids.payment1}"]`).textContent(), /Completed\s*completed/);
    await page.screenshot({ path: '/tmp/e2e-audit.png', fullPage: true });
    await page.click('#tab-live');
  });

  test('a rejected payment cancels the second order', { timeout: TEST_TIMEOUT }, async () => {
    const dialog = await createOrder(page, { orderId: 'ORD-E2E-2', amount: 40, method: 'Mastercard' });
    await page.click('#create-submit');
    await dialog.waitFor({ state: 'hidden' });
    ids.order2 = await rowIdWith(page, 'ORD-E2E-2');
    await until(page, (id) => document.querySelector('#detail-title .mono')?.getAttribute('title') === id, ids.order2);
    await quickAction(page, 'SUBMIT', 'Created → PendingPayment');
    await showMachine(page, 'Payment');
    ids.payment2 = await rowIdWith(page, 'ORD-E2E-2');
    await select(page, ids.payment2);
    await quickAction(page, 'PROCESS', 'Pending → Processing');
    await quickAction(page, 'REJECT', 'Processing → Failed');
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Failed');
    await showMachine(page, 'Order');
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'Cancelled', ids.order2);
    await select(page, ids.order2);
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Cancelled');
    assert.match(await page.locator(`#instance-list [data-id="${ids.order2}"]`).getAttribute('class'), /is-ended/);
    await until(page, () => document.querySelector('#detail .history-table tbody tr td:nth-child(3)')?.textContent === 'PAYMENT_FAILED');
    await page.screenshot({ path: '/tmp/e2e-cancelled.png' });
    assert.deepEqual(unexpectedErrors(b.consoleErrors, []), []);
  });

  test('after a restart on the same data dir the page shows the same instances and states', { timeout: TEST_TIMEOUT }, async () => {
    // A third order is left waiting for its payment: live instances in two machines, a pending timer.
    const dialog = await createOrder(page, { orderId: 'ORD-E2E-3', amount: 12000, method: 'Visa' });
    await page.click('#create-submit');
    await dialog.waitFor({ state: 'hidden' });
    ids.order3 = await rowIdWith(page, 'ORD-E2E-3');
    await until(page, (id) => document.querySelector('#detail-title .mono')?.getAttribute('title') === id, ids.order3);
    await quickAction(page, 'SUBMIT', 'Created → PendingPayment');
    await until(page, () => document.querySelector('.tree-machine[data-machine="Payment"] .count-pill')?.textContent === '1');

    await page.goto(server.dashboardUrl);
    await page.waitForSelector('#conn.is-open');
    const beforeRestart = { orders: await listed(page, 'Order'), payments: await listed(page, 'Payment') };
    assert.equal(beforeRestart.orders[ids.order1], 'Paid');
    assert.equal(beforeRestart.orders[ids.order3], 'PendingPayment');
    assert.deepEqual(Object.values(beforeRestart.payments), ['Pending']);

    const exit = await server.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM stops the server cleanly');
    await page.waitForSelector('#conn.is-closed, #conn.is-connecting');
    const port = server.port;
    server = await startServer({ files: FILES, dataDir, port }).catch(() => startServer({ files: FILES, dataDir }));
    if (server.port === port) await page.reload();
    else await page.goto(server.dashboardUrl);
    await page.waitForSelector('#conn.is-open');
    const afterRestart = { orders: await listed(page, 'Order'), payments: await listed(page, 'Payment') };
    assert.deepEqual(afterRestart, beforeRestart);
    await showMachine(page, 'Order');
    await select(page, ids.order1);
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Paid');
    await until(page, () => document.querySelectorAll('#detail .history-table tbody tr').length === 3);
    // The waiting order's payment timeout was restored with the instance.
    await select(page, ids.order3);
    await page.locator('#detail .countdown-label', { hasText: 'PAYMENT_TIMEOUT → Abandoned' }).waitFor();
    assert.match(await page.locator('#detail .countdown-text').textContent(), /^(9|10):\d\d$/);
    // The bar measures against the declared 10 minutes, so the seconds already spent show.
    const fill = await page.locator('#detail .countdown-fill').evaluate((el) => Number.parseFloat(el.style.width));
    assert.ok(fill > 95 && fill < 100, `countdown bar at ${fill}%`);
    await page.screenshot({ path: '/tmp/e2e-restarted.png' });

    // The finished instances are still in the history store.
    await page.click('#tab-audit');
    await page.fill('#history-search input[name="q"]', 'ORD-E2E-2');
    await page.click('#history-search button[type="submit"]');
    await until(page, () => document.querySelectorAll('#history-results tbody tr[data-id]').length === 2);
    assert.match(await page.locator(`#history-results tr[data-id="${ids.order2}"]`).textContent(), /Cancelled/);
    assert.match(await page.locator(`#history-results tr[data-id="${ids.payment2}"]`).textContent(), /Failed/);
    await page.click('#tab-live');
    // While the server was down, only the WebSocket reconnection attempts may have complained.
    assert.deepEqual(unexpectedErrors(b.consoleErrors, [/WebSocket connection to .* failed/, /ERR_CONNECTION_REFUSED/]), []);
  });
});

describe('dashboard against the real server with --token', { timeout: 30000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'xc-e2e-token-'));
  let server;
  let b;
  let page;
  const prompts = [];
  let answer = null;

  before(async () => {
    requireBinary();
    server = await startServer({ files: FILES, dataDir, token: 'secret' });
    b = await launchBrowser({
      width: 1280,
      height: 800,
      onDialog: async (dialog) => {
        prompts.push({ type: dialog.type(), message: dialog.message() });
        if (answer === null) await dialog.dismiss();
        else await dialog.accept(answer);
      },
    });
    page = b.page;
    page.setDefaultTimeout(WAIT);
    page.setDefaultNavigationTimeout(10000);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the live feed and a quick action ask for the token; a wrong one is refused clearly, the right one works', { timeout: TEST_TIMEOUT }, async () => {
    // The live feed needs the token: the page asks for it once at load, then the feed opens.
    answer = 'secret';
    await page.goto(server.dashboardUrl);
    await page.waitForSelector('#conn.is-open');
    assert.equal(prompts.length, 1);
    assert.match(prompts[0].message, /API token for the live feed/);
    const res = await fetch(`${server.url}/api/components/OrderComponent/instances`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer secret' },
      body: JSON.stringify({ machineName: 'Order', context: { orderId: 'ORD-TOKEN', amount: 10 } }),
      signal: AbortSignal.timeout(WAIT),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const { instanceId } = await res.json();
    await page.locator(`#instance-list [data-id="${instanceId}"] button`).waitFor();
    await select(page, instanceId);
    assert.equal(prompts.length, 1, 'the feed carries the token: no more asking');

    // A wrong token kept for the tab: the change is refused, asked again, refused clearly.
    await page.evaluate(() => sessionStorage.setItem('xc-api-token', 'not-the-token'));
    answer = 'not-the-token';
    await page.click('#detail button[data-event="SUBMIT"]');
    const error = page.locator('#detail .reply-error');
    await error.waitFor();
    assert.equal(prompts.length, 2);
    assert.equal(prompts[1].type, 'prompt');
    assert.match(prompts[1].message, /API token/);
    assert.equal(await error.textContent(), 'Error: the API token was refused (wrong bearer token)');
    await until(page, () => document.querySelector('#toast.is-visible.toast-error')?.textContent.includes('SUBMIT'));
    assert.equal(await page.locator('#toast').textContent(), 'Could not send SUBMIT: the API token was refused (wrong bearer token)');
    await page.screenshot({ path: '/tmp/e2e-token-wrong.png' });
    assert.equal(await rowState(page, instanceId), 'Created', 'nothing changed');

    answer = 'secret';
    await quickAction(page, 'SUBMIT', 'Created → PendingPayment');
    assert.equal(prompts.length, 3, 'asked again after the refusal');
    assert.equal(await page.locator('#toast.is-visible').count(), 0, 'the stale error toast is gone');
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'PendingPayment', instanceId);
    // The token is kept for the tab: the next change asks nothing.
    await showMachine(page, 'Payment');
    const payment = await rowIdWith(page, 'ORD-TOKEN');
    await select(page, payment);
    await quickAction(page, 'PROCESS', 'Pending → Processing');
    assert.equal(prompts.length, 3);
    await page.screenshot({ path: '/tmp/e2e-token-ok.png' });
    // Chromium logs the refused calls themselves (the first feed handshake, before the token was
    // given, and the refused changes); nothing else went wrong.
    assert.deepEqual(unexpectedErrors(b.consoleErrors, [/status of 401/, /WebSocket connection .* failed: HTTP Authentication failed/]), []);
  });
});
