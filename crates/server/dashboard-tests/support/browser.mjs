/**
 * Shared helpers for the browser tests: launches Debian's Chromium through
 * playwright-core (no browser download), starts the mock server, records
 * console errors and every request, and seeds demo data through the API.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startMockServer } from '../mock-server.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Launches a fresh headless Chromium with one page that records console errors
 * (and warnings), page errors and every request URL. `onDialog(dialog, errors)`
 * answers alert/confirm/prompt dialogs; by default a dialog is dismissed and
 * counted as an error.
 */
export async function launchBrowser({ width = 1280, height = 800, onDialog } = {}) {
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'xc-dash-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width, height },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  const requests = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') consoleErrors.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));
  page.on('request', (req) => requests.push(req.url()));
  page.on('dialog', (d) => {
    if (onDialog) {
      Promise.resolve(onDialog(d, consoleErrors)).catch((err) => consoleErrors.push(`dialog handler failed: ${err.message}`));
      return;
    }
    consoleErrors.push(`dialog opened: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  return {
    page,
    context,
    consoleErrors,
    requests,
    async close() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Starts the mock server and a fresh headless Chromium. */
export async function startSession({ width = 1280, height = 800 } = {}) {
  const mock = await startMockServer({ port: 0 });
  const browser = await launchBrowser({ width, height });
  return {
    ...browser,
    mock,
    async close() {
      await browser.close();
      await mock.close();
    },
  };
}

/** JSON call to the mock (outside the page). */
export async function call(mock, method, p, body) {
  const res = await fetch(mock.url + p, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return res.json();
}

/** Creates a few orders in different states, with a full Order → Payment → Order chain. */
export async function seedOrders(mock) {
  const mk = async (orderId, amount, extra = {}) =>
    (await call(mock, 'POST', '/api/components/OrderComponent/instances', { machineName: 'Order', context: { orderId, amount, customerId: `C-${orderId.slice(-2)}`, ...extra } })).instanceId;
  const a = await mk('ORD-1001', 129.9, { paymentMethod: 'visa' });
  const b = await mk('ORD-1002', 42);
  const c = await mk('ORD-1003', 310.5, { paymentMethod: 'mastercard' });
  await mk('ORD-1004', 18.75);
  await call(mock, 'POST', `/api/instances/${a}/events`, { type: 'SUBMIT', payload: {} });
  await call(mock, 'POST', `/api/instances/${c}/events`, { type: 'SUBMIT', payload: {} });
  await new Promise((r) => setTimeout(r, 80));
  const payments = (await call(mock, 'GET', '/api/instances?component=PaymentComponent')).items;
  const pay = payments.find((p) => p.context.orderId === 'ORD-1001');
  for (const type of ['PROCESS', 'VALIDATE', 'COMPLETE']) await call(mock, 'POST', `/api/instances/${pay.id}/events`, { type, payload: {} });
  await new Promise((r) => setTimeout(r, 80));
  await call(mock, 'POST', `/api/instances/${a}/events`, { type: 'SHIP', payload: { carrier: 'DHL' } });
  await call(mock, 'POST', `/api/instances/${b}/events`, { type: 'CANCEL', payload: { reason: 'customer request' } });
  return { shipped: a, cancelled: b, pending: c, payment: pay.id };
}
