// Page 9, inspection campaigns (取暖季前巡检): the campaigns with their coverage (inspected / in
// scope, defects, not at home, refused, still to visit), for operators a form to plan one (window,
// townships, villages, vendors, device kinds, visits per technician per day, tries), and one
// campaign's page: coverage by township and by vendor, the day plan per technician, and every
// unit's inspection in risk order with the reasons of its score, its outcome and its repair order.

import { t, code } from './i18n.js';
import { get, post } from './api.js';
import { h, fill, table, panel, empty, errorBox, places, figure, tag, flash, percent, todayCst } from './ui.js';

function coverageFigures(progress, id) {
  return h(
    'div',
    { class: 'figures', id },
    figure(t('campaigns.in_scope'), String(progress.in_scope)),
    figure(t('campaigns.inspected'), String(progress.inspected), { tone: progress.pending ? null : 'good' }),
    figure(t('campaigns.coverage'), percent(progress.coverage_rate)),
    figure(t('campaigns.defects'), String(progress.defects), { tone: progress.defects ? 'bad' : null }),
    figure(t('campaigns.not_home'), String(progress.not_home)),
    figure(t('campaigns.refused'), String(progress.refused)),
    figure(t('campaigns.pending'), String(progress.pending)),
  );
}

function coverageTable(rows, caption) {
  if (!rows.length) return empty(t('campaigns.none_in_scope'));
  return h(
    'div',
    { class: 'table-wrap' },
    table(
      [
        { label: caption.column, cell: (r) => caption.name(r.key) },
        { label: t('campaigns.in_scope'), cell: (r) => String(r.in_scope), class: 'num' },
        { label: t('campaigns.inspected'), cell: (r) => String(r.inspected), class: 'num' },
        { label: t('campaigns.coverage'), cell: (r) => percent(r.coverage_rate), class: 'num' },
        { label: t('campaigns.defects'), cell: (r) => String(r.defects), class: 'num' },
        { label: t('campaigns.not_home'), cell: (r) => String(r.not_home), class: 'num' },
        { label: t('campaigns.refused'), cell: (r) => String(r.refused), class: 'num' },
        { label: t('campaigns.pending'), cell: (r) => String(r.pending), class: 'num' },
      ],
      rows,
      { caption: caption.title, rowAttrs: (r) => ({ dataset: { key: r.key } }) },
    ),
  );
}

function listTable(list) {
  if (!list.length) return empty(t('campaigns.empty'));
  return h(
    'div',
    { class: 'table-wrap' },
    table(
      [
        { label: t('campaigns.name'), cell: (c) => h('a', { href: `#/campaigns/${c.id}` }, c.name) },
        { label: t('campaigns.window'), cell: (c) => `${c.start_date} – ${c.end_date}` },
        { label: t('campaigns.in_scope'), cell: (c) => String(c.progress.in_scope), class: 'num' },
        { label: t('campaigns.inspected'), cell: (c) => String(c.progress.inspected), class: 'num' },
        { label: t('campaigns.coverage'), cell: (c) => percent(c.progress.coverage_rate), class: 'num' },
        { label: t('campaigns.defects'), cell: (c) => String(c.progress.defects), class: 'num' },
        { label: t('campaigns.not_home'), cell: (c) => String(c.progress.not_home), class: 'num' },
        { label: t('campaigns.refused'), cell: (c) => String(c.progress.refused), class: 'num' },
        { label: t('campaigns.pending'), cell: (c) => String(c.progress.pending), class: 'num' },
      ],
      list,
      { caption: t('campaigns.list'), rowAttrs: (c) => ({ dataset: { campaignId: String(c.id) } }) },
    ),
  );
}

/** The operator's form to plan a campaign. */
function planForm(where, onCreated) {
  const today = todayCst();
  const name = h('input', { id: 'campaign-name', type: 'text', maxlength: '100', required: true, value: t('campaigns.default_name', { year: today.slice(0, 4) }) });
  const start = h('input', { id: 'campaign-start', type: 'date', required: true, value: today });
  const end = h('input', { id: 'campaign-end', type: 'date', required: true });
  const townships = h(
    'select',
    { id: 'campaign-townships', multiple: true, size: '6' },
    where.townships.map((tw) => h('option', { value: tw.id }, where.township(tw.id))),
  );
  const villages = h('input', { id: 'campaign-villages', type: 'text', placeholder: t('campaigns.ids_hint'), autocomplete: 'off', spellcheck: 'false' });
  const vendors = h('input', { id: 'campaign-vendors', type: 'text', placeholder: t('campaigns.ids_hint'), autocomplete: 'off', spellcheck: 'false' });
  const kinds = h(
    'select',
    { id: 'campaign-kinds', multiple: true, size: '2' },
    ['heat_pump', 'gas_boiler'].map((k) => h('option', { value: k }, code('kind', k))),
  );
  const perDay = h('input', { id: 'campaign-per-day', type: 'number', min: '1', max: '50', value: '6' });
  const tries = h('input', { id: 'campaign-tries', type: 'number', min: '1', max: '10', value: '3' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'campaign-create' }, t('campaigns.create'));
  const ids = (input) =>
    input.value
      .split(/[\s,，;；]+/)
      .map((s) => s.trim())
      .filter(Boolean);
  const field = (label, input) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
  return h(
    'form',
    {
      class: 'filters',
      id: 'campaign-form',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        try {
          const created = await post('/campaigns', {
            name: name.value.trim(),
            start_date: start.value,
            end_date: end.value,
            townships: Array.from(townships.selectedOptions).map((o) => o.value),
            villages: ids(villages),
            vendors: ids(vendors),
            kinds: Array.from(kinds.selectedOptions).map((o) => o.value),
            per_technician_per_day: Number(perDay.value),
            max_tries: Number(tries.value),
          });
          flash(t('campaigns.created', { planned: created.planned, unscheduled: created.unscheduled, skipped: created.skipped_total }), 'ok');
          await onCreated(created.campaign.id);
        } catch (error) {
          flash(t('common.error', { message: error.message }));
          button.disabled = false;
        }
      },
    },
    field(t('campaigns.name'), name),
    field(t('campaigns.start'), start),
    field(t('campaigns.end'), end),
    field(t('campaigns.townships'), townships),
    field(t('campaigns.villages'), villages),
    field(t('campaigns.vendors'), vendors),
    field(t('campaigns.kinds'), kinds),
    field(t('campaigns.per_day'), perDay),
    field(t('campaigns.max_tries'), tries),
    button,
  );
}

