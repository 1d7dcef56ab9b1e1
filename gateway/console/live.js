// Page 1, the live board: today's figures, open orders with their three SLA clocks counting down,
// supply incidents (power and gas), the order event stream (SSE) and the active alerts.

import { t, code } from './i18n.js';
import { get } from './api.js';
import {
  h,
  fill,
  table,
  figure,
  panel,
  empty,
  errorBox,
  tag,
  stateTag,
  priorityTag,
  categoryLabel,
  slaClock,
  slaLegend,
  clockTime,
  dateTime,
  percent,
  places,
  teams,
  breached,
  urgency,
  slaStage,
  SLA,
} from './ui.js';

const SUPPLY = ['power_supply', 'gas_supply'];
const PRIORITY_RANK = { urgent: 0, high: 1, normal: 2, low: 3 };
const RISK_RANK = { breach: 0, warn: 1, ok: 2 };

function worstRisk(order, now) {
  let worst = 'ok';
  for (const stage of SLA.stages) {
    const risk = slaStage(order, stage, now).risk;
    if (risk in RISK_RANK && RISK_RANK[risk] < RISK_RANK[worst]) worst = risk;
  }
  return worst;
}

function orderLink(id) {
  return h('a', { href: `#/order/${id}`, class: 'order-link' }, `#${id}`);
}

function deviceLink(id) {
  // The order of a caller without a registered device (`request-{id}`) has no device page.
  if (id.startsWith('request-')) return h('span', { class: 'muted' }, id);
  return h('a', { href: `#/device/${encodeURIComponent(id)}`, class: 'device-link' }, id);
}

function ordersTable(orders, where, teamNames, devicesVisible) {
  const now = Date.now();
  const sorted = [...orders].sort(
    (a, b) => urgency(a, now) - urgency(b, now) || (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9) || b.id - a.id,
  );
  const columns = [
    { label: t('col.order'), cell: (o) => [orderLink(o.id), o.pre_emptive ? tag(t('pre_emptive'), 'pre') : null] },
    { label: t('col.device'), cell: (o) => (devicesVisible ? deviceLink(o.device_id) : o.device_id) },
    { label: t('col.place'), cell: (o) => `${where.township(o.township)} · ${where.village(o.village_id)}` },
    { label: t('col.category'), cell: (o) => categoryLabel(o.category), class: 'trio' },
    { label: t('col.priority'), cell: (o) => priorityTag(o.priority), class: 'trio' },
    { label: t('col.state'), cell: (o) => stateTag(o.state), class: 'trio' },
    { label: t('col.team'), cell: (o) => teamNames.name(o.team_id), class: 'team' },
    ...SLA.stages.map((stage) => ({ label: t(`sla.${stage.key}`), cell: (o) => slaClock(o, stage), class: 'clock-col' })),
  ];
  return table(columns, sorted, {
    caption: t('live.open_orders'),
    className: 'orders',
    rowAttrs: (o) => ({ class: `risk-row-${worstRisk(o, now)}`, dataset: { orderId: String(o.id), deviceId: o.device_id } }),
  });
}

function supplyList(orders, where) {
  const incidents = orders.filter((o) => SUPPLY.includes(o.category));
  if (!incidents.length) return empty(t('live.supply_empty'));
  return h(
    'ul',
    { class: 'incidents' },
    incidents.map((o) =>
      h(
        'li',
        { dataset: { orderId: String(o.id) } },
        h('div', null, orderLink(o.id), ' ', tag(categoryLabel(o.category), 'supply'), ' ', priorityTag(o.priority)),
        h('div', { class: 'muted' }, `${where.township(o.township)} · ${where.village(o.village_id)} · ${dateTime(o.created_at_ms)}`),
        h('div', null, o.summary),
        h('div', { class: 'clocks' }, SLA.stages.map((stage) => h('span', { class: 'clock-cell' }, h('span', { class: 'clock-label' }, t(`sla.${stage.key}`)), slaClock(o, stage)))),
      ),
    ),
  );
}

function streamList(recent, where) {
  if (!recent.length) return empty(t('live.stream_empty'));
  return h(
    'ol',
    { class: 'events', id: 'event-stream' },
    recent.slice(0, 40).map((n) =>
      h(
        'li',
        { dataset: { kind: n.kind, orderId: String(n.order_id) }, class: `event event-${n.kind}` },
        h('span', { class: 'event-time' }, clockTime(n.at_ms)),
        ' ',
        orderLink(n.order_id),
        ' ',
        h('strong', null, code('event', n.kind)),
        ' ',
        h('span', { class: 'muted' }, `${where.township(n.township)} · ${categoryLabel(n.category)}`),
        n.note ? h('div', { class: 'event-note' }, n.note) : null,
      ),
    ),
  );
}

