// Drives the gateway's web console in a real browser: Debian's Chromium, headless, through
// playwright-core. Started by tests/tests/console.rs against a running gateway, which passes
// in what it set up (see `need` below); it exits non-zero on the first failed check, or when
// Chromium or playwright-core is missing.
//
// A screenshot of each page goes to target/console-screenshots/, or to docs/console/ (the
// README's pictures) with UPDATE_SCREENSHOTS=1.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shots = process.env.UPDATE_SCREENSHOTS === '1'
  ? join(root, 'docs', 'console')
  : join(root, 'target', 'console-screenshots');
mkdirSync(shots, { recursive: true });

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/tests/console.rs sets it)`);
  return value;
}

const gateway = need('GATEWAY_URL');
const token = need('ADMIN_TOKEN');
const metricsToken = need('METRICS_TOKEN');
const eventId = need('EVENT_ID');
const deadLetter = need('DEAD_LETTER');
const failing = need('FAILING_SUBSCRIPTION');
const healthy = need('HEALTHY_SUBSCRIPTION');
const plugin = need('PLUGIN');
const sample = need('SAMPLE');
const pluginSubscription = need('PLUGIN_SUBSCRIPTION');
const destinations = need('PLUGIN_DESTINATIONS').split(',');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

/// The admin API as the test sees it, to check what the console did.
async function admin(path) {
  const response = await fetch(`${gateway}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

async function subscription(id) {
  const { subscriptions } = await admin('/admin/subscriptions');
  return subscriptions.find((s) => s.id === id);
}

const browser = await chromium.launch({ executablePath, headless: true });
const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(10_000);

// Every problem the page reports (a script error, a refused resource, a CSP violation).
const problems = [];
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error') problems.push(`console: ${message.text()}`);
});
page.on('response', (response) => {
  if (response.status() >= 400) problems.push(`${response.status()} from ${response.url()}`);
});
// Every admin call must carry the token as a bearer token.
const adminCalls = [];
page.on('request', (request) => {
  if (new URL(request.url()).pathname.startsWith('/admin/')) {
    adminCalls.push({ url: request.url(), auth: request.headers().authorization });
  }
});

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
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

async function openPage(link, heading) {
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: link }).click();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

