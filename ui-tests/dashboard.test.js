// The /ui dashboard in Debian's headless Chromium against the real binary: log in through
// the form, read the overview chart, re-enable a disabled app, issue a configuration token
// and see who owns each app, redeliver a failed delivery, mark a key event, and the apps
// page on a phone. Each effect is checked through
// the operator API; every page is saved to ui-tests/screenshots/.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  ADMIN, PHONE, launch, newPage, login, show, screenshot, startReceiver, until, withDashboard,
} = require('./support');

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });
const b = () => browser;

test('a wrong token is refused and the right one signs in', withDashboard(b, {}, async (td, page) => {
  await page.goto(`${td.url}/ui/`);
  await page.waitForURL(/\/ui\/login$/);
  await screenshot(page, 'login');
  await page.fill('#token', 'tdk_admin_wrong_token_000000000');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error[role=alert]');
  assert.match(await page.textContent('.error'), /not the admin token/);
  await login(page, td);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'tidings_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
  assert.ok(!JSON.stringify(cookies).includes(ADMIN), 'the token is not in a cookie');
}));

test('the overview charts the events published through the API', withDashboard(b, {}, async (td, page) => {
  const ws = await td.workspace();
  const n = 7;
  for (let i = 0; i < n; i++) await td.say(ws, `hello ${i}`);
  const api = (await td.admin('GET', '/insights/events', undefined, 200)).body;
  assert.equal(api.totals.events, n, 'the API counts them');

  await login(page, td);
  await page.waitForFunction(() => window.Chart && window.Chart.getChart(document.getElementById('chart-events')));
  const chart = await page.evaluate(() => {
    const c = window.Chart.getChart(document.getElementById('chart-events'));
    return { labels: c.data.labels.length, data: c.data.datasets[0].data };
  });
  assert.equal(chart.data.reduce((a, v) => a + v, 0), n, 'the chart shows every event');
  assert.equal(chart.labels, chart.data.length);
  assert.equal((await page.textContent('#total-events .value')).trim(), String(n));
  const deliveries = await page.evaluate(() =>
    window.Chart.getChart(document.getElementById('chart-deliveries')).data.datasets.map((d) => d.label));
  assert.deepEqual(deliveries, ['Delivered', 'Failed', 'Dropped', 'Retries']);
  await screenshot(page, 'overview');

  // The last hour, by minute: the same events.
  await page.selectOption('#range', '1h');
  await page.waitForSelector('main[data-state="ready"]');
  await page.waitForFunction(() => window.Chart.getChart(document.getElementById('chart-events')).data.labels.length >= 60);
  const hour = await page.evaluate(() =>
    window.Chart.getChart(document.getElementById('chart-events')).data.datasets[0].data.reduce((a, v) => a + v, 0));
  assert.equal(hour, n);
}));

test('a disabled app is listed first and re-enabled from the apps page', withDashboard(b, {
  TIDINGS_HEALTH_MIN_EVENTS: '5',
  TIDINGS_DELIVERY_RETRY_SCHEDULE: '[]',
}, async (td, page) => {
  const receiver = await startReceiver(500);
  try {
    await td.workspace({ appId: 'A0HEALTHY', name: 'Healthy app' });
    const ws = await td.workspace({ appId: 'A0FAILING', name: 'Zeta failing app', requestUrl: receiver.url });
    for (let i = 0; i < 8; i++) await td.say(ws, `m${i}`);
    await until('the app to be disabled', async () =>
      (await td.admin('GET', '/apps/A0FAILING')).body.events_enabled === false);

    await login(page, td);
    await show(page, '#/apps');
    const first = await page.getAttribute('#apps-table tbody tr:first-child', 'data-app');
    assert.equal(first, 'A0FAILING', 'disabled apps come first');
    assert.match(await page.textContent('tr[data-app="A0FAILING"]'), /failed/);
    assert.equal(await page.locator('tr[data-app="A0HEALTHY"] button[data-action="reenable"]').count(), 0);
    await screenshot(page, 'apps');

    await page.click('tr[data-app="A0FAILING"] button[data-action="reenable"]');
    await page.waitForSelector('#flash:not([hidden])');
    assert.match(await page.textContent('#flash'), /enabled again/);
    const app = (await td.admin('GET', '/apps/A0FAILING', undefined, 200)).body;
    assert.equal(app.events_enabled, true, 'the API says the app is enabled');
    assert.equal(app.disabled_reason, null);
    await page.waitForFunction(() => !document.querySelector('tr[data-app="A0FAILING"] button[data-action="reenable"]'));
  } finally {
    await receiver.close();
  }
}));

