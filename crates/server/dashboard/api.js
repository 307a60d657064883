/**
 * Client for the xcomponent-ai server: REST calls and the live WebSocket feed.
 *
 * REST responses are normalised here (a bare list or a `{items|components|events…}`
 * wrapper both work), so the views only deal with plain arrays and objects.
 * The WebSocket client reconnects by itself with a bounded, jittered backoff.
 */

const base = document.querySelector('meta[name="xc-api-base"]')?.getAttribute('content') || '';

/** An HTTP error carrying the server's `{error:{code,message}}` when there is one. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Key under which the API token (servers started with --token) is kept for this tab. */
const TOKEN_KEY = 'xc-api-token';

async function send(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(base + path, init);
}

async function request(method, path, body) {
  let res = await send(method, path, body);
  let tokenGiven = false;
  if (res.status === 401) {
    // The server requires a bearer token for changes: ask once, keep it for this tab, retry.
    const token = window.prompt('This server requires an API token for changes (XCOMPONENT_API_TOKEN):');
    if (token?.trim()) {
      tokenGiven = true;
      sessionStorage.setItem(TOKEN_KEY, token.trim());
      // The live feed needs the token too (the server refuses /ws without it): reconnect it.
      window.dispatchEvent(new Event('xc-token'));
      res = await send(method, path, body);
    }
  }
  // A refused token is not kept: the next change asks again.
  if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const err = data && typeof data === 'object' ? data.error : null;
    let message = (err && (err.message || (typeof err === 'string' ? err : ''))) || `${res.status} ${res.statusText}`;
    if (res.status === 401) message = `${tokenGiven ? 'the API token was refused' : 'this server requires an API token for changes'} (${message})`;
    // The server sends `{error: "message", code}`; older shapes nest `{error: {code, message}}`.
    throw new ApiError(res.status, err?.code || data?.code || String(res.status), message);
  }
  return data;
}

/** Builds a query string, leaving out empty values. */
function query(params) {
  const qs = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') qs.set(key, String(value));
  }
  const text = qs.toString();
  return text ? `?${text}` : '';
}

/** Returns the first array found among `keys` of `data`, or `data` itself when it is an array. */
function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (data && Array.isArray(data[key])) return data[key];
  return [];
}

const enc = encodeURIComponent;

/** A stored event with the field names the views use, whatever casing the server picked. */
export function normalizeEvent(ev) {
  const pick = (...keys) => keys.map((k) => ev[k]).find((v) => v !== undefined && v !== null);
  return {
    ...ev,
    id: pick('id', 'eventId', 'event_id'),
    instanceId: pick('instanceId', 'instance_id'),
    seq: pick('seq', 'sequence'),
    eventType: pick('eventType', 'event_type', 'type') ?? '',
    stateBefore: pick('stateBefore', 'state_before', 'fromState') || null,
    stateAfter: pick('stateAfter', 'state_after', 'toState') || null,
    componentName: pick('componentName', 'component_name', 'component') ?? '',
    machineName: pick('machineName', 'machine_name', 'machine') ?? '',
    causationId: pick('causationId', 'causation_id') ?? null,
    correlationId: pick('correlationId', 'correlation_id') ?? null,
    sourceComponent: pick('sourceComponent', 'source_component', 'sourceComponentName') ?? null,
    timestamp: pick('timestamp', 'persistedAt', 'createdAt'),
  };
}

const events = (data) => listOf(data, 'events', 'history', 'items').map(normalizeEvent);

