/**
 * End-to-end test of the dead-letter list against the real `xcomponent-ai serve`
 * binary on SQLite: a coordinator creates a worker (inter_machine) and finishes;
 * the worker's parent notification then has no live target, so the runtime puts
 * it in the dead-letter list. The dashboard's "Dead letters" tab shows it with
 * its reason; Discard (confirmed) removes it from the server's list.
 * Screenshot: /tmp/e2e-dead-letters.png.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser } from '../support/browser.mjs';
import { requireBinary, startServer } from '../support/real-server.mjs';

const WAIT = 8000;
const TEST_TIMEOUT = 20000;

const COMPONENT = `
name: Crew
entryMachine: Coordinator
entryMachineMode: multiple
stateMachines:
  - name: Coordinator
    initialState: Ready
    states: [{name: Ready, type: entry}, {name: Working}, {name: Done, type: final}]
    transitions:
      - {from: Ready, to: Working, event: START}
      - {from: Working, to: Working, event: CREATE_WORKER, type: inter_machine, targetMachine: Worker}
      - {from: Working, to: Done, event: FINISH}
  - name: Worker
    initialState: Created
    parentLink: {enabled: true, onStateChange: CHILD_STATE_CHANGED}
    states: [{name: Created, type: entry}, {name: Busy}]
    transitions:
      - {from: Created, to: Busy, event: WORK}
`;

const until = (page, fn, arg, timeout = WAIT) => page.waitForFunction(fn, arg, { timeout });

describe('dead letters against the real server', { timeout: 45000 }, () => {
  let dir;
  let server;
  let browser;
  let confirmAnswer = true;

  async function api(method, p, body) {
    const res = await fetch(server.url + p, {
      method,
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: res.status === 204 ? null : await res.json() };
  }

  before(async () => {
    requireBinary();
    dir = mkdtempSync(path.join(os.tmpdir(), 'xc-e2e-dead-'));
    const file = path.join(dir, 'crew.yaml');
    writeFileSync(file, COMPONENT);
    server = await startServer({ files: [file], dataDir: path.join(dir, 'data') });
    browser = await launchBrowser({
      onDialog: async (dialog) => (confirmAnswer ? dialog.accept() : dialog.dismiss()),
    });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a notification to a finished parent is dead-lettered, shown, and discarded', { timeout: TEST_TIMEOUT }, async () => {
    const created = await api('POST', '/api/components/Crew/instances', { machineName: 'Coordinator', context: {} });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const coordinator = created.body.instanceId;
    for (const type of ['START', 'CREATE_WORKER', 'FINISH']) {
      const sent = await api('POST', `/api/instances/${coordinator}/events`, { type, payload: {} });
      assert.ok(sent.status < 300, `${type}: ${JSON.stringify(sent.body)}`);
    }
    const workers = await api('GET', '/api/components/Crew/instances?machine=Worker');
    const worker = workers.body.items.find((item) => item.machineName === 'Worker');
    assert.ok(worker, JSON.stringify(workers.body));
    const work = await api('POST', `/api/instances/${worker.id ?? worker.instanceId}/events`, { type: 'WORK', payload: {} });
    assert.ok(work.status < 300, JSON.stringify(work.body));

    // The runtime dead-letters the parent notification (its target has finished).
    let letters;
    const deadline = Date.now() + WAIT;
    do {
      letters = (await api('GET', '/api/dead-letters')).body.items;
      if (letters.length) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    assert.equal(letters.length, 1, JSON.stringify(letters));
    assert.equal(letters[0].kind, 'undeliverable');
    assert.equal(letters[0].event, 'CHILD_STATE_CHANGED');
    assert.match(letters[0].reason, new RegExp(coordinator));

    const { page } = browser;
    await page.goto(server.dashboardUrl);
    await until(page, () => document.querySelector('#dead-count')?.textContent === '1');
    await page.click('#tab-dead');
    await until(page, () => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 1);
    const cells = await page.locator('#dead-letters tbody tr[data-id] td').allTextContents();
    assert.match(cells[1], /^Crew/);
    assert.equal(cells[3], 'CHILD_STATE_CHANGED');
    assert.equal(cells[4], 'undeliverable');
    await page.screenshot({ path: '/tmp/e2e-dead-letters.png' });

    confirmAnswer = true;
    await page.click(`#dead-letters tr[data-id="${letters[0].messageId}"] button[data-action="discard"]`);
    await until(page, () => document.querySelector('#dead-letters tbody td.empty')?.textContent.startsWith('No dead letter'));
    assert.equal((await api('GET', '/api/dead-letters')).body.items.length, 0, 'gone from the server too');
    assert.deepEqual(browser.consoleErrors, []);
  });
});
