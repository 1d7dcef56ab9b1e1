// Page 5, reports: daily, weekly and monthly figures of the scheme (requests, response and
// resolution rates, satisfaction, SLA compliance per stage, pre-emptive share, charges) with SVG
// bar charts, tables by township, team and vendor, CSV export and a printable version.

import { t, code } from './i18n.js';
import { get, url, download } from './api.js';
import { h, fill, table, figure, panel, empty, errorBox, places, teams, percent, yuan, dateTime, todayCst } from './ui.js';
import { barChart } from './charts.js';

const PERIODS = ['daily', 'weekly', 'monthly'];
const PRE = '#2b8a3e';
const COMPLAINT = '#e8590c';
const RATE = '#1864ab';
const CHANNEL = '#5f3dc4';

function minutes(value) {
  return value === null || value === undefined ? t('common.dash') : value.toFixed(1);
}

function groupTable(rows, caption, name) {
  return table(
    [
      { label: t('reports.group'), cell: (r) => name(r.key) },
      { label: t('reports.requests'), cell: (r) => String(r.requests), class: 'num' },
      { label: t('reports.pre_emptive_rate'), cell: (r) => percent(r.pre_emptive_rate), class: 'num' },
      { label: t('reports.response_rate'), cell: (r) => percent(r.response_rate), class: 'num' },
      { label: t('reports.resolution_rate'), cell: (r) => percent(r.resolution_rate), class: 'num' },
      { label: t('reports.satisfied_rate'), cell: (r) => percent(r.satisfied_rate), class: 'num' },
      { label: t('reports.dispatch_sla'), cell: (r) => percent(r.dispatch_sla_rate), class: 'num' },
      { label: t('reports.on_site_sla'), cell: (r) => percent(r.on_site_sla_rate), class: 'num' },
      { label: t('reports.repaired_sla'), cell: (r) => percent(r.repaired_sla_rate), class: 'num' },
      { label: t('reports.median_dispatch'), cell: (r) => minutes(r.dispatch_time.median_minutes), class: 'num' },
      { label: t('reports.p90_repaired'), cell: (r) => minutes(r.repaired_time.p90_minutes), class: 'num' },
      { label: t('reports.parts'), cell: (r) => yuan(r.parts_cents), class: 'num' },
      { label: t('reports.resident_pays'), cell: (r) => yuan(r.resident_pays_cents), class: 'num' },
    ],
    rows,
    { caption, className: 'report-table' },
  );
}

function chartWidth(box) {
  return Math.max(300, Math.floor(box.clientWidth || 600));
}

function charts(report, where, boxes) {
  const total = report.total;
  const townships = report.by_township;
  fill(
    boxes.township,
    townships.length
      ? barChart({
          width: chartWidth(boxes.township),
          title: t('reports.by_township_chart'),
          labelWidth: 96,
          stacks: [
            { label: t('reports.legend_pre'), color: PRE },
            { label: t('reports.legend_complaint'), color: COMPLAINT },
          ],
          rows: townships.map((r) => ({ label: where.township(r.key), values: [r.pre_emptive, r.requests - r.pre_emptive] })),
        })
      : empty(t('reports.empty')),
    townships.length
      ? h(
          'ul',
          { class: 'chart-legend' },
          h('li', null, h('span', { class: 'swatch-box pre', 'aria-hidden': 'true' }), t('reports.legend_pre')),
          h('li', null, h('span', { class: 'swatch-box complaint', 'aria-hidden': 'true' }), t('reports.legend_complaint')),
        )
      : null,
  );
  const rates = [
    ['reports.response_rate', total.response_rate],
    ['reports.resolution_rate', total.resolution_rate],
    ['reports.satisfied_rate', total.satisfied_rate],
    ['reports.dispatch_sla', total.dispatch_sla_rate],
    ['reports.on_site_sla', total.on_site_sla_rate],
    ['reports.repaired_sla', total.repaired_sla_rate],
    ['reports.pre_emptive_rate', total.pre_emptive_rate],
  ];
  fill(
    boxes.rates,
    barChart({
      width: chartWidth(boxes.rates),
      title: t('reports.rates_chart'),
      percent: true,
      target: 0.9,
      labelWidth: 130,
      stacks: [{ label: '%', color: RATE }],
      rows: rates.map(([key, value]) => ({ label: t(key), values: [value] })),
    }),
  );
  const channels = Object.entries(total.by_channel || {});
  fill(
    boxes.channel,
    channels.length
      ? barChart({
          width: chartWidth(boxes.channel),
          title: t('reports.channel_chart'),
          labelWidth: 150,
          stacks: [{ label: t('col.source'), color: CHANNEL }],
          rows: channels.map(([channel, n]) => ({ label: code('source', channel), values: [n] })),
        })
      : empty(t('reports.empty')),
  );
}

