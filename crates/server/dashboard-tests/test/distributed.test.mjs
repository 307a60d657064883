/**
 * End-to-end browser test of the distributed dashboard: an order runtime and a
 * payment runtime (`xcomponent-ai runtime`, the examples/order-payment files
 * renamed with a unique suffix so no queue of another run is shared, each on
 * its own SQLite store) and `xcomponent-ai dashboard`, three real processes
 * joined by Redis (`XC_TEST_REDIS_URL`, redis://127.0.0.1:6379 by default).
 * Through the dashboard only: the Runtimes tab lists both runtimes with their
 * components; an Order created with the form and submitted makes a Payment in
 * the other runtime, which the list shows, and the Payment's quick actions make
 * the Order Paid; the payment runtime killed (SIGKILL) leaves the Runtimes tab
 * once silent for --runtime-timeout-ms.
 *
 * Redis unreachable: the test is skipped with a notice, or fails when
 * XC_REQUIRE_SERVICES (default: CI) is true, as the other service tests do.
 * Screenshots go to /tmp/e2e-distributed-*.png. Every wait is bounded; the
 * processes are stopped even when a test fails.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser } from '../support/browser.mjs';
import { REPO_ROOT, requireBinary, startProcess } from '../support/real-server.mjs';
import { redisRequirement } from '../support/services.mjs';

const REDIS_URL = process.env.XC_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
/** Runtime flags under test: a heartbeat every 500 ms, dropped after 2.5 s of silence. */
const HEARTBEAT_MS = 500;
const RUNTIME_TIMEOUT_MS = 2500;
/** The Runtimes tab reloads every 3 s while shown (runtimes.js). */
const TAB_REFRESH_MS = 3000;
const WAIT = 10000;
const TEST_TIMEOUT = 40000;

const { skip, problem: redisProblem } = await redisRequirement(REDIS_URL, 'distributed dashboard test');

/** Waits until `fn` (run in the page) returns a truthy value. */
const until = (page, fn, arg, timeout = WAIT) => page.waitForFunction(fn, arg, { timeout });

