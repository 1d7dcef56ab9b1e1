// Page 2, the fleet: townships -> villages -> households, each device a tile coloured by its
// indoor temperature with its status (online, offline, faulty), filters by township and status,
// and "cold homes now" (indoor below 16 °C).

import { t } from './i18n.js';
import { get } from './api.js';
import { h, fill, empty, errorBox, places, celsius, clockTime, COLD_INDOOR_C } from './ui.js';

/** Indoor temperature bands, coldest first: [upper bound °C, class]. */
const BANDS = [
  [12, 't-freezing'],
  [COLD_INDOOR_C, 't-cold'],
  [18, 't-cool'],
  [22, 't-ok'],
  [25, 't-warm'],
  [Infinity, 't-hot'],
];

function band(indoor) {
  if (indoor === null || indoor === undefined) return 't-none';
  return BANDS.find(([upper]) => indoor < upper)[1];
}

function indoorOf(device) {
  const value = device.values ? device.values.indoor_temp_c : undefined;
  return typeof value === 'number' ? value : null;
}

function isCold(device) {
  const indoor = indoorOf(device);
  return indoor !== null && indoor < COLD_INDOOR_C;
}

function statusOf(device) {
  if (device.status === 'offline') return 'offline';
  if (device.fault) return 'faulty';
  return 'online';
}

function legend() {
  const labels = ['< 12 °C', `12–${COLD_INDOOR_C} °C`, `${COLD_INDOOR_C}–18 °C`, '18–22 °C', '22–25 °C', '≥ 25 °C'];
  return h(
    'div',
    { class: 'legend-scale', role: 'group', 'aria-label': t('fleet.legend') },
    h('span', { class: 'legend-title' }, t('fleet.legend')),
    BANDS.map(([, cls], i) => h('span', { class: `swatch ${cls}` }, labels[i])),
    h('span', { class: 'swatch t-none' }, t('fleet.no_reading')),
    h('span', { class: 'swatch status-offline' }, t('status.offline')),
    h('span', { class: 'swatch status-faulty' }, `! ${t('status.faulty')}`),
  );
}

function tile(device) {
  const indoor = indoorOf(device);
  const status = statusOf(device);
  const number = device.device_id.split('-').pop();
  const statusText = [t(`status.${status}`), isCold(device) ? t('status.cold') : null].filter(Boolean).join(', ');
  return h(
    'li',
    null,
    h(
      'a',
      {
        href: `#/device/${encodeURIComponent(device.device_id)}`,
        class: `tile ${band(status === 'offline' ? null : indoor)} status-${status}`,
        dataset: { deviceId: device.device_id, status, cold: String(isCold(device)) },
        title: t('fleet.tile_title', { id: device.device_id, status: statusText, t: celsius(indoor) }),
        'aria-label': t('fleet.tile_title', { id: device.device_id, status: statusText, t: celsius(indoor) }),
      },
      h('span', { class: 'tile-no' }, number),
      h('span', { class: 'tile-temp' }, indoor === null ? '–' : `${indoor.toFixed(1)}°`),
      status === 'faulty' ? h('span', { class: 'tile-flag', 'aria-hidden': 'true' }, '!') : null,
      status === 'offline' ? h('span', { class: 'tile-flag', 'aria-hidden': 'true' }, '×') : null,
    ),
  );
}

function counts(devices) {
  const result = { total: devices.length, online: 0, offline: 0, faulty: 0, cold: 0 };
  let sum = 0;
  let n = 0;
  for (const d of devices) {
    if (d.status === 'offline') result.offline += 1;
    else result.online += 1;
    if (d.fault) result.faulty += 1;
    if (isCold(d)) result.cold += 1;
    const indoor = indoorOf(d);
    if (indoor !== null && d.status !== 'offline') {
      sum += indoor;
      n += 1;
    }
  }
  result.mean = n ? sum / n : null;
  return result;
}

