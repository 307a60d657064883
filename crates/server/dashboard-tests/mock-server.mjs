/**
 * A stand-in for `xcomponent-ai serve`, for the dashboard's browser tests.
 *
 * It serves ../dashboard as static files and fakes the server's REST API and
 * WebSocket feed (same paths and JSON shapes) with a tiny in-memory runtime:
 * instances, transitions, timeout/auto timers, inter_machine children,
 * cross_component creation and correlated events (the Order/Payment example),
 * and an event history with causation and correlation ids.
 *
 * Dead letters (`/api/dead-letters`) are made by `runtime.addDeadLetter(...)`
 * (or `POST /__mock/dead-letter`): a message to one instance that replay
 * delivers once that instance is live and accepts the event, and that fails
 * again otherwise.
 *
 * Test hooks: `POST /__mock/push {type, data}` sends a raw WebSocket message
 * to every client; `POST /__mock/mute {muted}` stops (or restarts) the live
 * feed, so the page can be made stale on purpose; `POST /__mock/reset`
 * forgets every instance and dead letter; `POST /__mock/no-store {on}` makes
 * the dead-letter routes answer 409 `store_required` like a server without
 * a store; `POST /__mock/late-creations {ms}` answers a creation at once and
 * makes the instance exist `ms` later (0: at once), like a dashboard that
 * hears of an instance from its runtime's events after the runtime's answer.
 *
 * Run alone: `node mock-server.mjs [port]` (default 4310).
 */

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const STATIC_DIR = path.resolve(here, '../dashboard');
const FIXTURES = ['order-component.json', 'payment-component.json', 'support-component.json'];

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};

/** A handler's answer with no body (204). */
const NO_CONTENT = Symbol('no content');

/** HTTP error with the server's JSON error shape. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The fake runtime behind the API. */
export class MockRuntime {
  constructor(components, broadcast) {
    this.components = new Map(components.map((c) => [c.name, c]));
    this.broadcast = broadcast;
    this.live = new Map();
    this.ended = new Map();
    this.events = [];
    this.timers = new Map();
    this.deadLetters = new Map();
    this.noStore = false;
  }

  machine(componentName, machineName) {
    const comp = this.components.get(componentName);
    if (!comp) throw new HttpError(404, 'component_not_found', `Component ${componentName} not found`);
    const m = comp.stateMachines.find((x) => x.name === machineName);
    if (!m) throw new HttpError(400, 'machine_not_found', `Machine ${machineName} not found in ${componentName}`);
    return m;
  }

  stateType(inst) {
    return this.machine(inst.componentName, inst.machineName).states.find((s) => s.name === inst.currentState)?.type || 'regular';
  }

  record(inst, fields) {
    const ev = {
      id: randomUUID(),
      instanceId: inst.id,
      seq: (inst.seq = (inst.seq || 0) + 1),
      eventType: fields.eventType,
      payload: fields.payload ?? {},
      stateBefore: fields.stateBefore ?? null,
      stateAfter: inst.currentState,
      status: inst.status,
      context: structuredClone(inst.context),
      timestamp: new Date().toISOString(),
      causationId: fields.causationId ?? null,
      correlationId: inst.correlationId,
      sourceComponent: fields.sourceComponent ?? null,
      componentName: inst.componentName,
      machineName: inst.machineName,
    };
    this.events.push(ev);
    return ev;
  }

  create(componentName, machineName, context = {}, meta = {}) {
    const comp = this.components.get(componentName);
    if (!comp) throw new HttpError(404, 'component_not_found', `Component ${componentName} not found`);
    const name = machineName || comp.entryMachine;
    const m = this.machine(componentName, name);
    if (comp.entryMachineMode === 'singleton' && name === comp.entryMachine && [...this.live.values()].some((i) => i.componentName === componentName && i.machineName === name)) {
      throw new HttpError(409, 'singleton_exists', `${componentName} runs ${name} as a singleton and one instance already exists`);
    }
    const now = Date.now();
    const id = meta.id || randomUUID();
    const inst = {
      id,
      componentName,
      machineName: name,
      currentState: m.initialState,
      status: 'active',
      context: structuredClone(context || {}),
      createdAt: now,
      updatedAt: now,
      parentInstanceId: meta.parentInstanceId || undefined,
      correlationId: meta.correlationId || id,
      seq: 0,
      deadlines: [],
    };
    this.live.set(id, inst);
    const ev = this.record(inst, { eventType: 'INSTANCE_CREATED', payload: context, causationId: meta.causationId, sourceComponent: meta.sourceComponent });
    this.broadcast('instance_created', this.summary(inst));
    this.arm(inst, ev.id);
    return inst;
  }

