// Page 6, the intake desk (统一接待): the call form of the hotline desk. It finds the caller's
// household while the operator types (phone or its last digits, 老王, village: the households
// search), shows the household's people, devices, open orders, recent alerts and requests, and
// logs the request with its kind, channel and the channel's ticket number (12345 工单号); a
// caller without a registered device gives name, phone and village. Each kind shows the scheme's
// response rule; unanswered requests are listed to be answered. A request is sent once
// (api.postStep), so a double click or a retry never logs a call twice.

import { t, code } from './i18n.js';
import { get, postStep } from './api.js';
import { peopleFacts, phoneLink } from './households.js';
import { h, fill, table, panel, empty, errorBox, tag, stateTag, priorityTag, places, dateTime, celsius } from './ui.js';

const KINDS = ['repair', 'policy', 'charge', 'conversion', 'service_complaint', 'other'];
const CHANNELS = ['hotline_12345', 'centre_hotline', 'app', 'sms_wechat', 'walk_in', 'technician'];
const MAX_TEXT = 2000;

function resultList(page, choose) {
  if (!page.items.length) return empty(t('households.none'));
  return h(
    'ul',
    { class: 'intake-results' },
    page.items.map((x) =>
      h(
        'li',
        { dataset: { householdId: x.id } },
        h(
          'button',
          { type: 'button', class: 'result', onclick: () => choose(x.id) },
          h('strong', null, x.resident),
          x.vulnerable ? [' ', tag(t('people.vulnerable'), 'vulnerable')] : null,
          ' · ',
          x.phones.map((p, i) => [i ? ', ' : null, phoneLink(p, true).textContent]),
          h('span', { class: 'muted' }, ` · ${x.village_name} · ${x.address}`),
        ),
      ),
    ),
  );
}

function devicesView(devices) {
  if (!devices.length) return empty(t('intake.no_devices'));
  return table(
    [
      { label: t('col.device'), cell: (d) => h('a', { href: `#/device/${encodeURIComponent(d.device_id)}` }, d.device_id) },
      { label: t('intake.status'), cell: (d) => (d.state ? code('status', d.state.status) : t('intake.not_heard')) },
      { label: t('value.indoor_temp_c'), cell: (d) => (d.state ? celsius(d.state.values.indoor_temp_c) : t('common.dash')) },
      { label: t('intake.fault'), cell: (d) => (d.state && d.state.fault ? `${d.state.fault.code} ${d.state.fault.text || ''}` : t('common.none')) },
    ],
    devices,
    { caption: t('intake.devices'), className: 'intake-devices' },
  );
}

function ordersView(orders) {
  if (!orders.length) return empty(t('intake.no_orders'));
  return h(
    'ul',
    { class: 'intake-orders' },
    orders.map((o) =>
      h(
        'li',
        { dataset: { orderId: o.id } },
        h('a', { href: `#/order/${o.id}` }, t('order.title', { id: o.id })),
        ' ',
        stateTag(o.state),
        ' ',
        priorityTag(o.priority),
        o.pre_emptive ? [' ', tag(t('pre_emptive'), 'pre')] : null,
        h('span', { class: 'muted' }, ` ${o.summary}`),
      ),
    ),
  );
}

function alertsView(alerts) {
  if (!alerts.length) return empty(t('intake.no_alerts'));
  return h(
    'ul',
    { class: 'intake-alerts' },
    alerts.map((a) =>
      h('li', null, h('time', null, dateTime(a.fired_at_ms)), ' ', tag(code('severity', a.severity), `severity-${a.severity}`), ' ', a.summary, a.resolved_at_ms ? h('span', { class: 'muted' }, ` (${t('intake.resolved')})`) : null),
    ),
  );
}

function requestsView(requests) {
  if (!requests.length) return empty(t('intake.no_requests'));
  return table(
    [
      { label: t('col.time'), cell: (r) => dateTime(r.received_at_ms) },
      { label: t('intake.kind'), cell: (r) => code('request', r.kind) },
      { label: t('col.channel'), cell: (r) => code('source', r.channel) },
      { label: t('intake.ticket'), cell: (r) => (r.ticket ? h('code', { class: 'ticket' }, r.ticket) : t('common.dash')) },
      { label: t('intake.answer'), cell: (r) => r.answer || tag(t('intake.unanswered'), 'warn') },
    ],
    requests,
    { caption: t('intake.requests'), rowAttrs: (r) => ({ dataset: { requestId: r.id } }), className: 'intake-requests' },
  );
}

function contextView(context) {
  return [
    peopleFacts(context.household),
    h('h3', null, t('intake.devices')),
    devicesView(context.devices),
    h('h3', null, t('intake.open_orders')),
    ordersView(context.open_orders),
    h('h3', null, t('intake.recent_alerts')),
    alertsView(context.recent_alerts),
    h('h3', null, t('intake.requests')),
    requestsView(context.recent_requests),
  ];
}

