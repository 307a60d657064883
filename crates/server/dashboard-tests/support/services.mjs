/**
 * What the tests that need a server share: reading a boolean setting as
 * scripts/test.sh does, probing Redis before starting processes that need it,
 * and deciding whether a suite may be skipped without it.
 */

import net from 'node:net';

/** A boolean variable as scripts/test.sh reads it (1/0, true/false, yes/no, on/off); throws on anything else. */
export function flag(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (/^(1|true|yes|on|y)$/i.test(value)) return true;
  if (/^(0|false|no|off|n)$/i.test(value)) return false;
  throw new Error(`${name}=${value} is not a boolean: use 1/0, true/false, yes/no, on/off`);
}

/** Resolves to null when a Redis server answers PING at `url` within `ms`, else to why not. */
export function probeRedis(url, ms = 2000) {
  let host;
  let port;
  try {
    const parsed = new URL(url);
    host = parsed.hostname || '127.0.0.1';
    port = Number(parsed.port) || 6379;
  } catch (err) {
    return Promise.resolve(`not a URL (${err.message})`);
  }
  return new Promise((resolve) => {
    const socket = net.createConnection({ host, port });
    const done = (problem) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(`no answer within ${ms} ms`), ms);
    socket.once('connect', () => socket.write('PING\r\n'));
    // Any RESP reply (+PONG, or -NOAUTH when a password is needed) means a Redis server is there.
    socket.once('data', (data) => done(/^[+-]/.test(String(data)) ? null : `not a Redis reply: ${String(data).slice(0, 40)}`));
    socket.once('error', (err) => done(err.message));
  });
}

/**
 * Whether a suite that needs Redis at `url` runs: `problem` is why Redis does not answer (null
 * when it does); `skip` is that reason when the suite may be skipped (printed as a NOTICE naming
 * `suite`), false when Redis answers or XC_REQUIRE_SERVICES (or CI=true) is set, so the suite then
 * runs and its setup fails on `problem`.
 */
export async function redisRequirement(url, suite) {
  const required = flag('XC_REQUIRE_SERVICES', flag('CI', false));
  const problem = await probeRedis(url);
  if (!problem || required) return { skip: false, problem };
  const skip = `Redis at ${url} is unreachable (${problem})`;
  console.error(`NOTICE: ${skip}: the ${suite} was NOT run (XC_REQUIRE_SERVICES or CI=true makes this a failure)`);
  return { skip, problem };
}
