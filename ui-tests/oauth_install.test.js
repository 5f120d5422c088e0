// Issue 21's proof: an unmodified slack_bolt app (compat/python/oauth_app.py, with
// OAuthSettings and a FileInstallationStore, pointed at Tidings only by authorization_url
// and its client's base_url) is installed by a person in headless Chromium: the app's
// /slack/install, "Add to Slack", the platform's login hand-off (a test platform on
// 127.0.0.1 that signs an HS256 assertion), the consent page's Allow. Then an event
// reaches the app, whose handler calls auth.test with the installed token; Bolt rotates
// the token through oauth.v2.access itself; apps.uninstall makes the app's
// tokens_revoked / app_uninstalled listeners empty its installation store. The same with
// @slack/bolt's installerOptions (@slack/oauth InstallProvider) from compat/node.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { launch, newPage, screenshot, startTidings, until } = require('./support');

const LOGIN_SECRET = 'ui-tests-login-secret-0123456789abcdef';
const PYTHON = process.env.COMPAT_PYTHON || path.join(__dirname, '..', 'compat', 'python', '.venv', 'bin', 'python');
const APP = path.join(__dirname, '..', 'compat', 'python', 'oauth_app.py');

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });

const b64url = (x) => Buffer.from(x).toString('base64url');

// HS256 by hand is fine for the test platform: Tidings verifies with the jsonwebtoken crate.
function assertion(claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const mac = crypto.createHmac('sha256', LOGIN_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${mac}`;
}

// The platform: signs `who` in and sends the browser back to Tidings with an assertion.
async function startPlatform(who) {
  const state = { tidings: null, logins: 0 };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const returnTo = u.searchParams.get('return_to') || '';
    state.logins += 1;
    const jwt = assertion({
      sub: who.userId, team_id: who.teamId, exp: Math.floor(Date.now() / 1000) + 120, jti: crypto.randomUUID(),
    });
    const to = `${state.tidings}/oauth/v2/login?assertion=${encodeURIComponent(jwt)}&return_to=${encodeURIComponent(returnTo)}`;
    res.writeHead(302, { location: to });
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${server.address().port}/login`;
  state.close = () => new Promise((r) => { server.close(r); server.closeAllConnections(); });
  return state;
}

// The Bolt app as a child process; its JSON lines collected.
async function startBoltApp(env) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-bolt-'));
  const proc = spawn(PYTHON, [APP], { env: { ...process.env, ...env, INSTALL_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => { stderr += c; });
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    try { lines.push(JSON.parse(l)); } catch { /* not ours */ }
  });
  const exited = new Promise((r) => proc.once('exit', r));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const listening = await until('the Bolt app to listen', () => lines.find((l) => l.kind === 'listening'), 30000);
    return { port: listening.port, lines, dir, stop, log: () => stderr };
  } catch (e) {
    await stop();
    throw new Error(`${e.message}; its stderr:\n${stderr}`);
  }
}

function findFiles(dir, name) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? findFiles(p, name) : (d.name === name ? [p] : []);
  });
}

const digest = (t) => crypto.createHash('sha256').update(t || '').digest('hex').slice(0, 16);