  summary(inst) {
    const { deadlines, seq, correlationId, ...rest } = inst;
    return structuredClone(rest);
  }

  arm(inst, causeId) {
    this.clearTimers(inst);
    const m = this.machine(inst.componentName, inst.machineName);
    for (const t of m.transitions) {
      if (t.from !== inst.currentState || (t.type !== 'timeout' && t.type !== 'auto')) continue;
      const delay = t.timeoutMs ?? 0;
      const handle = setTimeout(() => {
        if (this.live.get(inst.id)?.currentState === t.from) this.safely(() => this.send(inst.id, t.event, {}, { causationId: causeId }));
      }, delay);
      inst.deadlines.push({ event: t.event, targetState: t.to, at: Date.now() + delay, timeoutMs: delay });
      this.timers.set(`${inst.id}:${t.event}`, handle);
    }
  }

  clearTimers(inst) {
    for (const d of inst.deadlines || []) clearTimeout(this.timers.get(`${inst.id}:${d.event}`));
    inst.deadlines = [];
  }

  send(id, type, payload = {}, meta = {}) {
    const inst = this.live.get(id);
    if (!inst) {
      if (this.ended.has(id)) return { outcome: 'ignored', reason: 'instance has ended', allowedEvents: [] };
      throw new HttpError(404, 'instance_not_found', `Instance ${id} not found`);
    }
    const m = this.machine(inst.componentName, inst.machineName);
    const out = m.transitions.filter((t) => t.from === inst.currentState);
    const t = out.find((x) => x.event === type);
    if (!t) {
      const allowedEvents = [...new Set(out.map((x) => x.event))];
      const reason = `no transition for ${type} from ${inst.currentState}`;
      this.broadcast('event_ignored', { instanceId: id, componentName: inst.componentName, machineName: inst.machineName, event: type, reason, currentState: inst.currentState });
      return { outcome: 'ignored', reason, allowedEvents };
    }
    const previousState = inst.currentState;
    if (!t.matchingRules && payload && typeof payload === 'object') Object.assign(inst.context, payload);
    inst.currentState = t.to;
    inst.updatedAt = Date.now();
    const stType = this.stateType(inst);
    if (stType === 'final') inst.status = 'completed';
    if (stType === 'error') inst.status = 'error';
    const ev = this.record(inst, { eventType: type, payload, stateBefore: previousState, causationId: meta.causationId, sourceComponent: meta.sourceComponent });
    this.clearTimers(inst);
    this.broadcast('state_change', {
      instanceId: id,
      componentName: inst.componentName,
      machineName: inst.machineName,
      previousState,
      newState: t.to,
      event: { type, payload },
      context: structuredClone(inst.context),
      timestamp: inst.updatedAt,
    });
    this.effects(inst, t, ev);
    if (inst.status !== 'active') {
      this.broadcast('instance_completed', { instanceId: id, componentName: inst.componentName, machineName: inst.machineName, finalState: inst.currentState, status: inst.status, timestamp: Date.now() });
      this.live.delete(id);
      this.ended.set(id, inst);
      this.broadcast('instance_disposed', { instanceId: id, componentName: inst.componentName, machineName: inst.machineName });
    } else {
      this.arm(inst, ev.id);
    }
    return { outcome: 'transitioned', previousState, newState: t.to };
  }

