// Browser test of the console with role tokens, against a gateway started by
// tests/tests/console.rs (`the_console_serves_a_township_officer_in_its_own_township_only`):
// headless Debian Chromium driven by playwright-core. A township officer signs in with its token,
// dispatches an order of its own township from the order page and escalates it (督办, which the
// Rust side then finds at its webhook receiver), and is refused another township's order, on
// the page and at the API. Arguments: base URL, the officer's token, its own order's id, the
// other township's order's id. Exit status 0 only when every check passed.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const [base, officerToken, ownOrder, otherOrder] = process.argv.slice(2);
if (!base || !officerToken || !ownOrder || !otherOrder) {
  console.error('usage: node roles.test.mjs BASE_URL OFFICER_TOKEN OWN_ORDER_ID OTHER_ORDER_ID');
  process.exit(2);
}
const artifacts = resolve(process.env.CONSOLE_ARTIFACTS || resolve(here, '../../target/console-artifacts'));
mkdirSync(artifacts, { recursive: true });
const WAIT = 30_000;

const results = [];
const problems = [];

async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
    const slug = name.replace(/[^a-z]+/gi, '-').slice(0, 40);
    await page.screenshot({ path: resolve(artifacts, `roles-failed-${slug}.png`), fullPage: true }).catch(() => {});
    console.log(`     page text: ${(await page.innerText('body').catch(() => '')).slice(0, 600).replace(/\s+/g, ' ')}`);
  }
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
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Signed in as the township officer (the console keeps the token in the tab's session storage,
// as its sign-in form does).
await context.addInitScript((value) => window.sessionStorage.setItem('console.token', value), officerToken);
const page = await context.newPage();
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error' && !/403|404|Forbidden|Not Found/.test(message.text())) {
    problems.push(`console error: ${message.text()}`);
  }
});

await check('the officer dispatches an order of its own township from the order page', async () => {
  await page.goto(`${base}/#/order/${ownOrder}`);
  await page.waitForSelector('#action-dispatch', { timeout: WAIT });
  const options = await page.$$eval('#dispatch-team option', (list) => list.map((o) => o.value).filter(Boolean));
  if (!options.length) throw new Error('no team to choose');
  await page.selectOption('#dispatch-team', options[0]);
  await page.click('#action-dispatch button[type=submit]');
  await page.waitForSelector('#order-timeline li[data-kind="dispatched"]', { timeout: WAIT });
  const detail = await page.evaluate(async ([id, token]) => {
    const response = await fetch(`/api/v1/orders/${id}`, { headers: { Authorization: `Bearer ${token}` } });
    return response.json();
  }, [ownOrder, officerToken]);
  if (detail.state !== 'dispatched') throw new Error(`state ${detail.state}`);
  const dispatched = detail.events.find((e) => e.kind === 'dispatched');
  if (!dispatched || !dispatched.actor.includes('township')) throw new Error(`dispatch event ${JSON.stringify(dispatched)}`);
  await page.screenshot({ path: resolve(artifacts, 'township-officer-dispatch.png'), fullPage: true });
});

await check('the officer escalates it (督办) with a note', async () => {
  await page.fill('#escalate-note', 'browser test: 督办 by the township');
  await page.click('#action-escalate button[type=submit]');
  await page.waitForSelector('#order-timeline li[data-kind="escalated"]', { timeout: WAIT });
});

await check("another township's order is refused on the page and at the API", async () => {
  await page.goto(`${base}/#/order/${otherOrder}`);
  // The gateway answers another township's order as not found (no existence leak); the page
  // says so and offers no action.
  await page.waitForFunction((id) => document.body.innerText.includes(`no order ${id}`), otherOrder, { timeout: WAIT });
  if (await page.$('#action-dispatch')) throw new Error('the dispatch form is offered for another township');
  const status = await page.evaluate(async ([id, token]) => {
    const response = await fetch(`/api/v1/orders/${id}/dispatch`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    return response.status;
  }, [otherOrder, officerToken]);
  if (status !== 403 && status !== 404) throw new Error(`dispatch answered ${status}`);
  await page.screenshot({ path: resolve(artifacts, 'township-officer-refused.png'), fullPage: true });
});

await browser.close();
for (const problem of problems) console.log(`FAIL ${problem}`);
const failed = results.filter((ok) => !ok).length + problems.length;
console.log(`${results.length - results.filter((ok) => !ok).length} of ${results.length} checks passed, ${problems.length} page problems`);
process.exit(failed ? 1 : 0);