test('a slack_bolt app with OAuthSettings is installed in Chromium, gets events, rotates and is uninstalled', async (t) => {
  const who = { userId: 'U0ALICE01', teamId: 'T0ACME001' };
  const platform = await startPlatform(who);
  const td = await startTidings({
    TIDINGS_OAUTH_LOGIN_URL: platform.url,
    TIDINGS_OAUTH_LOGIN_SECRET: LOGIN_SECRET,
    // Shorter than Bolt's 120-minute refresh window: Bolt rotates at its first authorize.
    TIDINGS_OAUTH_ACCESS_TOKEN_TTL: '1h',
  });
  platform.tidings = td.url;
  let bolt;
  const page = await newPage(browser);
  try {
    await td.admin('POST', '/teams', { id: who.teamId, name: 'Acme', domain: `acme-${Date.now() % 1e6}` }, 201);
    await td.admin('POST', `/teams/${who.teamId}/users`, { id: who.userId, name: 'alice' }, 201);
    const app = (await td.admin('POST', '/apps', {
      name: 'Bolt OAuth', bot_events: ['message.channels', 'tokens_revoked', 'app_uninstalled'], token_rotation_enabled: true,
    }, 201)).body;
    bolt = await startBoltApp({
      TIDINGS_URL: td.url, SLACK_CLIENT_ID: app.client_id, SLACK_CLIENT_SECRET: app.client_secret,
      SLACK_SIGNING_SECRET: app.signing_secret,
    });
    await td.admin('PATCH', `/apps/${app.id}/oauth`, { redirect_urls: [`http://localhost:${bolt.port}/slack/oauth_redirect`] }, 200);

    // The person installs it.
    await page.goto(`http://localhost:${bolt.port}/slack/install`);
    await screenshot(page, 'oauth-bolt-install-page');
    await Promise.all([page.waitForURL(/\/oauth\/v2\/authorize\?/), page.click('a[href*="/oauth/v2/authorize"]')]);
    assert.equal(platform.logins, 1, 'the platform signed the person in');
    assert.match(await page.textContent('h1'), /Bolt OAuth is asking for permission to access Acme/);
    await screenshot(page, 'oauth-consent');
    await Promise.all([page.waitForURL(/\/slack\/oauth_redirect\?/), page.click('button:text-is("Allow")')]);
    assert.match(await page.textContent('body'), /Thank you|success|installed/i, 'Bolt reports a completed install');
    await screenshot(page, 'oauth-bolt-done');
    const [botFile] = await until('the installation store to hold the bot', () => findFiles(bolt.dir, 'bot-latest').length && findFiles(bolt.dir, 'bot-latest'));
    const installed = JSON.parse(fs.readFileSync(botFile, 'utf8'));
    assert.ok(installed.bot_token.startsWith('xoxe.xoxb-1-'), 'a rotating bot token');
    assert.ok(installed.bot_refresh_token.startsWith('xoxe-1-'));
    assert.ok(installed.bot_id.startsWith('B'), 'bot_id from auth.test');
    assert.equal(installed.team_id, who.teamId);

    // An event reaches it; the handler's client calls auth.test with the (rotated) token.
    await td.admin('PATCH', `/apps/${app.id}`, { request_url: `http://127.0.0.1:${bolt.port}/slack/events` }, 200);
    await td.admin('PUT', `/teams/${who.teamId}/conversations/C0GENERAL`, {
      name: 'general', kind: 'public', members: [who.userId, installed.bot_user_id],
    });
    await td.admin('POST', '/events', { team_id: who.teamId, event: { type: 'message', channel: 'C0GENERAL', user: who.userId, text: 'hello bolt' } }, 202);
    const seen = await until('the message handler to run', () => bolt.lines.find((l) => l.kind === 'message'));
    assert.equal(seen.ok, true);
    assert.equal(seen.bot_id, installed.bot_id);
    assert.equal(seen.user_id, installed.bot_user_id);
    const rotated = JSON.parse(fs.readFileSync(botFile, 'utf8'));
    assert.notEqual(rotated.bot_token, installed.bot_token, "Bolt's own refresh stored a new token");
    assert.notEqual(rotated.bot_refresh_token, installed.bot_refresh_token);
    assert.equal(seen.token, digest(rotated.bot_token), 'the handler used the rotated token');

    // Uninstall: the app's own revocation listeners empty its store.
    const form = new URLSearchParams({ client_id: app.client_id, client_secret: app.client_secret });
    const res = await fetch(`${td.url}/api/apps.uninstall`, {
      method: 'POST', headers: { authorization: `Bearer ${rotated.bot_token}`, 'content-type': 'application/x-www-form-urlencoded' }, body: form,
    });
    assert.deepEqual(await res.json(), { ok: true });
    await until('tokens_revoked and app_uninstalled to reach the app', () => ['tokens_revoked', 'app_uninstalled']
      .every((ty) => bolt.lines.some((l) => l.kind === 'event' && l.type === ty)));
    await until('the installation store to be emptied', () => findFiles(bolt.dir, 'bot-latest').length === 0);
  } catch (e) {
    process.stderr.write(`--- tidings stderr ---\n${td.log()}\n--- bolt stderr ---\n${bolt ? bolt.log() : ''}\n--- bolt lines ---\n${JSON.stringify(bolt ? bolt.lines : [])}\n`);
    throw e;
  } finally {
    await page.context().close();
    if (bolt) await bolt.stop();
    await td.stop();
    await platform.close();
  }
});