function grouped(devices, where) {
  const byTownship = new Map();
  for (const d of devices) {
    if (!byTownship.has(d.township)) byTownship.set(d.township, new Map());
    const village = where.villageOfDevice(d.device_id, d.township);
    const key = village ? village.id : '';
    const villages = byTownship.get(d.township);
    if (!villages.has(key)) villages.set(key, []);
    villages.get(key).push(d);
  }
  return [...byTownship.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function render(devices, where, filters) {
  const shown = devices.filter((d) => {
    if (filters.township && d.township !== filters.township) return false;
    if (filters.status && statusOf(d) !== filters.status) return false;
    if (filters.cold && !isCold(d)) return false;
    if (filters.search && !d.device_id.includes(filters.search.toLowerCase())) return false;
    return true;
  });
  const c = counts(shown);
  const summary = h('p', { class: 'fleet-summary', id: 'fleet-summary' }, t('fleet.summary', c));
  if (!shown.length) return [summary, empty(t('fleet.empty'))];
  return [
    summary,
    h('div', { class: 'fleet-townships' }, grouped(shown, where).map(([township, villages]) => {
      const all = [...villages.values()].flat();
      const tc = counts(all);
      return h(
        'details',
        { class: 'township', open: true, dataset: { township } },
        h(
          'summary',
          null,
          h('h2', null, where.township(township)),
          h(
            'span',
            { class: 'muted' },
            `${t('fleet.households', { n: tc.total })} · ${t('fleet.mean_indoor', { t: celsius(tc.mean) })} · ${tc.offline} ${t('status.offline')} · ${tc.faulty} ${t('status.faulty')} · ${tc.cold} ${t('status.cold')}`,
          ),
        ),
        h('div', { class: 'villages' }, [...villages.entries()]
          .sort(([a], [b]) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)))
          .map(([village, list]) =>
            h(
              'div',
              { class: 'village' },
              h('h3', null, village ? where.village(village) : t('fleet.other_village'), h('span', { class: 'muted' }, ` · ${t('fleet.households', { n: list.length })}`)),
              h('ul', { class: 'tiles' }, list.sort((a, b) => a.device_id.localeCompare(b.device_id)).map(tile)),
            ),
          )),
      );
    })),
  ];
}

export async function mount(main, _args, query) {
  const where = await places();
  const filters = {
    township: query.get('township') || '',
    status: query.get('status') || '',
    cold: query.get('cold') === '1',
    search: query.get('q') || '',
  };
  const grid = h('div', { id: 'fleet-grid', 'aria-live': 'off' });
  const updated = h('p', { class: 'updated muted' });

  const remember = () => {
    const params = new URLSearchParams();
    if (filters.township) params.set('township', filters.township);
    if (filters.status) params.set('status', filters.status);
    if (filters.cold) params.set('cold', '1');
    if (filters.search) params.set('q', filters.search);
    const search = params.toString();
    window.history.replaceState(null, '', `#/fleet${search ? `?${search}` : ''}`);
  };

  let devices = [];
  const redraw = () => fill(grid, render(devices, where, filters));

  const townshipSelect = h(
    'select',
    {
      id: 'filter-township',
      onchange: (e) => {
        filters.township = e.target.value;
        remember();
        redraw();
      },
    },
    h('option', { value: '' }, t('fleet.all_townships')),
    where.townships.map((tw) => h('option', { value: tw.id, selected: tw.id === filters.township }, where.township(tw.id))),
  );
  const statusSelect = h(
    'select',
    {
      id: 'filter-status',
      onchange: (e) => {
        filters.status = e.target.value;
        remember();
        redraw();
      },
    },
    ['', 'online', 'offline', 'faulty'].map((value) => h('option', { value, selected: value === filters.status }, value ? t(`status.${value}`) : t('fleet.status_all'))),
  );
  const coldBox = h('input', {
    type: 'checkbox',
    id: 'filter-cold',
    checked: filters.cold,
    onchange: (e) => {
      filters.cold = e.target.checked;
      remember();
      redraw();
    },
  });
  const search = h('input', {
    type: 'search',
    id: 'filter-search',
    value: filters.search,
    autocomplete: 'off',
    oninput: (e) => {
      filters.search = e.target.value.trim();
      remember();
      redraw();
    },
  });

  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('fleet.title')), updated),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'filter-township' }, t('fleet.township')), townshipSelect),
      h('div', { class: 'field' }, h('label', { for: 'filter-status' }, t('fleet.status')), statusSelect),
      h('div', { class: 'field' }, h('label', { for: 'filter-search' }, t('fleet.search')), search),
      h('div', { class: 'field check' }, coldBox, h('label', { for: 'filter-cold' }, t('fleet.cold'))),
    ),
    legend(),
    grid,
  );

  async function refresh() {
    try {
      devices = await get('/devices');
      redraw();
      updated.textContent = t('common.updated', { time: clockTime(Date.now()) });
    } catch (error) {
      fill(grid, errorBox(error));
    }
  }
  await refresh();
  const timer = window.setInterval(refresh, 10000);
  return () => window.clearInterval(timer);
}
