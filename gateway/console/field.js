// Page 7, the field: a technician's phone view of their own and their team's open orders, one
// card each: the resident, the address, the numbers one tap away (tel: links: the resident, the
// callers the desk logged, the caretaker), the SLA clocks, and the next step (accept, arrive,
// resolve with parts and a misuse note; steps.js, each sent once over a flaky connection).
// A team token sees its own view; an operator picks the team (and the technician) in the address.

import { t, code, lang } from './i18n.js';
import { get, registry, postStep } from './api.js';
import { phoneLink } from './households.js';
import { stepForms } from './steps.js';
import { h, fill, empty, errorBox, tag, stateTag, priorityTag, places, teams, slaClocks, yuan } from './ui.js';

/** A big call button: `tel:` link with who it rings. */
function callButton(who, phone, masked) {
  if (masked || !/^\d+$/.test(phone)) return h('span', { class: 'call masked' }, who, ' ', phoneLink(phone, true));
  return h('a', { class: 'call', href: `tel:${phone}`, dataset: { phone } }, h('span', { class: 'call-who' }, who), ' ', phoneLink(phone, true).textContent);
}

function callButtons(item) {
  const buttons = [];
  const seen = new Set();
  const add = (who, phone, masked) => {
    if (!phone || seen.has(phone)) return;
    seen.add(phone);
    buttons.push(callButton(who, phone, masked));
  };
  const household = item.household;
  if (household) {
    household.phones.forEach((phone, i) => add(i === 0 ? household.resident : `${household.resident} (${i + 1})`, phone, household.masked));
  }
  for (const caller of item.callers || []) add(caller.name, caller.phone, false);
  if (household && household.caretaker) add(`${t('people.caretaker')} ${household.caretaker.name}`, household.caretaker.phone, household.masked);
  return buttons.length ? h('div', { class: 'call-buttons' }, buttons) : h('p', { class: 'muted' }, t('field.no_phone'));
}

function card(item, where, parts, role, refresh) {
  const status = h('p', { class: 'action-status', role: 'status', 'aria-live': 'polite', id: `field-${item.id}-status` });
  const household = item.household;
  const steps = stepForms(item, { role, parts, claimPending: item.misuse_claim_pending, idBase: `field-${item.id}`, status, done: refresh });
  return h(
    'article',
    { class: `field-card${item.mine ? ' mine' : ''}`, dataset: { orderId: item.id, state: item.state } },
    h(
      'header',
      { class: 'field-head' },
      h('a', { href: `#/order/${item.id}`, class: 'field-id' }, t('order.title', { id: item.id })),
      stateTag(item.state),
      priorityTag(item.priority),
      item.mine ? tag(t('field.mine'), 'mine') : null,
      item.misuse_claim_pending ? tag(t('field.claim_pending'), 'warn') : null,
    ),
    h('p', { class: 'field-summary' }, item.summary),
    h(
      'dl',
      { class: 'facts compact' },
      h('dt', null, t('people.resident')),
      h('dd', null, household ? [household.resident, household.vulnerable ? [' ', tag(t('people.vulnerable'), 'vulnerable')] : null] : (item.callers[0] || {}).name || t('common.dash')),
      h('dt', null, t('people.address')),
      h('dd', null, household ? household.address : t('common.dash')),
      h('dt', null, t('people.village')),
      h('dd', null, where.village(item.village_id), ' · ', where.township(item.township)),
      h('dt', null, t('order.warranty')),
      h(
        'dd',
        null,
        item.in_warranty === null || item.in_warranty === undefined ? t('common.unknown') : item.in_warranty ? t('order.in_warranty') : t('order.out_of_warranty'),
      ),
      item.state === 'resolved' || item.state === 'callback_done'
        ? [h('dt', null, t('order.resident_pays')), h('dd', { class: 'field-pays' }, `¥ ${yuan(item.resident_pays_cents)}`)]
        : null,
    ),
    callButtons(item),
    slaClocks(item),
    status,
    steps.length ? h('div', { class: 'actions field-steps' }, steps) : null,
  );
}

