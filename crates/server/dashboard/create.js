/**
 * The "+ New instance" dialog: a machine picker (the component's entry
 * machine preselected and marked with a star) and a form generated from the machine's
 * `contextSchema`, or a JSON editor when the machine declares none. Server
 * errors (such as 409 for a singleton that already exists) are shown inline.
 */

import { byId, h, mount } from './dom.js';
import { jsonEditor, schemaForm } from './forms.js';

let current = null;

function renderFields() {
  const machine = current.component.stateMachines.find((m) => m.name === byId('create-machine').value);
  const schema = machine?.contextSchema || {};
  const form = schemaForm(schema, machine?.contextSchemaOrder || []);
  if (form.empty) {
    const editor = jsonEditor({ id: 'create-json', label: 'Initial data (JSON)', initial: {}, rows: 6 });
    current.read = () => editor.read();
    mount(byId('create-fields'), h('div', { class: 'field' }, h('label', { for: 'create-json' }, 'Initial data (JSON)'), h('small', { class: 'help' }, 'This machine declares no contextSchema.'), editor.element));
  } else {
    current.read = () => form.read();
    mount(byId('create-fields'), form.element);
  }
  byId('create-error').textContent = '';
}

async function submit(ev) {
  ev.preventDefault();
  if (!current) return;
  const formEl = byId('create-form');
  if (!formEl.reportValidity()) return;
  const result = current.read();
  if (!result.ok) {
    byId('create-error').textContent = result.error;
    return;
  }
  const button = byId('create-submit');
  button.disabled = true;
  byId('create-error').textContent = '';
  try {
    await current.onCreate(byId('create-machine').value, result.value);
    close();
  } catch (err) {
    byId('create-error').textContent = err.message || String(err);
  } finally {
    button.disabled = false;
  }
}

function close() {
  const dialog = byId('create-dialog');
  if (dialog.open) dialog.close();
  current = null;
}

/** Wires the dialog's static controls; call once at start-up. */
export function initCreateDialog() {
  byId('create-form').addEventListener('submit', submit);
  byId('create-machine').addEventListener('change', renderFields);
  byId('create-close').addEventListener('click', close);
  byId('create-cancel').addEventListener('click', close);
  byId('create-dialog').addEventListener('close', () => {
    current = null;
  });
}

/** Opens the dialog for `component` (a full definition); `onCreate(machine, context)` returns a promise. */
export function openCreateDialog(component, onCreate) {
  current = { component, onCreate, read: () => ({ ok: true, value: {} }) };
  const select = byId('create-machine');
  const entry = component.entryMachine;
  mount(
    select,
    component.stateMachines.map((m) =>
      h('option', { value: m.name, selected: m.name === entry }, m.name === entry ? `★ ${m.name} (entry machine)` : m.name),
    ),
  );
  if (!entry && component.stateMachines[0]) select.value = component.stateMachines[0].name;
  byId('create-title').textContent = `New instance · ${component.name}`;
  renderFields();
  byId('create-dialog').showModal();
  const first = byId('create-fields').querySelector('input, select, textarea');
  (first || select).focus();
}
