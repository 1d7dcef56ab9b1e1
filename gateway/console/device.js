// Page 3, one device: its facts and active fault, the latest values with units (the brand's
// vendor values, `x_...`, in a group of their own), a 24 h chart of indoor, flow, return and
// outdoor temperatures and electric power (5-minute means), its alerts and its orders.

import { t, code, hasCode } from './i18n.js';
import { get } from './api.js';
import {
  h,
  s,
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
  dateTime,
  withUnit,
  slaClocks,
  isOpen,
} from './ui.js';
import { lineChart } from './charts.js';

const SERIES = [
  { key: 'indoor_temp_c', color: '#c92a2a', axis: 'left' },
  { key: 'flow_temp_c', color: '#e67700', axis: 'left', dash: '6 3' },
  { key: 'return_temp_c', color: '#7048e8', axis: 'left', dash: '2 3' },
  { key: 'outdoor_temp_c', color: '#1864ab', axis: 'left' },
  { key: 'electric_power_w', color: '#2b8a3e', axis: 'right', dash: '8 3 2 3' },
];

const RANGES = [
  ['1h', 3600e3],
  ['6h', 6 * 3600e3],
  ['24h', 24 * 3600e3],
];

/** The smallest range that shows every point (operators start there, and can widen it). */
function fittingRange(points, now) {
  const oldest = points.length ? points[0].ts_ms : now;
  const found = RANGES.find(([, span]) => now - oldest <= span);
  return found ? found[0] : '24h';
}

