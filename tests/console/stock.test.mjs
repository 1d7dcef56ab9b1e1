// Browser test of the console's 备件 page (gateway/console/stock.js) against a running demo (the
// `demo` binary, started by tests/tests/console.rs; base URL as the first argument, a bearer token
// as the optional second when the gateway checks tokens): headless Debian Chromium driven by
// playwright-core. When every point keeps one part of one kind, the page lists the stock-out of a
// dispatch with a link to its order; then, through the API, every point gets a full delivery (so
// the orders dispatched from then on hold parts), and the township of a dispatched order gets
// more parts at its point with a reorder level above them. On the page the test finds that line
// marked low with since when, filters by location and "low only", moves parts into the order's
// technician's van with the transfer form (the table follows) and is told why a move of more
// than the point has fails (409), registers a backup heater, lends it for the order until a date
// and takes it back; the order page lists the parts an order holds; and the page fits a 390×844
// phone. Screenshots go to $CONSOLE_ARTIFACTS (default target/console-artifacts). Every wait is
// for a selector or a condition on the page; the test wants a fresh demo, whose faults open and
// dispatch orders every few seconds. Exit status 0 only when every check passed.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const base = (process.argv[2] || process.env.CONSOLE_BASE_URL || '').replace(/\/$/, '');
const token = process.argv[3] || '';
if (!base) {
  console.error('usage: node stock.test.mjs http://127.0.0.1:PORT [TOKEN]');
  process.exit(2);
}
const artifacts = resolve(process.env.CONSOLE_ARTIFACTS || resolve(here, '../../target/console-artifacts'));
mkdirSync(artifacts, { recursive: true });

/** How long a condition may take (the demo injects a fault every few seconds). */
const WAIT = 30_000;
/** How long until a dispatch records a stock-out, or holds parts after the first deliveries. */
const HOLD_WAIT = 90_000;

const results = [];
const problems = [];
/** The refusal the test provokes on purpose (a transfer of more than the point has). */
let expectedConflict = false;

async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
  }
}

function expected(url, status) {
  return expectedConflict && status === 409 && url.endsWith('/api/v1/stock/transfers');
}

