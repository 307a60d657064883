/**
 * Small, safe DOM helpers shared by every dashboard module.
 *
 * Every piece of text coming from the server is inserted with `textContent` or
 * as an attribute value through `setAttribute`; nothing here ever parses HTML,
 * so instance data (contexts, payloads, names) can never become markup.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Applies an attribute map to an element: `on*` functions become listeners, `class`/`dataset` handled specially. */
function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

/** Appends children: strings/numbers become text nodes, arrays are flattened, null/false skipped. */
function appendAll(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendAll(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Creates an HTML element: `h('button', {class: 'btn', onClick}, 'Label')`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Creates an SVG element with the same conventions as `h`. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Replaces all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

/** `document.getElementById` that fails loudly when the page layout changed. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * 8 characters of an id, the way ids are shown everywhere in the UI. For a UUID they are
 * the last 8 (random in every version): the server's ids are UUID v7, whose first
 * characters are a timestamp shared by everything created in the same minute.
 * Other ids keep their first 8 characters.
 */
export function shortId(id) {
  if (!id) return '—';
  const text = String(id);
  return UUID.test(text) ? text.slice(-8) : text.slice(0, 8);
}

/** Parses a timestamp given as epoch milliseconds or as an ISO string. */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const date = new Date(typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** `HH:MM:SS.mmm` in local time. */
export function formatTime(value) {
  const date = toDate(value);
  if (!date) return '—';
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** `YYYY-MM-DD HH:MM:SS` in local time. */
export function formatDateTime(value) {
  const date = toDate(value);
  if (!date) return '—';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** "3s ago", "5 min ago"… for list rows. */
export function formatAgo(value, now = Date.now()) {
  const date = toDate(value);
  if (!date) return '';
  const secs = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return formatDateTime(value);
}

/** A countdown such as `1:05` or `12.3s`. */
export function formatRemaining(ms) {
  const clamped = Math.max(0, ms);
  if (clamped < 10000) return `${(clamped / 1000).toFixed(1)}s`;
  const total = Math.ceil(clamped / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** A millisecond duration for badges: `500ms`, `30s`, `5m`, `2h`. */
export function formatDuration(ms) {
  if (ms === undefined || ms === null) return '';
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60000) return `${+(ms / 1000).toFixed(1)}s`;
  if (ms < 3600000) return `${+(ms / 60000).toFixed(1)}m`;
  return `${+(ms / 3600000).toFixed(1)}h`;
}

/** Pretty JSON for display (always put into the page with textContent). */
export function prettyJson(value) {
  try {
    return JSON.stringify(value ?? {}, null, 2);
  } catch {
    return String(value);
  }
}

/** One-line JSON preview, cut to `max` characters. */
export function compactJson(value, max = 80) {
  if (value === undefined || value === null) return '';
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === '{}' || text === '[]') return '';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Turns a machine-readable value (string, number, object) into a short display string. */
export function displayValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') return compactJson(value, 60);
  return String(value);
}

let toastTimer = 0;

/** Shows a transient message in the toast area (`kind`: info | success | error). */
export function toast(message, kind = 'info') {
  const area = document.getElementById('toast');
  if (!area) return;
  area.className = `toast toast-${kind} is-visible`;
  area.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => area.classList.remove('is-visible'), kind === 'error' ? 6000 : 3500);
}

/** Hides the toast at once if it shows a message of `kind` (a stale error once things work again). */
export function dismissToast(kind) {
  const area = document.getElementById('toast');
  if (area?.classList.contains(`toast-${kind}`)) area.classList.remove('is-visible');
}

export const FONT_STACK = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
let measureCanvas = null;

/** Width in px of `text` drawn with the CSS font shorthand `font` (e.g. `600 13px …`). */
export function textWidth(text, font) {
  measureCanvas ||= document.createElement('canvas');
  const ctx = measureCanvas.getContext('2d');
  ctx.font = font;
  return ctx.measureText(String(text)).width;
}
