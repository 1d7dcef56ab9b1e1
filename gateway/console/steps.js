// The field steps on an order, shared by the technician's phone view and the order page: accept,
// arrive, resolve with parts from the unified price list (the gateway computes the charge) and a
// misuse finding with a note, and an operator's confirmation of a misuse claim. Each step is sent
// once (api.postStep: one Idempotency-Key per step, retried with it over a flaky connection).

import { t } from './i18n.js';
import { postStep } from './api.js';
import { h, yuan } from './ui.js';

/** Longest note a step carries. */
const MAX_NOTE = 500;

/** Whether a misuse claim awaits an operator: the latest of resolved / claimed / confirmed is a claim. */
export function misuseClaimPending(events) {
  let last = null;
  for (const e of events || []) {
    if (['resolved', 'misuse_claimed', 'misuse_confirmed'].includes(e.kind)) last = e.kind;
  }
  return last === 'misuse_claimed';
}

function partRow(parts, idBase, index) {
  const select = h(
    'select',
    { id: `${idBase}-part-${index}`, class: 'part-code', 'aria-label': t('col.part') },
    h('option', { value: '' }, t('steps.choose_part')),
    parts.map((p) => h('option', { value: p.code }, `${p.name} · ¥ ${yuan(p.price_cents)}`)),
  );
  const quantity = h('input', {
    id: `${idBase}-qty-${index}`,
    class: 'part-qty',
    type: 'number',
    min: '1',
    max: '100',
    value: '1',
    inputmode: 'numeric',
    'aria-label': t('col.qty'),
  });
  return h('div', { class: 'part-row' }, select, quantity);
}

function resolveFields(parts, idBase) {
  const rows = h('div', { class: 'part-rows', id: `${idBase}-parts` }, partRow(parts, idBase, 0));
  const more = h(
    'button',
    {
      type: 'button',
      class: 'add-part',
      id: `${idBase}-add-part`,
      onclick: () => {
        if (rows.children.length < 50) rows.appendChild(partRow(parts, idBase, rows.children.length));
      },
    },
    t('steps.add_part'),
  );
  const misuse = h('input', { id: `${idBase}-misuse`, type: 'checkbox' });
  const note = h('input', { id: `${idBase}-note`, type: 'text', maxlength: String(MAX_NOTE), autocomplete: 'off' });
  // A misuse claim says what was found: the operator who confirms it reads the note.
  misuse.addEventListener('change', () => {
    note.required = misuse.checked;
  });
  const body = () => ({
    parts: Array.from(rows.querySelectorAll('.part-row'))
      .map((row) => ({
        code: row.querySelector('select').value,
        quantity: Math.min(100, Math.max(1, Math.round(Number(row.querySelector('input').value) || 1))),
      }))
      .filter((p) => p.code),
    misuse: misuse.checked,
    note: note.value.trim(),
  });
  const fields = [
    h('div', { class: 'field' }, h('span', { class: 'label' }, t('steps.parts')), rows, more),
    h('div', { class: 'field check' }, misuse, h('label', { for: misuse.id }, t('steps.misuse'))),
    h('p', { class: 'hint muted' }, t('steps.misuse_hint')),
    h('div', { class: 'field' }, h('label', { for: note.id }, t('steps.note')), note),
  ];
  return { fields, body };
}

/**
 * The step forms `role` may use on `order` now: `district` (an operator) every step and the
 * misuse confirmation, `team` the field steps. `status` shows the outcome; `done(row)` runs after
 * a step was applied (or its first answer returned again).
 */
export function stepForms(order, { role, parts, claimPending, idBase, status, done }) {
  const fieldRole = role === 'district' || role === 'team';
  const send = async (action, body) => {
    status.textContent = t('steps.sending');
    status.className = 'action-status';
    let row;
    try {
      row = await postStep(`/orders/${order.id}/${action}`, body);
    } catch (error) {
      status.textContent = t('order.failed', { message: error.message });
      status.className = 'action-status failed';
      return;
    }
    status.textContent = t('order.done', { action: t(`steps.${action}`) });
    status.className = 'action-status ok';
    try {
      await done(row);
    } catch (_) {
      // The step is recorded; the page shows the new state at its next successful refresh.
    }
  };
  const form = (action, fields, body) =>
    h(
      'form',
      {
        class: 'action step',
        id: `${idBase}-${action}`,
        dataset: { step: action },
        onsubmit: async (event) => {
          event.preventDefault();
          const button = event.target.querySelector('button[type=submit]');
          button.disabled = true;
          try {
            await send(action, body());
          } finally {
            button.disabled = false;
          }
        },
      },
      h('h3', null, t(`steps.${action}`)),
      fields,
      h('button', { type: 'submit', class: 'primary big' }, t(`steps.${action}`)),
    );
  const forms = [];
  if (fieldRole && order.state === 'dispatched') forms.push(form('accept', [h('p', { class: 'hint muted' }, t('steps.accept_hint'))], () => ({})));
  if (fieldRole && order.state === 'accepted') forms.push(form('arrive', [h('p', { class: 'hint muted' }, t('steps.arrive_hint'))], () => ({})));
  if (fieldRole && order.state === 'on_site') {
    const { fields, body } = resolveFields(parts, `${idBase}-resolve`);
    forms.push(form('resolve', fields, body));
  }
  if (role === 'district' && claimPending && ['resolved', 'callback_done'].includes(order.state)) {
    const note = h('input', { id: `${idBase}-confirm-note`, type: 'text', maxlength: String(MAX_NOTE), autocomplete: 'off' });
    forms.push(form('confirm_misuse', [h('p', { class: 'hint muted' }, t('steps.confirm_hint')), h('div', { class: 'field' }, h('label', { for: note.id }, t('steps.note')), note)], () => ({ note: note.value.trim() })));
  }
  return forms;
}