try {
  await step('the shell is served with a strict policy and no data', async () => {
    const response = await page.goto(`${gateway}/console`);
    assert.equal(response.status(), 200);
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /script-src 'self'/);
    assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Console' }).isVisible(), false);
  });

  await step('a wrong token is refused', async () => {
    await page.getByLabel('Admin token').fill('not-the-token-at-all');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
    await shot('login');
  });

  await step('a metrics token is refused with a clear message', async () => {
    await page.getByLabel('Admin token').fill(metricsToken);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'reads /metrics only' }).waitFor();
  });

  await step('log in with the keyboard', async () => {
    await page.getByLabel('Admin token').focus();
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const stored = await page.evaluate(() => sessionStorage.getItem('odoo-gateway-admin-token'));
    assert.equal(stored, token, 'the token is kept in sessionStorage');
  });

  await step('the overview flags the failing subscription', async () => {
    const table = page.getByRole('table', { name: /subscriptions are failing/ });
    const row = table.getByRole('row').filter({ hasText: failing });
    await row.getByText('flagged').waitFor();
    assert.equal(await table.getByRole('row').filter({ hasText: healthy }).count(), 0,
      'the healthy subscription is not listed as failing');
    const dead = page.locator('dl.stats > div').filter({ has: page.locator('dt', { hasText: /^Dead letters$/ }) });
    assert.equal(await dead.locator('dd').textContent(), '1');
    // The last hour's charts, drawn from the samples the gateway keeps: one point a sample.
    const charts = page.locator('figure[data-chart]');
    assert.equal(await charts.count(), 3);
    for (const [id, name, series] of [
      ['chart-throughput', /Deliveries and failed attempts per second/, ['Delivered', 'Failed']],
      ['chart-ingest', /Time to acknowledge an event/, ['Median', '99th percentile']],
      ['chart-queue', /Jobs queued/, ['Queued']],
    ]) {
      const chart = page.locator(`figure[data-chart="${id}"]`);
      // An image with a name and a description a screen reader reads out.
      await chart.getByRole('img', { name }).waitFor();
      const points = await chart.locator('svg.plot [data-point]').count();
      assert.ok(points >= 3, `${id}: ${points} points`);
      // Each series is told by its label and shape, its latest value written out.
      for (const label of series) {
        await chart.locator('ul.legend li').filter({ hasText: `${label}:` }).waitFor();
      }
    }
    const delivered = await page.locator('figure[data-chart="chart-throughput"] [data-series="deliveries_per_sec"] [data-point]').count();
    assert.ok(delivered >= 3, `${delivered} delivery samples`);
    const ingest = page.locator('figure[data-chart="chart-ingest"]');
    assert.ok(await ingest.locator('[data-series="ingest_p50_ms"] [data-point]').count() >= 3, 'ingest medians');
    assert.ok(await ingest.locator('[data-series="ingest_p99_ms"] polyline[stroke-dasharray]').count() >= 1,
      'the 99th percentile is dashed, not only coloured');
    await shot('overview');
  });

  await step('pause a subscription from the keyboard, then enable it', async () => {
    await openPage('Subscriptions', 'Subscriptions');
    const row = page.locator(`tr[data-subscription="${healthy}"]`);
    await row.getByText('delivering').waitFor();
    await page.locator(`tr[data-subscription="${failing}"]`).getByText('flagged').waitFor();
    await row.getByRole('button', { name: `Pause ${healthy}` }).focus();
    await page.keyboard.press('Enter');
    await row.getByText('paused').waitFor();
    await page.getByRole('status').filter({ hasText: `Paused ${healthy}` }).waitFor();
    assert.equal((await subscription(healthy)).paused, true, 'the gateway has it paused');
    await shot('subscriptions');
    await row.getByRole('button', { name: `Enable ${healthy}` }).click();
    await row.getByText('delivering').waitFor();
    assert.equal((await subscription(healthy)).paused, false, 'the gateway has it enabled');
  });

  await step("a subscription's recent failed attempts", async () => {
    await page.locator(`tr[data-subscription="${failing}"]`).getByRole('link', { name: failing }).click();
    await page.getByRole('heading', { level: 1, name: `Subscription ${failing}` }).waitFor();
    await page.getByLabel('Failed attempts only').check();
    const table = page.getByRole('table', { name: 'Newest first' });
    await table.getByRole('row').filter({ hasText: '500' }).first().waitFor();
  });

  await step("follow a dead letter to its event's journey", async () => {
    await openPage('Dead letters', 'Dead letters');
    const row = page.getByRole('row').filter({ hasText: deadLetter });
    await row.getByRole('link', { name: eventId }).click();
    await page.getByRole('heading', { level: 1, name: `Event ${eventId}` }).waitFor();
    const bad = page.getByRole('region', { name: `Subscription ${failing}` });
    await bad.getByText('dead-lettered').waitFor();
    await bad.getByRole('row').filter({ hasText: '500' }).first().waitFor();
    // The body that was sent and refused.
    const body = await bad.getByLabel(`Body of ${deadLetter}`).textContent();
    assert.match(body, new RegExp(eventId), 'the body names the event');
    const good = page.getByRole('region', { name: `Subscription ${healthy}` });
    await good.getByRole('row').filter({ hasText: '200' }).first().waitFor();
    // The plugin's subscription: its plugin call, then the deliveries it made.
    const routed = page.getByRole('region', { name: `Subscription ${pluginSubscription}` });
    await routed.getByRole('table', { name: 'Plugin calls' }).waitFor();
    const attempts = routed.getByRole('table', { name: 'Delivery attempts' });
    for (let n = 0; n < destinations.length; n += 1) {
      const job = `${eventId}.${pluginSubscription}.${n}`;
      await attempts.getByRole('row').filter({ hasText: job }).waitFor();
      // What each delivery sent, as the plugin made it.
      const sent = JSON.parse(await routed.getByLabel(`Body of ${job}`).textContent());
      assert.ok(Array.isArray(sent.order_line) && sent.order_line.length > 0, `${job}: the order with its shipper's lines`);
    }
    // A pass-through delivery's body, rebuilt from the stored event.
    const passed = await good.getByLabel(`Body of ${eventId}.${healthy}.0`).textContent();
    assert.match(passed, new RegExp(eventId), 'the delivered envelope names the event');
    await shot('journey');
  });

  await step('replay a dead letter', async () => {
    await openPage('Dead letters', 'Dead letters');
    await shot('dead-letters');
    await page.getByRole('button', { name: `Replay ${deadLetter}` }).click();
    await page.getByRole('status').filter({ hasText: `Replay of ${deadLetter} accepted (202)` }).waitFor();
  });

  await step("a plugin dry-run shows the plugin's deliveries", async () => {
    await openPage('Plugin dry-run', 'Plugin dry-run');
    await page.getByLabel('Plugin').selectOption(plugin);
    await page.getByLabel('Sample event').selectOption(sample);
    await page.getByRole('button', { name: 'Run dry-run' }).click();
    for (const destination of destinations) {
      const delivery = page.locator(`article[data-destination="${destination}"]`);
      await delivery.getByRole('heading', { name: new RegExp(`to ${destination}$`) }).waitFor();
    }
    const summary = await page.locator('#dry-run-result .notice').first().textContent();
    assert.match(summary, new RegExp(`^${destinations.length} deliveries from ${plugin}`));
    await shot('dry-run');
  });

  await step('reload the configuration', async () => {
    await openPage('Reload', 'Configuration reload');
    await page.getByRole('button', { name: 'Reload the configuration now' }).click();
    await page.getByRole('status').filter({ hasText: 'Reloaded: generation 1' }).waitFor();
    await page.getByText('POST /admin/reload').waitFor();
    // The file is the one the gateway started with: nothing waits for a restart.
    const pending = page.locator('dl.facts > dt:has-text("applied at the next restart") + dd');
    assert.equal(await pending.textContent(), 'nothing');
    await shot('reload');
  });

  await step('every admin call carried the token; the page reported no problem', async () => {
    assert.ok(adminCalls.length > 10, `only ${adminCalls.length} admin calls`);
    // The two refused logins aside, every call sent the right token.
    const wrong = adminCalls.filter((c) => c.auth !== `Bearer ${token}`);
    assert.equal(wrong.length, 2, JSON.stringify(wrong));
    assert.equal(wrong[0].auth, 'Bearer not-the-token-at-all');
    assert.equal(wrong[1].auth, `Bearer ${metricsToken}`);
    // The refused logins' 401 and 403 (and the browser's notes of them) aside, nothing went
    // wrong.
    const unexpected = problems.filter((p) => !p.includes('401') && !p.includes('403'));
    assert.deepEqual(unexpected, []);
    assert.ok(problems.some((p) => p.startsWith('401 from') && p.endsWith('/admin/status')), problems.join('\n'));
  });

  await step('log out', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });
} catch (_) {
  failed = true;
} finally {
  await browser.close();
}
console.log(failed ? 'console test failed' : `console test passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
