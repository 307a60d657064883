/**
 * Forms generated from a machine's `contextSchema`, and the JSON payload editor.
 *
 * Field types: text/string (default), number/integer, select (options as plain
 * values or `{value, label}`), boolean, array (JSON or comma-separated) and
 * object/json. `required`, `min`, `max`, `pattern` and `placeholder` become the
 * native input attributes, so the browser validates and explains errors.
 */

import { h } from './dom.js';

let formSeq = 0;

function optionList(options) {
  return (options || []).map((opt) =>
    opt !== null && typeof opt === 'object' ? { value: opt.value, label: opt.label ?? String(opt.value) } : { value: opt, label: String(opt) },
  );
}

function inputFor(name, field, id) {
  const type = String(field.type || 'text').toLowerCase();
  const common = { id, name, required: Boolean(field.required), placeholder: field.placeholder || null };
  const def = field.default;
  switch (type) {
    case 'number':
    case 'integer':
    case 'float':
      return h('input', {
        ...common,
        type: 'number',
        step: type === 'integer' ? '1' : 'any',
        min: field.min ?? null,
        max: field.max ?? null,
        value: def ?? '',
        'data-kind': 'number',
      });
    case 'select': {
      const opts = optionList(field.options);
      const select = h('select', { ...common, 'data-kind': 'select' });
      if (!field.required || def === undefined) select.appendChild(h('option', { value: '' }, field.placeholder || '— choose —'));
      opts.forEach((opt, i) => select.appendChild(h('option', { value: String(i), selected: def !== undefined && opt.value === def }, opt.label)));
      select.xcOptions = opts;
      return select;
    }
    case 'boolean':
    case 'bool':
    case 'checkbox':
      return h('input', { id, name, type: 'checkbox', checked: def === true, 'data-kind': 'boolean' });
    case 'array':
      return h('input', {
        ...common,
        type: 'text',
        placeholder: field.placeholder || 'a, b, c  or  ["a","b"]',
        value: Array.isArray(def) ? def.join(', ') : '',
        'data-kind': 'array',
      });
    case 'object':
    case 'json':
      return h('textarea', { ...common, rows: '3', class: 'mono', 'data-kind': 'json' }, def ? JSON.stringify(def, null, 2) : '');
    default:
      return h('input', {
        ...common,
        type: 'text',
        pattern: field.pattern || null,
        title: field.pattern ? `Must match ${field.pattern}` : null,
        value: def ?? '',
        'data-kind': 'text',
      });
  }
}

/** Reads one input back into a typed value; `undefined` means "leave the key out". */
function readInput(input) {
  const kind = input.dataset.kind;
  if (kind === 'boolean') return input.checked;
  const raw = input.value;
  if (raw === '') return undefined;
  switch (kind) {
    case 'number':
      return Number.parseFloat(raw);
    case 'select':
      return input.xcOptions[Number(raw)]?.value;
    case 'array':
      if (raw.trim().startsWith('[')) return JSON.parse(raw);
      return raw.split(',').map((x) => x.trim()).filter(Boolean);
    case 'json':
      return JSON.parse(raw);
    default:
      return raw;
  }
}

/**
 * Builds the fields for `schema` (`{field: {type, label, required, …}}`).
 * Returns `{element, read}`; `read()` gives `{ok, value}` or `{ok:false, error}`.
 */
export function schemaForm(schema, order = []) {
  const prefix = `f${++formSeq}`;
  // The server sends the YAML order of the fields beside the schema (JSON objects lose it).
  const rank = (name) => {
    const at = order.indexOf(name);
    return at < 0 ? order.length : at;
  };
  const entries = Object.entries(schema || {}).sort(([a], [b]) => rank(a) - rank(b));
  const inputs = [];
  const element = h('div', { class: 'form-grid' });
  for (const [name, field] of entries) {
    const id = `${prefix}-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const f = field || {};
    const input = inputFor(name, f, id);
    inputs.push({ name, input });
    const label = h('label', { for: id }, f.label || name, f.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null);
    const help = f.description ? h('small', { class: 'help' }, f.description) : null;
    const isBool = input.dataset.kind === 'boolean';
    element.appendChild(
      h('div', { class: `field${isBool ? ' field-inline' : ''}` }, isBool ? [input, label] : [label, input], help),
    );
  }
  return {
    element,
    empty: entries.length === 0,
    read() {
      const value = {};
      for (const { name, input } of inputs) {
        try {
          const v = readInput(input);
          if (v !== undefined && !(typeof v === 'number' && Number.isNaN(v))) value[name] = v;
        } catch {
          input.focus();
          return { ok: false, error: `${name}: invalid JSON` };
        }
      }
      return { ok: true, value };
    },
  };
}

/** A JSON textarea with a parse check; `read()` → `{ok, value}` or `{ok:false, error}`. */
export function jsonEditor({ id, label, initial = {}, rows = 4 }) {
  const area = h('textarea', { id, class: 'mono json-editor', rows: String(rows), spellcheck: 'false', 'aria-label': label });
  area.value = initial === undefined ? '' : JSON.stringify(initial, null, 2);
  const error = h('div', { class: 'field-error', role: 'alert' });
  const element = h('div', { class: 'json-field' }, area, error);
  return {
    element,
    area,
    set(value) {
      area.value = JSON.stringify(value ?? {}, null, 2);
      error.textContent = '';
    },
    read() {
      const text = area.value.trim();
      if (!text) return { ok: true, value: {} };
      try {
        const value = JSON.parse(text);
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('must be a JSON object');
        error.textContent = '';
        return { ok: true, value };
      } catch (err) {
        error.textContent = `Invalid payload: ${err.message}`;
        area.focus();
        return { ok: false, error: error.textContent };
      }
    },
  };
}

/** A skeleton payload for a schema: each field with its default or an empty value. */
export function schemaSkeleton(schema) {
  const out = {};
  for (const [name, field] of Object.entries(schema || {})) {
    const f = field || {};
    if (f.default !== undefined) out[name] = f.default;
    else if (f.type === 'number' || f.type === 'integer') out[name] = 0;
    else if (f.type === 'boolean') out[name] = false;
    else if (f.type === 'array') out[name] = [];
    else out[name] = '';
  }
  return out;
}
