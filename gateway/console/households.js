// Page 5, households: the search a hotline desk uses (phone or its last digits, 老王, address,
// village, device id; several terms ANDed, e.g. "老王, 西关村"), one page of households at a time,
// each with its people and devices. Also the people block the order page shows. Names and numbers
// arrive masked from the API for read-only roles; this page shows what it is given.

import { t } from './i18n.js';
import { get } from './api.js';
import { h, fill, table, empty, errorBox, tag } from './ui.js';

const PAGE = 20;

/** A phone number as people read it (`138 0013 8000`), as a `tel:` link unless masked. */
export function phoneLink(phone, masked) {
  const shown = /^1\d{10}$/.test(phone) ? `${phone.slice(0, 3)} ${phone.slice(3, 7)} ${phone.slice(7)}` : phone;
  if (masked || !/^\d+$/.test(phone)) return h('span', { class: 'phone masked' }, shown);
  return h('a', { class: 'phone', href: `tel:${phone}` }, shown);
}

function phones(list, masked) {
  if (!list || !list.length) return t('common.dash');
  return h('span', { class: 'phones' }, list.map((p, i) => [i ? ' · ' : null, phoneLink(p, masked)]));
}

/** A tag for a site that is not a home (activity room, clinic, school, greenhouse). */
function siteTag(household) {
  const site = household.site_type;
  return site && site !== 'home' ? [' ', tag(t(`site.${site}`), `site-${site}`)] : null;
}

/** The household's people as a definition list: resident, phones, address, caretaker. */
export function peopleFacts(household) {
  const masked = household.masked;
  const rows = [
    [t('people.resident'), h('span', { id: 'people-resident' }, household.resident, household.vulnerable ? [' ', tag(t('people.vulnerable'), 'vulnerable')] : null, siteTag(household))],
    [t('people.phones'), h('span', { id: 'people-phones' }, phones(household.phones, masked))],
    [t('people.address'), household.address],
    [t('people.village'), household.village_name],
    [
      t('people.caretaker'),
      household.caretaker ? h('span', { id: 'people-caretaker' }, household.caretaker.name, ' ', phoneLink(household.caretaker.phone, masked)) : t('common.none'),
    ],
  ];
  return [
    h('dl', { class: 'facts people', id: 'order-people', dataset: { masked: String(masked) } }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    masked ? h('p', { class: 'muted hint' }, t('people.masked')) : null,
  ];
}

function results(page, offset, go) {
  if (!page.items.length) return empty(t('households.none'));
  const rows = table(
    [
      { label: t('people.resident'), cell: (x) => [x.resident, x.vulnerable ? [' ', tag(t('people.vulnerable'), 'vulnerable')] : null, siteTag(x)] },
      { label: t('people.phones'), cell: (x) => phones(x.phones, x.masked) },
      { label: t('people.address'), cell: (x) => x.address },
      { label: t('people.village'), cell: (x) => x.village_name },
      { label: t('people.caretaker'), cell: (x) => (x.caretaker ? [x.caretaker.name, ' ', phoneLink(x.caretaker.phone, x.masked)] : t('common.none')) },
      {
        label: t('col.device'),
        cell: (x) => (x.device_ids.length ? x.device_ids.map((id, i) => [i ? ' ' : null, h('a', { href: `#/device/${encodeURIComponent(id)}` }, id)]) : t('common.dash')),
      },
    ],
    page.items,
    { caption: t('households.title'), rowAttrs: (x) => ({ dataset: { householdId: x.id } }), className: 'households' },
  );
  const last = Math.min(offset + page.items.length, page.total);
  return [
    h('p', { class: 'muted', id: 'households-count' }, t('households.count', { from: offset + 1, to: last, total: page.total })),
    h('div', { class: 'table-wrap' }, rows),
    h(
      'div',
      { class: 'pager' },
      h('button', { type: 'button', disabled: offset === 0, onclick: () => go(Math.max(0, offset - PAGE)) }, t('households.previous')),
      h('button', { type: 'button', disabled: last >= page.total, onclick: () => go(offset + PAGE) }, t('households.next')),
    ),
  ];
}

export async function mount(main, _args, query) {
  let q = query.get('q') || '';
  let offset = 0;
  const list = h('div', { id: 'households-results', 'aria-live': 'polite' });
  const input = h('input', { type: 'search', id: 'households-q', value: q, autocomplete: 'off', spellcheck: 'false', placeholder: t('households.placeholder') });
  let mine = 0;
  let mounted = true;
  async function load() {
    const ticket = ++mine;
    try {
      const asked = q;
      const page = await get('/households', { q: asked, offset, limit: PAGE });
      if (mounted && ticket === mine) {
        // The query these results answer (a test, or a slow answer, can tell them apart).
        list.dataset.q = asked;
        fill(list, results(page, offset, go));
      }
    } catch (error) {
      if (mounted && ticket === mine) fill(list, errorBox(error));
    }
  }
  function go(next) {
    offset = next;
    load();
  }
  let timer = null;
  input.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      q = input.value.trim();
      offset = 0;
      window.history.replaceState(null, '', `#/households${q ? `?q=${encodeURIComponent(q)}` : ''}`);
      load();
    }, 250);
  });
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, t('households.title'))),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field wide' }, h('label', { for: 'households-q' }, t('households.search')), input),
      h('p', { class: 'hint muted' }, t('households.hint')),
    ),
    list,
  );
  await load();
  return () => {
    mounted = false;
    window.clearTimeout(timer);
  };
}