// @slack/bolt and its InstallProvider, from compat/node's pinned packages.
const NODE_MODULES = path.join(__dirname, '..', 'compat', 'node', 'node_modules');

async function freePort() {
  const srv = http.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

test('@slack/bolt with installerOptions is installed in Chromium, gets events, rotates and is uninstalled', async () => {
  const { App, LogLevel } = require(path.join(NODE_MODULES, '@slack', 'bolt'));
  const who = { userId: 'U0BOB0001', teamId: 'T0NODE001' };
  const platform = await startPlatform(who);
  const td = await startTidings({
    TIDINGS_OAUTH_LOGIN_URL: platform.url,
    TIDINGS_OAUTH_LOGIN_SECRET: LOGIN_SECRET,
    TIDINGS_OAUTH_ACCESS_TOKEN_TTL: '1h',
  });
  platform.tidings = td.url;
  const page = await newPage(browser);
  let bolt;
  try {
    await td.admin('POST', '/teams', { id: who.teamId, name: 'Nodeland', domain: `node-${Date.now() % 1e6}` }, 201);
    await td.admin('POST', `/teams/${who.teamId}/users`, { id: who.userId, name: 'bob' }, 201);
    const created = (await td.admin('POST', '/apps', {
      name: 'Node OAuth', bot_events: ['message.channels', 'tokens_revoked', 'app_uninstalled'], token_rotation_enabled: true,
    }, 201)).body;
    const port = await freePort();
    const redirectUri = `http://localhost:${port}/slack/oauth_redirect`;
    await td.admin('PATCH', `/apps/${created.id}/oauth`, { redirect_urls: [redirectUri] }, 200);
    // The installation store: a map the test can look into.
    const saved = new Map();
    const installationStore = {
      storeInstallation: async (i) => { saved.set(i.team.id, JSON.parse(JSON.stringify(i))); },
      fetchInstallation: async (q) => {
        const i = saved.get(q.teamId);
        if (!i) throw new Error('no installation');
        return JSON.parse(JSON.stringify(i));
      },
      deleteInstallation: async (q) => { saved.delete(q.teamId); },
    };
    const seen = [];
    bolt = new App({
      signingSecret: created.signing_secret,
      clientId: created.client_id,
      clientSecret: created.client_secret,
      stateSecret: 'node-state-secret',
      scopes: ['channels:history', 'chat:write'],
      redirectUri,
      installationStore,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: `${td.url}/api/` },
      installerOptions: { authorizationUrl: `${td.url}/oauth/v2/authorize`, redirectUriPath: '/slack/oauth_redirect' },
    });
    bolt.message(async ({ message, client }) => {
      const r = await client.auth.test();
      seen.push({ kind: 'message', text: message.text, ok: r.ok, bot_id: r.bot_id, token: digest(client.token) });
    });
    for (const ty of ['tokens_revoked', 'app_uninstalled']) {
      bolt.event(ty, async ({ body }) => {
        seen.push({ kind: 'event', type: ty });
        await installationStore.deleteInstallation({ teamId: body.team_id });
      });
    }
    await bolt.start({ port, host: '127.0.0.1' });

    await page.goto(`http://localhost:${port}/slack/install`);
    await Promise.all([page.waitForURL(/\/oauth\/v2\/authorize\?/), page.click('a[href*="/oauth/v2/authorize"]')]);
    assert.match(await page.textContent('h1'), /Node OAuth is asking for permission to access Nodeland/);
    await Promise.all([page.waitForURL(/\/slack\/oauth_redirect\?/), page.click('button:text-is("Allow")')]);
    await screenshot(page, 'oauth-node-done');
    const installed = await until('the installation store to hold the bot', () => saved.get(who.teamId));
    assert.ok(installed.bot.token.startsWith('xoxe.xoxb-1-'));
    assert.ok(installed.bot.refreshToken.startsWith('xoxe-1-'));
    assert.ok(installed.bot.id.startsWith('B'), 'bot id from auth.test');
    assert.equal(installed.user.id, who.userId);
    assert.equal(installed.authVersion, 'v2');

    await td.admin('PATCH', `/apps/${created.id}`, { request_url: `http://127.0.0.1:${port}/slack/events` }, 200);
    await td.admin('PUT', `/teams/${who.teamId}/conversations/C0GENERAL`, {
      name: 'general', kind: 'public', members: [who.userId, installed.bot.userId],
    });
    await td.admin('POST', '/events', { team_id: who.teamId, event: { type: 'message', channel: 'C0GENERAL', user: who.userId, text: 'hello node' } }, 202);
    const msg = await until('the message handler to run', () => seen.find((l) => l.kind === 'message'));
    assert.equal(msg.ok, true);
    assert.equal(msg.bot_id, installed.bot.id);
    const rotated = saved.get(who.teamId);
    assert.notEqual(rotated.bot.token, installed.bot.token, "InstallProvider's own refresh stored a new token");
    assert.equal(msg.token, digest(rotated.bot.token));

    const form = new URLSearchParams({ client_id: created.client_id, client_secret: created.client_secret });
    const res = await fetch(`${td.url}/api/apps.uninstall`, {
      method: 'POST', headers: { authorization: `Bearer ${rotated.bot.token}`, 'content-type': 'application/x-www-form-urlencoded' }, body: form,
    });
    assert.deepEqual(await res.json(), { ok: true });
    await until('tokens_revoked and app_uninstalled to reach the app', () => ['tokens_revoked', 'app_uninstalled']
      .every((ty) => seen.some((l) => l.kind === 'event' && l.type === ty)));
    assert.equal(saved.size, 0, 'the listeners emptied the store');
  } catch (e) {
    process.stderr.write(`--- tidings stderr ---\n${td.log()}\n`);
    throw e;
  } finally {
    await page.context().close();
    if (bolt) await bolt.stop();
    await td.stop();
    await platform.close();
  }
});