test('the apps page issues a configuration token and shows who owns each app', withDashboard(b, {}, async (td, page) => {
  const ws = await td.workspace({ appId: 'A0OPERATOR', name: 'Operator app' });
  await login(page, td);
  await show(page, '#/apps');
  assert.match(await page.textContent('tr[data-app="A0OPERATOR"] td.owners'), /operator/);
  await page.fill('#config-token-form input[name=team_id]', ws.teamId);
  await page.fill('#config-token-form input[name=user_id]', ws.userId);
  await page.click('#config-token-form button[type=submit]');
  await page.waitForSelector('#config-token-out pre');
  const token = (await page.textContent('#config-token-out pre')).match(/TIDINGS_CONFIG_TOKEN=(\S+)/)[1];
  assert.match(token, /^xoxe\.xoxp-1-/);

  const manifest = { display_information: { name: 'Developer app' } };
  const res = await fetch(`${td.url}/api/apps.manifest.create`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ manifest: JSON.stringify(manifest) }),
  });
  const created = await res.json();
  assert.equal(created.ok, true, JSON.stringify(created));
  await show(page, '#/key-events');
  await show(page, '#/apps');
  assert.equal((await page.textContent(`tr[data-app="${created.app_id}"] td.owners`)).trim(), ws.userId);
  await screenshot(page, 'apps-owners');
}));

test('a failed delivery is redelivered from the app page', withDashboard(b, {}, async (td, page) => {
  const receiver = await startReceiver(500);
  try {
    const ws = await td.workspace({ appId: 'A0REDELIVER', name: 'Flaky app', requestUrl: receiver.url });
    const eventId = await td.say(ws, 'please arrive');
    const failed = await until('the delivery to fail', async () => {
      const d = (await td.admin('GET', `/events/${eventId}`)).body.deliveries[0];
      return d.status === 'failed' ? d : null;
    });
    const attemptsBefore = failed.attempts.length;
    receiver.status = 200;

    await login(page, td);
    await show(page, '#/apps/A0REDELIVER');
    const row = `#deliveries-table tr[data-delivery="${failed.id}"]`;
    await page.waitForSelector(row);
    assert.match(await page.textContent(row), /failed/);
    await screenshot(page, 'app-detail');
    await page.click(`${row} button[data-action="redeliver"]`);
    await page.waitForSelector('#flash:not([hidden])');
    assert.match(await page.textContent('#flash'), /attempted again/);

    const after = await until('a new attempt', async () => {
      const d = (await td.admin('GET', `/deliveries/${failed.id}`)).body;
      return d.attempts.length > attemptsBefore && d.status === 'delivered' ? d : null;
    });
    assert.equal(after.attempts.at(-1).status_code, 200);
    assert.equal(receiver.hits.at(-1).event_id, eventId);

    // Rotating the signing secret asks first, then shows the new one once.
    const oldSecret = ws.app.signing_secret;
    await page.click('#rotate-secret');
    await page.click('#rotate-confirm');
    const shown = (await page.textContent('#new-secret')).trim();
    assert.notEqual(shown, oldSecret);
    assert.equal((await td.admin('GET', '/apps/A0REDELIVER', undefined, 200)).body.signing_secret, shown);

    await show(page, `#/events/${eventId}`);
    assert.match(await page.textContent('#event-deliveries'), /delivered/);
    assert.match(await page.textContent('#event-json'), /please arrive/);
    await screenshot(page, 'events');
  } finally {
    await receiver.close();
  }
}));

