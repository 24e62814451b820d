// Drives the gateway's app portal in a real browser: Debian's Chromium, headless, through
// playwright-core. Started by tests/tests/portal/browser.rs against a running gateway, which
// passes in what it set up (see `need` below); it exits non-zero on the first failed check,
// or when Chromium or playwright-core is missing.
//
// A screenshot of each page goes to target/portal-screenshots/, or to docs/portal/ (the
// README's pictures) with UPDATE_SCREENSHOTS=1.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shots = process.env.UPDATE_SCREENSHOTS === '1'
  ? join(root, 'docs', 'portal')
  : join(root, 'target', 'portal-screenshots');
mkdirSync(shots, { recursive: true });

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/tests/portal/browser.rs sets it)`);
  return value;
}

const gateway = need('GATEWAY_URL');
const portalUrl = need('PORTAL_URL');
const expiredUrl = need('EXPIRED_URL');
const acmeToken = need('ACME_TOKEN');
const receiver = need('RECEIVER_URL');
const deadLetter = need('DEAD_LETTER');
const failing = need('FAILING_SUBSCRIPTION');
const othersSubscription = need('OTHER_SUBSCRIPTION');
const plugin = need('PLUGIN');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({ executablePath, headless: true });
const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
const page = await context.newPage();
page.setDefaultTimeout(15_000);

// Every problem the page reports (a script error, a refused resource, a CSP violation), and
// every error answer; the ones a step provokes on purpose are let through by that step.
const problems = [];
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error') problems.push(`console: ${message.text()}`);
});
page.on('response', (response) => {
  if (response.status() >= 400) problems.push(`${response.status()} from ${new URL(response.url()).pathname}`);
});
const expected = [];
function expect(pattern) {
  expected.push(pattern);
}

let failed = false;
async function step(name, run) {
  try {
    await run();
    console.log(`ok - ${name}`);
  } catch (error) {
    failed = true;
    console.log(`not ok - ${name}\n${error.stack || error}`);
    await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {});
    throw error;
  }
}

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function openPage(link, heading) {
  await page.getByRole('navigation', { name: 'Portal' }).getByRole('link', { name: link }).click();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

try {
  await step('an expired link is refused, with a reason', async () => {
    expect(/^401 from \/portal\/session$/);
    const response = await page.goto(expiredUrl);
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /script-src 'self'/);
    assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
    await page.getByRole('heading', { name: 'App portal' }).waitFor();
    await page.getByRole('alert').filter({ hasText: 'expired' }).waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Portal' }).isVisible(), false);
    assert.doesNotMatch(page.url(), /link=/, 'the link left the address bar');
    await shot('expired');
  });

  await step('a link opens the portal of its app, in a cookie no script reads', async () => {
    await page.goto(portalUrl);
    await page.getByRole('heading', { level: 1, name: 'Subscriptions' }).waitFor();
    assert.doesNotMatch(page.url(), /link=/, 'the link left the address bar');
    assert.match(await page.locator('#app-name').textContent(), /^acme$/);
    const cookies = await context.cookies(`${gateway}/portal`);
    const session = cookies.find((c) => c.name === 'odoo_gateway_portal');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/portal');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read it');
    await page.locator(`tr[data-subscription="${failing}"]`).getByText('delivering').waitFor();
  });

  await step('the catalog shows an event type with its schema from Odoo', async () => {
    await openPage('Event catalog', 'Event catalog');
    const row = page.locator('tr[data-event-type="sale.order.confirmed"]');
    await row.getByText('from Odoo').waitFor();
    await shot('catalog');
    await row.getByRole('link', { name: 'sale.order.confirmed' }).click();
    await page.getByRole('heading', { level: 1, name: 'Event type sale.order.confirmed' }).waitFor();
    const state = page.locator('tr[data-field="state"]');
    await state.getByText('one of draft, sent, sale, cancel').waitFor();
    await page.locator('tr[data-field="partner_id"]').getByText('Customer').waitFor();
    await page.locator('tr[data-field="partner_id"]').getByText(/enriched from res\.partner/).waitFor();
    const example = JSON.parse(await page.getByLabel('Example of sale.order.confirmed').textContent());
    assert.equal(example._model, 'sale.order');
    assert.equal(example.partner_id.zip, 'Zip');
    await shot('event-type');
  });

  await step('a filter naming no field of the event is refused; a good one is created', async () => {
    await openPage('Subscriptions', 'Subscriptions');
    expect(/^422 from \/portal\/api\/v1\/subscriptions$/);
    await page.getByLabel('Id (optional)').fill('shop-orders');
    await page.getByLabel(/^Event types/).fill('sale.order.confirmed');
    await page.getByLabel('Destination URL').fill(receiver);
    await page.getByLabel(/^Filter: match/).fill('{"colour": "red"}');
    await page.getByRole('button', { name: 'Create subscription' }).click();
    await page.getByRole('alert').filter({ hasText: '`colour` is not a field of `sale.order`' }).waitFor();
    // Fixed, and submitted from the keyboard.
    await page.getByLabel(/^Filter: match/).fill('{"state": ["sale"]}');
    // The settings without a field of their own, as the API takes them.
    await page.getByLabel(/^More settings/).fill('{"ordering": "record", "retries": 3}');
    await page.getByRole('button', { name: 'Create subscription' }).focus();
    await page.keyboard.press('Enter');
    const secret = await page.getByLabel('Signing secret').textContent();
    assert.match(secret, /^whsec_/);
    await page.locator('tr[data-subscription="shop-orders"]').getByText('delivering').waitFor();
    await shot('subscriptions');
  });

  await step('a test event is delivered and shows in the delivery log', async () => {
    await page.locator('tr[data-subscription="shop-orders"]').getByRole('link', { name: 'shop-orders' }).click();
    await page.getByRole('heading', { level: 1, name: 'Subscription shop-orders' }).waitFor();
    const more = JSON.parse(await page.locator('dd[data-fact="more"]').textContent());
    assert.equal(more.ordering, 'record');
    assert.equal(more.retries, 3);
    await page.getByRole('button', { name: 'Send a test event to shop-orders' }).click();
    await page.getByRole('status').filter({ hasText: /^Test event evt_/ }).waitFor();
    const row = page.locator('tr[data-delivery]').first();
    await row.locator('.badge', { hasText: 'delivered' }).waitFor({ timeout: 30_000 });
    assert.equal(await row.locator('ol.attempts .badge').first().textContent(), '200');
  });

  await step('rotate the secret, pause and resume', async () => {
    await page.getByRole('button', { name: 'Rotate the secret of shop-orders' }).click();
    const secret = await page.getByLabel('Signing secret').textContent();
    assert.match(secret, /^whsec_/);
    await page.getByText(/The previous secret signs too until/).waitFor();
    await shot('subscription');
    await page.getByRole('button', { name: 'Pause shop-orders' }).click();
    await page.getByRole('status').filter({ hasText: 'Paused shop-orders.' }).waitFor();
    await page.locator('dl.facts').getByText('paused').waitFor();
    await page.getByRole('button', { name: 'Resume shop-orders' }).click();
    await page.locator('dl.facts').getByText('delivering').waitFor();
  });

  await step('replay a dead letter from the keyboard', async () => {
    await openPage('Dead letters', 'Dead letters');
    const row = page.locator(`tr[data-dead-letter="${deadLetter}"]`);
    await row.getByRole('link', { name: failing }).waitFor();
    await shot('dead-letters');
    await row.getByRole('button', { name: `Replay ${deadLetter}` }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: `Replay of ${deadLetter} accepted (202)` }).waitFor();
  });

  await step('upload a plugin', async () => {
    await openPage('Plugins', 'Plugins');
    await page.getByLabel('Component (.wasm)').setInputFiles(join(root, 'target', 'plugins', 'xml_transform.wasm'));
    await page.getByLabel('Name (optional)').fill('to-xml');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('status').filter({ hasText: 'Uploaded to-xml.' }).waitFor();
    await page.getByRole('cell', { name: 'to-xml', exact: true }).waitFor();
  });

  await step("a dry-run of the app's own plugin", async () => {
    await page.getByLabel('Plugin', { exact: true }).selectOption({ label: plugin });
    await page.getByLabel(/^Event type/).selectOption('sale.order.confirmed');
    // The example is made of placeholders: its state is the first one Odoo lists.
    await page.getByLabel(/^Plugin settings/).fill('{"min_amount_total": 10, "states": "draft"}');
    await page.getByRole('button', { name: 'Run dry-run' }).click();
    await page.locator('#dry-run-result .notice').filter({ hasText: /^1 deliveries/ }).waitFor();
    const body = JSON.parse(await page.getByLabel('Body of delivery 1').textContent());
    assert.equal(body._model, 'sale.order');
    await shot('plugins');
  });

  await step("another app's ids and the admin API are out of reach", async () => {
    expect(new RegExp(`^404 from /portal/api/v1/subscriptions/${othersSubscription}`));
    await page.goto(`${gateway}/portal#/subscriptions/${othersSubscription}`);
    await page.getByRole('alert').filter({ hasText: 'There is no such thing for this app.' }).waitFor();
    expect(/^401 from \/admin\/status$/);
    expect(/^404 from \/portal\/api\/admin\/status$/);
    const statuses = await page.evaluate(async () => [
      (await fetch('/admin/status')).status,
      (await fetch('/portal/api/admin/status', { method: 'GET' })).status,
    ]);
    assert.deepEqual(statuses, [401, 404]);
  });

  await step('a session the app revoked is over', async () => {
    const revoked = await fetch(`${gateway}/v1/portal-sessions`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${acmeToken}` },
    });
    assert.equal(revoked.status, 200);
    expect(/^401 from \/portal\/api\/v1\/dead-letters$/);
    await openPage('Dead letters', 'App portal').catch(() => {});
    await page.getByRole('alert').filter({ hasText: 'session ended' }).waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Portal' }).isVisible(), false);
  });

  await step('log out', async () => {
    // The revocation ended the app's links too: the app mints a new one.
    const minted = await fetch(`${gateway}/v1/portal-sessions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${acmeToken}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    assert.equal(minted.status, 201);
    await page.goto((await minted.json()).url);
    await page.getByRole('heading', { level: 1, name: 'Subscriptions' }).waitFor();
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('alert').filter({ hasText: 'Logged out.' }).waitFor();
    const cookies = await context.cookies(`${gateway}/portal`);
    assert.equal(cookies.find((c) => c.name === 'odoo_gateway_portal'), undefined);
    // Reloaded, the page has no session to find.
    expect(/^401 from \/portal\/session$/);
    await page.goto(`${gateway}/portal`);
    await page.getByRole('heading', { name: 'App portal' }).waitFor();
  });

  await step('the page reported no other problem', async () => {
    const unexpected = problems.filter((p) => !expected.some((e) => e.test(p))
      // The browser's own note of an error answer it logged as a console error.
      && !/^console: Failed to load resource: the server responded with a status of (401|404|422)/.test(p));
    assert.deepEqual(unexpected, []);
  });
} catch (_) {
  failed = true;
} finally {
  await browser.close();
}
console.log(failed ? 'portal test failed' : `portal test passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