function outcomeView(outcome) {
  const order = outcome.order_id
    ? h(
        'a',
        { href: `#/order/${outcome.order_id}`, id: 'intake-order-link' },
        outcome.linked ? t('intake.linked_order', { id: outcome.order_id }) : t('intake.new_order', { id: outcome.order_id }),
      )
    : h('span', null, t('intake.no_order'));
  return [
    h('strong', null, t('intake.logged', { id: outcome.request_id })),
    outcome.ticket ? [' ', h('code', { class: 'ticket' }, outcome.ticket)] : null,
    ' · ',
    order,
    outcome.pre_emptive ? [' ', tag(t('pre_emptive'), 'pre')] : null,
    outcome.answered ? [' · ', t('intake.answered')] : null,
  ];
}

function unansweredView(requests, answer) {
  if (!requests.length) return empty(t('intake.all_answered'));
  return h(
    'ul',
    { class: 'intake-unanswered' },
    requests.map((r) => {
      const input = h('input', { type: 'text', id: `answer-${r.id}`, maxlength: String(MAX_TEXT), required: true, autocomplete: 'off', 'aria-label': t('intake.answer') });
      return h(
        'li',
        { dataset: { requestId: r.id } },
        h('p', null, h('strong', null, code('request', r.kind)), ' · ', code('source', r.channel), r.ticket ? [' ', h('code', { class: 'ticket' }, r.ticket)] : null, ' · ', r.caller_name, ' ', phoneLink(r.caller_phone, r.masked), h('span', { class: 'muted' }, ` · ${dateTime(r.received_at_ms)}`)),
        r.text ? h('p', { class: 'muted' }, r.text) : null,
        h(
          'form',
          {
            class: 'inline-answer',
            onsubmit: (event) => {
              event.preventDefault();
              answer(r.id, input.value.trim());
            },
          },
          input,
          h('button', { type: 'submit', class: 'primary' }, t('intake.answer_do')),
        ),
      );
    }),
  );
}

