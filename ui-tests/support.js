// Test support for the dashboard's browser tests: a real `tidings serve` on 127.0.0.1
// (ephemeral port, fresh data dir, settings per test), operator-API helpers, an HTTP
// receiver on 127.0.0.1 whose answer the test sets, and Debian's Chromium driven by
// playwright-core. Adapted from compat/node/support.js (which fixes its settings).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');
// With TIDINGS_TEST_DATABASE_URL set, each server stores in a fresh PostgreSQL schema.
const { postgresSchema } = require('../compat/node/pg_schema');

const ADMIN = 'tdk_admin_ui_tests_token_0123456789';
const START_TIMEOUT_MS = 20000;
const LISTENING = 'tidings listening on ';
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SCREENSHOTS = path.join(__dirname, 'screenshots');
const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 375, height: 812 };

// Loopback only, never through a proxy.
for (const v of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy']) delete process.env[v];
process.env.NO_PROXY = process.env.no_proxy = '127.0.0.1,localhost';

async function startTidings(env = {}) {
  const bin = process.env.TIDINGS_BIN;
  if (!bin) throw new Error('TIDINGS_BIN is not set: point it at a built tidings binary (cargo build -p tidings)');
  fs.accessSync(bin, fs.constants.X_OK);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-ui-'));
  const schema = postgresSchema();
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
    env: {
      TIDINGS_LOG: 'info',
      NO_COLOR: '1',
      ...process.env,
      TIDINGS_ADMIN_TOKEN: ADMIN,
      TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS: 'true',
      TIDINGS_DELIVERY_RETRY_SCHEDULE: '["0s","200ms"]',
      ...(schema ? schema.env : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));

  async function stop() {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    if (schema) schema.drop();
  }

  let url;
  try {
    url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`was killed after ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      const rl = readline.createInterface({ input: proc.stdout });
      rl.once('line', (line) => {
        clearTimeout(timer);
        if (line.startsWith(LISTENING)) resolve(line.slice(LISTENING.length).trim());
        else reject(new Error(`printed ${JSON.stringify(line)} first`));
      });
      proc.once('error', (e) => { clearTimeout(timer); reject(e); });
      exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`exited (${signal || code})`)); });
    });
  } catch (e) {
    await stop();
    throw new Error(`tidings (${bin}) ${e.message} without printing '${LISTENING}…'; its stderr:\n${stderr}`);
  }
  proc.stdout.resume();

  async function admin(method, p, body, expect) {
    const res = await fetch(`${url}/admin/v1${p}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const value = text ? JSON.parse(text) : null;
    if (expect !== undefined && res.status !== expect) throw new Error(`${method} ${p} → ${res.status}: ${text}`);
    return { status: res.status, body: value };
  }

  // A team with a user and #general, and an app subscribed to channel messages, installed
  // there with its bot in #general.
  async function workspace({ appId, name = 'Dashboard app', requestUrl } = {}) {
    const team = (await admin('POST', '/teams', { name: 'Acme', domain: `acme-${Date.now() % 1e6}` }, 201)).body;
    const user = (await admin('POST', `/teams/${team.id}/users`, { name: 'alice' }, 201)).body;
    const app = (await admin('POST', '/apps', {
      id: appId, name, bot_events: ['message.channels'], ...(requestUrl ? { request_url: requestUrl } : {}),
    }, 201)).body;
    const inst = (await admin('POST', `/apps/${app.id}/installations`, {
      team_id: team.id, installer_user_id: user.id, bot_scopes: ['channels:history'],
    }, 201)).body;
    await admin('PUT', `/teams/${team.id}/conversations/C0GENERAL`, {
      name: 'general', kind: 'public', members: [user.id, inst.bot_user_id],
    });
    return { teamId: team.id, userId: user.id, appId: app.id, channel: 'C0GENERAL', app };
  }

  async function say(ws, text) {
    const r = await admin('POST', '/events', {
      team_id: ws.teamId, event: { type: 'message', channel: ws.channel, user: ws.userId, text },
    }, 202);
    return r.body.event_id;
  }

  return { url, admin, workspace, say, log: () => stderr, stop };
}

// An HTTP receiver on 127.0.0.1: answers url_verification, and every event with
// `receiver.status` (settable). Records the events it got.
async function startReceiver(status = 200) {
  const state = { status, hits: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let json = {};
      try { json = JSON.parse(body); } catch { /* not JSON: counted as an event */ }
      if (json.type === 'url_verification') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ challenge: json.challenge }));
        return;
      }
      state.hits.push(json);
      res.writeHead(state.status);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${server.address().port}/slack/events`;
  // Tidings keeps connections alive between attempts: drop them, or close() waits for them.
  state.close = () => new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); });
  return state;
}

async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
}

// A fresh browser context and page; fails the test on any page error or console error.
async function newPage(browser, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // An HTTP error status is logged as "Failed to load resource"; the tests check what the page shows instead.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console error: ${m.text()}`);
  });
  page.problems = problems;
  return page;
}

async function login(page, td) {
  await page.goto(`${td.url}/ui/`);
  await page.waitForURL(/\/ui\/login$/);
  await page.fill('#token', ADMIN);
  await Promise.all([page.waitForURL(/\/ui\/$/), page.click('button[type=submit]')]);
  await ready(page);
}

async function ready(page) {
  await page.waitForSelector('main[data-state="ready"], main[data-state="error"]');
  const state = await page.getAttribute('main', 'data-state');
  if (state !== 'ready') throw new Error(`the page shows an error: ${await page.textContent('main')}`);
}

// Goes to a `#/…` page of the app and waits until it has rendered.
async function show(page, hash) {
  await page.evaluate((h) => {
    document.getElementById('main').dataset.state = 'loading';
    location.hash = h;
  }, hash);
  await ready(page);
}

async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

// A test body with a fresh server (with `env`) and a page; server log and page errors on failure.
function withDashboard(browserRef, env, fn) {
  return async (t) => {
    const td = await startTidings(env);
    const page = await newPage(browserRef());
    try {
      await fn(td, page, t);
      if (page.problems.length) throw new Error(`the page logged errors:\n${page.problems.join('\n')}`);
    } catch (e) {
      process.stderr.write(`--- tidings stderr for '${t.name}' ---\n${td.log() || '(empty)\n'}--- end ---\n`);
      if (page.problems.length) process.stderr.write(`page problems:\n${page.problems.join('\n')}\n`);
      throw e;
    } finally {
      await page.context().close();
      await td.stop();
    }
  };
}

module.exports = {
  ADMIN, DESKTOP, PHONE, startTidings, startReceiver, until, launch, newPage, login, ready, show, screenshot, withDashboard,
};
