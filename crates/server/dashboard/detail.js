/**
 * The instance detail panel: current state, status, data (pretty JSON, always
 * as text), pending timeouts with a live countdown, quick-action buttons for
 * the available transitions with a JSON payload editor, the server's reply
 * (transitioned / ignored with the reason) and the instance's recent history.
 */

import { formatDateTime, formatRemaining, h, mount, prettyJson, shortId } from './dom.js';
import { jsonEditor, schemaSkeleton } from './forms.js';
import { historyTable } from './history.js';
import { stateChipClass } from './instances.js';

/** Kept across re-renders of the same instance, so typing is not lost on live updates. */
let editorState = { id: null, editor: null };
let tickTimer = 0;
let expiryHandler = null;

/** Updates every countdown on the page; calls the expiry handler once when one reaches zero. */
function tick() {
  const now = performance.now();
  let expired = false;
  for (const el of document.querySelectorAll('[data-deadline]')) {
    const remaining = Number(el.dataset.deadline) - now;
    const total = Number(el.dataset.total) || 1;
    const text = el.querySelector('.countdown-text');
    const bar = el.querySelector('.countdown-fill');
    if (text) text.textContent = remaining > 0 ? formatRemaining(remaining) : 'due';
    if (bar) bar.style.width = `${Math.max(0, Math.min(100, (remaining / total) * 100)).toFixed(1)}%`;
    if (remaining <= 0 && !el.dataset.fired) {
      el.dataset.fired = '1';
      expired = true;
    }
  }
  if (expired && expiryHandler) setTimeout(expiryHandler, 400);
}

function ensureTicker() {
  if (!tickTimer) tickTimer = setInterval(tick, 250);
}

const TYPE_LABEL = {
  inter_machine: 'creates a child',
  cross_component: 'notifies another component',
  timeout: 'timeout',
  auto: 'automatic',
};

const guardText = (t) => (typeof t.guard === 'string' ? t.guard : t.guard?.expression || '');

/**
 * One button per event. An event with several guarded transitions from this state (such as
 * VALIDATE → Review when a guard holds, else → Validated) lists every possible target.
 */
function actionButtons(detail, onAction, readPayload, busy) {
  const byEvent = new Map();
  for (const t of detail.availableTransitions || []) {
    if (t.type === 'timeout' || t.type === 'auto') continue;
    if (!byEvent.has(t.event)) byEvent.set(t.event, []);
    byEvent.get(t.event).push(t);
  }
  if (detail.awaiting) return h('p', { class: 'muted', 'data-role': 'awaiting' }, 'Created; waiting for the runtime that hosts it to report it.');
  if (detail.status !== 'active' || detail.disposed) return h('p', { class: 'muted' }, 'This instance has ended; it accepts no more events.');
  if (!byEvent.size) return h('p', { class: 'muted' }, 'No event can be sent from this state.');
  return h(
    'div',
    { class: 'actions' },
    [...byEvent.entries()].map(([event, alternatives]) => {
      const t = alternatives[0];
      const kind = ['inter_machine', 'cross_component'].includes(t.type) ? t.type : 'regular';
      const target = t.targetMachine ? ` (${t.targetMachine})` : '';
      const targets = [...new Set(alternatives.map((a) => a.to))];
      const route =
        alternatives.length === 1
          ? `go to ${t.to}`
          : alternatives.map((a, i) => (guardText(a) ? `${i ? 'else ' : ''}go to ${a.to} if ${guardText(a)}` : `${i ? 'otherwise ' : ''}go to ${a.to}`)).join(', ');
      const guards = alternatives.length === 1 ? (guardText(t) ? [`guard: ${guardText(t)}`] : []) : alternatives.map((a) => `→ ${a.to}${guardText(a) ? ` if ${guardText(a)}` : ' otherwise'}`);
      return h(
        'button',
        {
          type: 'button',
          class: `btn btn-action action-${kind}`,
          'data-event': event,
          disabled: busy,
          'aria-label': `Send ${event}: ${route}${TYPE_LABEL[t.type] ? `, ${TYPE_LABEL[t.type]}${target}` : ''}`,
          title: [...guards, TYPE_LABEL[t.type] ? `${TYPE_LABEL[t.type]}${target}` : ''].filter(Boolean).join('\n') || null,
          onClick: () => {
            const payload = readPayload();
            if (payload.ok) onAction(event, payload.value);
          },
        },
        h('span', { class: 'action-event' }, event),
        h('span', { class: 'action-to' }, `→ ${targets.join(' / ')}`),
      );
    }),
  );
}

function replyLine(reply) {
  if (!reply) return null;
  if (reply.error) return h('div', { class: 'reply reply-error', role: 'status' }, h('strong', null, 'Error: '), reply.error);
  if (reply.status === 'accepted') {
    // 202: handed to the runtime hosting the instance; the live feed shows what it does.
    return h('div', { class: 'reply reply-ok', role: 'status' }, h('strong', null, `${reply.event}: `), `sent (message ${shortId(reply.messageId)}); the outcome will show in the live feed`);
  }
  if (reply.outcome === 'transitioned') {
    return h('div', { class: 'reply reply-ok', role: 'status' }, h('strong', null, `${reply.event}: `), `${reply.previousState} → ${reply.newState}`);
  }
  const allowed = (reply.allowedEvents || []).join(', ') || 'none';
  return h(
    'div',
    { class: 'reply reply-ignored', role: 'status' },
    h('strong', null, `${reply.event} ignored`),
    reply.reason ? `: ${reply.reason}` : '',
    h('span', { class: 'reply-allowed' }, ` Allowed: ${allowed}.`),
  );
}