describe('dashboard over runtimes in separate processes (Redis)', { skip, timeout: 120000 }, () => {
  const suffix = `B${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  const order = `OrderComponent${suffix}`;
  const payment = `PaymentComponent${suffix}`;
  const names = { orders: `orders-${suffix}`, payments: `payments-${suffix}` };
  let dir;
  const procs = {};
  let dashboardUrl;
  let b;
  let page;
  /** Answers of 400 and above, as `STATUS path`. */
  const failed = [];
  const ids = {};

  /** Starts `xcomponent-ai runtime FILE --name NAME` on the bus, its store in its own SQLite file. */
  function runtime(file, name) {
    return startProcess({
      args: ['runtime', file, '--broker', REDIS_URL, '--name', name, '--store', `sqlite://${path.join(dir, `${name}.db`)}`, '--heartbeat-ms', String(HEARTBEAT_MS)],
      cwd: dir,
      readyPattern: /xcomponent-ai runtime \S+ hosting .* on /,
    });
  }

  /** Every process's output, for a failure message. */
  const outputs = () => Object.values(procs).map((p) => p.output()).join('\n');

  /** Shows the instances of `machine` of `component` in the list (sidebar tree). */
  async function showMachine(component, machine) {
    if (await page.locator('#view-live').isHidden()) await page.click('#tab-live');
    await page.click(`.tree-machine[data-component="${component}"][data-machine="${machine}"]`);
    await until(
      page,
      ([c, m]) => document.querySelector('svg.diagram')?.dataset.machine === m && document.querySelector('#filter-machine').value === m && document.querySelector('.tree-machine.is-active')?.dataset.component === c,
      [component, machine],
    );
  }

  /** The `data-id` of the one list row whose text contains `text`, waiting up to `timeout`. */
  async function rowIdWith(text, timeout = WAIT) {
    const row = page.locator('#instance-list .instance-row', { hasText: text });
    await row.first().waitFor({ timeout });
    assert.equal(await row.count(), 1, `one row shows ${text}`);
    return row.getAttribute('data-id');
  }

  /** Selects the instance `id` in the list and waits for its detail. */
  async function select(id) {
    await page.locator(`#instance-list [data-id="${id}"] button`).click();
    await until(page, (x) => document.querySelector('#detail-title .mono')?.getAttribute('title') === x, id);
  }

  /** Clicks the quick action `event` of the selected instance and waits for the owner's reply line. */
  async function quickAction(event, expectReply) {
    const button = page.locator(`#detail button[data-event="${event}"]:not([disabled])`);
    await button.waitFor({ timeout: WAIT });
    await button.click();
    await until(page, (text) => document.querySelector('#detail .reply-ok')?.textContent.includes(text), `${event}: ${expectReply}`);
  }

  /** `{name: [components]}` of the rows the Runtimes tab shows. */
  const runtimeRows = () =>
    page.locator('#runtimes tbody tr[data-id]').evaluateAll((rows) =>
      Object.fromEntries(rows.map((r) => [r.querySelector('.rt-name').textContent, [...r.querySelectorAll('.rt-components .chip')].map((c) => c.textContent)])),
    );

  before(async () => {
    if (redisProblem) {
      throw new Error(`Redis at ${REDIS_URL} is unreachable (${redisProblem}) and XC_REQUIRE_SERVICES/CI is true: the distributed dashboard must be tested (start Redis or set XC_TEST_REDIS_URL)`);
    }
    requireBinary();
    dir = mkdtempSync(path.join(os.tmpdir(), 'xc-e2e-dist-'));
    for (const file of ['order.yaml', 'payment.yaml']) {
      const yaml = readFileSync(path.join(REPO_ROOT, 'examples/order-payment', file), 'utf8');
      writeFileSync(path.join(dir, file), yaml.replaceAll('OrderComponent', order).replaceAll('PaymentComponent', payment));
    }
    try {
      procs.dashboard = await startProcess({
        args: ['dashboard', '--broker', REDIS_URL, '--port', '0', '--runtime-timeout-ms', String(RUNTIME_TIMEOUT_MS), '--refresh-ms', '1000', '--reply-timeout-ms', '10000'],
        cwd: dir,
        readyPattern: /xcomponent-ai dashboard on (http:\/\/\S+)/,
        healthPath: '/health',
      });
      procs.orders = await runtime('order.yaml', names.orders);
      procs.payments = await runtime('payment.yaml', names.payments);
    } catch (err) {
      err.message += `\n${outputs()}`;
      throw err;
    }
    assert.equal(procs.dashboard.health.mode, 'distributed');
    dashboardUrl = `${procs.dashboard.ready}/dashboard.html`;
    b = await launchBrowser({ width: 1280, height: 900 });
    page = b.page;
    page.setDefaultTimeout(WAIT);
    page.setDefaultNavigationTimeout(WAIT);
    page.on('response', (res) => {
      if (res.status() >= 400) failed.push(`${res.status()} ${new URL(res.url()).pathname}`);
    });
  });

  after(async () => {
    await b?.close();
    await Promise.all(Object.values(procs).map((p) => p.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the Runtimes tab lists both runtimes with their components', { timeout: TEST_TIMEOUT }, async () => {
    await page.goto(dashboardUrl);
    await page.waitForSelector('#conn.is-open');
    await page.click('#tab-runtimes');
    await page.locator('#view-runtimes').waitFor();
    // Other runs may share the broker: only this run's two runtimes are looked for.
    await until(page, (wanted) => wanted.every((n) => [...document.querySelectorAll('#runtimes .rt-name')].some((e) => e.textContent === n)), Object.values(names));
    const rows = await runtimeRows();
    assert.deepEqual(rows[names.orders], [order]);
    assert.deepEqual(rows[names.payments], [payment]);
    for (const name of Object.values(names)) {
      const cells = await page.locator('#runtimes tbody tr[data-id]', { has: page.locator('.rt-name', { hasText: name }) }).locator('td').allTextContents();
      assert.doesNotMatch(cells[0], /this process/, 'a runtime on the bus, not the dashboard itself');
      // A heartbeat every 500 ms: heard from within the last few seconds.
      assert.match(cells[3], /^[0-5]s ago$/, `${name} last heard ${cells[3]}`);
    }
    assert.ok(Number(await page.locator('#stat-runtimes').textContent()) >= 2);
    // Both components are offered in the tree, each from its runtime.
    await page.click('#tab-live');
    for (const [component, machine] of [[order, 'Order'], [payment, 'Payment']]) {
      await page.locator(`.tree-machine[data-component="${component}"][data-machine="${machine}"]`).waitFor();
    }
    await page.click('#tab-runtimes');
    await page.screenshot({ path: '/tmp/e2e-distributed-runtimes.png' });
  });

  test('an Order created in the dashboard is paid through the payment runtime', { timeout: TEST_TIMEOUT }, async () => {
    await showMachine(order, 'Order');
    await page.click('#btn-new');
    const dialog = page.locator('#create-dialog');
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#create-machine').inputValue(), 'Order');
    await page.fill('#create-fields input[name="orderId"]', 'ORD-DIST-1');
    await page.fill('#create-fields input[name="amount"]', '180');
    await page.selectOption('#create-fields select[name="paymentMethod"]', { label: 'Visa' });
    await page.click('#create-submit');
    await dialog.waitFor({ state: 'hidden' });
    ids.order = await rowIdWith('ORD-DIST-1');
    await until(page, (id) => document.querySelector('#detail-title .mono')?.getAttribute('title') === id && document.querySelector('#detail-state')?.textContent === 'Created', ids.order);

    await quickAction('SUBMIT', 'Created → PendingPayment');
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'PendingPayment', ids.order);

    // The Payment is created by the payment runtime (the Order's cross_component effect over
    // Redis) and reaches the dashboard from that runtime's events.
    await showMachine(payment, 'Payment');
    ids.payment = await rowIdWith('ORD-DIST-1');
    assert.notEqual(ids.payment, ids.order);
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'Pending', ids.payment);
    await select(ids.payment);
    assert.match(await page.locator('#detail').textContent(), new RegExp(`Component\\s*${payment}`));
    assert.deepEqual(JSON.parse(await page.locator('#detail-context').textContent()), { orderId: 'ORD-DIST-1', amount: 180, paymentMethod: 'visa' });
    await page.screenshot({ path: '/tmp/e2e-distributed-payment.png' });

    await quickAction('PROCESS', 'Pending → Processing');
    await quickAction('VALIDATE', 'Processing → Validated');
    await quickAction('COMPLETE', 'Validated → Completed');
    await until(page, () => document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Completed');

    // PAYMENT_CONFIRMED goes back over the bus to the order runtime.
    await showMachine(order, 'Order');
    await until(page, (id) => document.querySelector(`#instance-list [data-id="${id}"] [data-role="state"]`)?.textContent === 'Paid', ids.order);
    await select(ids.order);
    await until(page, () => document.querySelector('#detail-state')?.textContent === 'Paid' && document.querySelector('svg.diagram g.state.is-current')?.dataset.state === 'Paid');
    await page.screenshot({ path: '/tmp/e2e-distributed-paid.png' });
  });

  test('a killed runtime leaves the Runtimes tab once silent for --runtime-timeout-ms', { timeout: TEST_TIMEOUT }, async () => {
    await page.click('#tab-runtimes');
    await until(page, (n) => [...document.querySelectorAll('#runtimes .rt-name')].some((e) => e.textContent === n), names.payments);
    const exit = await procs.payments.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    const killedAt = Date.now();
    // Dropped after RUNTIME_TIMEOUT_MS of silence, then shown by the next push or tab reload.
    const bound = RUNTIME_TIMEOUT_MS + TAB_REFRESH_MS + 4000;
    await until(page, (n) => ![...document.querySelectorAll('#runtimes .rt-name')].some((e) => e.textContent === n), names.payments, bound);
    const elapsed = Date.now() - killedAt;
    // Its last heartbeat may predate the kill by up to one period.
    assert.ok(elapsed >= RUNTIME_TIMEOUT_MS - 2 * HEARTBEAT_MS, `not dropped before its timeout (${elapsed} ms)`);
    const rows = await runtimeRows();
    assert.deepEqual(rows[names.orders], [order], 'the order runtime is still listed');
    assert.equal(rows[names.payments], undefined);
    await page.screenshot({ path: '/tmp/e2e-distributed-killed.png' });

    // The only failed requests allowed: the finished Payment itself and its history once its
    // runtime is gone (they live in the payment runtime's SQLite file, which the dashboard reads
    // over the bus while that runtime runs; a finished instance leaves the live view).
    const unexpected = failed.filter((f) => !(f.startsWith('404 ') && f.includes(ids.payment) && /\/history|\/events$|\/api\/instances\/[^/]+$/.test(f)));
    assert.deepEqual(unexpected, [], `failed requests:\n${failed.join('\n')}`);
    const expected404 = failed.length;
    const notFound = b.consoleErrors.filter((e) => /status of 404/.test(e));
    assert.equal(notFound.length, expected404);
    assert.deepEqual(b.consoleErrors.filter((e) => !/status of 404/.test(e)), []);
  });
});