/** An inspection of a campaign (取暖季前巡检): the unit, why it is visited first, and the
 * checklist of its kind to fill in, recorded as done, defect, not at home or refused. */
function inspectionCard(item, where, refresh) {
  const idBase = `inspection-${item.id}`;
  const status = h('p', { class: 'action-status', role: 'status', 'aria-live': 'polite', id: `${idBase}-status` });
  const rows = item.checklist.map((c) => {
    const result = h(
      'select',
      { id: `${idBase}-${c.code}`, dataset: { item: c.code } },
      ['ok', 'fault', 'n_a'].map((r) => h('option', { value: r }, t(`inspection.result.${r}`))),
    );
    const note = h('input', { type: 'text', id: `${idBase}-${c.code}-note`, maxlength: '500', 'aria-label': t('inspection.item_note') });
    return { code: c.code, result, note, el: h('div', { class: 'field' }, h('label', { for: result.id }, lang() === 'zh' ? c.zh : c.en), result, note) };
  });
  const note = h('textarea', { id: `${idBase}-note`, maxlength: '2000', rows: '2' });
  const send = async (outcome) => {
    const body = { outcome, note: note.value.trim() };
    if (outcome === 'done' || outcome === 'defect') {
      body.answers = rows.map((r) => ({ item: r.code, result: r.result.value, ...(r.note.value.trim() ? { note: r.note.value.trim() } : {}) }));
    }
    fill(status, t('inspection.sending'));
    try {
      const answer = await postStep(`/inspections/${item.id}/outcome`, body);
      fill(status, t('inspection.recorded', { status: code('inspection', answer.status) }));
      await refresh();
    } catch (error) {
      fill(status, t('common.error', { message: error.message }));
    }
  };
  const button = (outcome) => h('button', { type: 'button', id: `${idBase}-${outcome}`, class: outcome === 'done' ? 'primary' : null, onclick: () => send(outcome) }, code('outcome', outcome));
  return h(
    'article',
    { class: 'field-card inspection', dataset: { inspectionId: String(item.id), status: item.status } },
    h(
      'header',
      { class: 'field-head' },
      h('a', { href: `#/order/${item.order_id}`, class: 'field-id' }, t('inspection.title', { device: item.device_id })),
      tag(code('inspection', item.status), 'priority-low'),
      tag(t('inspection.rank', { rank: item.rank, score: item.score }), 'priority-normal'),
    ),
    h('p', { class: 'field-summary' }, t('inspection.when', { date: item.planned_date || t('common.dash'), tries: item.tries }), ' · ', where.village(item.village_id), ' · ', code('kind', item.kind)),
    item.reasons.length ? h('ul', { class: 'reasons' }, item.reasons.map((r) => h('li', null, `+${r.weight} `, code('risk', r.code)))) : null,
    h('div', { class: 'checklist' }, rows.map((r) => r.el)),
    h('div', { class: 'field' }, h('label', { for: note.id }, t('inspection.note')), note),
    status,
    h('div', { class: 'actions' }, ['done', 'defect', 'not_home', 'refused'].map(button)),
  );
}

/** The operator's choice of team (and technician) for the view. */
function picker(teamList, query) {
  const team = h(
    'select',
    { id: 'field-team' },
    h('option', { value: '' }, t('field.choose_team')),
    teamList.map((x) => h('option', { value: x.id, selected: x.id === query.get('team') }, x.name)),
  );
  const technician = h('input', { id: 'field-technician', type: 'text', value: query.get('technician') || '', autocomplete: 'off', spellcheck: 'false' });
  return h(
    'form',
    {
      class: 'filters',
      id: 'field-picker',
      onsubmit: (event) => {
        event.preventDefault();
        const params = new URLSearchParams();
        if (team.value) params.set('team', team.value);
        if (technician.value.trim()) params.set('technician', technician.value.trim());
        window.location.hash = `#/field?${params}`;
      },
    },
    h('div', { class: 'field' }, h('label', { for: team.id }, t('field.team')), team),
    h('div', { class: 'field' }, h('label', { for: technician.id }, t('field.technician')), technician),
    h('button', { type: 'submit', class: 'primary' }, t('field.open')),
  );
}

