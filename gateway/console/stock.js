// Page 10, parts stock and backup heaters (备件): the stock lines of the service points
// (`point:{township}`) and vans (`van:{technician}`) the token may see, low lines marked with
// since when; for the roles that may, forms to receive goods, move parts between two locations
// and set a line's reorder level; the stock-outs (parts an order needed at dispatch that neither
// the van nor the point had) with their repair times; and the backup heaters with their loans
// (overdue ones marked), a form to register one, lend one for an open repair order until a date,
// and take one back. The API checks every right again; the page only hides what it would refuse.

import { t, code } from './i18n.js';
import { get, post, registry } from './api.js';
import { h, fill, table, panel, empty, errorBox, places, dateTime, figure, tag } from './ui.js';

/** Which roles (of `GET /api/v1/whoami`) may do what here, as the API allows it. */
const MAY = {
  receive: ['operator', 'township'],
  transfer: ['operator', 'township', 'team'],
  level: ['operator', 'township'],
  backup: ['operator', 'township'],
  giveBack: ['operator', 'township', 'team'],
  outs: ['operator', 'read_only', 'township'],
};

/** Most lines one request asks for (the API's own bound). */
const LINE_LIMIT = 10000;
/** The stock-outs listed: this many days back. */
const OUT_DAYS = 30;
const DAY_MS = 86_400_000;
/** The longest loan the API accepts, in days. */
const MAX_LOAN_DAYS = 90;
/** Most of one part a receipt or transfer moves; the highest reorder level. */
const MAX_QUANTITY = 10000;

/** A location as people read it: `延庆镇服务点`, `车辆 tech-01`; else the id itself. */
export function locationLabel(location, where) {
  if (location.startsWith('point:')) return t('stock.point', { name: where.township(location.slice('point:'.length)) });
  if (location.startsWith('van:')) return t('stock.van', { id: location.slice('van:'.length) });
  return location;
}

function locationCell(location, where) {
  return [locationLabel(location, where), ' ', h('code', { class: 'muted' }, location)];
}

/** A Beijing date `days` from today, `YYYY-MM-DD`. */
function cstDatePlus(days) {
  return new Date(Date.now() + 8 * 3600 * 1000 + days * DAY_MS).toISOString().slice(0, 10);
}

function linesTable(lines, where) {
  if (!lines.length) return empty(t('stock.lines_empty'));
  return h(
    'div',
    { class: 'table-wrap stock-scroll' },
    table(
      [
        { label: t('stock.location'), cell: (l) => locationCell(l.location, where) },
        { label: t('col.part'), cell: (l) => [l.part_name, ' ', h('code', { class: 'muted' }, l.part_code)] },
        { label: t('stock.on_hand'), cell: (l) => String(l.on_hand), class: 'num on-hand' },
        { label: t('stock.reserved'), cell: (l) => String(l.reserved), class: 'num reserved' },
        { label: t('stock.available'), cell: (l) => h('strong', null, String(l.available)), class: 'num available' },
        { label: t('stock.reorder_level'), cell: (l) => (l.reorder_level ? String(l.reorder_level) : t('stock.no_level')), class: 'num' },
        {
          label: t('stock.status'),
          cell: (l) => (l.low_since_ms === null || l.low_since_ms === undefined ? t('common.dash') : tag(t('stock.low_since', { time: dateTime(l.low_since_ms) }), 'low')),
        },
      ],
      lines,
      {
        caption: t('stock.lines'),
        className: 'stock-lines',
        rowAttrs: (l) => ({
          class: l.low_since_ms === null || l.low_since_ms === undefined ? null : 'stock-low',
          dataset: { location: l.location, part: l.part_code, low: String(l.low_since_ms !== null && l.low_since_ms !== undefined), onHand: String(l.on_hand), reserved: String(l.reserved), available: String(l.available) },
        }),
      },
    ),
    lines.length >= LINE_LIMIT ? h('p', { class: 'muted' }, t('stock.more', { n: LINE_LIMIT })) : null,
  );
}