export async function mount(main, _args, query, ctx) {
  const where = await places();
  const canLog = ctx.session.role === 'district' || ctx.session.role === 'township';
  let household = null;
  let unregistered = false;
  let mounted = true;

  const search = h('input', { type: 'search', id: 'intake-q', value: query.get('q') || '', autocomplete: 'off', spellcheck: 'false', placeholder: t('households.placeholder') });
  const results = h('div', { id: 'intake-results', 'aria-live': 'polite' });
  const contextBox = h('div', { id: 'intake-context' }, empty(t('intake.pick')));
  const status = h('p', { class: 'action-status', id: 'intake-status', role: 'status', 'aria-live': 'polite' });
  const outcome = h('p', { id: 'intake-outcome' });
  const unansweredBox = h('div', { id: 'intake-unanswered' });

  const kind = h('select', { id: 'intake-kind' }, KINDS.map((k) => h('option', { value: k }, code('request', k))));
  const rule = h('p', { class: 'hint rule', id: 'intake-rule' });
  const showRule = () => fill(rule, t(`intake.rule.${kind.value}`));
  kind.addEventListener('change', showRule);
  showRule();
  const channel = h('select', { id: 'intake-channel' }, CHANNELS.map((c) => h('option', { value: c }, code('source', c))));
  const ticket = h('input', { id: 'intake-ticket', type: 'text', maxlength: '40', autocomplete: 'off', spellcheck: 'false', inputmode: 'text' });
  const text = h('textarea', { id: 'intake-text', rows: '3', maxlength: String(MAX_TEXT) });
  const answer = h('textarea', { id: 'intake-answer', rows: '2', maxlength: String(MAX_TEXT) });
  const callerName = h('input', { id: 'intake-caller-name', type: 'text', maxlength: '40', autocomplete: 'off' });
  const callerPhone = h('input', { id: 'intake-caller-phone', type: 'tel', maxlength: '20', autocomplete: 'off' });
  const village = h(
    'select',
    { id: 'intake-village' },
    h('option', { value: '' }, t('intake.choose_village')),
    where.townships.map((tw) =>
      h(
        'optgroup',
        { label: where.township(tw.id) },
        where.villages.filter((v) => v.township_id === tw.id).map((v) => h('option', { value: v.id }, where.village(v.id))),
      ),
    ),
  );
  const callerFields = h(
    'fieldset',
    { id: 'intake-caller', class: 'caller', hidden: true },
    h('legend', null, t('intake.unregistered_caller')),
    h('div', { class: 'field' }, h('label', { for: callerName.id }, t('intake.caller_name')), callerName),
    h('div', { class: 'field' }, h('label', { for: callerPhone.id }, t('intake.caller_phone')), callerPhone),
    h('div', { class: 'field' }, h('label', { for: village.id }, t('people.village')), village),
  );
  const chosen = h('p', { id: 'intake-chosen', class: 'muted' }, t('intake.none_chosen'));

  async function loadContext() {
    if (!household) return;
    const asked = household;
    try {
      const context = await get(`/households/${encodeURIComponent(asked)}/context`);
      if (!mounted || asked !== household) return;
      contextBox.dataset.householdId = asked;
      fill(contextBox, contextView(context));
      fill(chosen, t('intake.chosen', { name: context.household.resident, village: context.household.village_name }));
    } catch (error) {
      if (mounted) fill(contextBox, errorBox(error));
    }
  }
  function choose(id) {
    household = id;
    unregistered = false;
    callerFields.hidden = true;
    fill(contextBox, h('p', { class: 'loading' }, t('common.loading')));
    loadContext();
  }
  function caller() {
    household = null;
    unregistered = true;
    callerFields.hidden = false;
    delete contextBox.dataset.householdId;
    fill(contextBox, empty(t('intake.unregistered_hint')));
    fill(chosen, t('intake.unregistered_caller'));
    callerName.focus();
  }

  let ticketNo = 0;
  async function find() {
    const mine = ++ticketNo;
    const q = search.value.trim();
    if (!q) {
      fill(results, empty(t('intake.type_to_find')));
      return;
    }
    try {
      const page = await get('/households', { q, limit: 8 });
      if (mounted && mine === ticketNo) {
        results.dataset.q = q;
        fill(results, resultList(page, choose));
      }
    } catch (error) {
      if (mounted && mine === ticketNo) fill(results, errorBox(error));
    }
  }
  let timer = null;
  search.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(find, 250);
  });

  async function loadUnanswered() {
    try {
      const list = await get('/requests', { unanswered: true, limit: 50 });
      if (mounted) fill(unansweredBox, unansweredView(list, answerRequest));
    } catch (error) {
      if (mounted) fill(unansweredBox, errorBox(error));
    }
  }
  async function answerRequest(id, reply) {
    try {
      await postStep(`/requests/${id}/answer`, { answer: reply });
      status.textContent = t('intake.answered_done', { id });
      status.className = 'action-status ok';
      await Promise.all([loadUnanswered(), loadContext()]);
    } catch (error) {
      status.textContent = t('order.failed', { message: error.message });
      status.className = 'action-status failed';
    }
  }

  const form = h(
    'form',
    {
      id: 'intake-form',
      class: 'intake-form',
      onsubmit: async (event) => {
        event.preventDefault();
        if (!household && !unregistered) {
          status.textContent = t('intake.pick_first');
          status.className = 'action-status failed';
          return;
        }
        const body = { kind: kind.value, channel: channel.value, text: text.value.trim() };
        if (ticket.value.trim()) body.ticket = ticket.value.trim();
        if (answer.value.trim()) body.answer = answer.value.trim();
        if (household) body.household_id = household;
        else {
          body.caller_name = callerName.value.trim();
          body.caller_phone = callerPhone.value.trim();
          body.village_id = village.value;
        }
        const button = event.target.querySelector('button[type=submit]');
        button.disabled = true;
        status.textContent = t('steps.sending');
        status.className = 'action-status';
        try {
          const result = await postStep('/requests', body);
          outcome.dataset.requestId = String(result.request_id);
          fill(outcome, outcomeView(result));
          status.textContent = '';
          status.className = 'action-status ok';
          ticket.value = '';
          text.value = '';
          answer.value = '';
          await Promise.all([loadContext(), loadUnanswered()]);
        } catch (error) {
          status.textContent = t('order.failed', { message: error.message });
          status.className = 'action-status failed';
        } finally {
          button.disabled = false;
        }
      },
    },
    chosen,
    h('div', { class: 'field' }, h('label', { for: kind.id }, t('intake.kind')), kind),
    rule,
    h('div', { class: 'field' }, h('label', { for: channel.id }, t('col.channel')), channel),
    h('div', { class: 'field' }, h('label', { for: ticket.id }, t('intake.ticket')), ticket),
    callerFields,
    h('div', { class: 'field' }, h('label', { for: text.id }, t('intake.text')), text),
    h('div', { class: 'field' }, h('label', { for: answer.id }, t('intake.answer_now')), answer),
    h('button', { type: 'submit', class: 'primary big', id: 'intake-submit' }, t('intake.submit')),
    status,
    outcome,
  );

  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('intake.title'))),
    h(
      'div',
      { class: 'two-col' },
      h(
        'div',
        null,
        panel(
          t('intake.find'),
          { id: 'intake-find' },
          h(
            'form',
            { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
            h('div', { class: 'field wide' }, h('label', { for: 'intake-q' }, t('households.search')), search),
            h('button', { type: 'button', id: 'intake-unregistered', onclick: caller }, t('intake.unregistered_button')),
          ),
          h('p', { class: 'hint muted' }, t('households.hint')),
          results,
        ),
        panel(t('intake.context'), null, contextBox),
      ),
      h('div', null, canLog ? panel(t('intake.form'), null, form) : h('p', { class: 'notice' }, t('intake.read_only')), panel(t('intake.unanswered_title'), null, unansweredBox)),
    ),
  );
  await Promise.all([find(), loadUnanswered()]);
  return () => {
    mounted = false;
    window.clearTimeout(timer);
  };
}
