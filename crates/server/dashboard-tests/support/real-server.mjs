/**
 * Starts and stops the real `xcomponent-ai` binary (`serve`, or the
 * `runtime` and `dashboard` processes of a distributed topology) for the
 * end-to-end browser tests. The binary is `$XC_BIN`, else debug/xcomponent-ai in the
 * target directory `cargo metadata` reports (where `cargo test` put it); a
 * missing binary is an error, never a skip.
 *
 * Each server runs in its own process group, is stopped with SIGTERM (SIGKILL
 * after a grace period) and is killed when the test process exits, whatever
 * the outcome.
 */

import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Where the binary is expected, from the environment. */
export function binaryPath() {
  if (process.env.XC_BIN) return path.resolve(process.env.XC_BIN);
  const metadata = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return path.join(JSON.parse(metadata).target_directory, 'debug', 'xcomponent-ai');
}

/** The binary's path; throws a clear error when it is missing or not executable. */
export function requireBinary() {
  const bin = binaryPath();
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      `xcomponent-ai binary not found at ${bin}: build it with \`cargo build -p xcomponent-cli\` ` +
        '(scripts/test.sh does it through `cargo test`) or point XC_BIN at it',
    );
  }
  return bin;
}

/** Variables `serve`, `runtime` and `dashboard` read as defaults for their flags: none may leak in from the caller's shell. */
const SERVE_ENV = [
  'COMPONENT_FILE',
  'RUNTIME_NAME',
  'CREATE_DEMO_INSTANCE',
  'HOST',
  'PORT',
  'DATABASE_URL',
  'BROKER_URL',
  'XCOMPONENT_BROKER_URL',
  'REDIS_URL',
  'XCOMPONENT_REDELIVERY_MS',
  'XCOMPONENT_API_TOKEN',
  'SNAPSHOT_INTERVAL',
  'XCOMPONENT_RETENTION_DAYS',
  'XCOMPONENT_CONTEXT_SCHEMA',
];

function serverEnv() {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' };
  for (const name of SERVE_ENV) delete env[name];
  return env;
}

const running = new Set();
process.once('exit', () => {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** Rejects after `ms` with `message` unless `promise` settles first. */
function within(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `url` until it answers 200 (each try bounded), or fails after `ms`. */
async function waitHealthy(url, ms) {
  const deadline = Date.now() + ms;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return res.json();
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not healthy after ${ms} ms (${last})`);
}

/**
 * Starts the binary with `args` (in `cwd`, the repository root by default) in
 * its own process group and waits for a line of its stdout matching
 * `readyPattern` (its first group, when it has one, is `ready`), then for
 * `${ready}${healthPath}` to answer 200 when `healthPath` is given. A process
 * that exits first or stays silent fails with its output.
 * Resolves to `{ready, pid, health, output(), exited, kill(signal), stop(graceMs)}`.
 */
export async function startProcess({ args, cwd = REPO_ROOT, readyPattern, healthPath, startTimeoutMs = 10000 }) {
  const bin = requireBinary();
  const what = `xcomponent-ai ${args[0]}`;
  const child = spawn(bin, args, {
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serverEnv(),
  });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d) => {
    err += d;
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  exited.then(() => running.delete(child));
  const output = () => `--- ${what} stdout\n${out}--- ${what} stderr\n${err}`;
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      /* already gone */
    }
  };

  try {
    const ready = await within(
      new Promise((resolve, reject) => {
        const look = () => {
          const m = out.match(readyPattern);
          if (m) resolve(m[1] ?? m[0]);
        };
        child.stdout.on('data', look);
        exited.then(({ code, signal }) => reject(new Error(`${what} exited early (code ${code}, signal ${signal})`)));
        look();
      }),
      startTimeoutMs,
      `${what} printed nothing matching ${readyPattern} within ${startTimeoutMs} ms`,
    );
    const health = healthPath ? await waitHealthy(`${ready}${healthPath}`, startTimeoutMs) : null;
    let stopped = null;
    return {
      ready,
      pid: child.pid,
      health,
      output,
      exited,
      /** Sends `signal` to the process group at once (no grace); resolves to `{code, signal}` of the exit. */
      kill(signal = 'SIGKILL') {
        if (child.exitCode === null && child.signalCode === null) killGroup(signal);
        return exited;
      },
      /** SIGTERM, then SIGKILL after `graceMs`; resolves to `{code, signal}` of the exit. */
      stop(graceMs = 8000) {
        stopped ||= (async () => {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          try {
            return await within(exited, graceMs, 'no exit after SIGTERM');
          } catch {
            killGroup('SIGKILL');
            return exited;
          }
        })();
        return stopped;
      },
    };
  } catch (e) {
    killGroup('SIGKILL');
    await within(exited, 3000, 'no exit after SIGKILL').catch(() => {});
    throw new Error(`${e.message}\n${output()}`);
  }
}

/**
 * Starts `xcomponent-ai serve FILES --data-dir DIR --port PORT [--token T]`.
 * `port` 0 lets the server pick one; the URL is read from the line it prints.
 * Resolves to `{url, port, dashboardUrl, health, output(), stop()}`.
 */
export async function startServer({ files, dataDir, port = 0, token, startTimeoutMs = 10000 }) {
  const args = ['serve', ...files, '--data-dir', dataDir, '--port', String(port)];
  if (token) args.push('--token', token);
  const server = await startProcess({ args, readyPattern: /xcomponent-ai serving .* on (http:\/\/[^\s]+)/, healthPath: '/health', startTimeoutMs });
  const url = server.ready;
  return {
    url,
    port: Number(new URL(url).port),
    dashboardUrl: `${url}/dashboard.html`,
    health: server.health,
    output: server.output,
    stop: server.stop,
  };
}
