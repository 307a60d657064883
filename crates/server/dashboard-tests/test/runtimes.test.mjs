/**
 * Browser tests of the runtimes view against the Node mock: this process
 * alone at first, then several runtimes (as a distributed dashboard sees
 * them) pushed over the WebSocket (`runtimes_update`), then a change picked up
 * by the periodic reload of `/api/runtimes`. Each row shows the name, the
 * components and the last heartbeat as a relative time.
 * Screenshot: /tmp/dashboard-runtimes.png.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, startSession } from '../support/browser.mjs';

const until = (page, fn, arg, timeout = 8000) => page.waitForFunction(fn, arg, { timeout });

function peer(id, name, components, secondsAgo) {
  const now = Date.now();
  return { runtimeId: id, name, componentName: components[0], components, host: '10.0.0.5', port: 3000, lastSeen: now - secondsAgo * 1000, startedAt: now - 600_000, local: false };
}

describe('runtimes view', () => {
  let session;
  let page;

  before(async () => {
    session = await startSession();
    page = session.page;
    await page.goto(`${session.mock.url}/`);
    await page.waitForSelector('#conn.is-open');
  });

  after(async () => {
    await session?.close();
  });

  test('lists this process alone at first', async () => {
    assert.equal(await page.locator('#view-runtimes').isHidden(), true);
    await page.click('#tab-runtimes');
    await page.locator('#view-runtimes').waitFor();
    await until(page, () => document.querySelectorAll('#runtimes tbody tr[data-id]').length === 1);
    const cells = await page.locator('#runtimes tbody tr[data-id]').first().locator('td').allTextContents();
    assert.match(cells[0], /^mock/);
    assert.match(cells[0], /this process/);
    assert.match(cells[1], /OrderComponent/);
    assert.equal(cells[3], 'now');
    assert.match(page.url(), /#runtimes$/);
  });

  test('shows every runtime pushed over the live feed, with components and last heartbeat', async () => {
    await call(session.mock, 'POST', '/__mock/runtimes', {
      announce: true,
      runtimes: [peer('r-1', 'orders-eu', ['OrderComponent'], 2), peer('r-2', 'payments', ['PaymentComponent', 'SupportComponent'], 75)],
    });
    await until(page, () => document.querySelectorAll('#runtimes tbody tr[data-id]').length === 2);
    const rows = page.locator('#runtimes tbody tr[data-id]');
    const first = await rows.nth(0).locator('td').allTextContents();
    const second = await rows.nth(1).locator('td').allTextContents();
    assert.equal(first[0], 'orders-eu');
    assert.equal(first[2], '10.0.0.5:3000');
    assert.match(first[3], /^\d+s ago$/);
    assert.equal(second[0], 'payments');
    assert.deepEqual(await rows.nth(1).locator('.rt-components .chip').allTextContents(), ['PaymentComponent', 'SupportComponent']);
    assert.equal(second[3], '1 min ago');
    assert.equal(await page.locator('#stat-runtimes').textContent(), '2');
    await page.screenshot({ path: '/tmp/dashboard-runtimes.png' });
  });

  test('reloads the list every few seconds while shown', async () => {
    await call(session.mock, 'POST', '/__mock/runtimes', {
      runtimes: [peer('r-1', 'orders-eu', ['OrderComponent'], 1), peer('r-2', 'payments', ['PaymentComponent'], 1), peer('r-3', 'support', ['SupportComponent'], 1)],
    });
    await until(page, () => document.querySelectorAll('#runtimes tbody tr[data-id]').length === 3);
    assert.equal(await page.locator('#stat-runtimes').textContent(), '3');
    await page.click('#tab-live');
    assert.equal(await page.locator('#view-runtimes').isHidden(), true);
    assert.deepEqual(session.consoleErrors, []);
  });
});