function outsTable(outs, where, partNames) {
  if (!outs.length) return empty(t('stock.outs_empty', { days: OUT_DAYS }));
  // The ones still waiting for their repair first, then the newest.
  const waiting = (o) => (o.resolved_at_ms === null || o.resolved_at_ms === undefined ? 1 : 0);
  const sorted = [...outs].sort((a, b) => waiting(b) - waiting(a) || b.at_ms - a.at_ms);
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: t('col.order'), cell: (o) => h('a', { href: `#/order/${o.order_id}` }, `#${o.order_id}`) },
        { label: t('prevention.township'), cell: (o) => where.township(o.township) },
        { label: t('col.part'), cell: (o) => [partNames.get(o.part_code) || o.part_code, ' ', h('code', { class: 'muted' }, o.part_code)] },
        { label: t('col.qty'), cell: (o) => String(o.quantity), class: 'num' },
        { label: t('stock.out_since'), cell: (o) => dateTime(o.at_ms) },
        { label: t('stock.repaired_at'), cell: (o) => (o.resolved_at_ms === null || o.resolved_at_ms === undefined ? tag(t('stock.not_repaired'), 'warn') : dateTime(o.resolved_at_ms)) },
      ],
      sorted,
      { caption: t('stock.outs', { days: OUT_DAYS }), rowAttrs: (o) => ({ dataset: { orderId: String(o.order_id), part: o.part_code, open: String(Boolean(waiting(o))) } }) },
    ),
  );
}

/**
 * A form of one stock action with its own status line: `fields` are [label, control] pairs;
 * `submit()` sends it and returns the text that says what was done.
 */
