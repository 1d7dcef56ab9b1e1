// Shared pieces of the console's pages: DOM building without innerHTML, times in Beijing time,
// units of canonical values, place names from the registry, and the SLA clocks (the one place
// where the console knows the scheme's deadlines).

import { t, code, hasCode, lang, pinyin } from './i18n.js';
import { registry } from './api.js';

/**
 * SLA deadlines from an order's creation. They start as the scheme's (dispatch 10 min, on site
 * 2 h, repaired 4 h, warning at 75 %) and are replaced by what the gateway runs
 * (`GET /api/v1/sla`, `[sla]` in its config) as soon as the console has a token, so the clocks
 * count what the gateway's SLA checks count (the demo compresses them with its people).
 */
export const SLA = {
  warnAt: 0.75,
  stages: [
    { key: 'dispatch', deadlineMs: 10 * 60 * 1000, reachedField: 'dispatched_at_ms' },
    { key: 'on_site', deadlineMs: 2 * 60 * 60 * 1000, reachedField: 'on_site_at_ms' },
    { key: 'repaired', deadlineMs: 4 * 60 * 60 * 1000, reachedField: 'resolved_at_ms' },
  ],
};

/**
 * Each SLA class's deadlines (`repair`, `maintenance`, `utility`, `call`), from `GET /api/v1/sla`;
 * an order runs the clocks of its `sla_class` from `sla_from_ms` (when its class changed) or its
 * creation. A class the gateway did not name runs the stages' (the repair class's) deadlines.
 */
const CLASS_DEADLINES = {};

/** Takes the gateway's deadlines (`GET /api/v1/sla`); values that are not positive are ignored. */
export function applySla(deadlines) {
  if (!deadlines) return;
  const byKey = { dispatch: deadlines.dispatch_ms, on_site: deadlines.on_site_ms, repaired: deadlines.repaired_ms };
  for (const stage of SLA.stages) {
    const ms = Number(byKey[stage.key]);
    if (Number.isFinite(ms) && ms > 0) stage.deadlineMs = ms;
  }
  const warnAt = Number(deadlines.warn_at);
  if (Number.isFinite(warnAt) && warnAt > 0 && warnAt < 1) SLA.warnAt = warnAt;
  for (const entry of Array.isArray(deadlines.classes) ? deadlines.classes : []) {
    const ms = { dispatch: Number(entry.dispatch_ms), on_site: Number(entry.on_site_ms), repaired: Number(entry.repaired_ms) };
    if (typeof entry.class === 'string' && Object.values(ms).every((v) => Number.isFinite(v) && v > 0)) {
      CLASS_DEADLINES[entry.class] = ms;
    }
  }
}

/** The deadline of `stage` for `order`'s SLA class, in ms from its clock start. */
function deadlineOf(order, stage) {
  const own = CLASS_DEADLINES[order.sla_class];
  return own ? own[stage.key] : stage.deadlineMs;
}

/** When `order`'s clocks started: the change of its SLA class, or its creation. */
function clockStart(order) {
  return Number.isFinite(order.sla_from_ms) ? order.sla_from_ms : order.created_at_ms;
}

/** The legend of the SLA clocks with the deadlines in force. */
export function slaLegend() {
  const zh = lang() === 'zh';
  const span = (ms) => {
    const s = Math.round(ms / 1000);
    if (s % 3600 === 0) return zh ? `${s / 3600} 小时` : `${s / 3600} h`;
    if (s % 60 === 0) return zh ? `${s / 60} 分钟` : `${s / 60} min`;
    return zh ? `${s} 秒` : `${s} s`;
  };
  const [dispatch, onSite, repaired] = SLA.stages.map((stage) => span(stage.deadlineMs));
  return t('live.sla_legend', { dispatch, on_site: onSite, repaired, warn: Math.round(SLA.warnAt * 100) });
}