function alertsTable(alerts, where) {
  if (!alerts.length) return empty(t('live.alerts_empty'));
  return table(
    [
      { label: t('col.fired'), cell: (a) => clockTime(a.fired_at_ms) },
      { label: t('col.device'), cell: (a) => deviceLink(a.device_id) },
      { label: t('fleet.township'), cell: (a) => where.township(a.township) },
      { label: t('col.severity'), cell: (a) => tag(code('severity', a.severity), `severity-${a.severity}`) },
      { label: t('col.summary'), cell: (a) => a.summary },
    ],
    alerts.slice(0, 50),
    { caption: t('live.alerts'), className: 'alerts' },
  );
}

export async function mount(main, _args, _query, ctx) {
  const district = ctx.session.role === 'district';
  const [where, teamNames] = await Promise.all([places(), teams()]);
  const updated = h('p', { class: 'updated muted', 'aria-live': 'off' });
  const figures = h('div', { class: 'figures', id: 'today-figures' });
  const ordersBox = h('div', { id: 'open-orders', class: 'table-wrap' });
  const supplyBox = h('div', { id: 'supply-incidents' });
  const streamBox = h('div', { id: 'stream-box' });
  const alertsBox = h('div', { id: 'active-alerts' });
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('live.title')), updated),
    panel(t('live.figures'), { class: 'panel figures-panel' }, figures),
    h(
      'div',
      { class: 'live-layout' },
      h(
        'div',
        { class: 'live-main' },
        panel(t('live.open_orders'), { id: 'orders-panel' }, h('p', { class: 'legend muted' }, slaLegend()), ordersBox),
        ctx.session.role !== 'team' ? panel(t('live.alerts'), { class: 'panel alerts-panel' }, alertsBox) : null,
      ),
      h('div', { class: 'live-side' }, panel(t('live.supply'), { class: 'panel supply' }, supplyBox), panel(t('live.stream'), { class: 'panel stream-panel' }, streamBox)),
    ),
  );

  const renderStream = () => fill(streamBox, streamList(ctx.recent, where));
  renderStream();

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const [orders, report, summary, alerts] = await Promise.all([
        get('/orders', { open: true, limit: 2000 }),
        get('/reports/daily').catch(() => null),
        district ? get('/summary').catch(() => null) : null,
        ctx.session.role !== 'team' ? get('/alerts', { active: true, limit: 500 }).catch((e) => e) : [],
      ]);
      const now = Date.now();
      const total = report ? report.total : null;
      fill(
        figures,
        figure(t('live.open_orders'), String(orders.length), { id: 'fig-open' }),
        figure(t('live.today_orders'), total ? String(total.requests) : t('common.dash'), { id: 'fig-today' }),
        figure(t('live.pre_emptive_share'), total ? percent(total.pre_emptive_rate) : t('common.dash'), { id: 'fig-pre', tone: 'good' }),
        figure(t('live.breaches'), String(orders.filter((o) => breached(o, now)).length), {
          id: 'fig-breaches',
          tone: orders.some((o) => breached(o, now)) ? 'bad' : null,
        }),
        summary ? figure(t('live.devices_online'), String(summary.online), { id: 'fig-online' }) : null,
        summary ? figure(t('live.devices_offline'), String(summary.offline), { tone: summary.offline ? 'warn' : null }) : null,
        summary ? figure(t('live.devices_faulty'), String(summary.faulty), { tone: summary.faulty ? 'warn' : null }) : null,
        summary ? figure(t('live.active_alerts'), String(summary.active_alerts)) : null,
      );
      fill(ordersBox, orders.length ? ordersTable(orders, where, teamNames, ctx.session.role !== 'team') : empty(t('live.orders_empty')));
      fill(supplyBox, supplyList(orders, where));
      fill(alertsBox, alerts instanceof Error ? errorBox(alerts) : alertsTable(alerts, where));
      updated.textContent = t('common.updated', { time: clockTime(now) });
    } catch (error) {
      fill(ordersBox, errorBox(error));
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  await refresh();
  let pending = null;
  const unsubscribe = ctx.onStream(() => {
    renderStream();
    window.clearTimeout(pending);
    pending = window.setTimeout(refresh, 300);
  });
  const timer = window.setInterval(refresh, 30000);
  return () => {
    unsubscribe();
    window.clearTimeout(pending);
    window.clearInterval(timer);
  };
}
