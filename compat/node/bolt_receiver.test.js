// A real @slack/bolt app (HTTPReceiver, signingSecret, botId + botUserId) as the Request URL.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { App, LogLevel } = require('@slack/bolt');
const { withTidings } = require('./support');

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const silentLogger = {
  debug() {}, info() {}, warn() {}, error() {}, setLevel() {}, getLevel: () => LogLevel.ERROR, setName() {},
};

async function workspace(td) {
  await td.admin('POST', '/teams', { id: 'T01', name: 'Acme', domain: 'acme' }, 201);
  await td.admin('POST', '/teams/T01/users', { id: 'U01', name: 'alice' }, 201);
  const app = (await td.admin('POST', '/apps', { id: 'A01', name: 'A', bot_events: ['message.channels'] }, 201)).body;
  const inst = (await td.admin('POST', '/apps/A01/installations',
    { team_id: 'T01', installer_user_id: 'U01', bot_scopes: ['channels:history'] }, 201)).body;
  await td.admin('PUT', '/teams/T01/conversations/C01', { name: 'general', kind: 'public', members: ['U01', inst.bot_user_id] }, 201);
  return { app, inst };
}

test('bolt verifies the URL, receives signed events and sees retry numbers', withTidings(async (td, t) => {
  const { app, inst } = await workspace(td);
  const port = await freePort();
  const received = [];
  let attempts = 0;
  const bolt = new App({
    token: inst.bot_token,
    botId: inst.bot_id,
    botUserId: inst.bot_user_id,
    signingSecret: app.signing_secret,
    port,
    // Process before answering, so a failing first attempt answers 500 (Bolt otherwise acks first).
    processBeforeResponse: true,
    // The first attempt fails on purpose; Bolt would log that as an unhandled error.
    logger: silentLogger,
    clientOptions: { slackApiUrl: td.apiUrl },
  });
  // Fail the first attempt of each event so Tidings retries it.
  bolt.use(async ({ body, context, next }) => {
    if (body.type === 'event_callback' && context.retryNum === undefined) {
      attempts += 1;
      throw new Error('first attempt fails');
    }
    await next();
  });
  bolt.event('message', async ({ event, context }) => {
    received.push({ text: event.text, retryNum: context.retryNum, retryReason: context.retryReason });
  });
  await bolt.start();
  t.after(() => bolt.stop());

  const patched = await td.admin('PATCH', '/apps/A01', { request_url: `http://127.0.0.1:${port}/slack/events` }, 200);
  assert.strictEqual(patched.body.request_url_verified, true);
  const eventId = await td.publish('T01', { type: 'message', channel: 'C01', user: 'U01', text: 'hello node' });
  const d = await td.waitDelivery(eventId, 'delivered');
  assert.deepStrictEqual(d.attempts.map((a) => a.status_code), [500, 200]);
  assert.strictEqual(attempts, 1);
  assert.deepStrictEqual(received, [{ text: 'hello node', retryNum: 1, retryReason: 'http_error' }]);
}));

test('a wrong signing secret fails URL verification', withTidings(async (td, t) => {
  const { inst } = await workspace(td);
  const port = await freePort();
  const bolt = new App({
    token: inst.bot_token, botId: inst.bot_id, botUserId: inst.bot_user_id,
    signingSecret: 'wrong-secret', port, logLevel: LogLevel.ERROR, clientOptions: { slackApiUrl: td.apiUrl },
  });
  await bolt.start();
  t.after(() => bolt.stop());
  const r = await td.admin('PATCH', '/apps/A01', { request_url: `http://127.0.0.1:${port}/slack/events` });
  assert.strictEqual(r.status, 422);
  assert.match(r.body.detail, /401/);
}));
