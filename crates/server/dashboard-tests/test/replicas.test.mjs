/**
 * End-to-end browser test of the Runtimes tab over replicas: two payment
 * runtimes started with `--replicas` (the examples' payment.yaml renamed with a
 * unique suffix, 4 partitions, a 2 s lease) on Redis alone (store and bus,
 * `XC_TEST_REDIS_URL`), and `xcomponent-ai dashboard`. Through the dashboard
 * only: each replica's component chip shows the share of the partitions it owns
 * (2/4 each, the two lists disjoint and covering 0..3, as the tooltip and
 * `data-partitions` say); one replica killed (SIGKILL), the survivor's chip
 * moves to 4/4 once the dead one's leases expire, and the dead one leaves.
 *
 * Redis unreachable: skipped with a notice, or a failure when
 * XC_REQUIRE_SERVICES (default: CI) is true. Screenshots go to
 * /tmp/e2e-replicas-*.png. Every wait is bounded; the processes are stopped even
 * when a test fails.
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
const PARTITIONS = 4;
const LEASE_TTL_MS = 2000;
const HEARTBEAT_MS = 500;
const RUNTIME_TIMEOUT_MS = 2500;
const WAIT = 15000;
const TEST_TIMEOUT = 45000;

const { skip, problem: redisProblem } = await redisRequirement(REDIS_URL, 'replicas dashboard test');

describe('the Runtimes tab shows the partitions each replica owns (Redis alone)', { skip, timeout: 120000 }, () => {
  const suffix = `P${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  const payment = `PaymentComponent${suffix}`;
  const names = [`payments-a-${suffix}`, `payments-b-${suffix}`];
  let dir;
  const procs = {};
  let b;
  let page;

  function replica(name) {
    return startProcess({
      args: [
        'runtime', 'payment.yaml', '--broker', REDIS_URL, '--store', REDIS_URL, '--name', name,
        '--replicas', '--partitions', String(PARTITIONS), '--lease-ttl-ms', String(LEASE_TTL_MS),
        '--heartbeat-ms', String(HEARTBEAT_MS),
      ],
      cwd: dir,
      readyPattern: /xcomponent-ai runtime \S+ hosting .* on /,
    });
  }

  const outputs = () => Object.values(procs).map((p) => p.output()).join('\n');

  /** `{runtime name: {text, partitions}}` of this run's replicas as the Runtimes tab shows them. */
  const chips = () =>
    page.locator('#runtimes tbody tr[data-id]').evaluateAll(
      (rows, component) =>
        Object.fromEntries(
          rows
            .map((r) => [r.querySelector('.rt-name').textContent, [...r.querySelectorAll('.rt-components .chip')].find((c) => c.textContent.startsWith(component))])
            .filter(([, chip]) => chip)
            .map(([name, chip]) => [name, { text: chip.textContent, partitions: chip.dataset.partitions ?? null, title: chip.title }]),
        ),
      payment,
    );

  /**
   * Waits until this run's replicas show `wanted`: `shared` (each of the two owns 2 of the 4
   * partitions, together all of them) or `survivor` (the first owns all 4, the second is gone).
   * Returns the chips; on timeout, fails with what they showed last.
   */
  async function untilChips(wanted, timeout = WAIT) {
    const [a, b] = names;
    const owned = (chip) => (chip?.partitions ? chip.partitions.split(',') : undefined);
    const reached = (shown) =>
      wanted === 'shared'
        ? owned(shown[a])?.length === 2 && owned(shown[b])?.length === 2 && new Set([...owned(shown[a]), ...owned(shown[b])]).size === 4
        : owned(shown[a])?.length === 4 && shown[b] === undefined;
    const deadline = Date.now() + timeout;
    for (;;) {
      const shown = await chips();
      if (reached(shown)) return shown;
      if (Date.now() > deadline) throw new Error(`the replicas' chips never showed ${wanted}: ${JSON.stringify(shown)}\n${outputs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  before(async () => {
    if (redisProblem) {
      throw new Error(`Redis at ${REDIS_URL} is unreachable (${redisProblem}) and XC_REQUIRE_SERVICES/CI is true: the replicas dashboard must be tested (start Redis or set XC_TEST_REDIS_URL)`);
    }
    requireBinary();
    dir = mkdtempSync(path.join(os.tmpdir(), 'xc-e2e-replicas-'));
    const yaml = readFileSync(path.join(REPO_ROOT, 'examples/order-payment/payment.yaml'), 'utf8');
    writeFileSync(path.join(dir, 'payment.yaml'), yaml.replaceAll('PaymentComponent', payment));
    try {
      procs.dashboard = await startProcess({
        args: ['dashboard', '--broker', REDIS_URL, '--store', REDIS_URL, '--port', '0', '--runtime-timeout-ms', String(RUNTIME_TIMEOUT_MS), '--refresh-ms', '1000'],
        cwd: dir,
        readyPattern: /xcomponent-ai dashboard on (http:\/\/\S+)/,
        healthPath: '/health',
      });
      procs.a = await replica(names[0]);
      procs.b = await replica(names[1]);
    } catch (err) {
      err.message += `\n${outputs()}`;
      throw err;
    }
    b = await launchBrowser({ width: 1280, height: 900 });
    page = b.page;
    page.setDefaultTimeout(WAIT);
  });

  after(async () => {
    await b?.close();
    await Promise.all(Object.values(procs).map((p) => p.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('each replica shows its share of the partitions, the two shares disjoint and complete', { timeout: TEST_TIMEOUT }, async () => {
    await page.goto(`${procs.dashboard.ready}/dashboard.html`);
    await page.waitForSelector('#conn.is-open');
    await page.click('#tab-runtimes');
    await page.locator('#view-runtimes').waitFor();
    const shown = await untilChips('shared');
    for (const name of names) {
      assert.match(shown[name].text, new RegExp(`^${payment} · 2/${PARTITIONS}$`));
      assert.equal(shown[name].title, `partitions ${shown[name].partitions.split(',').join(', ')} of ${PARTITIONS}`);
    }
    await page.screenshot({ path: '/tmp/e2e-replicas-shared.png' });
  });

  test('a replica killed: the survivor shows every partition and the dead one leaves', { timeout: TEST_TIMEOUT }, async () => {
    const exit = await procs.b.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    // Its leases expire after LEASE_TTL_MS; the survivor takes them at its next round.
    const shown = await untilChips('survivor', LEASE_TTL_MS + RUNTIME_TIMEOUT_MS + 10000);
    assert.equal(shown[names[0]].text, `${payment} · 4/${PARTITIONS}`);
    assert.equal(shown[names[0]].partitions, '0,1,2,3');
    await page.screenshot({ path: '/tmp/e2e-replicas-survivor.png' });
    assert.deepEqual(b.consoleErrors, []);
  });
});