export async function mount(main, _args, query, ctx) {
  const role = ctx.session.role;
  const [where, teamNames, parts] = await Promise.all([places(), teams(), registry('parts').catch(() => [])]);
  const asked = { team_id: query.get('team') || '', technician_id: query.get('technician') || '' };
  const heading = h('h1', null, t('field.title'));
  const who = h('p', { class: 'muted', id: 'field-who' });
  const list = h('div', { id: 'field-orders', class: 'field-orders', 'aria-live': 'polite' });
  const inspections = h('div', { id: 'field-inspections', class: 'field-orders' });
  const offline = h('p', { id: 'field-offline', class: 'notice', role: 'status', hidden: true }, t('field.offline'));
  fill(
    main,
    h('div', { class: 'page-head' }, heading),
    role === 'district' ? picker(teamNames.list, query) : null,
    who,
    offline,
    list,
    inspections,
  );
  if (role === 'district' && !asked.team_id && !asked.technician_id) {
    fill(list, empty(t('field.pick')));
    return undefined;
  }
  let mounted = true;
  let known = new Set();
  let team = null;
  const cards = new Map();
  async function refresh() {
    const view = await get('/field/orders', role === 'team' ? {} : asked);
    if (!mounted) return;
    const askedIds = Object.fromEntries(Object.entries(asked).filter(([, v]) => v));
    const visits = await get('/inspections', role === 'team' ? {} : askedIds).catch(() => []);
    if (!mounted) return;
    const shown = new Set(Array.from(inspections.querySelectorAll('article')).map((el) => el.dataset.inspectionId));
    const fresh = visits.map((v) => String(v.id));
    // Redrawn only when the list changed, so a checklist being filled in is kept.
    if (shown.size !== fresh.length || fresh.some((id) => !shown.has(id))) {
      fill(inspections, visits.length ? [h('h2', null, t('inspection.heading', { n: visits.length })), visits.map((v) => inspectionCard(v, where, refresh))] : null);
    }
    team = view.team_id;
    known = new Set(view.items.map((item) => String(item.id)));
    fill(who, [teamNames.name(view.team_id), view.technician_id ? ` · ${t('field.technician')} ${view.technician_id}` : null, ` · ${t('field.count', { n: view.items.length })}`]);
    if (!view.items.length) {
      cards.clear();
      fill(list, empty(t('field.none')));
      return;
    }
    // A card is redrawn only when its order changed, so a live update never wipes a resolve
    // form being filled in.
    const next = view.items.map((item) => {
      const key = `${item.state}|${item.technician_id}|${item.misuse_claim_pending}|${item.sla_flags}`;
      const old = cards.get(item.id);
      if (old && old.key === key) return old;
      return { key, el: card(item, where, parts, role, refresh) };
    });
    cards.clear();
    view.items.forEach((item, i) => cards.set(item.id, next[i]));
    fill(list, next.map((c) => c.el));
  }
  // On a flaky connection a failed refresh keeps the cards already shown, says so, and tries
  // again a little later.
  let pending = null;
  function reload(delay) {
    window.clearTimeout(pending);
    pending = window.setTimeout(() => {
      refresh()
        .then(() => {
          offline.hidden = true;
        })
        .catch((error) => {
          if (!mounted) return;
          if (!cards.size) fill(list, errorBox(error));
          // A refusal (4xx) is not the connection: trying again would not help.
          if (error.status >= 400 && error.status < 500) return;
          offline.hidden = false;
          reload(5000);
        });
    }, delay);
  }
  const unsubscribe = ctx.onStream((notice) => {
    if (notice && !known.has(String(notice.order_id)) && notice.team_id !== team) return;
    reload(300);
  });
  try {
    await refresh();
  } catch (error) {
    fill(list, errorBox(error));
    if (!(error.status >= 400 && error.status < 500)) {
      offline.hidden = false;
      reload(5000);
    }
  }
  return () => {
    mounted = false;
    unsubscribe();
    window.clearTimeout(pending);
  };
}