  mapped(t, data) {
    if (!t.contextMapping) return structuredClone(data);
    const out = {};
    for (const [k, src] of Object.entries(t.contextMapping)) {
      const v = src.split('.').reduce((acc, part) => (acc == null ? undefined : acc[part]), data);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }

  effects(inst, t, ev) {
    if (t.type === 'inter_machine' && t.targetMachine) {
      this.create(inst.componentName, t.targetMachine, this.mapped(t, { ...ev.payload }), { parentInstanceId: inst.id, causationId: ev.id, correlationId: inst.correlationId });
    }
    if (t.type === 'cross_component' && t.targetComponent) {
      const data = this.mapped(t, { ...inst.context, ...ev.payload });
      setTimeout(() => this.safely(() => {
        const meta = { causationId: ev.id, correlationId: inst.correlationId, sourceComponent: inst.componentName };
        if (t.targetEvent) {
          for (const target of [...this.live.values()]) {
            if (target.componentName !== t.targetComponent || target.machineName !== (t.targetMachine || target.machineName)) continue;
            const ok = (t.matchingRules || []).every((r) => target.context[r.instanceProperty] === inst.context[r.eventProperty]);
            if (ok) this.send(target.id, t.targetEvent, data, meta);
          }
        } else {
          this.create(t.targetComponent, t.targetMachine, data, meta);
        }
      }), 25);
    }
  }

  /** Runs a deferred effect; a failure is logged, never thrown out of a timer. */
  safely(fn) {
    try {
      fn();
    } catch (err) {
      console.error(`mock: deferred effect failed: ${err.message}`);
    }
  }

  detail(id) {
    const inst = this.live.get(id) || this.ended.get(id);
    if (!inst || !this.live.has(id)) throw new HttpError(404, 'instance_not_found', `Instance ${id} not found`);
    const m = this.machine(inst.componentName, inst.machineName);
    const now = Date.now();
    return {
      ...this.summary(inst),
      availableTransitions: m.transitions
        .filter((t) => t.from === inst.currentState)
        .map((t) => ({ event: t.event, to: t.to, type: t.type || 'regular', ...(t.guard ? { guard: t.guard } : {}), ...(t.targetMachine ? { targetMachine: t.targetMachine } : {}) })),
      pendingTimeouts: inst.deadlines.map((d) => ({ event: d.event, remainingMs: Math.max(0, d.at - now), targetState: d.targetState })),
    };
  }

  list(q) {
    let items = [...this.live.values()];
    if (q.component) items = items.filter((i) => i.componentName === q.component);
    if (q.machine) items = items.filter((i) => i.machineName === q.machine);
    if (q.state) items = items.filter((i) => i.currentState === q.state);
    if (q.q) items = items.filter((i) => JSON.stringify(i).toLowerCase().includes(q.q.toLowerCase()));
    items.sort((a, b) => b.createdAt - a.createdAt);
    const start = Number(q.cursor || 0);
    const limit = Math.min(Number(q.limit || 100), 1000);
    const page = items.slice(start, start + limit);
    return { items: page.map((i) => this.summary(i)), nextCursor: start + limit < items.length ? String(start + limit) : null };
  }

  historyOf(id) {
    if (!this.live.has(id) && !this.ended.has(id)) throw new HttpError(404, 'instance_not_found', `Instance ${id} not found`);
    return this.events.filter((e) => e.instanceId === id);
  }

  searchHistory(q) {
    let items = [...this.live.values(), ...this.ended.values()];
    if (q.machine) items = items.filter((i) => i.machineName === q.machine);
    if (q.state) items = items.filter((i) => i.currentState === q.state);
    if (q.q) items = items.filter((i) => `${i.id} ${JSON.stringify(i.context)}`.toLowerCase().includes(q.q.toLowerCase()));
    items.sort((a, b) => b.updatedAt - a.updatedAt);
    return { items: items.slice(0, Math.min(Number(q.limit || 100), 500)).map((i) => ({ ...this.summary(i), eventCount: i.seq })), nextCursor: null };
  }

  correlated(id) {
    const inst = this.live.get(id) || this.ended.get(id);
    if (!inst) throw new HttpError(404, 'instance_not_found', `Instance ${id} not found`);
    return this.events.filter((e) => e.correlationId === inst.correlationId);
  }

  broadcastEvent(componentName, body) {
    let count = 0;
    for (const inst of [...this.live.values()]) {
      if (inst.componentName !== componentName || inst.machineName !== body.machineName) continue;
      if (body.state && inst.currentState !== body.state) continue;
      const r = this.send(inst.id, body.event.type, body.event.payload || {});
      if (r.outcome === 'transitioned') count++;
    }
    return { count };
  }

  diagram(componentName, machineName, currentState) {
    const m = this.machine(componentName, machineName);
    const lines = ['stateDiagram-v2', `  [*] --> ${m.initialState}`];
    for (const t of m.transitions) lines.push(`  ${t.from} --> ${t.to}: ${t.event}`);
    const terminalStates = m.states.filter((s) => s.type === 'final' || s.type === 'error').map((s) => s.name);
    for (const s of terminalStates) lines.push(`  ${s} --> [*]`);
    if (currentState) lines.push(`  class ${currentState} current`);
    return { mermaid: lines.join('\n'), terminalStates, transitions: m.transitions };
  }

  /** Adds a dead letter: `event` sent to instance `instanceId` of `component` that could not be applied. */
  addDeadLetter({ component, instanceId, event, payload = {}, kind = 'undeliverable', reason, sourceComponent, sourceInstance }) {
    // Time-ordered ids, like the server's UUID v7 message ids: the list is in the order they were made.
    const seq = String(this.deadLetters.size + 1).padStart(12, '0');
    const id = `0190a6f2-0000-7000-8000-${seq}`.slice(0, 36);
    const now = Date.now();
    const letter = {
      messageId: id,
      component,
      kind,
      reason: reason || (kind === 'rejected' ? `no transition for ${event}` : `instance ${instanceId} is not live here (it never existed or has finished)`),
      attempts: 1,
      deadAt: now,
      action: 'send',
      event,
      instanceId,
      message: { id, component, body: { kind: 'send', instanceId, event, payload }, depth: 1, sourceComponent, sourceInstance, createdAt: now },
    };
    this.deadLetters.set(id, letter);
    return letter;
  }

  requireStore() {
    if (this.noStore) throw new HttpError(409, 'store_required', 'dead letters are kept only when the server runs with a store');
  }

  deadLetter(id) {
    this.requireStore();
    const letter = this.deadLetters.get(id);
    if (!letter) throw new HttpError(404, 'unknown_dead_letter', `dead letter ${id} not found`);
    return letter;
  }

  listDeadLetters(q) {
    this.requireStore();
    const all = [...this.deadLetters.values()].sort((a, b) => a.messageId.localeCompare(b.messageId));
    const after = q.cursor || q.after;
    const rest = after ? all.filter((l) => l.messageId > after) : all;
    const limit = Math.min(Number(q.limit || 100), 1000);
    const items = rest.slice(0, limit);
    return rest.length > limit ? { items, nextCursor: items[items.length - 1].messageId } : { items };
  }

  replayDeadLetter(id) {
    const letter = this.deadLetter(id);
    const inst = this.live.get(letter.instanceId);
    const accepts = inst && this.machine(inst.componentName, inst.machineName).transitions.some((t) => t.from === inst.currentState && t.event === letter.event);
    if (accepts) {
      this.deadLetters.delete(id);
      this.send(inst.id, letter.event, letter.message.body.payload, { sourceComponent: letter.message.sourceComponent });
      return { messageId: id, outcome: 'delivered' };
    }
    letter.attempts += 1;
    letter.deadAt = Date.now();
    letter.kind = inst ? 'rejected' : 'undeliverable';
    letter.reason = inst ? `no transition for ${letter.event} from ${inst.currentState}` : `instance ${letter.instanceId} is not live here (it never existed or has finished)`;
    return { messageId: id, outcome: 'dead_again', deadLetter: letter };
  }

  discardDeadLetter(id) {
    this.deadLetter(id);
    this.deadLetters.delete(id);
    return NO_CONTENT;
  }

  reset() {
    for (const inst of this.live.values()) this.clearTimers(inst);
    this.live.clear();
    this.ended.clear();
    this.events = [];
    this.deadLetters.clear();
    this.noStore = false;
  }
}

function loadComponents() {
  return FIXTURES.map((f) => JSON.parse(readFileSync(path.join(here, 'fixtures', f), 'utf8')));
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1 << 20) throw new HttpError(413, 'too_large', 'Body too large');
    chunks.push(chunk);
  }
  if (!chunks.length) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'bad_json', 'Body is not valid JSON');
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