export const api = {
  health: () => request('GET', '/health'),
  /** The runtimes this server knows (`{runtimes}` or a bare list). */
  runtimes: async () => listOf(await request('GET', '/api/runtimes'), 'runtimes', 'items'),
  components: async () => listOf(await request('GET', '/api/components'), 'components', 'items'),
  component: (name) => request('GET', `/api/components/${enc(name)}`),
  createInstance: (component, machineName, context) =>
    request('POST', `/api/components/${enc(component)}/instances`, { machineName, context }),
  /** `{items, nextCursor}` */
  instances: async (params) => {
    const data = await request('GET', `/api/instances${query(params)}`);
    return { items: listOf(data, 'items'), nextCursor: data?.nextCursor ?? null };
  },
  instance: async (id) => {
    const data = await request('GET', `/api/instances/${enc(id)}`);
    return data && data.instance && !data.id ? { ...data.instance, ...data, instance: undefined } : data;
  },
  sendEvent: (id, type, payload) => request('POST', `/api/instances/${enc(id)}/events`, { type, payload }),
  broadcast: (component, body) => request('POST', `/api/components/${enc(component)}/broadcast`, body),
  history: async (id) => events(await request('GET', `/api/instances/${enc(id)}/history`)),
  historyEvents: async (id) => events(await request('GET', `/api/history/instances/${enc(id)}/events`)),
  searchHistory: async (params) =>
    listOf(await request('GET', `/api/history/instances${query(params)}`), 'items'),
  correlated: async (id) => events(await request('GET', `/api/history/correlated/${enc(id)}`)),
  /** `{items, nextCursor}` of messages that could not be applied. */
  deadLetters: async (params) => {
    const data = await request('GET', `/api/dead-letters${query(params)}`);
    return { items: listOf(data, 'items'), nextCursor: data?.nextCursor ?? null };
  },
  /** `{messageId, outcome: delivered | dead_again | pending, deadLetter?}` */
  replayDeadLetter: (id) => request('POST', `/api/dead-letters/${enc(id)}/replay`),
  discardDeadLetter: (id) => request('DELETE', `/api/dead-letters/${enc(id)}`),
};

/**
 * A self-reconnecting WebSocket feed.
 *
 * `onMessage({type, data})` gets every server message; `onStatus(state)` gets
 * `connecting | open | closed`. Backoff doubles from 500 ms to 15 s, with jitter,
 * and resets after a successful connection.
 */
export class LiveFeed {
  constructor({ onMessage, onStatus, onOpen }) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onOpen = onOpen;
    this.attempt = 0;
    this.socket = null;
    this.timer = 0;
    this.stopped = false;
    /** Whether the user was asked for the token since the feed last opened. */
    this.tokenAsked = false;
  }

  url() {
    // Browsers cannot set headers on a WebSocket: the token goes as ?token=.
    const token = sessionStorage.getItem(TOKEN_KEY);
    const path = `${base}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`;
    if (/^https?:/.test(path)) return path.replace(/^http/, 'ws');
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
  }

  start() {
    this.stopped = false;
    // A token given for a change also opens a feed that was refused without one.
    window.addEventListener('xc-token', () => {
      if (this.socket?.readyState !== WebSocket.OPEN) this.reconnectNow();
    });
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus('connecting');
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.attempt = 0;
      this.onStatus('open');
      this.send({ type: 'subscribe' });
      this.onOpen?.();
    });
    socket.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg.type === 'string') this.onMessage(msg);
    });
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      this.tokenAsked = false;
    });
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onStatus('closed');
      if (!opened) this.askTokenIfRefused();
      this.scheduleReconnect();
    });
  }

  /**
   * A handshake that never opened may have been refused for want of the API token (servers
   * started with --token require it on the live feed). Browsers hide a refused handshake's
   * status, so ask the server with a plain GET; on 401, ask the user once for the token, keep it
   * for the tab and reconnect. Dismissing the prompt stops the asking until the feed opens.
   */
  async askTokenIfRefused() {
    if (this.tokenAsked) return;
    let status = 0;
    try {
      status = (await fetch(this.url().replace(/^ws/, 'http'), { method: 'GET' })).status;
    } catch {
      return;
    }
    if (status !== 401 || this.tokenAsked) return;
    this.tokenAsked = true;
    sessionStorage.removeItem(TOKEN_KEY);
    const token = window.prompt('This server requires an API token for the live feed and for changes (XCOMPONENT_API_TOKEN):');
    if (token?.trim()) {
      sessionStorage.setItem(TOKEN_KEY, token.trim());
      this.reconnectNow();
    }
  }

  /** Delay before the next attempt: 500 ms × 2^n, capped at 15 s, ±20 % jitter. */
  nextDelay() {
    const raw = Math.min(15000, 500 * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    return Math.round(raw * (0.8 + Math.random() * 0.4));
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const delay = this.nextDelay();
    this.onStatus('closed', delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnects right away (used by the status button). */
  reconnectNow() {
    this.attempt = 0;
    if (this.socket) this.socket.close();
    else this.connect();
  }

  send(msg) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(msg));
  }
}