test('the app page shows the install link and who installed when, and uninstalls', async () => {
  const { login, show } = require('./support');
  const td = await startTidings({});
  const page = await newPage(browser);
  try {
    await td.admin('POST', '/teams', { id: 'T0DASH001', name: 'Dash', domain: `dash-${Date.now() % 1e6}` }, 201);
    await td.admin('POST', '/teams/T0DASH001/users', { id: 'U0CAROL01', name: 'carol' }, 201);
    const app = (await td.admin('POST', '/apps', {
      name: 'Dash OAuth', bot_events: ['message.channels'], redirect_urls: ['http://localhost:9/slack/oauth_redirect'],
    }, 201)).body;
    const inst = (await td.admin('POST', `/apps/${app.id}/installations`, {
      team_id: 'T0DASH001', installer_user_id: 'U0CAROL01', bot_scopes: ['channels:history'],
    }, 201)).body;
    await login(page, td);
    await show(page, `#/apps/${app.id}`);
    const href = await page.getAttribute('#install-link', 'href');
    assert.ok(href.startsWith(`${td.url}/oauth/v2/authorize?client_id=${app.client_id}&scope=channels%3Ahistory`), href);
    const row = page.locator(`tr[data-installation="${inst.id}"]`);
    assert.match(await row.textContent(), /U0CAROL01/);
    assert.match(await row.textContent(), /installed/);
    await screenshot(page, 'oauth-app-installations');
    await row.locator('[data-action=uninstall]').click();
    await row.locator('[data-action=uninstall-confirm]').click();
    await until('the row to show the uninstall', async () => /uninstalled/.test(await page.locator(`tr[data-installation="${inst.id}"]`).textContent()));
    const after = (await td.admin('GET', `/apps/${app.id}/installations/${inst.id}`, undefined, 200)).body;
    assert.ok(after.revoked_at, 'uninstalled through the operator API');
    if (page.problems.length) throw new Error(page.problems.join('\n'));
  } catch (e) {
    process.stderr.write(`--- tidings stderr ---\n${td.log()}\n`);
    throw e;
  } finally {
    await page.context().close();
    await td.stop();
  }
});