async function serveStatic(res, pathname) {
  const rel = pathname === '/' || pathname === '' ? 'index.html' : pathname.replace(/^\/+/, '');
  const file = path.resolve(STATIC_DIR, rel);
  if (!file.startsWith(STATIC_DIR + path.sep)) return sendJson(res, 404, { error: { code: 'not_found', message: 'Not found' } });
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(body);
  } catch {
    sendJson(res, 404, { error: { code: 'not_found', message: 'Not found' } });
  }
}

/** Starts the mock on `port` (0 = any free port). Resolves to `{url, runtime, push, close}`. */
export async function startMockServer({ port = 0, seed = true } = {}) {
  const clients = new Set();
  let muted = false;
  const push = (type, data) => {
    if (muted) return;
    const text = JSON.stringify({ type, data });
    for (const ws of clients) if (ws.readyState === 1) ws.send(text);
  };
  const runtime = new MockRuntime(loadComponents(), push);
  const startedAt = Date.now();
  /** The runtimes `/api/runtimes` lists (null: this process alone, as a server hosting its components). */
  let peers = null;
  /** When above 0, a creation is answered at once and the instance exists this many ms later. */
  let lateCreationMs = 0;
  const runtimeList = () =>
    peers ?? [{ runtimeId: 'mock-1', name: 'mock', componentName: [...runtime.components.keys()][0], components: [...runtime.components.keys()], host: '127.0.0.1', port: 0, lastSeen: Date.now(), startedAt, local: true }];
  const seedEntryPoints = () => {
    for (const c of runtime.components.values()) if (c.entryMachineMode === 'singleton') runtime.create(c.name, c.entryMachine, {});
  };
  if (seed) seedEntryPoints();

  const routes = [
    ['GET', /^\/health$/, () => ({ status: 'ok', mode: 'mock', database: true, connectedRuntimes: 1, components: [...runtime.components.keys()] })],
    ['GET', /^\/api\/runtimes$/, () => ({ runtimes: runtimeList() })],
    ['GET', /^\/api\/components$/, () => [...runtime.components.values()]],
    ['GET', /^\/api\/components\/([^/]+)$/, (m) => {
      const c = runtime.components.get(m[1]);
      if (!c) throw new HttpError(404, 'component_not_found', `Component ${m[1]} not found`);
      return c;
    }],
    ['POST', /^\/api\/components\/([^/]+)\/instances$/, (m, body) => {
      if (lateCreationMs > 0) {
        // Like a distributed dashboard: the owner answered, its instance_created event is late.
        runtime.machine(m[1], body.machineName || runtime.components.get(m[1])?.entryMachine);
        const id = randomUUID();
        setTimeout(() => runtime.create(m[1], body.machineName, body.context || {}, { id }), lateCreationMs);
        return { instanceId: id, componentName: m[1] };
      }
      const inst = runtime.create(m[1], body.machineName, body.context || {});
      return { instanceId: inst.id, componentName: inst.componentName };
    }],
    ['POST', /^\/api\/components\/([^/]+)\/broadcast$/, (m, body) => runtime.broadcastEvent(m[1], body)],
    ['GET', /^\/api\/components\/([^/]+)\/diagrams\/([^/]+)$/, (m, _b, q) => runtime.diagram(m[1], m[2], q.currentState)],
    ['GET', /^\/api\/instances$/, (_m, _b, q) => runtime.list(q)],
    ['GET', /^\/api\/instances\/([^/]+)$/, (m) => runtime.detail(m[1])],
    ['POST', /^\/api\/instances\/([^/]+)\/events$/, (m, body) => {
      if (!body.type) throw new HttpError(400, 'missing_type', 'Event type is required');
      return runtime.send(m[1], body.type, body.payload || {});
    }],
    ['GET', /^\/api\/instances\/([^/]+)\/history$/, (m) => runtime.historyOf(m[1])],
    ['GET', /^\/api\/history\/instances$/, (_m, _b, q) => runtime.searchHistory(q)],
    ['GET', /^\/api\/history\/instances\/([^/]+)\/events$/, (m) => runtime.historyOf(m[1])],
    ['GET', /^\/api\/history\/correlated\/([^/]+)$/, (m) => runtime.correlated(m[1])],
    ['GET', /^\/api\/dead-letters$/, (_m, _b, q) => runtime.listDeadLetters(q)],
    ['GET', /^\/api\/dead-letters\/([^/]+)$/, (m) => runtime.deadLetter(m[1])],
    ['POST', /^\/api\/dead-letters\/([^/]+)\/replay$/, (m) => runtime.replayDeadLetter(m[1])],
    ['DELETE', /^\/api\/dead-letters\/([^/]+)$/, (m) => runtime.discardDeadLetter(m[1])],
    ['POST', /^\/__mock\/dead-letter$/, (_m, body) => runtime.addDeadLetter(body)],
    ['POST', /^\/__mock\/no-store$/, (_m, body) => {
      runtime.noStore = Boolean(body.on);
      return { ok: true, noStore: runtime.noStore };
    }],
    ['POST', /^\/__mock\/runtimes$/, (_m, body) => {
      peers = Array.isArray(body.runtimes) ? body.runtimes : null;
      if (body.announce) push('runtimes_update', { runtimes: runtimeList() });
      return { ok: true };
    }],
    ['POST', /^\/__mock\/push$/, (_m, body) => {
      push(body.type, body.data);
      return { ok: true, clients: clients.size };
    }],
    ['POST', /^\/__mock\/late-creations$/, (_m, body) => {
      lateCreationMs = Math.max(0, Number(body.ms) || 0);
      return { ok: true, lateCreationMs };
    }],
    ['POST', /^\/__mock\/mute$/, (_m, body) => {
      muted = Boolean(body.muted);
      return { ok: true, muted };
    }],
    ['POST', /^\/__mock\/reset$/, () => {
      runtime.reset();
      seedEntryPoints();
      return { ok: true };
    }],
  ];

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      for (const [method, re, handler] of routes) {
        const m = url.pathname.match(re);
        if (!m) continue;
        if (req.method !== method) continue;
        const decoded = m.map((x, i) => (i === 0 ? x : decodeURIComponent(x)));
        const body = method === 'POST' ? await readBody(req) : {};
        const answer = await handler(decoded, body, Object.fromEntries(url.searchParams));
        if (answer === NO_CONTENT) {
          res.writeHead(204, { 'Cache-Control': 'no-store' });
          return res.end();
        }
        return sendJson(res, 200, answer);
      }
      if (url.pathname.startsWith('/api/')) throw new HttpError(404, 'not_found', `No route ${req.method} ${url.pathname}`);
      return serveStatic(res, url.pathname);
    } catch (err) {
      const status = err.status || 500;
      return sendJson(res, status, { error: { code: err.code || 'internal', message: err.message } });
    }
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url, 'http://localhost').pathname !== '/ws') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('message', () => {
        /* subscribe messages are accepted and ignored: everything is sent to everyone */
      });
      ws.send(JSON.stringify({ type: 'components_list', data: { components: [...runtime.components.values()] } }));
      ws.send(JSON.stringify({ type: 'runtimes_update', data: { runtimes: runtimeList() } }));
    });
  });

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    runtime,
    push,
    clients,
    /** Drops every WebSocket connection (the page should reconnect by itself). */
    dropClients() {
      for (const ws of clients) ws.terminate();
    },
    close: () =>
      new Promise((resolve) => {
        runtime.reset();
        for (const ws of clients) ws.terminate();
        wss.close();
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] || process.env.PORT || 4310);
  const mock = await startMockServer({ port });
  console.log(`mock xcomponent-ai server on ${mock.url}`);
}