function actionForm(id, title, fields, buttonText, submit) {
  const status = h('p', { class: 'action-status', id: `${id}-status`, role: 'status', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'primary', id: `${id}-submit` }, buttonText);
  return h(
    'form',
    {
      class: 'action',
      id,
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        status.className = 'action-status';
        status.textContent = '';
        try {
          status.textContent = await submit();
          status.className = 'action-status ok';
        } catch (error) {
          status.textContent = t('common.error', { message: error.message });
          status.className = 'action-status failed';
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h3', null, title),
    fields.map(([label, control]) =>
      control.type === 'checkbox'
        ? h('div', { class: 'field check' }, control, h('label', { for: control.id }, label))
        : h('div', { class: 'field' }, h('label', { for: control.id }, label), control),
    ),
    button,
    status,
  );
}

/** The controls the stock forms share: a location, a part of the price list, a count, a note. */
const controls = {
  location: (id, value) => h('input', { id, type: 'text', required: true, list: 'stock-locations', autocomplete: 'off', spellcheck: 'false', maxlength: '80', placeholder: 'point:… / van:…', value: value || null }),
  part: (id, parts) => h('select', { id, required: true }, h('option', { value: '' }, t('steps.choose_part')), parts.map((p) => h('option', { value: p.code }, `${p.name} (${p.code})`))),
  count: (id, min, value) => h('input', { id, type: 'number', required: true, min: String(min), max: String(MAX_QUANTITY), value: String(value), inputmode: 'numeric' }),
  note: (id) => h('input', { id, type: 'text', maxlength: '500', autocomplete: 'off' }),
};

/** The receipt, transfer and reorder-level forms the role may use; `done()` reloads the page's lists. */
function stockForms(role, parts, ownPoint, done) {
  const forms = [];
  const partName = (code) => (parts.find((p) => p.code === code) || { name: code }).name;
  if (MAY.receive.includes(role)) {
    const [location, part, quantity, note] = [controls.location('receipt-location', ownPoint), controls.part('receipt-part', parts), controls.count('receipt-qty', 1, 1), controls.note('receipt-note')];
    forms.push(
      actionForm('stock-receipt', t('stock.receive'), [[t('stock.location'), location], [t('col.part'), part], [t('stock.quantity'), quantity], [t('col.note'), note]], t('stock.receive'), async () => {
        const line = await post('/stock/receipts', { location: location.value.trim(), part_code: part.value, quantity: Number(quantity.value), note: note.value.trim() });
        await done();
        return t('stock.received', { part: partName(line.part_code), n: quantity.value, location: line.location, available: line.available });
      }),
    );
  }
  if (MAY.transfer.includes(role)) {
    const [from, to, part, quantity, note] = [controls.location('transfer-from', ownPoint), controls.location('transfer-to'), controls.part('transfer-part', parts), controls.count('transfer-qty', 1, 1), controls.note('transfer-note')];
    forms.push(
      actionForm('stock-transfer', t('stock.transfer'), [[t('stock.from'), from], [t('stock.to'), to], [t('col.part'), part], [t('stock.quantity'), quantity], [t('col.note'), note]], t('stock.transfer'), async () => {
        const body = { from: from.value.trim(), to: to.value.trim(), part_code: part.value, quantity: Number(quantity.value), note: note.value.trim() };
        await post('/stock/transfers', body);
        await done();
        return t('stock.transferred', { part: partName(body.part_code), n: body.quantity, from: body.from, to: body.to });
      }),
    );
  }
  if (MAY.level.includes(role)) {
    const [location, part, level] = [controls.location('level-location', ownPoint), controls.part('level-part', parts), controls.count('level-value', 0, 0)];
    forms.push(
      actionForm('stock-level', t('stock.set_level'), [[t('stock.location'), location], [t('col.part'), part], [t('stock.reorder_level'), level]], t('stock.set_level'), async () => {
        const line = await post('/stock/levels', { location: location.value.trim(), part_code: part.value, reorder_level: Number(level.value) });
        await done();
        return t('stock.level_set', { part: partName(line.part_code), location: line.location, level: line.reorder_level });
      }),
    );
  }
  return forms;
}

/** The small form in an available unit's row: the repair order and the return date. */
function lendForm(unit, act) {
  const order = h('input', { id: `lend-${unit.id}-order`, type: 'number', min: '1', required: true, inputmode: 'numeric', class: 'lend-order' });
  const until = h('input', { id: `lend-${unit.id}-date`, type: 'date', required: true, value: cstDatePlus(7), min: cstDatePlus(1), max: cstDatePlus(MAX_LOAN_DAYS - 1) });
  return h(
    'form',
    {
      class: 'lend',
      dataset: { unitId: unit.id },
      onsubmit: (event) => {
        event.preventDefault();
        // Due back at the end of that day in Beijing.
        const returnBy = Date.parse(`${until.value}T23:59:59+08:00`);
        act(event.target, `/backup-units/${encodeURIComponent(unit.id)}/lend`, { order_id: Number(order.value), return_by_ms: returnBy, note: '' }, (loan) =>
          t('stock.lent', { id: unit.id, order: loan.loan_order.id }),
        );
      },
    },
    h('span', { class: 'field' }, h('label', { for: order.id }, t('stock.lend_order')), order),
    h('span', { class: 'field' }, h('label', { for: until.id }, t('stock.lend_date')), until),
    h('button', { type: 'submit' }, t('stock.lend')),
  );
}

function unitActions(unit, role, act) {
  if (unit.state === 'lent' && MAY.giveBack.includes(role)) {
    return h(
      'button',
      { type: 'button', class: 'give-back', id: `return-${unit.id}`, onclick: (event) => act(event.target, `/backup-units/${encodeURIComponent(unit.id)}/return`, {}, () => t('stock.returned', { id: unit.id })) },
      t('stock.return'),
    );
  }
  if (unit.state === 'available' && MAY.backup.includes(role)) return lendForm(unit, act);
  return t('common.dash');
}

function orderLink(id) {
  return id === null || id === undefined ? t('common.dash') : h('a', { href: `#/order/${id}` }, `#${id}`);
}

function unitsTable(units, where, role, act) {
  if (!units.length) return empty(t('stock.backup_empty'));
  return h(
    'div',
    { class: 'table-wrap scroll' },
    table(
      [
        { label: t('stock.unit'), cell: (u) => [h('code', null, u.id), u.note ? h('span', { class: 'muted' }, ` · ${u.note}`) : null] },
        { label: t('stock.kind'), cell: (u) => code('backup_kind', u.kind) },
        { label: t('prevention.township'), cell: (u) => where.township(u.township) },
        { label: t('stock.state'), cell: (u) => [tag(code('backup_state', u.state), `backup-${u.state}`), u.overdue ? [' ', tag(t('stock.overdue'), 'overdue')] : null] },
        { label: t('stock.for_order'), cell: (u) => orderLink(u.for_order_id) },
        { label: t('stock.loan_order'), cell: (u) => orderLink(u.loan_order_id) },
        { label: t('stock.lent_at'), cell: (u) => dateTime(u.lent_at_ms) },
        { label: t('stock.return_by'), cell: (u) => (u.overdue ? h('strong', { class: 'overdue' }, dateTime(u.return_by_ms)) : dateTime(u.return_by_ms)) },
        { label: t('stock.actions'), cell: (u) => unitActions(u, role, act) },
      ],
      units,
      {
        caption: t('stock.backup'),
        className: 'backup-units',
        rowAttrs: (u) => ({ class: u.overdue ? 'overdue' : null, dataset: { unitId: u.id, state: u.state, overdue: String(Boolean(u.overdue)) } }),
      },
    ),
  );
}

/** The form that registers a backup unit at a township's point (or changes one not lent). */
function registerForm(where, who, done) {
  const id = h('input', { id: 'backup-id', type: 'text', required: true, maxlength: '64', pattern: '[A-Za-z0-9_\\-]{1,64}', autocomplete: 'off', spellcheck: 'false' });
  const kind = h('select', { id: 'backup-kind' }, ['heat_pump', 'gas_boiler'].map((k) => h('option', { value: k }, code('backup_kind', k))));
  const townships = who.role === 'township' ? where.townships.filter((tw) => tw.id === who.township) : where.townships;
  const township = h('select', { id: 'backup-township', required: true }, townships.map((tw) => h('option', { value: tw.id }, where.township(tw.id))));
  const inService = h('input', { id: 'backup-in-service', type: 'checkbox', checked: true });
  const note = controls.note('backup-note');
  return actionForm(
    'backup-register',
    t('stock.register'),
    [[t('stock.unit'), id], [t('stock.kind'), kind], [t('prevention.township'), township], [t('stock.in_service'), inService], [t('col.note'), note]],
    t('stock.register'),
    async () => {
      const unit = await post('/backup-units', { id: id.value.trim(), kind: kind.value, township: township.value, in_service: inService.checked, note: note.value.trim() });
      await done();
      return t('stock.registered', { id: unit.id });
    },
  );
}

function figures(data) {
  const lent = data.units.filter((u) => u.state === 'lent').length;
  const overdue = data.units.filter((u) => u.overdue).length;
  const low = data.lines.filter((l) => l.low_since_ms !== null && l.low_since_ms !== undefined).length;
  const openOuts = data.outs ? data.outs.filter((o) => o.resolved_at_ms === null || o.resolved_at_ms === undefined).length : null;
  return [
    figure(t('stock.fig_lines'), String(data.lines.length)),
    figure(t('stock.fig_low'), String(low), { tone: low ? 'bad' : 'good' }),
    openOuts === null ? null : figure(t('stock.fig_outs'), String(openOuts), { tone: openOuts ? 'bad' : null }),
    figure(t('stock.fig_lent'), String(lent)),
    figure(t('stock.fig_overdue'), String(overdue), { tone: overdue ? 'bad' : null }),
  ];
}

/** The filter of the lines: location text (id or name) and low only, kept in the address. */
function filterForm(filters, changed) {
  const location = h('input', {
    type: 'search',
    id: 'stock-location',
    value: filters.location,
    list: 'stock-locations',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: t('stock.location_hint'),
    oninput: (e) => {
      filters.location = e.target.value.trim();
      changed(false);
    },
  });
  const low = h('input', {
    type: 'checkbox',
    id: 'stock-low',
    checked: filters.low,
    onchange: (e) => {
      filters.low = e.target.checked;
      changed(true);
    },
  });
  return h(
    'form',
    { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'field wide' }, h('label', { for: 'stock-location' }, t('stock.filter_location')), location),
    h('div', { class: 'field check' }, low, h('label', { for: 'stock-low' }, t('stock.low_only'))),
  );
}

export async function mount(main, _args, query, context) {
  const [where, parts, who] = await Promise.all([places(), registry('parts').catch(() => []), get('/whoami').catch(() => ({ role: null }))]);
  const role = who.role;
  const partNames = new Map(parts.map((p) => [p.code, p.name]));
  const ownPoint = who.township ? `point:${who.township}` : '';
  const filters = { location: query.get('location') || '', low: query.get('low') === '1' };
  const data = { lines: [], outs: MAY.outs.includes(role) ? [] : null, units: [] };
  const [figuresBox, linesBox, outsBox, unitsBox] = [h('div', { class: 'figures', id: 'stock-figures' }), h('div', { id: 'stock-lines' }), h('div'), h('div')];
  const locations = h('datalist', { id: 'stock-locations' });
  const backupStatus = h('p', { class: 'action-status', id: 'backup-status', role: 'status', 'aria-live': 'polite' });
  let mounted = true;
  // Each list draws only its latest answer: a slow one overtaken by a newer request is dropped.
  const latest = { lines: 0, outs: 0, units: 0 };
  const current = (list, ticket) => mounted && ticket === latest[list];

  const shown = () => {
    const text = filters.location.toLowerCase();
    return data.lines.filter((l) => !text || l.location.toLowerCase().includes(text) || locationLabel(l.location, where).toLowerCase().includes(text));
  };
  const drawLines = () => {
    fill(linesBox, linesTable(shown(), where));
    fill(figuresBox, figures(data));
    const known = new Set([...where.townships.map((tw) => `point:${tw.id}`), ...data.lines.map((l) => l.location)]);
    fill(locations, [...known].sort().map((l) => h('option', { value: l }, locationLabel(l, where))));
  };
  async function loadLines() {
    const ticket = ++latest.lines;
    try {
      const lines = await get('/stock', { low: filters.low ? 'true' : '', limit: LINE_LIMIT });
      if (!current('lines', ticket)) return;
      data.lines = lines;
      drawLines();
    } catch (error) {
      if (current('lines', ticket)) fill(linesBox, errorBox(error));
    }
  }
  async function loadOuts() {
    if (data.outs === null) return;
    const ticket = ++latest.outs;
    try {
      const outs = await get('/stock/outs', { from_ms: Date.now() - OUT_DAYS * DAY_MS });
      if (!current('outs', ticket)) return;
      data.outs = outs;
      fill(outsBox, outsTable(outs, where, partNames));
      fill(figuresBox, figures(data));
    } catch (error) {
      if (current('outs', ticket)) fill(outsBox, errorBox(error));
    }
  }
  // A lend or a return: the button waits for the answer, the status line says how it went.
  const act = async (control, path, body, said) => {
    const button = control.tagName === 'FORM' ? control.querySelector('button') : control;
    button.disabled = true;
    try {
      const answer = await post(path, body);
      backupStatus.textContent = said(answer);
      backupStatus.className = 'action-status ok';
      await loadUnits();
    } catch (error) {
      backupStatus.textContent = t('common.error', { message: error.message });
      backupStatus.className = 'action-status failed';
      button.disabled = false;
    }
  };
  async function loadUnits() {
    const ticket = ++latest.units;
    try {
      const units = await get('/backup-units');
      if (!current('units', ticket)) return;
      data.units = units;
      fill(unitsBox, unitsTable(units, where, role, act));
      fill(figuresBox, figures(data));
    } catch (error) {
      if (current('units', ticket)) fill(unitsBox, errorBox(error));
    }
  }
  const reload = () => Promise.all([loadLines(), loadOuts(), loadUnits()]);

  const changed = (refetch) => {
    const params = new URLSearchParams();
    if (filters.location) params.set('location', filters.location);
    if (filters.low) params.set('low', '1');
    const search = params.toString();
    window.history.replaceState(null, '', `#/stock${search ? `?${search}` : ''}`);
    if (refetch) loadLines();
    else drawLines();
  };
  const forms = stockForms(role, parts, ownPoint, reload);
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('stock.title')), h('button', { type: 'button', id: 'stock-refresh', onclick: () => reload() }, t('common.refresh'))),
    h('p', { class: 'muted' }, t('stock.intro')),
    figuresBox,
    locations,
    h(
      'div',
      { class: 'stock-layout' },
      panel(t('stock.lines'), { id: 'stock-lines-panel' }, filterForm(filters, changed), linesBox),
      forms.length ? panel(t('stock.forms'), { id: 'stock-forms' }, h('div', { class: 'actions' }, forms)) : h('p', { class: 'notice', id: 'stock-read-only' }, t('stock.read_only')),
    ),
    data.outs === null ? null : panel(t('stock.outs', { days: OUT_DAYS }), { id: 'stock-outs' }, h('p', { class: 'muted' }, t('stock.outs_hint')), outsBox),
    panel(
      t('stock.backup'),
      { id: 'stock-backup' },
      backupStatus,
      unitsBox,
      MAY.backup.includes(role) ? h('div', { class: 'actions' }, registerForm(where, who, loadUnits)) : null,
    ),
  );
  await reload();
  // Dispatches reserve parts and record stock-outs: the lines and stock-outs follow the order
  // stream, reloaded at most once a second however many events come (a busy district sends
  // them faster than that). The backup table is redrawn only after its own actions (it holds
  // the lend forms).
  let pending = null;
  const unsubscribe = context.onStream(() => {
    if (pending !== null) return;
    pending = window.setTimeout(() => {
      pending = null;
      loadLines();
      loadOuts();
    }, 1000);
  });
  return () => {
    mounted = false;
    unsubscribe();
    window.clearTimeout(pending);
  };
}

/** The parts an order holds (`GET /api/v1/orders/{id}/parts`) as a short read-only list. */
export function heldParts(held, partNames, where) {
  return h(
    'div',
    { id: 'order-held', dataset: { count: String(held.length) } },
    held.length
      ? h(
          'ul',
          { class: 'held-parts' },
          held.map((r) => h('li', { dataset: { part: r.part_code, location: r.location } }, `${partNames.get(r.part_code) || r.part_code} ×${r.quantity} · `, locationLabel(r.location, where))),
        )
      : empty(t('order.held_empty')),
  );
}
