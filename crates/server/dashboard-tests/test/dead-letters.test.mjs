/**
 * Browser tests of the dead-letters view against the Node mock: the tab badge,
 * the table (time, component, target, event, kind, reason, attempts), Replay
 * failing again then delivering once the cause is fixed, Discard behind a
 * confirmation, and the message shown when the server has no store.
 * Screenshots go to /tmp/dashboard-dead-letters*.png.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, launchBrowser } from '../support/browser.mjs';
import { startMockServer } from '../mock-server.mjs';

const until = (page, fn, arg, timeout = 5000) => page.waitForFunction(fn, arg, { timeout });
const MISSING = '0190a6f2-1111-7000-8000-000000000000';

/** Waits until `check()` (run here, in Node) is true. */
async function waitFor(check, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('dead letters view', () => {
  let mock;
  let browser;
  let page;
  /** What the next confirm() answers. */
  let confirmAnswer = false;
  const confirms = [];
  let order;
  let refused;
  let lost;

  before(async () => {
    mock = await startMockServer({ port: 0 });
    browser = await launchBrowser({
      onDialog: async (dialog, errors) => {
        if (dialog.type() !== 'confirm') {
          errors.push(`unexpected ${dialog.type()}: ${dialog.message()}`);
          return dialog.dismiss();
        }
        confirms.push(dialog.message());
        return confirmAnswer ? dialog.accept() : dialog.dismiss();
      },
    });
    page = browser.page;
    order = (await call(mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId: 'ORD-DL', amount: 5 } })).instanceId;
    // PAYMENT_CONFIRMED to an Order still in Created: refused until the order is submitted.
    refused = mock.runtime.addDeadLetter({ component: 'OrderComponent', instanceId: order, event: 'PAYMENT_CONFIRMED', kind: 'rejected', reason: 'no transition for PAYMENT_CONFIRMED from Created', sourceComponent: 'PaymentComponent' });
    lost = mock.runtime.addDeadLetter({ component: 'PaymentComponent', instanceId: MISSING, event: 'PROCESS', kind: 'undeliverable' });
    await page.goto(`${mock.url}/`);
    await page.waitForSelector('#conn.is-open');
  });

  after(async () => {
    await browser?.close();
    await mock?.close();
  });

  test('the tab badge counts the dead letters at start', async () => {
    await until(page, () => document.querySelector('#dead-count')?.textContent === '2');
    assert.match(await page.locator('#dead-count').getAttribute('class'), /is-alert/);
    assert.equal(await page.locator('#view-dead').isHidden(), true);
  });

  test('opening the view lists every dead letter with its details', async () => {
    await page.click('#tab-dead');
    await page.locator('#view-dead').waitFor();
    const rows = page.locator('#dead-letters tbody tr[data-id]');
    await until(page, () => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 2);
    const cells = await rows.first().locator('td').allTextContents();
    assert.match(cells[0], /s ago/);
    assert.match(cells[1], /^OrderComponent/);
    assert.match(cells[1], /from PaymentComponent/);
    assert.equal(cells[2], `instance ${order.slice(-8)}`);
    assert.equal(cells[3], 'PAYMENT_CONFIRMED');
    assert.equal(cells[4], 'rejected');
    assert.equal(cells[5], 'no transition for PAYMENT_CONFIRMED from Created');
    assert.equal(cells[6], '1');
    const second = await rows.nth(1).locator('td').allTextContents();
    assert.deepEqual(second.slice(1, 5), ['PaymentComponent', `instance ${MISSING.slice(-8)}`, 'PROCESS', 'undeliverable']);
    assert.equal(await page.evaluate(() => location.hash), '#dead-letters');
    await page.screenshot({ path: '/tmp/dashboard-dead-letters.png' });
  });

  test('a replay that fails again stays in the list with one more attempt', async () => {
    await page.click(`#dead-letters tr[data-id="${refused.messageId}"] button[data-action="replay"]`);
    await until(page, () => document.querySelector('#toast')?.textContent.includes('failed again'));
    await until(page, (id) => document.querySelector(`#dead-letters tr[data-id="${id}"] td.num`)?.textContent === '2', refused.messageId);
    assert.equal(await page.locator('#dead-letters tbody tr[data-id]').count(), 2);
  });

  test('after the cause is fixed, a replay delivers the message and the row goes', async () => {
    await call(mock, 'POST', `/api/instances/${order}/events`, { type: 'SUBMIT', payload: {} });
    await page.click(`#dead-letters tr[data-id="${refused.messageId}"] button[data-action="replay"]`);
    await until(page, () => document.querySelector('#toast')?.textContent.includes('delivered'));
    await until(page, () => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 1);
    assert.equal(await page.locator('#dead-count').textContent(), '1');
    assert.equal(mock.runtime.live.get(order).currentState, 'Paid');
  });

  test('discard asks first: cancelled keeps the row, confirmed removes it', async () => {
    const discard = `#dead-letters tr[data-id="${lost.messageId}"] button[data-action="discard"]`;
    confirmAnswer = false;
    await page.click(discard);
    await waitFor(() => confirms.length === 1);
    assert.match(confirms[0], /PROCESS to PaymentComponent/);
    assert.equal(mock.runtime.deadLetters.size, 1, 'nothing discarded when the confirm is cancelled');
    confirmAnswer = true;
    await page.click(discard);
    await until(page, () => document.querySelector('#toast')?.textContent.includes('discarded'));
    await until(page, () => document.querySelector('#dead-letters tbody td.empty')?.textContent.startsWith('No dead letter'));
    assert.equal(mock.runtime.deadLetters.size, 0);
    assert.equal(await page.locator('#dead-count').textContent(), '');
    await page.screenshot({ path: '/tmp/dashboard-dead-letters-empty.png' });
  });

  test('the view is refreshed every time it opens', async () => {
    await page.click('#tab-live');
    mock.runtime.addDeadLetter({ component: 'OrderComponent', instanceId: MISSING, event: 'SHIP' });
    await page.click('#tab-dead');
    await until(page, () => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 1);
    assert.equal(await page.locator('#dead-count').textContent(), '1');
  });

  test('without a store the view says dead letters need one', async () => {
    await call(mock, 'POST', '/__mock/no-store', { on: true });
    await page.click('#dead-refresh');
    await until(page, () => !document.querySelector('#dead-banner').hidden);
    assert.match(await page.locator('#dead-banner').textContent(), /only kept when the server runs with a store/);
    assert.equal(await page.locator('#dead-letters tbody tr[data-id]').count(), 0);
    // The 409 is the expected answer here; anything else in the console is not.
    assert.deepEqual(browser.consoleErrors.filter((e) => !/status of 409/.test(e)), []);
  });
});