/** Records console errors, uncaught exceptions and failed requests of a page. */
function watch(page, label) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    // The browser also logs the provoked 409 ("Failed to load resource").
    if (expected(message.location().url || '', 409)) return;
    problems.push(`${label}: console error: ${message.text()} (${message.location().url || ''})`);
  });
  page.on('pageerror', (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on('response', (response) => {
    if (response.status() >= 400 && !expected(response.url(), response.status())) {
      problems.push(`${label}: HTTP ${response.status()} for ${response.request().method()} ${response.url()}`);
    }
  });
  page.on('requestfailed', (request) => {
    const failure = request.failure();
    if (failure && failure.errorText.includes('ERR_ABORTED')) return;
    problems.push(`${label}: request failed: ${request.method()} ${request.url()}: ${failure ? failure.errorText : '?'}`);
  });
}

async function shot(page, name) {
  const path = resolve(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`     screenshot ${path}`);
}

/** The API from Node, with the token when there is one; fails on anything but 2xx. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Fails unless the page fits the viewport's width (no sideways scrolling on a phone). */
async function fitsWidth(page) {
  const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  if (scroll > client + 1) throw new Error(`the page is ${scroll}px wide in a ${client}px viewport`);
}

/** An open repair order dispatched to a technician: one the API lists, else the next on the live board. */
async function dispatchedOrder(page) {
  const fits = (o) => o.state === 'dispatched' && o.technician_id && o.household_id && o.category !== 'backup_loan';
  const listed = (await api('GET', '/orders?state=dispatched&limit=500')).find(fits);
  if (listed) return listed;
  await page.goto(`${base}/#/`);
  const event = await page.waitForSelector('#event-stream li[data-kind="dispatched"]');
  const order = await api('GET', `/orders/${await event.getAttribute('data-order-id')}`);
  if (!fits(order)) throw new Error(`the order dispatched now is not a repair with a technician: ${JSON.stringify(order)}`);
  return order;
}

const lineRow = (location, part) => `#stock-lines tr[data-location="${location}"][data-part="${part}"]`;

async function onHand(location, part) {
  const lines = await api('GET', `/stock?location=${encodeURIComponent(location)}&part_code=${encodeURIComponent(part)}`);
  return lines.length ? lines[0].on_hand : 0;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

let exitCode = 1;
try {
  const desktop = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  // Signed in as the console's sign-in form does it: the token in the tab's session storage.
  if (token) await desktop.addInitScript((value) => window.sessionStorage.setItem('console.token', value), token);
  const page = await desktop.newPage();
  watch(page, 'desktop');
  page.setDefaultTimeout(WAIT);

  /** The price list, the townships, the order with its township and technician, the part stocked. */
  const the = {};
  await check('a dispatch the point cannot serve records a stock-out, listed with a link to its order', async () => {
    // Stock is tracked where a point keeps some: every point gets one part of one kind, and the
    // stock page follows the order stream until a dispatch finds nothing of what its fault
    // usually needs.
    const [parts, townships] = await Promise.all([api('GET', '/registry/parts'), api('GET', '/registry/townships')]);
    if (!parts.length || !townships.length) throw new Error(`the demo registry has ${parts.length} parts and ${townships.length} townships`);
    the.parts = parts;
    the.townships = townships;
    the.part = parts[parts.length - 1].code;
    for (const township of townships) {
      await api('POST', '/stock/receipts', { location: `point:${township.id}`, part_code: the.part, quantity: 1, note: 'browser test: the point keeps stock' });
    }
    await page.goto(`${base}/#/stock`);
    const row = await page.waitForSelector('#stock-outs tr[data-order-id][data-open="true"]', { timeout: HOLD_WAIT });
    const [id, part] = [Number(await row.getAttribute('data-order-id')), await row.getAttribute('data-part')];
    await page.waitForSelector(`#stock-outs tr[data-order-id="${id}"][data-part="${part}"] a[href="#/order/${id}"]`);
    const outs = await api('GET', '/stock/outs');
    if (!outs.some((o) => o.order_id === id && o.part_code === part && o.resolved_at_ms === null)) throw new Error(`the API has no open stock-out of ${part} for order ${id}`);
    const figure = await page.textContent('#stock-figures');
    if (!figure.includes('未修复的缺件')) throw new Error(`the figures do not count open stock-outs: ${figure}`);
  });

  await check('every point gets a first delivery and a dispatched order names its technician', async () => {
    for (const township of the.townships) {
      for (const part of the.parts) {
        await api('POST', '/stock/receipts', { location: `point:${township.id}`, part_code: part.code, quantity: 20, note: 'browser test: first delivery' });
      }
    }
    the.order = await dispatchedOrder(page);
    the.point = `point:${the.order.township}`;
    the.van = `van:${the.order.technician_id}`;
  });

  await check('a receipt at the point and a reorder level above it make the line low', async () => {
    const before = await onHand(the.point, the.part);
    const received = await api('POST', '/stock/receipts', { location: the.point, part_code: the.part, quantity: 40, note: 'browser test: delivery' });
    if (received.on_hand !== before + 40) throw new Error(`on hand ${received.on_hand} after receiving 40 on ${before}`);
    const level = await api('POST', '/stock/levels', { location: the.point, part_code: the.part, reorder_level: 1000 });
    if (level.low_since_ms === null) throw new Error(`the line is not low: ${JSON.stringify(level)}`);
    the.pointOnHand = level.on_hand;
  });

  await check('the stock page shows the line marked low since when, available = on hand − reserved', async () => {
    // The page may still be open from the first check: the refresh button loads the lines now.
    await page.goto(`${base}/#/stock`);
    await page.click('#stock-refresh');
    await page.waitForSelector('#nav-stock[aria-current="page"]');
    const row = `${lineRow(the.point, the.part)}[data-low="true"]`;
    await page.waitForSelector(`${row}.stock-low .tag-low`);
    const [line] = await api('GET', `/stock?location=${encodeURIComponent(the.point)}&part_code=${encodeURIComponent(the.part)}`);
    const since = await page.textContent(`${row} .tag-low`);
    const expectedSince = new Intl.DateTimeFormat('zh-CN', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }).format(new Date(line.low_since_ms));
    if (!since.includes(expectedSince)) throw new Error(`the low mark says "${since}", not since ${expectedSince}`);
    const cells = await page.$eval(row, (tr) => ['on-hand', 'reserved', 'available'].map((c) => Number(tr.querySelector(`td.${c}`).textContent)));
    const [hand, reserved, available] = cells;
    if (available !== hand - reserved) throw new Error(`available ${available} is not ${hand} on hand − ${reserved} reserved`);
    await page.waitForSelector('#stock-outs');
    await page.waitForSelector('#stock-backup');
  });
  await shot(page, 'desktop-stock');

  await check('the lines filter by location text and by "low only", kept in the address', async () => {
    await page.fill('#stock-location', the.point);
    await page.waitForFunction(
      (point) => {
        const rows = [...document.querySelectorAll('#stock-lines tr[data-location]')];
        return rows.length > 0 && rows.every((r) => r.dataset.location.includes(point));
      },
      the.point,
    );
    await page.check('#stock-low');
    await page.waitForFunction(
      ([point, part]) => {
        const rows = [...document.querySelectorAll('#stock-lines tr[data-location]')];
        return rows.every((r) => r.dataset.low === 'true') && rows.some((r) => r.dataset.location === point && r.dataset.part === part);
      },
      [the.point, the.part],
    );
    if (!page.url().includes('low=1') || !page.url().includes('location=')) throw new Error(`the filter is not in the address: ${page.url()}`);
    await page.uncheck('#stock-low');
    await page.fill('#stock-location', '');
    await page.waitForFunction(() => [...document.querySelectorAll('#stock-lines tr[data-low]')].some((r) => r.dataset.low === 'false'));
  });

  await check("the transfer form moves parts from the point into the technician's van and the table follows", async () => {
    const vanBefore = await onHand(the.van, the.part);
    await page.fill('#transfer-from', the.point);
    await page.fill('#transfer-to', the.van);
    await page.selectOption('#transfer-part', the.part);
    await page.fill('#transfer-qty', '2');
    await page.fill('#transfer-note', 'browser test: to the van');
    await page.click('#stock-transfer-submit');
    await page.waitForSelector('#stock-transfer-status.ok');
    await page.waitForSelector(`${lineRow(the.van, the.part)}[data-on-hand="${vanBefore + 2}"]`);
    await page.waitForSelector(`${lineRow(the.point, the.part)}[data-on-hand="${the.pointOnHand - 2}"]`);
    the.pointOnHand -= 2;
    if ((await onHand(the.van, the.part)) !== vanBefore + 2) throw new Error('the API does not have the parts in the van');
  });

  await check('a transfer of more than the point has is refused (409) with the reason on the form', async () => {
    expectedConflict = true;
    await page.fill('#transfer-qty', '10000');
    const answer = page.waitForResponse((r) => r.url().endsWith('/api/v1/stock/transfers') && r.request().method() === 'POST');
    await page.click('#stock-transfer-submit');
    const response = await answer;
    if (response.status() !== 409) throw new Error(`the transfer answered ${response.status()}`);
    await page.waitForSelector('#stock-transfer-status.failed');
    const text = await page.textContent('#stock-transfer-status');
    if (!text.includes('cannot move 10000')) throw new Error(`the form says "${text}"`);
    await page.waitForSelector('#stock-transfer-submit:not([disabled])');
    expectedConflict = false;
    const shown = Number(await page.getAttribute(lineRow(the.point, the.part), 'data-on-hand'));
    if (shown !== the.pointOnHand) throw new Error(`the point shows ${shown} on hand after a refused move, not ${the.pointOnHand}`);
  });
  await shot(page, 'desktop-stock-refused');

  await check('a backup heater is registered, lent for the order until a date and taken back', async () => {
    const id = `bt-${Date.now().toString(36)}`;
    const unit = `#stock-backup tr[data-unit-id="${id}"]`;
    await page.fill('#backup-id', id);
    await page.selectOption('#backup-kind', 'heat_pump');
    await page.selectOption('#backup-township', the.order.township);
    await page.fill('#backup-note', 'browser test');
    await page.click('#backup-register-submit');
    await page.waitForSelector('#backup-register-status.ok');
    await page.waitForSelector(`${unit}[data-state="available"]`);
    await page.fill(`#lend-${id}-order`, String(the.order.id));
    await page.click(`${unit} form.lend button[type=submit]`);
    await page.waitForSelector(`${unit}[data-state="lent"]`);
    await page.waitForSelector('#backup-status.ok');
    const lent = (await api('GET', '/backup-units')).find((u) => u.id === id);
    if (!lent || lent.for_order_id !== the.order.id || !lent.loan_order_id || !(lent.return_by_ms > Date.now())) throw new Error(`the API has ${JSON.stringify(lent)}`);
    await page.waitForSelector(`${unit} a[href="#/order/${lent.loan_order_id}"]`);
    await page.waitForSelector(`${unit} a[href="#/order/${the.order.id}"]`);
    await shot(page, 'desktop-stock-lent');
    await page.click(`#return-${id}`);
    await page.waitForSelector(`${unit}[data-state="available"]`);
  });

  await check('the order page lists the parts an order holds', async () => {
    // A dispatch after the first deliveries reserves what its fault usually needs at the point:
    // the stock page, following the order stream, shows the line with a reservation.
    await page.goto(`${base}/#/stock`);
    const row = await page.waitForSelector('#stock-lines tr[data-reserved]:not([data-reserved="0"])', { timeout: HOLD_WAIT });
    const [location, part] = [await row.getAttribute('data-location'), await row.getAttribute('data-part')];
    const moves = await api('GET', `/stock/moves?location=${encodeURIComponent(location)}&limit=500`);
    let found = null;
    for (const id of new Set(moves.filter((m) => m.kind === 'reserved' && m.part_code === part && m.order_id).map((m) => m.order_id))) {
      const held = await api('GET', `/orders/${id}/parts`);
      if (held.length) {
        found = { id, held };
        break;
      }
    }
    if (!found) throw new Error(`no order holds ${part} at ${location} (moves ${JSON.stringify(moves.slice(0, 5))})`);
    await page.goto(`${base}/#/order/${found.id}`);
    const first = found.held[0];
    await page.waitForSelector(`#order-held[data-count="${found.held.length}"] li[data-part="${first.part_code}"][data-location="${first.location}"]`);
    const text = await page.textContent(`#order-held li[data-part="${first.part_code}"][data-location="${first.location}"]`);
    if (!text.includes(`×${first.quantity}`)) throw new Error(`the order page says "${text}" for ${JSON.stringify(first)}`);
  });
  await shot(page, 'desktop-order-held');

  await check('the English toggle relabels the stock page', async () => {
    await page.goto(`${base}/#/stock`);
    await page.waitForSelector('#stock-lines tr[data-location]');
    await page.click('#lang-toggle');
    await page.waitForFunction(() => document.querySelector('#nav-stock')?.textContent === 'Stock' && document.querySelector('h1')?.textContent.startsWith('Stock'));
    await page.click('#lang-toggle');
    await page.waitForFunction(() => document.querySelector('#nav-stock')?.textContent === '备件');
  });

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  if (token) await phone.addInitScript((value) => window.sessionStorage.setItem('console.token', value), token);
  const mobile = await phone.newPage();
  watch(mobile, 'phone');
  mobile.setDefaultTimeout(WAIT);
  await check('the stock page fits a 390×844 phone', async () => {
    await mobile.goto(`${base}/#/stock`);
    await mobile.waitForSelector(`${lineRow(the.point, the.part)}.stock-low`);
    await mobile.waitForSelector('#stock-backup tr[data-unit-id]');
    await fitsWidth(mobile);
  });
  await shot(mobile, 'phone-stock');

  await check('no page logged an error, threw, or had a request fail', async () => {
    if (problems.length) throw new Error(`\n  ${problems.join('\n  ')}`);
  });
  await desktop.close();
  await phone.close();
  const failed = results.filter((ok) => !ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  exitCode = failed ? 1 : 0;
} catch (error) {
  console.error(`the stock browser test stopped: ${error && error.stack ? error.stack : error}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