export async function mount(main, [periodArg], query) {
  const period = PERIODS.includes(periodArg) ? periodArg : 'daily';
  const date = /^\d{4}-\d{2}-\d{2}$/.test(query.get('date') || '') ? query.get('date') : todayCst();
  const [where, teamNames, report] = await Promise.all([places(), teams(), get(`/reports/${period}`, { date })]);
  const dateInput = h('input', { type: 'date', id: 'report-date', value: date, required: true });
  const boxes = {
    township: h('div', { class: 'chart-box', id: 'chart-township' }),
    rates: h('div', { class: 'chart-box', id: 'chart-rates' }),
    channel: h('div', { class: 'chart-box', id: 'chart-channel' }),
  };
  const total = report.total;
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, `${t('reports.title')} · ${t(`reports.${period}`)}`)),
    h(
      'div',
      { class: 'report-controls no-print' },
      h(
        'nav',
        { class: 'segmented', 'aria-label': t('reports.period') },
        PERIODS.map((p) => h('a', { href: `#/reports/${p}?date=${date}`, 'aria-current': p === period ? 'page' : null, id: `period-${p}` }, t(`reports.${p}`))),
      ),
      h(
        'form',
        {
          class: 'inline',
          onsubmit: (event) => {
            event.preventDefault();
            window.location.hash = `#/reports/${period}?date=${dateInput.value}`;
          },
        },
        h('label', { for: 'report-date' }, t('reports.date')),
        dateInput,
        h('button', { type: 'submit' }, t('reports.show')),
      ),
      h(
        'div',
        { class: 'links' },
        h('a', { href: url(`/reports/${period}`, { date, format: 'csv' }, false), download: `report-${period}-${date}.csv`, onclick: download(`/reports/${period}`, { date, format: 'csv' }, `report-${period}-${date}.csv`), id: 'report-csv', class: 'button' }, t('reports.csv')),
        h('a', { href: url(`/reports/${period}`, { date, format: 'html' }, false), target: '_blank', rel: 'noopener', onclick: download(`/reports/${period}`, { date, format: 'html' }), id: 'report-html', class: 'button' }, t('reports.html')),
        h('button', { type: 'button', onclick: () => window.print() }, t('reports.print')),
      ),
    ),
    h('p', { class: 'muted', id: 'report-period' }, t('reports.from', { period: t(`reports.${period}`), date: report.from_date, time: dateTime(report.generated_at_ms) })),
    h(
      'div',
      { class: 'figures', id: 'report-figures' },
      figure(t('reports.requests'), String(total.requests)),
      figure(t('reports.pre_emptive_rate'), percent(total.pre_emptive_rate), { tone: 'good' }),
      figure(t('reports.response_rate'), percent(total.response_rate)),
      figure(t('reports.resolution_rate'), percent(total.resolution_rate)),
      figure(t('reports.satisfaction'), total.satisfaction_mean === null ? t('common.dash') : `${total.satisfaction_mean.toFixed(2)} / 5`),
      figure(t('reports.satisfied_rate'), percent(total.satisfied_rate)),
      figure(t('reports.dispatch_sla'), percent(total.dispatch_sla_rate)),
      figure(t('reports.on_site_sla'), percent(total.on_site_sla_rate)),
      figure(t('reports.repaired_sla'), percent(total.repaired_sla_rate)),
      figure(t('reports.parts'), yuan(total.parts_cents)),
      figure(t('reports.resident_pays'), yuan(total.resident_pays_cents)),
    ),
    h(
      'div',
      { class: 'three-col' },
      panel(t('reports.by_township_chart'), null, boxes.township),
      panel(t('reports.rates_chart'), null, boxes.rates),
      panel(t('reports.channel_chart'), null, boxes.channel),
    ),
    panel(t('reports.by_township'), null, report.by_township.length ? h('div', { class: 'table-wrap scroll' }, groupTable(report.by_township, t('reports.by_township'), (k) => where.township(k))) : empty(t('reports.empty'))),
    panel(t('reports.by_team'), null, report.by_team.length ? h('div', { class: 'table-wrap scroll' }, groupTable(report.by_team, t('reports.by_team'), (k) => (k === 'unassigned' ? t('order.unassigned') : teamNames.name(k)))) : empty(t('reports.empty'))),
    panel(t('reports.by_vendor'), null, report.by_vendor.length ? h('div', { class: 'table-wrap scroll' }, groupTable(report.by_vendor, t('reports.by_vendor'), (k) => k)) : empty(t('reports.empty'))),
  );
  charts(report, where, boxes);
  let resizeTimer = null;
  const onResize = () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => charts(report, where, boxes), 200);
  };
  window.addEventListener('resize', onResize);
  return () => {
    window.removeEventListener('resize', onResize);
    window.clearTimeout(resizeTimer);
  };
}
