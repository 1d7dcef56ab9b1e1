// Page 8, prevention before the cold (防寒): the forecast the gateway holds and the cold waves
// it finds, the units most likely to fail or leave a home cold with the reasons for their risk
// score, the sweep's plan (preventive visit or call, time to a cold room, capacity), and for
// operators a button that opens the planned visits and calls now.

import { t, code } from './i18n.js';
import { get, post } from './api.js';
import { h, fill, table, panel, empty, errorBox, places, celsius, dateTime, figure, tag, flash } from './ui.js';

function reasons(list) {
  if (!list || !list.length) return t('common.none');
  return h(
    'ul',
    { class: 'reasons' },
    list.map((r) => h('li', { title: r.text, dataset: { code: r.code } }, tag(`+${r.weight}`, 'priority-normal'), ' ', code('risk', r.code), h('span', { class: 'muted' }, ` · ${r.text}`))),
  );
}

function hours(value) {
  return value === null || value === undefined ? t('common.dash') : t('prevention.hours', { h: value.toFixed(1) });
}

function deviceLink(id) {
  return h('a', { href: `#/device/${encodeURIComponent(id)}` }, id);
}

function flags(unit) {
  return [
    unit.vulnerable ? tag(t('prevention.vulnerable'), 'priority-urgent') : null,
    unit.offline ? tag(t('status.offline'), 'state-cancelled') : null,
  ];
}

function forecastTable(view, where) {
  if (!view.forecast.length) return empty(view.source ? t('prevention.no_forecast') : t('prevention.no_source'));
  const rows = view.forecast.slice(0, 200);
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: t('prevention.area'), cell: (p) => where.township(p.area) !== p.area ? where.township(p.area) : where.village(p.area) },
        { label: t('prevention.time'), cell: (p) => dateTime(p.time_ms) },
        { label: t('prevention.min_temp'), cell: (p) => celsius(p.min_temp_c), class: 'num' },
      ],
      rows,
      { caption: t('prevention.forecast') },
    ),
    view.forecast.length > rows.length ? h('p', { class: 'muted' }, t('prevention.more_rows', { n: view.forecast.length - rows.length })) : null,
  );
}

function wavesList(plan, where) {
  if (!plan.waves.length) return empty(t('prevention.no_wave'));
  return h(
    'ul',
    { class: 'waves', id: 'prevention-waves' },
    plan.waves.map((w) => h('li', { dataset: { wave: w.id } }, h('strong', null, where.township(w.area) !== w.area ? where.township(w.area) : where.village(w.area)), ` · ${celsius(w.min_temp_c)} · ${dateTime(w.coldest_at_ms)} · `, h('span', { class: 'muted' }, w.why))),
  );
}

function planTable(plan, where) {
  if (!plan.units.length) return empty(t('prevention.plan_empty'));
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: '#', cell: (_, i) => String(i + 1), class: 'num' },
        { label: t('col.device'), cell: (p) => deviceLink(p.unit.device_id) },
        { label: t('prevention.township'), cell: (p) => where.township(p.unit.township) },
        { label: t('prevention.village'), cell: (p) => where.village(p.unit.village_id) },
        { label: t('prevention.score'), cell: (p) => h('span', null, h('strong', null, String(p.unit.score)), ' ', flags(p.unit)), class: 'num' },
        { label: t('prevention.hours_to_cold'), cell: (p) => hours(p.hours_to_cold), class: 'num' },
        { label: t('prevention.action'), cell: (p) => code('category', p.action) },
        { label: t('prevention.status'), cell: (p) => h('span', null, code('sweep', p.status), p.order_id ? [' ', h('a', { href: `#/order/${p.order_id}` }, `#${p.order_id}`)] : null) },
        { label: t('prevention.reasons'), cell: (p) => reasons(p.unit.reasons) },
      ].map((c) => ({ ...c, cell: (row) => c.cell(row, plan.units.indexOf(row)) })),
      plan.units,
      { caption: t('prevention.plan'), rowAttrs: (p) => ({ dataset: { deviceId: p.unit.device_id, status: p.status } }) },
    ),
  );
}

