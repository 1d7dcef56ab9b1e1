// The console's shell: header, navigation, language toggle, sign-in with a bearer token, the
// role the token has (found by asking the API what it may see), the one live order stream
// shared by the pages, and the hash router that mounts a page into <main>.

import { t, lang, setLang } from './i18n.js';
import { get, stream, token, setToken, forgetRegistry } from './api.js';
import { h, fill, tickClocks, errorBox, flash, applySla } from './ui.js';
import * as live from './live.js';
import * as fleet from './fleet.js';
import * as device from './device.js';
import * as order from './order.js';
import * as reports from './reports.js';
import * as households from './households.js';
import * as intake from './intake.js';
import * as field from './field.js';
import * as prevention from './prevention.js';
import * as campaigns from './campaigns.js';
import * as stock from './stock.js';

const session = {
  /** `district` (operator, read-only), `township`, `team`, or null when not signed in. */
  role: null,
  streamState: 'closed',
};

const listeners = new Set();
let closeStream = null;
let cleanup = null;
let mounting = 0;

/** What every page gets: the session and a way to follow the live stream. */
const context = {
  session,
  /** The latest order events since the page opened, newest first (at most 100). */
  recent: [],
  /** Calls `fn(notice)` for every order event (`fn(null)` after a gap); returns an unsubscribe. */
  onStream(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};

const ROUTES = [
  { pattern: /^\/?$/, page: live, nav: 'live' },
  { pattern: /^\/live$/, page: live, nav: 'live' },
  { pattern: /^\/fleet$/, page: fleet, nav: 'fleet' },
  { pattern: /^\/device\/([^/]+)$/, page: device, nav: 'fleet' },
  { pattern: /^\/order\/(\d+)$/, page: order, nav: 'live' },
  { pattern: /^\/reports(?:\/(daily|weekly|monthly))?$/, page: reports, nav: 'reports' },
  { pattern: /^\/households$/, page: households, nav: 'households' },
  { pattern: /^\/intake$/, page: intake, nav: 'intake' },
  { pattern: /^\/field$/, page: field, nav: 'field' },
  { pattern: /^\/prevention$/, page: prevention, nav: 'prevention' },
  { pattern: /^\/campaigns(?:\/(\d+))?$/, page: campaigns, nav: 'campaigns' },
  { pattern: /^\/stock$/, page: stock, nav: 'stock' },
];

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, search] = raw.split('?');
  const query = new URLSearchParams(search || '');
  for (const route of ROUTES) {
    const match = path.match(route.pattern);
    if (match) return { route, args: match.slice(1).map((a) => (a === undefined ? a : decodeURIComponent(a))), query };
  }
  return { route: null, args: [], query };
}

function renderHeader(active) {
  document.title = t('app.doc_title');
  document.getElementById('brand-title').textContent = t('app.title');
  document.getElementById('skip-link').textContent = t('app.skip');
  const nav = document.getElementById('nav');
  nav.setAttribute('aria-label', t('nav.label'));
  const items = [
    ['live', '#/', true],
    ['intake', '#/intake', session.role !== 'team'],
    ['field', '#/field', session.role !== 'township'],
    ['fleet', '#/fleet', session.role !== 'team'],
    ['households', '#/households', session.role !== 'team'],
    ['reports', '#/reports/daily', true],
    ['prevention', '#/prevention', session.role !== 'team'],
    ['campaigns', '#/campaigns', true],
    // Every signed-in role: teams see their vans and points, read-only tokens without forms.
    ['stock', '#/stock', Boolean(session.role)],
  ];
  fill(
    nav,
    h(
      'ul',
      null,
      items
        .filter(([, , visible]) => visible)
        .map(([key, href]) => h('li', null, h('a', { href, 'aria-current': key === active ? 'page' : null, id: `nav-${key}` }, t(`nav.${key}`)))),
    ),
  );
  const langButton = document.getElementById('lang-toggle');
  langButton.textContent = t('lang.switch');
  langButton.setAttribute('aria-label', t('lang.switch_label'));
  langButton.setAttribute('lang', lang() === 'zh' ? 'en' : 'zh-CN');
  const loginButton = document.getElementById('login-toggle');
  const who = session.role ? t(`role.${session.role}`) : t('role.none');
  const how = token() ? t('login.signed_in') : session.role ? t('login.open') : t('login.button');
  loginButton.textContent = `${who} · ${how}`;
  renderStreamState();
}