function facts(device, where) {
  const village = where.villageOfDevice(device.device_id, device.township);
  const rows = [
    [t('order.township'), where.township(device.township)],
    [t('order.village'), village ? where.village(village.id) : t('common.dash')],
    [t('device.kind'), device.kind ? code('kind', device.kind) : t('common.unknown')],
    [t('device.profile'), device.profile || t('common.dash')],
    [t('fleet.status'), tag(t(`status.${device.status}`), `status-${device.status}`)],
    [t('device.agent'), device.agent_id || t('common.dash')],
    [t('device.last'), dateTime(device.last_ts_ms)],
    [t('device.readings'), String(device.readings)],
    [
      t('device.fault'),
      device.fault
        ? h('span', { class: 'fault' }, tag(code('fault', device.fault.category), 'fault'), ` ${device.fault.code}: ${device.fault.text}`)
        : t('device.no_fault'),
    ],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

/** A brand's own value (`x_cop`, `x_pump_on`): kept and shown, never read by the rules. */
function isVendor(name) {
  return name.startsWith('x_');
}

/** A vendor value as a plain number: its unit is in the brand's profile, not on the wire. */
function vendorNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return t('common.dash');
  return Number.isInteger(value) ? String(value) : String(Number(Number(value).toFixed(3)));
}

function valuesTable(device) {
  const all = Object.keys(device.values || {});
  if (!all.length) return empty(t('fleet.no_reading'));
  const names = all
    .filter((n) => !isVendor(n))
    .sort((a, b) => {
      const known = (n) => (hasCode('value', n) ? 0 : 1);
      return known(a) - known(b) || a.localeCompare(b);
    });
  const vendor = all.filter(isVendor).sort((a, b) => a.localeCompare(b));
  return [
    names.length
      ? table(
          [
            { label: t('device.name'), cell: (n) => [code('value', n), ' ', h('code', { class: 'muted' }, n)] },
            { label: t('device.value'), cell: (n) => withUnit(n, device.values[n]), class: 'num' },
          ],
          names,
          { caption: t('device.values'), className: 'values' },
        )
      : null,
    vendor.length
      ? h(
          'div',
          { id: 'device-vendor-values' },
          h('h3', null, t('device.vendor_values')),
          h('p', { class: 'hint' }, t('device.vendor_values_hint')),
          table(
            [
              { label: t('device.name'), cell: (n) => h('code', null, n) },
              { label: t('device.value'), cell: (n) => vendorNumber(device.values[n]), class: 'num' },
            ],
            vendor,
            { caption: t('device.vendor_values'), className: 'values vendor-values' },
          ),
        )
      : null,
  ];
}

export async function mount(main, [id], _query, ctx) {
  const where = await places();
  const factsBox = h('div', { id: 'device-facts' });
  const valuesBox = h('div', { id: 'device-values', class: 'table-wrap' });
  const chartBox = h('div', { id: 'device-chart', class: 'chart-box' });
  const legendBox = h('ul', { class: 'chart-legend' });
  const rangeBox = h('div', { class: 'segmented', role: 'group', 'aria-label': t('device.range') });
  const alertsBox = h('div', { id: 'device-alerts', class: 'table-wrap' });
  const ordersBox = h('div', { id: 'device-orders', class: 'table-wrap' });

  const device = await get(`/devices/${encodeURIComponent(id)}`);
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('device.title', { id })), h('a', { href: '#/fleet', class: 'back' }, `← ${t('nav.fleet')}`)),
    h(
      'div',
      { class: 'two-col' },
      panel(t('device.facts'), null, factsBox),
      panel(t('device.values'), null, valuesBox),
    ),
    panel(t('device.chart'), { id: 'chart-panel' }, rangeBox, chartBox, legendBox),
    h('div', { class: 'two-col' }, panel(t('device.orders'), null, ordersBox), ctx.session.role !== 'team' ? panel(t('device.alerts'), null, alertsBox) : null),
  );
  fill(factsBox, facts(device, where));
  fill(valuesBox, valuesTable(device));
  fill(
    legendBox,
    SERIES.map((se) =>
      h(
        'li',
        null,
        s('svg', { width: 30, height: 10, 'aria-hidden': 'true', class: 'legend-line' }, s('line', { x1: 1, y1: 5, x2: 29, y2: 5, stroke: se.color, 'stroke-width': 3, 'stroke-dasharray': se.dash || null })),
        ` ${code('value', se.key)}${se.axis === 'right' ? ' (W)' : ' (°C)'}`,
      ),
    ),
  );

  let history = { points: [] };
  let range = null;
  const drawChart = () => {
    const now = Date.now();
    if (!range) range = fittingRange(history.points, now);
    fill(
      rangeBox,
      RANGES.map(([key]) =>
        h(
          'button',
          {
            type: 'button',
            'aria-pressed': String(key === range),
            dataset: { range: key },
            onclick: () => {
              range = key;
              drawChart();
            },
          },
          t(`device.range_${key}`),
        ),
      ),
    );
    if (!history.points.length) {
      fill(chartBox, empty(t('device.chart_empty')));
      return;
    }
    const span = RANGES.find(([key]) => key === range)[1];
    const width = Math.max(300, Math.floor(chartBox.clientWidth || 900));
    const height = width < 600 ? 260 : 340;
    fill(
      chartBox,
      lineChart({
        width,
        height,
        from: now - span,
        to: now,
        gapMs: 15 * 60e3,
        title: `${t('device.chart')}: ${id}`,
        leftLabel: t('device.temps_axis'),
        rightLabel: t('device.power_axis'),
        series: SERIES.map((se) => ({ ...se, points: history.points.map((p) => [p.ts_ms, p[se.key] ?? null]) })),
      }),
    );
  };

  async function loadHistory() {
    try {
      history = await get(`/devices/${encodeURIComponent(id)}/history`);
      drawChart();
    } catch (error) {
      fill(chartBox, errorBox(error));
    }
  }

  async function loadLists() {
    const [orders, alerts] = await Promise.all([
      get('/orders', { device_id: id, limit: 200 }).catch((e) => e),
      ctx.session.role !== 'team' ? get('/alerts', { limit: 5000 }).catch((e) => e) : [],
    ]);
    if (orders instanceof Error) fill(ordersBox, errorBox(orders));
    else if (!orders.length) fill(ordersBox, empty(t('device.orders_empty')));
    else
      fill(
        ordersBox,
        table(
          [
            { label: t('col.order'), cell: (o) => [h('a', { href: `#/order/${o.id}` }, `#${o.id}`), o.pre_emptive ? [' ', tag(t('pre_emptive'), 'pre')] : null] },
            { label: t('col.created'), cell: (o) => dateTime(o.created_at_ms) },
            { label: t('col.category'), cell: (o) => categoryLabel(o.category) },
            { label: t('col.priority'), cell: (o) => priorityTag(o.priority) },
            { label: t('col.state'), cell: (o) => stateTag(o.state) },
            { label: t('order.clocks'), cell: (o) => (isOpen(o) ? slaClocks(o) : t('common.dash')) },
          ],
          orders,
          { caption: t('device.orders'), rowAttrs: (o) => ({ dataset: { orderId: String(o.id) } }) },
        ),
      );
    if (alerts instanceof Error) fill(alertsBox, errorBox(alerts));
    else {
      const mine = alerts.filter((a) => a.device_id === id);
      fill(
        alertsBox,
        mine.length
          ? table(
              [
                { label: t('col.fired'), cell: (a) => dateTime(a.fired_at_ms) },
                { label: t('col.resolved'), cell: (a) => dateTime(a.resolved_at_ms) },
                { label: t('col.rule'), cell: (a) => h('code', null, a.rule_id) },
                { label: t('col.severity'), cell: (a) => tag(code('severity', a.severity), `severity-${a.severity}`) },
                { label: t('col.summary'), cell: (a) => a.summary },
              ],
              mine,
              { caption: t('device.alerts') },
            )
          : empty(t('device.alerts_empty')),
      );
    }
  }

  async function loadDevice() {
    try {
      const latest = await get(`/devices/${encodeURIComponent(id)}`);
      fill(factsBox, facts(latest, where));
      fill(valuesBox, valuesTable(latest));
    } catch (error) {
      fill(factsBox, errorBox(error));
    }
  }

  await Promise.all([loadHistory(), loadLists()]);
  let resizeTimer = null;
  const onResize = () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(drawChart, 200);
  };
  window.addEventListener('resize', onResize);
  const fast = window.setInterval(() => {
    loadDevice();
    loadLists();
  }, 10000);
  const slow = window.setInterval(loadHistory, 60000);
  return () => {
    window.removeEventListener('resize', onResize);
    window.clearTimeout(resizeTimer);
    window.clearInterval(fast);
    window.clearInterval(slow);
  };
}