test('failed deliveries are replayed from the app page and the job shows its progress', withDashboard(b, {}, async (td, page) => {
  const receiver = await startReceiver(500);
  try {
    const ws = await td.workspace({ appId: 'A0REPLAY', name: 'Replayed app', requestUrl: receiver.url });
    const eventId = await td.say(ws, 'replay me');
    const failed = await until('the delivery to fail', async () => {
      const d = (await td.admin('GET', `/events/${eventId}`)).body.deliveries[0];
      return d.status === 'failed' ? d : null;
    });
    receiver.status = 200;

    await login(page, td);
    await show(page, '#/apps/A0REPLAY');
    await page.waitForSelector('#replay-start');
    await page.click('#replay-start');
    await page.waitForSelector('#flash:not([hidden])');
    assert.match(await page.textContent('#flash'), /Replay RD\w+ started: 1 deliveries/);
    await page.waitForFunction(() => /done/.test(document.querySelector('#redeliveries-table')?.textContent || ''));
    assert.match(await page.textContent('#redeliveries-table'), /1 \/ 1/);
    const after = await until('the replayed delivery', async () => {
      const d = (await td.admin('GET', `/deliveries/${failed.id}`)).body;
      return d.status === 'delivered' ? d : null;
    });
    assert.equal(after.attempts.at(-1).status_code, 200);
    await screenshot(page, 'app-replay');
  } finally {
    await receiver.close();
  }
}));

test('a key event is marked and charted', withDashboard(b, {}, async (td, page) => {
  const ws = await td.workspace();
  await login(page, td);
  await show(page, '#/key-events');
  await page.fill('#type-filter', 'message.channels');
  const button = 'button[data-event-type="message.channels"]';
  assert.equal(await page.getAttribute(button, 'aria-pressed'), 'false');
  await page.click(button);
  await page.waitForSelector(`${button}[aria-pressed="true"]`);
  const keys = (await td.admin('GET', '/key_events', undefined, 200)).body.items.map((k) => k.event_type);
  assert.deepEqual(keys, ['message.channels'], 'the API lists the new key event');
  await page.fill('#type-filter', '');
  await screenshot(page, 'key-events');

  for (let i = 0; i < 3; i++) await td.say(ws, `key ${i}`);
  await show(page, '#/');
  await page.waitForFunction(() => window.Chart.getChart(document.getElementById('chart-key-events')));
  const data = await page.evaluate(() => window.Chart.getChart(document.getElementById('chart-key-events')).data);
  assert.deepEqual(data.labels, ['message.channels']);
  assert.equal(data.datasets[0].data[0], 3);

  // And unmarked again.
  await show(page, '#/key-events');
  await page.click(button);
  await page.waitForSelector(`${button}[aria-pressed="false"]`);
  assert.deepEqual((await td.admin('GET', '/key_events', undefined, 200)).body.items, []);
}));

test('the apps page is usable on a phone', withDashboard(b, {}, async (td, desktop) => {
  await td.workspace({ appId: 'A0PHONE', name: 'Phone app' });
  await desktop.close();
  const page = await newPage(browser, PHONE);
  try {
    await login(page, td);
    const overviewWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overviewWidth <= PHONE.width, `the overview does not scroll sideways (${overviewWidth} px wide)`);
    await screenshot(page, 'overview-phone');
    await show(page, '#/apps');
    assert.ok(await page.isVisible('tr[data-app="A0PHONE"]'));
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `the page does not scroll sideways (${width} px wide)`);
    for (const link of ['Overview', 'Apps', 'Events', 'Key events']) {
      assert.ok(await page.isVisible(`#nav >> text=${link}`), `${link} in the menu`);
    }
    await screenshot(page, 'apps-phone');
    assert.deepEqual(page.problems, []);
  } finally {
    await page.context().close();
  }
}));

test('the events page tries an event without storing it', withDashboard(b, {}, async (td, page) => {
  const ws = await td.workspace({ appId: 'A0TRY', name: 'Try app' });
  await login(page, td);
  await show(page, '#/events');
  const body = { team_id: ws.teamId, event: { type: 'message', channel: ws.channel, user: ws.userId, text: 'just trying' } };
  await page.fill('#try-body', JSON.stringify(body));
  await page.click('#try-form button[type=submit]');
  await page.waitForSelector('#try-result');
  assert.match(await page.textContent('#try-result'), /valid.*message\.channels/s);
  assert.match(await page.textContent('#try-deliveries tr[data-app="A0TRY"]'), /pending/);
  await screenshot(page, 'events-try');
  const deliveries = (await td.admin('GET', '/apps/A0TRY/deliveries', undefined, 200)).body;
  assert.equal(deliveries.items.length, 0, 'the dry run stored nothing');

  await page.fill('#try-body', JSON.stringify({ ...body, event_time: 1000 }));
  await page.click('#try-form button[type=submit]');
  await page.waitForFunction(() => /event_too_old/.test(document.querySelector('#try-result')?.textContent || ''));
  assert.match(await page.textContent('#try-result'), /invalid/);
}));