function reasons(list) {
  if (!list || !list.length) return t('common.none');
  return h('ul', { class: 'reasons' }, list.map((r) => h('li', { title: r.text }, tag(`+${r.weight}`, 'priority-normal'), ' ', code('risk', r.code))));
}

function inspectionsTable(detail, where) {
  if (!detail.inspections.length) return empty(t('campaigns.none_in_scope'));
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: '#', cell: (i) => String(i.rank), class: 'num' },
        { label: t('col.device'), cell: (i) => h('a', { href: `#/device/${encodeURIComponent(i.device_id)}` }, i.device_id) },
        { label: t('prevention.village'), cell: (i) => `${where.village(i.village_id)} · ${where.township(i.township)}` },
        { label: t('prevention.score'), cell: (i) => h('strong', null, String(i.score)), class: 'num' },
        { label: t('prevention.reasons'), cell: (i) => reasons(i.reasons) },
        { label: t('campaigns.day'), cell: (i) => i.planned_date || t('common.dash') },
        { label: t('field.technician'), cell: (i) => i.technician_id || i.team_id || t('common.dash') },
        { label: t('campaigns.tries'), cell: (i) => String(i.tries), class: 'num' },
        { label: t('prevention.status'), cell: (i) => code('inspection', i.status) },
        {
          label: t('campaigns.orders'),
          cell: (i) => h('span', null, h('a', { href: `#/order/${i.order_id}` }, `#${i.order_id}`), i.repair_order_id ? [' → ', h('a', { href: `#/order/${i.repair_order_id}`, class: 'repair-link' }, `#${i.repair_order_id}`)] : null),
        },
      ],
      detail.inspections,
      { caption: t('campaigns.inspections', { n: detail.inspections_total }), rowAttrs: (i) => ({ dataset: { inspectionId: String(i.id), status: i.status } }) },
    ),
  );
}

function daysTable(detail) {
  if (!detail.days.length) return empty(t('campaigns.no_days'));
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: t('campaigns.day'), cell: (d) => d.date },
        { label: t('field.technician'), cell: (d) => d.technician_id || t('common.dash') },
        { label: t('field.team'), cell: (d) => d.team_id || t('common.dash') },
        { label: t('campaigns.units'), cell: (d) => d.devices.join(', ') },
      ],
      detail.days,
      { caption: t('campaigns.day_plan') },
    ),
  );
}

async function showOne(main, id, where) {
  const detail = await get(`/campaigns/${id}`, { limit: 1000 });
  const byTownship = { column: t('prevention.township'), title: t('campaigns.by_township'), name: (k) => where.township(k) };
  const byVendor = { column: t('campaigns.vendor'), title: t('campaigns.by_vendor'), name: (k) => k };
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, `${t('campaigns.title')} · ${detail.name}`)),
    h('p', null, h('a', { href: '#/campaigns' }, t('campaigns.back'))),
    h('p', { class: 'muted' }, t('campaigns.summary', { from: detail.start_date, to: detail.end_date, per_day: detail.per_technician_per_day, tries: detail.max_tries, by: detail.created_by })),
    coverageFigures(detail.progress, 'campaign-figures'),
    panel(t('campaigns.coverage'), { id: 'campaign-coverage' }, coverageTable(detail.by_township, byTownship), coverageTable(detail.by_vendor, byVendor)),
    panel(t('campaigns.day_plan'), { id: 'campaign-days' }, daysTable(detail)),
    panel(t('campaigns.inspections', { n: detail.inspections_total }), { id: 'campaign-inspections' }, inspectionsTable(detail, where)),
  );
}

export async function mount(main, args) {
  const id = args[0];
  try {
    const where = await places();
    if (id) {
      await showOne(main, id, where);
      return;
    }
    const draw = async () => {
      const [list, who] = await Promise.all([get('/campaigns'), get('/whoami').catch(() => ({ role: null }))]);
      const total = list.reduce(
        (sum, c) => ({ in_scope: sum.in_scope + c.progress.in_scope, inspected: sum.inspected + c.progress.inspected }),
        { in_scope: 0, inspected: 0 },
      );
      fill(
        main,
        h('div', { class: 'page-head' }, h('h1', null, t('campaigns.title'))),
        h('p', { class: 'muted' }, t('campaigns.intro')),
        h('p', { id: 'campaigns-total' }, t('campaigns.total', { inspected: total.inspected, in_scope: total.in_scope })),
        panel(t('campaigns.list'), { id: 'campaigns-list' }, listTable(list)),
        who.role === 'operator'
          ? panel(t('campaigns.plan'), { id: 'campaigns-plan' }, planForm(where, async (created) => {
              window.location.hash = `#/campaigns/${created}`;
            }))
          : null,
      );
    };
    await draw();
  } catch (error) {
    fill(main, h('h1', null, t('campaigns.title')), errorBox(error));
  }
}