function renderStreamState() {
  const el = document.getElementById('stream-state');
  el.dataset.state = session.streamState;
  el.textContent = session.role ? t(`stream.${session.streamState === 'open' ? 'open' : session.streamState === 'connecting' ? 'connecting' : 'closed'}`) : '';
}

function renderLogin(open) {
  const panel = document.getElementById('login-panel');
  const button = document.getElementById('login-toggle');
  button.setAttribute('aria-expanded', String(open));
  panel.hidden = !open;
  if (!open) return;
  const input = h('input', { id: 'token-input', type: 'password', autocomplete: 'off', spellcheck: 'false', value: token() });
  const form = h(
    'form',
    {
      onsubmit: (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        restart();
      },
    },
    h('h2', null, t('login.title')),
    h('label', { for: 'token-input' }, t('login.token')),
    input,
    h('p', { class: 'hint' }, t('login.hint')),
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary' }, t('login.save')),
      h(
        'button',
        {
          type: 'button',
          onclick: () => {
            setToken('');
            restart();
          },
        },
        t('login.clear'),
      ),
      h('button', { type: 'button', onclick: () => renderLogin(false) }, t('login.cancel')),
    ),
  );
  fill(panel, form);
  input.focus();
}

/** Finds what the token may see: the summary (district), the alerts (township), else a team. */
async function detectRole() {
  try {
    await get('/summary');
    return 'district';
  } catch (error) {
    if (error.status === 401) return null;
    if (error.status !== 403) throw error;
  }
  try {
    await get('/alerts', { active: true, limit: 1 });
    return 'township';
  } catch (error) {
    if (error.status === 401) return null;
    if (error.status === 403) return 'team';
    throw error;
  }
}

function openStream() {
  if (closeStream) closeStream();
  closeStream = stream({
    onEvent: (notice) => {
      context.recent.unshift(notice);
      if (context.recent.length > 100) context.recent.length = 100;
      listeners.forEach((fn) => fn(notice));
    },
    onLagged: () => listeners.forEach((fn) => fn(null)),
    onState: (state) => {
      session.streamState = state;
      renderStreamState();
    },
  });
}

async function route(focus) {
  const mine = ++mounting;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  flash('');
  const { route: found, args, query } = parseHash();
  renderHeader(found ? found.nav : null);
  const main = document.getElementById('main');
  if (!session.role) {
    fill(main, h('h1', { tabindex: '-1' }, t('login.title')), h('p', { class: 'notice' }, t('login.rejected')));
    return;
  }
  if (!found) {
    fill(main, h('h1', { tabindex: '-1' }, t('common.not_found', { what: window.location.hash })));
    return;
  }
  // Each page draws into its own view: a page still loading when the operator moves on draws
  // into a view that is no longer in the document.
  const view = h('div', { class: 'view' }, h('p', { class: 'loading' }, t('common.loading')));
  fill(main, view);
  try {
    const done = await found.page.mount(view, args, query, context);
    if (mine !== mounting) {
      if (typeof done === 'function') done();
      return;
    }
    cleanup = typeof done === 'function' ? done : null;
  } catch (error) {
    if (mine === mounting) fill(view, errorBox(error));
  }
  if (focus && mine === mounting) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: false });
    }
  }
}

async function restart() {
  forgetRegistry();
  renderLogin(false);
  const main = document.getElementById('main');
  fill(main, h('p', { class: 'loading' }, t('common.loading')));
  try {
    session.role = await detectRole();
  } catch (error) {
    session.role = null;
    renderHeader(null);
    fill(main, errorBox(error));
    return;
  }
  if (session.role) {
    // The clocks count the gateway's own deadlines; the scheme's stay if it cannot say.
    applySla(await get('/sla').catch(() => null));
    openStream();
  }
  else if (closeStream) {
    closeStream();
    closeStream = null;
    session.streamState = 'closed';
  }
  await route(false);
  if (!session.role) renderLogin(true);
}

function start() {
  setLang(lang());
  document.getElementById('lang-toggle').addEventListener('click', () => {
    setLang(lang() === 'zh' ? 'en' : 'zh');
    route(false);
  });
  document.getElementById('login-toggle').addEventListener('click', () => {
    renderLogin(document.getElementById('login-panel').hidden);
  });
  window.addEventListener('hashchange', () => route(true));
  window.setInterval(tickClocks, 1000);
  restart();
}

start();