function riskTable(list, where) {
  if (!list.units.length) return empty(t('prevention.risk_empty'));
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: t('col.device'), cell: (u) => deviceLink(u.device_id) },
        { label: t('prevention.township'), cell: (u) => where.township(u.township) },
        { label: t('prevention.village'), cell: (u) => where.village(u.village_id) },
        { label: t('prevention.score'), cell: (u) => h('span', null, h('strong', null, String(u.score)), ' ', flags(u)), class: 'num' },
        { label: t('prevention.reasons'), cell: (u) => reasons(u.reasons) },
        { label: t('prevention.open_order'), cell: (u) => (u.open_order_id ? h('a', { href: `#/order/${u.open_order_id}` }, `#${u.open_order_id}`) : t('common.dash')) },
      ],
      list.units,
      { caption: t('prevention.risk'), rowAttrs: (u) => ({ dataset: { deviceId: u.device_id, score: String(u.score) } }) },
    ),
  );
}

function openForm(view, onOpened) {
  const visits = h('input', { type: 'number', id: 'sweep-visits', min: '0', max: '1000', value: String(view.plan.capacity.visits_per_township) });
  const calls = h('input', { type: 'number', id: 'sweep-calls', min: '0', max: '1000', value: String(view.plan.capacity.calls_per_township) });
  const button = h('button', { type: 'submit', class: 'primary', id: 'sweep-open' }, t('prevention.open'));
  return h(
    'form',
    {
      class: 'inline',
      id: 'sweep-form',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        try {
          const outcome = await post('/prevention/sweep', {
            visits_per_township: Number(visits.value),
            calls_per_township: Number(calls.value),
          });
          flash(t('prevention.opened', { n: outcome.opened.length }), 'ok');
          await onOpened();
        } catch (error) {
          flash(t('common.error', { message: error.message }));
          button.disabled = false;
        }
      },
    },
    h('label', { for: 'sweep-visits' }, t('prevention.visits_per_township')),
    visits,
    h('label', { for: 'sweep-calls' }, t('prevention.calls_per_township')),
    calls,
    button,
  );
}

export async function mount(main, args, query, context) {
  const township = query.get('township') || '';
  const where = await places();
  const draw = async () => {
    const params = { township };
    const [view, list, who] = await Promise.all([
      get('/prevention/sweep', params),
      get('/prevention/risk', { ...params, limit: 50 }),
      get('/whoami').catch(() => ({ role: null })),
    ]);
    const filter = context.session.role === 'district'
      ? h(
          'form',
          {
            class: 'inline',
            onsubmit: (event) => {
              event.preventDefault();
              const value = event.target.elements.township.value;
              window.location.hash = value ? `#/prevention?township=${encodeURIComponent(value)}` : '#/prevention';
            },
          },
          h('label', { for: 'prevention-township' }, t('prevention.township')),
          h('select', { id: 'prevention-township', name: 'township' }, h('option', { value: '' }, t('prevention.all')), where.townships.map((tw) => h('option', { value: tw.id, selected: tw.id === township ? '' : null }, where.township(tw.id)))),
          h('button', { type: 'submit' }, t('reports.show')),
        )
      : null;
    const planned = view.plan.units.filter((p) => p.status === 'planned').length;
    fill(
      main,
      h('div', { class: 'page-head' }, h('h1', null, t('prevention.title'))),
      h('p', { class: 'muted' }, t('prevention.intro')),
      filter,
      h(
        'div',
        { class: 'figures', id: 'prevention-figures' },
        figure(t('prevention.waves'), String(view.plan.waves.length), { tone: view.plan.waves.length ? 'bad' : 'good' }),
        figure(t('prevention.planned'), String(planned)),
        figure(t('prevention.over_capacity'), String(view.plan.units.filter((p) => p.status === 'over_capacity').length)),
        figure(t('prevention.units'), String(list.total)),
      ),
      view.error ? h('p', { class: 'error', id: 'forecast-error' }, view.error) : null,
      panel(
        t('prevention.forecast'),
        { id: 'prevention-forecast' },
        h('p', { class: 'muted' }, view.source ? t('prevention.source', { source: view.source, time: view.loaded_at_ms ? dateTime(view.loaded_at_ms) : t('common.dash') }) : t('prevention.no_source')),
        wavesList(view.plan, where),
        forecastTable(view, where),
      ),
      panel(
        t('prevention.plan'),
        { id: 'prevention-plan' },
        h('p', { class: 'muted' }, view.auto_open ? t('prevention.auto_open') : t('prevention.manual_open')),
        who.role === 'operator' && view.plan.waves.length ? openForm(view, draw) : null,
        planTable(view.plan, where),
      ),
      panel(t('prevention.risk'), { id: 'prevention-risk' }, riskTable(list, where)),
    );
  };
  try {
    await draw();
  } catch (error) {
    fill(main, h('h1', null, t('prevention.title')), errorBox(error));
  }
}