/** The declared duration of a pending timeout: from the server, else from the machine's transition. */
function timeoutTotal(t, detail, machineDef) {
  if (Number(t.timeoutMs) > 0) return Number(t.timeoutMs);
  const declared = machineDef?.transitions?.find((x) => x.event === t.event && x.from === detail.currentState && x.timeoutMs);
  return Number(declared?.timeoutMs) || 0;
}

function timeoutsBlock(detail, machineDef) {
  const list = detail.pendingTimeouts || [];
  if (!list.length) return null;
  ensureTicker();
  return h(
    'section',
    { class: 'block' },
    h('h3', null, 'Pending timeouts'),
    h(
      'ul',
      { class: 'timeouts' },
      list.map((t) => {
        const total = Math.max(t.remainingMs, timeoutTotal(t, detail, machineDef), 1);
        const item = h(
          'li',
          { class: 'countdown', 'data-deadline': String(detail.fetchedAt + t.remainingMs), 'data-total': String(total) },
          h('span', { class: 'countdown-label' }, h('strong', null, t.event), ` → ${t.targetState || '?'}`),
          h('span', { class: 'countdown-bar', 'aria-hidden': 'true' }, h('span', { class: 'countdown-fill' })),
          h('span', { class: 'countdown-text mono', 'aria-label': `remaining before ${t.event}` }, formatRemaining(t.remainingMs)),
        );
        return item;
      }),
    ),
  );
}

/**
 * Renders the panel. ctx: `detail`, `machineDef`, `machines` (Map name → def),
 * `history`, `reply`, `busy`, `onAction(event, payload)`, `onOpenAudit(id)`,
 * `onSelect(id)`, `onExpired()`.
 */
export function renderDetail(el, ctx) {
  const { detail } = ctx;
  expiryHandler = ctx.onExpired || null;
  if (!detail) {
    mount(el, h('div', { class: 'card-head' }, h('h2', { id: 'detail-title' }, 'Instance')), h('p', { class: 'empty' }, 'Select an instance to see its state, data and actions.'));
    return;
  }
  if (editorState.id !== detail.id) {
    editorState = { id: detail.id, editor: jsonEditor({ id: 'payload-editor', label: 'Event payload (JSON)', initial: {}, rows: 3 }) };
  }
  const editor = editorState.editor;
  const interTargets = [...new Set((detail.availableTransitions || []).filter((t) => t.type === 'inter_machine' && t.targetMachine).map((t) => t.targetMachine))];
  const fillers = interTargets
    .filter((m) => Object.keys(ctx.machines.get(m)?.contextSchema || {}).length)
    .map((m) => h('button', { type: 'button', class: 'btn btn-link btn-sm', onClick: () => editor.set(schemaSkeleton(ctx.machines.get(m).contextSchema)) }, `Fill with ${m} fields`));

  const status = detail.disposed ? 'ended' : detail.status;
  mount(
    el,
    h(
      'div',
      { class: 'card-head' },
      h('h2', { id: 'detail-title' }, `${detail.machineName} `, h('span', { class: 'mono muted', title: detail.id }, shortId(detail.id))),
      h(
        'div',
        { class: 'head-actions' },
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'aria-label': 'Copy the full instance id', onClick: () => navigator.clipboard?.writeText(detail.id).catch(() => {}) }, 'Copy id'),
        h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': 'Open the audit trail of this instance', onClick: () => ctx.onOpenAudit(detail.id) }, 'Audit trail'),
      ),
    ),
    h(
      'div',
      { class: 'detail-summary' },
      h('span', { class: `${stateChipClass(ctx.machineDef, detail.currentState, detail.status)} chip-lg`, id: 'detail-state' }, detail.currentState),
      h('span', { class: `status status-${status}` }, status),
      h(
        'dl',
        { class: 'meta' },
        h('div', null, h('dt', null, 'Component'), h('dd', null, detail.componentName)),
        h('div', null, h('dt', null, 'Created'), h('dd', null, formatDateTime(detail.createdAt))),
        h('div', null, h('dt', null, 'Updated'), h('dd', null, formatDateTime(detail.updatedAt))),
        detail.parentInstanceId
          ? h('div', null, h('dt', null, 'Parent'), h('dd', null, h('button', { type: 'button', class: 'btn btn-link', onClick: () => ctx.onSelect(detail.parentInstanceId) }, shortId(detail.parentInstanceId))))
          : null,
      ),
    ),
    h(
      'div',
      { class: 'detail-grid' },
      h(
        'div',
        null,
        h(
          'section',
          { class: 'block' },
          h('h3', null, 'Quick actions'),
          actionButtons(detail, ctx.onAction, () => editor.read(), ctx.busy),
          h('div', { class: 'payload-head' }, h('label', { for: 'payload-editor' }, 'Payload (JSON, optional)'), fillers),
          editor.element,
          replyLine(ctx.reply),
        ),
        timeoutsBlock(detail, ctx.machineDef),
      ),
      h(
        'section',
        { class: 'block' },
        h('h3', null, 'Data'),
        h('pre', { class: 'json', id: 'detail-context', tabindex: '0', 'aria-label': 'Instance data as JSON' }, prettyJson(detail.context)),
      ),
    ),
    h(
      'section',
      { class: 'block' },
      h('h3', null, 'History ', h('span', { class: 'muted small' }, ctx.history ? `${ctx.history.length} event(s), newest first` : 'loading…')),
      ctx.history ? historyTable(ctx.history, { caption: `History of ${detail.id}`, newestFirst: true, compact: true }) : null,
    ),
  );
  if ((detail.pendingTimeouts || []).length) tick();
}