/** Below this indoor temperature a home is "cold now" (°C). */
export const COLD_INDOOR_C = 16;

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends children: strings become text, arrays are flattened, null and false are skipped. */
export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: `h('a', {href: '#/'}, 'text', child...)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const TIME_ZONE = 'Asia/Shanghai';

function formatter(options) {
  return new Intl.DateTimeFormat(lang() === 'zh' ? 'zh-CN' : 'en-GB', { timeZone: TIME_ZONE, hour12: false, ...options });
}

/** `2026-11-29 18:59:23` in Beijing time. */
export function dateTime(ms) {
  if (ms === null || ms === undefined) return t('common.dash');
  const parts = Object.fromEntries(
    formatter({ year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

/** `18:59:23` in Beijing time. */
export function clockTime(ms) {
  if (ms === null || ms === undefined) return t('common.dash');
  return formatter({ hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(ms));
}

/** `18:59` in Beijing time. */
export function hourMinute(ms) {
  return formatter({ hour: '2-digit', minute: '2-digit' }).format(new Date(ms));
}

/** Today's date in Beijing, `YYYY-MM-DD`. */
export function todayCst() {
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);
}

/** A duration as `M:SS` or `H:MM:SS`. */
export function duration(ms) {
  const total = Math.floor(Math.abs(ms) / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n) => String(n).padStart(2, '0');
  return hours > 0 ? `${hours}:${two(minutes)}:${two(seconds)}` : `${minutes}:${two(seconds)}`;
}

/** A share 0..1 as `87.5 %`, or a dash. */
export function percent(value) {
  return value === null || value === undefined ? t('common.dash') : `${(value * 100).toFixed(1)} %`;
}

/** Fen as `123.45`. */
export function yuan(cents) {
  return ((cents || 0) / 100).toFixed(2);
}

const UNITS = [
  ['_temp_c', '°C'],
  ['_c', '°C'],
  ['_kwh', 'kWh'],
  ['_w', 'W'],
  ['_mbar', 'mbar'],
  ['_bar', 'bar'],
  ['_hz', 'Hz'],
  ['_a', 'A'],
  ['_h', 'h'],
  ['_pct', '%'],
  ['_rpm', 'rpm'],
];

/** The unit of a canonical value name, from its suffix (the wire format's naming rule). */
export function unitOf(name) {
  const found = UNITS.find(([suffix]) => name.endsWith(suffix));
  return found ? found[1] : '';
}

/** Canonical values that are on/off flags (1 or 0). */
const FLAGS = new Set(['running', 'defrost_active', 'flame_on']);

/** A value with its unit: `20.5 °C`, `2761 W`; flags as yes/no. */
export function withUnit(name, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return t('common.dash');
  if (FLAGS.has(name)) return value ? t('common.yes') : t('common.no');
  const unit = unitOf(name);
  const digits = Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : 1;
  const text = Number(value).toFixed(unit === 'bar' ? 2 : digits);
  return unit ? `${text} ${unit}` : text;
}

/** `20.5 °C` or a dash. */
export function celsius(value) {
  return value === null || value === undefined ? t('common.dash') : `${Number(value).toFixed(1)} °C`;
}

/** Township and village names from the registry (Chinese names; pinyin of the ids in English). */
export async function places() {
  const [townships, villages] = await Promise.all([
    registry('townships').catch(() => []),
    registry('villages').catch(() => []),
  ]);
  const townshipNames = new Map(townships.map((tw) => [tw.id, tw.name]));
  const villageById = new Map(villages.map((v) => [v.id, v]));
  return {
    townships,
    villages,
    township(id) {
      if (!id) return t('common.dash');
      return lang() === 'zh' && townshipNames.has(id) ? townshipNames.get(id) : pinyin(id);
    },
    village(id) {
      if (!id) return t('common.dash');
      const village = villageById.get(id);
      if (!village) return pinyin(id);
      if (lang() === 'zh') return village.name;
      const prefix = `${village.township_id}-`;
      return pinyin(id.startsWith(prefix) ? id.slice(prefix.length) : id);
    },
    /** The registered village a device id belongs to (`{village id}-{number}`), if any. */
    villageOfDevice(deviceId, townshipId) {
      let best = null;
      for (const v of villages) {
        if (townshipId && v.township_id !== townshipId) continue;
        if (deviceId.startsWith(`${v.id}-`) && (!best || v.id.length > best.id.length)) best = v;
      }
      return best;
    },
  };
}

/** Team names from the registry. */
export async function teams() {
  const list = await registry('teams').catch(() => []);
  const byId = new Map(list.map((team) => [team.id, team]));
  return {
    list,
    name(id) {
      if (!id) return t('order.unassigned');
      const team = byId.get(id);
      return team ? team.name : id;
    },
    get(id) {
      return byId.get(id);
    },
  };
}

/** True while an order still needs work (not closed, cancelled or merged). */
export function isOpen(order) {
  return !['closed', 'cancelled', 'merged'].includes(order.state);
}

/**
 * Where one SLA stage of an order stands at `now`: `risk` is `met`, `late` (reached after the
 * deadline), `ok`, `warn` (75 % of the time used), `breach` (deadline passed) or `stopped`.
 */
export function slaStage(order, stage, now) {
  const start = clockStart(order);
  const span = deadlineOf(order, stage);
  const deadline = start + span;
  const reached = order[stage.reachedField];
  if (reached !== null && reached !== undefined) {
    return { risk: reached <= deadline ? 'met' : 'late', ms: reached - start };
  }
  if (!isOpen(order)) return { risk: 'stopped', ms: 0 };
  const remaining = deadline - now;
  if (remaining < 0) return { risk: 'breach', ms: remaining };
  if (now - start >= span * SLA.warnAt) return { risk: 'warn', ms: remaining };
  return { risk: 'ok', ms: remaining };
}

function clockText(state) {
  switch (state.risk) {
    case 'met':
      return `✓ ${t('sla.met')} ${duration(state.ms)}`;
    case 'late':
      return `✗ ${t('sla.late')} ${duration(state.ms)}`;
    case 'breach':
      return `⚠ ${t('sla.over', { t: duration(state.ms) })}`;
    case 'stopped':
      return t('sla.stopped');
    default:
      return t('sla.left', { t: duration(state.ms) });
  }
}

/** True when any stage of an open order is past its deadline now. */
export function breached(order, now) {
  return isOpen(order) && SLA.stages.some((stage) => slaStage(order, stage, now).risk === 'breach');
}

/** The most urgent remaining time of an open order's running stages (for sorting). */
export function urgency(order, now) {
  let best = Infinity;
  for (const stage of SLA.stages) {
    const state = slaStage(order, stage, now);
    if (['ok', 'warn', 'breach'].includes(state.risk)) best = Math.min(best, state.ms);
  }
  return best;
}

/** One SLA clock; `tickClocks` keeps every clock on the page counting. */
export function slaClock(order, stage) {
  const el = h('span', { class: 'clock', dataset: { clock: stage.key } });
  el.slaOrder = order;
  el.slaStage = stage;
  renderClock(el, Date.now());
  return el;
}

function renderClock(el, now) {
  const state = slaStage(el.slaOrder, el.slaStage, now);
  el.className = `clock risk-${state.risk}`;
  el.dataset.risk = state.risk;
  const text = clockText(state);
  if (el.textContent !== text) el.textContent = text;
  el.title = `${t(`sla.${el.slaStage.key}`)}: ${text}`;
}

/** Re-renders every SLA clock in the document. */
export function tickClocks() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-clock]')) {
    if (el.slaOrder) renderClock(el, now);
  }
}

/** The three clocks of an order, each labelled. */
export function slaClocks(order) {
  return h(
    'div',
    { class: 'clocks' },
    SLA.stages.map((stage) => h('span', { class: 'clock-cell' }, h('span', { class: 'clock-label' }, t(`sla.${stage.key}`)), slaClock(order, stage))),
  );
}

/**
 * A table that turns into labelled cards on a phone: `columns` are
 * `{label, cell: row => node, class?}`; `rowAttrs(row)` adds attributes to each row.
 */
export function table(columns, rows, { caption, rowAttrs, className } = {}) {
  return h(
    'table',
    { class: `grid ${className || ''}` },
    caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h(
      'tbody',
      null,
      rows.map((row) =>
        h(
          'tr',
          rowAttrs ? rowAttrs(row) : null,
          columns.map((c) => h('td', { 'data-label': c.label, class: c.class }, h('div', { class: 'cell' }, c.cell(row)))),
        ),
      ),
    ),
  );
}

/** A labelled figure for the "today" strips. */
export function figure(label, value, { tone, id } = {}) {
  return h('div', { class: `figure ${tone ? `tone-${tone}` : ''}`, id }, h('span', { class: 'figure-value' }, value), h('span', { class: 'figure-label' }, label));
}

/** A section with a heading. */
export function panel(title, attrs, ...children) {
  const headingId = `h-${Math.random().toString(36).slice(2, 9)}`;
  return h('section', { class: 'panel', 'aria-labelledby': headingId, ...attrs }, h('h2', { id: headingId }, title), ...children);
}

/** A message for an empty list. */
export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

/** An error box for a failed request (403 says the role may not see it). */
export function errorBox(error) {
  if (error && error.status === 403) return h('p', { class: 'notice' }, t('common.forbidden'));
  if (error && error.status === 404) return h('p', { class: 'notice' }, t('common.not_found', { what: error.message }));
  return h('p', { class: 'error' }, t('common.error', { message: error && error.message ? error.message : String(error) }));
}

/** A small coloured tag: state, priority, pre-emptive. */
export function tag(text, kind) {
  return h('span', { class: `tag tag-${kind}` }, text);
}

/** The state of an order as a tag. */
export function stateTag(state) {
  return tag(code('state', state), `state-${state}`);
}

/** The priority of an order as a tag. */
export function priorityTag(priority) {
  return tag(code('priority', priority), `priority-${priority}`);
}

/** The category label of an order (order categories, else fault categories). */
export function categoryLabel(category) {
  return hasCode('category', category) ? code('category', category) : code('fault', category);
}

/** Shows a short message at the top of the page (role="alert"). */
export function flash(text, tone) {
  const box = document.getElementById('flash');
  if (!box) return;
  fill(box, text ? h('p', { class: `flash flash-${tone || 'info'}` }, text) : null);
  if (text) {
    window.clearTimeout(box.timer);
    box.timer = window.setTimeout(() => fill(box), 8000);
  }
}
