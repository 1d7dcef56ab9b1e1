// Page 4, one work order: the household's people (resident, phones as tel: links, address,
// caretaker; masked by the API for read-only roles), the callers the intake desk logged (with
// their 12345 ticket numbers), facts and assignee, the three SLA clocks, the event timeline,
// parts and charge, the callback and linked complaints, the field steps (accept, arrive, resolve
// with parts, confirm a misuse claim; steps.js, each sent once) and the operator actions
// (dispatch, reassign, escalate, cancel with a reason, record a callback) that call the API and
// refresh the page; with its facts, the parts the order holds at the points and vans (stock.js).

import { t, code } from './i18n.js';
import { get, post, registry } from './api.js';
import { peopleFacts, phoneLink } from './households.js';
import { stepForms, misuseClaimPending } from './steps.js';
import { heldParts } from './stock.js';
import {
  h,
  fill,
  table,
  panel,
  empty,
  errorBox,
  tag,
  stateTag,
  priorityTag,
  categoryLabel,
  places,
  teams,
  dateTime,
  yuan,
  slaClocks,
  isOpen,
  SLA,
} from './ui.js';

function facts(order, where, teamNames, devicesVisible) {
  const rows = [
    [t('order.summary'), order.summary],
    [
      t('col.device'),
      devicesVisible && !order.device_id.startsWith('request-') ? h('a', { href: `#/device/${encodeURIComponent(order.device_id)}` }, order.device_id) : order.device_id,
    ],
    [t('order.household'), order.household_id || t('common.dash')],
    [t('order.village'), where.village(order.village_id)],
    [t('order.township'), where.township(order.township)],
    [t('col.category'), categoryLabel(order.category)],
    [t('col.source'), [code('source', order.source), order.pre_emptive ? [' ', tag(t('pre_emptive'), 'pre')] : null]],
    [
      t('order.warranty'),
      order.in_warranty === null || order.in_warranty === undefined ? t('common.unknown') : order.in_warranty ? t('order.in_warranty') : t('order.out_of_warranty'),
    ],
    [t('col.created'), dateTime(order.created_at_ms)],
    [t('order.assignee'), h('span', { id: 'order-team', dataset: { teamId: order.team_id || '' } }, teamNames.name(order.team_id))],
    [t('order.technician'), order.technician_id || t('common.dash')],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function stageTimes(order) {
  const rows = [
    ['state.dispatched', order.dispatched_at_ms],
    ['state.accepted', order.accepted_at_ms],
    ['state.on_site', order.on_site_at_ms],
    ['state.resolved', order.resolved_at_ms],
    ['state.closed', order.closed_at_ms],
  ];
  return h('dl', { class: 'facts compact' }, rows.map(([k, v]) => [h('dt', null, t(k)), h('dd', null, dateTime(v))]));
}

function timeline(events) {
  return h(
    'ol',
    { class: 'timeline', id: 'order-timeline' },
    events.map((e) =>
      h(
        'li',
        { dataset: { kind: e.kind }, class: `event-${e.kind}` },
        h('time', { datetime: new Date(e.at_ms).toISOString() }, dateTime(e.at_ms)),
        h('strong', null, code('event', e.kind)),
        h('span', { class: 'muted actor' }, e.actor),
        e.note ? h('p', { class: 'event-note' }, e.note) : null,
      ),
    ),
  );
}

function partsView(detail, partNames) {
  const total = h(
    'dl',
    { class: 'facts compact' },
    h('dt', null, t('order.parts_value')),
    h('dd', null, `¥ ${yuan(detail.parts_cents)}`),
    h('dt', null, t('order.resident_pays')),
    h('dd', { id: 'resident-pays' }, `¥ ${yuan(detail.resident_pays_cents)}`),
    detail.misuse ? [h('dt', null, t('order.misuse')), h('dd', null, t('common.yes'))] : null,
  );
  if (!detail.parts.length) return [empty(t('order.parts_empty')), total];
  return [
    table(
      [
        { label: t('col.part'), cell: ([c]) => [partNames.get(c) || c, ' ', h('code', { class: 'muted' }, c)] },
        { label: t('col.qty'), cell: ([, q]) => String(q), class: 'num' },
        { label: t('col.unit_price'), cell: ([, , p]) => `¥ ${yuan(p)}`, class: 'num' },
        { label: t('col.subtotal'), cell: ([, q, p]) => `¥ ${yuan(q * p)}`, class: 'num' },
      ],
      detail.parts,
      { caption: t('order.parts') },
    ),
    total,
  ];
}

function complaintsView(complaints) {
  if (!complaints.length) return empty(t('order.complaints_empty'));
  return table(
    [
      { label: t('col.time'), cell: (c) => dateTime(c.received_at_ms) },
      { label: t('col.channel'), cell: (c) => code('source', c.channel) },
      { label: t('col.text'), cell: (c) => c.text || t('common.dash') },
      { label: t('col.linked'), cell: (c) => (c.linked ? t('common.yes') : t('common.no')) },
    ],
    complaints,
    { caption: t('order.complaints') },
  );
}

/** The callers the intake desk logged about the order, each with the number to ring back. */
function requestsView(requests) {
  if (!requests || !requests.length) return empty(t('intake.no_requests'));
  return table(
    [
      { label: t('col.time'), cell: (r) => dateTime(r.received_at_ms) },
      { label: t('intake.kind'), cell: (r) => code('request', r.kind) },
      { label: t('col.channel'), cell: (r) => code('source', r.channel) },
      { label: t('intake.ticket'), cell: (r) => (r.ticket ? h('code', { class: 'ticket' }, r.ticket) : t('common.dash')) },
      { label: t('intake.caller'), cell: (r) => [r.caller_name, ' ', phoneLink(r.caller_phone, r.masked)] },
      { label: t('col.text'), cell: (r) => r.text || t('common.dash') },
    ],
    requests,
    { caption: t('intake.requests'), rowAttrs: (r) => ({ dataset: { requestId: r.id } }), className: 'order-requests' },
  );
}

function teamOptions(teamList, order, { auto }) {
  const covering = teamList.filter((team) => team.townships.includes(order.township));
  const others = teamList.filter((team) => !team.townships.includes(order.township));
  const option = (team) => h('option', { value: team.id, selected: team.id === order.team_id && !auto }, `${team.name} (${code('team', team.kind)})`);
  return [
    auto ? h('option', { value: '' }, t('order.auto_route')) : null,
    covering.length ? h('optgroup', { label: t('order.covering') }, covering.map(option)) : null,
    others.length ? h('optgroup', { label: t('order.other_teams') }, others.map(option)) : null,
  ];
}

/** A small form for one action; `fields` are [label, control] pairs; `submit` returns the body. */
function actionForm(id, title, fields, buttonText, submit, { danger } = {}) {
  return h(
    'form',
    {
      class: `action ${danger ? 'danger' : ''}`,
      id: `action-${id}`,
      onsubmit: async (event) => {
        event.preventDefault();
        const button = event.target.querySelector('button[type=submit]');
        button.disabled = true;
        try {
          await submit();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h3', null, title),
    fields.map(([label, control]) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control)),
    h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, buttonText),
  );
}

/** The forms of the actions on `order`: the field `steps` first; the desk's unless `fieldOnly`. */
function actions(order, teamList, act, steps, fieldOnly) {
  const forms = [...steps];
  const open = isOpen(order) && !fieldOnly;
  if (order.state === 'created' && !fieldOnly) {
    const team = h('select', { id: 'dispatch-team' }, teamOptions(teamList, order, { auto: true }));
    forms.push(
      actionForm('dispatch', t('order.dispatch'), [[t('order.dispatch_team'), team]], t('order.dispatch'), () =>
        act('dispatch', t('order.dispatch'), team.value ? { team_id: team.value } : {}),
      ),
    );
  }
  if (['dispatched', 'accepted'].includes(order.state) && !fieldOnly) {
    const team = h('select', { id: 'reassign-team', required: true }, teamOptions(teamList, order, { auto: false }));
    const reason = h('input', { id: 'reassign-reason', type: 'text', required: true, autocomplete: 'off' });
    forms.push(
      actionForm(
        'reassign',
        t('order.reassign'),
        [
          [t('order.reassign_team'), team],
          [t('order.reason'), reason],
        ],
        t('order.reassign'),
        () => act('reassign', t('order.reassign'), { team_id: team.value, reason: reason.value.trim() }),
      ),
    );
  }
  if (order.state === 'resolved' && !fieldOnly) {
    const score = h('select', { id: 'callback-score' }, [5, 4, 3, 2, 1].map((n) => h('option', { value: String(n) }, `${n} / 5`)));
    const solved = h('input', { id: 'callback-solved', type: 'checkbox', checked: true });
    const note = h('input', { id: 'callback-note', type: 'text', autocomplete: 'off' });
    forms.push(
      actionForm(
        'callback',
        t('order.callback_do'),
        [
          [t('order.satisfaction'), score],
          [t('order.solved'), solved],
          [t('col.note'), note],
        ],
        t('order.callback_do'),
        () => act('callback', t('order.callback_do'), { satisfaction: Number(score.value), solved: solved.checked, note: note.value.trim() }),
      ),
    );
  }
  if (open) {
    const note = h('input', { id: 'escalate-note', type: 'text', autocomplete: 'off' });
    forms.push(
      actionForm('escalate', t('order.escalate'), [[t('order.escalate_note'), note]], t('order.escalate'), () =>
        act('escalate', t('order.escalate'), { note: note.value.trim() }),
      ),
    );
    const reason = h('input', { id: 'cancel-reason', type: 'text', required: true, autocomplete: 'off' });
    forms.push(
      actionForm('cancel', t('order.cancel'), [[t('order.cancel_reason'), reason]], t('order.cancel'), () => act('cancel', t('order.cancel'), { reason: reason.value.trim() }), {
        danger: true,
      }),
    );
  }
  return forms.length ? h('div', { class: 'actions' }, forms) : empty(t('order.actions_none'));
}

export async function mount(main, [id], _query, ctx) {
  const held = () => get(`/orders/${id}/parts`).catch(() => []);
  const [where, teamNames, parts, first, firstHeld] = await Promise.all([places(), teams(), registry('parts').catch(() => []), get(`/orders/${id}`), held()]);
  const partNames = new Map(parts.map((p) => [p.code, p.name]));
  const role = ctx.session.role;
  const canAct = role === 'district' || role === 'township' || role === 'team';
  const status = h('p', { class: 'action-status', id: 'action-status', role: 'status', 'aria-live': 'polite' });
  const box = () => h('div');
  const head = h('span', { class: 'head-tags', id: 'order-state' });
  const [factsBox, heldBox, peopleBox, requestsBox, clocksBox, actionsBox, timelineBox, partsBox, callbackBox, complaintsBox] = [
    box(),
    box(),
    box(),
    box(),
    box(),
    box(),
    box(),
    box(),
    box(),
    box(),
  ];
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('order.title', { id })), head, h('a', { href: '#/', class: 'back' }, `← ${t('nav.live')}`)),
    h(
      'div',
      { class: 'two-col' },
      h(
        'div',
        null,
        panel(t('people.title'), { id: 'order-household' }, peopleBox),
        panel(t('intake.requests'), { id: 'order-requests' }, requestsBox),
        panel(t('order.facts'), null, factsBox, h('h3', null, t('order.held')), heldBox),
      ),
      h(
        'div',
        null,
        panel(t('order.clocks'), { id: 'order-clocks' }, clocksBox),
        canAct ? panel(t('order.actions'), { id: 'order-actions' }, status, actionsBox) : null,
      ),
    ),
    h(
      'div',
      { class: 'two-col' },
      panel(t('order.timeline'), null, timelineBox),
      h('div', null, panel(t('order.parts'), null, partsBox), panel(t('order.callback'), null, callbackBox), panel(t('order.complaints'), null, complaintsBox)),
    ),
  );

  // Only the parts that changed are redrawn; the action forms only when the order's state or
  // team changed, so a live update never wipes what the operator is typing.
  let actionsKey = null;
  let mounted = true;
  const act = async (action, label, body) => {
    try {
      await post(`/orders/${id}/${action}`, body);
      status.textContent = t('order.done', { action: label });
      status.className = 'action-status ok';
      await refresh();
    } catch (error) {
      status.textContent = t('order.failed', { message: error.message });
      status.className = 'action-status failed';
    }
  };
  function draw(detail, holds) {
    head.dataset.state = detail.state;
    fill(head, stateTag(detail.state), ' ', priorityTag(detail.priority), detail.pre_emptive ? [' ', tag(t('pre_emptive'), 'pre')] : null);
    fill(factsBox, facts(detail, where, teamNames, ctx.session.role !== 'team'));
    fill(heldBox, heldParts(holds, partNames, where));
    fill(peopleBox, detail.household ? peopleFacts(detail.household) : empty(t('people.none')));
    fill(
      clocksBox,
      slaClocks(detail),
      h('p', { class: 'legend muted' }, SLA.stages.map((stage) => `${t(`sla.${stage.key}`)} ≤ ${t('common.minutes', { n: stage.deadlineMs / 60000 })}`).join(' · ')),
      stageTimes(detail),
    );
    const claimPending = misuseClaimPending(detail.events);
    const key = `${detail.state}|${detail.team_id}|${claimPending}`;
    if (canAct && key !== actionsKey) {
      actionsKey = key;
      const steps = stepForms(detail, { role, parts, claimPending, idBase: 'action', status, done: refresh });
      fill(actionsBox, actions(detail, teamNames.list, act, steps, role === 'team'));
    }
    fill(requestsBox, requestsView(detail.requests));
    fill(timelineBox, timeline(detail.events));
    fill(partsBox, partsView(detail, partNames));
    fill(callbackBox, detail.satisfaction ? h('p', { id: 'order-satisfaction' }, `${t('order.satisfaction')}: ${detail.satisfaction} / 5`) : empty(t('order.no_callback')));
    fill(complaintsBox, complaintsView(detail.complaints));
  }
  async function refresh() {
    const [detail, holds] = await Promise.all([get(`/orders/${id}`), held()]);
    // A refresh still waiting for the API when the operator has moved on must not draw.
    if (mounted) draw(detail, holds);
  }

  draw(first, firstHeld);
  let pending = null;
  const unsubscribe = ctx.onStream((notice) => {
    if (notice && String(notice.order_id) !== String(id)) return;
    window.clearTimeout(pending);
    pending = window.setTimeout(() => {
      refresh().catch((error) => {
        if (mounted) fill(timelineBox, errorBox(error));
      });
    }, 300);
  });
  return () => {
    mounted = false;
    unsubscribe();
    window.clearTimeout(pending);
  };
}
