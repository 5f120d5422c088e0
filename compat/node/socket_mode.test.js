// Real @slack/socket-mode and @slack/bolt Socket Mode clients against Tidings: they connect with
// an app-level token (start() resolves on `hello`), receive events_api envelopes, ack them (which
// completes the delivery), and reconnect when the server refreshes the connection.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { SocketModeClient, LogLevel } = require('@slack/socket-mode');
const { App } = require('@slack/bolt');
const { startTidings, withTidings } = require('./support');

const TEST_TIMEOUT_MS = 30000;
// A refresh cycle short enough for a test: `warning` after 2 s, `refresh_requested` after 4 s.
const SHORT_LIFETIME = '4s';
const SHORT_LIFETIME_MS = 4000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(predicate, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = predicate();
    if (v) return v;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

// Like withTidings, but the server process gets extra environment variables. startTidings spawns
// synchronously (before its first await) with a copy of process.env, so the variables are set only
// for that call.
function withTidingsEnv(extraEnv, fn) {
  return async (t) => {
    const saved = {};
    for (const [k, v] of Object.entries(extraEnv)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    let started;
    try {
      started = startTidings();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const td = await started;
    try {
      await fn(td, t);
    } catch (e) {
      process.stderr.write(`--- tidings stderr (${td.url}) for '${t.name}' ---\n${td.log() || '(empty)\n'}--- end of tidings stderr ---\n`);
      throw e;
    } finally {
      await td.stop();
    }
  };
}

// T01 with U01, socket-mode app A01 subscribed to channel messages and installed with
// channels:history, C01 with U01 and the bot; returns the installation and an app-level token.
async function socketWorkspace(td) {
  await td.admin('POST', '/teams', { id: 'T01', name: 'Acme', domain: 'acme' }, 201);
  await td.admin('POST', '/teams/T01/users', { id: 'U01', name: 'alice' }, 201);
  const app = (await td.admin('POST', '/apps',
    { id: 'A01', name: 'Socket app', socket_mode: true, bot_events: ['message.channels'] }, 201)).body;
  assert.strictEqual(app.socket_mode, true);
  const inst = (await td.admin('POST', '/apps/A01/installations',
    { team_id: 'T01', installer_user_id: 'U01', bot_scopes: ['channels:history'] }, 201)).body;
  await td.admin('PUT', '/teams/T01/conversations/C01',
    { name: 'general', kind: 'public', members: ['U01', inst.bot_user_id] }, 201);
  const token = (await td.admin('POST', '/apps/A01/tokens',
    { scopes: ['connections:write', 'authorizations:read'] }, 201)).body.token;
  assert.match(token, /^xapp-/);
  return { inst, appToken: token };
}

function say(td, text) {
  return td.publish('T01', { type: 'message', channel: 'C01', user: 'U01', text });
}

async function assertDeliveredOverSocket(td, eventId) {
  const d = await td.waitDelivery(eventId, 'delivered');
  assert.ok(d.attempts.length > 0, JSON.stringify(d));
  assert.strictEqual(d.attempts[d.attempts.length - 1].transport, 'socket', JSON.stringify(d));
  return d;
}

// A SocketModeClient pointed at Tidings whose `message` listener acks and records every event.
function socketClient(td, appToken, received) {
  const client = new SocketModeClient({ appToken, logLevel: LogLevel.ERROR, clientOptions: { slackApiUrl: td.apiUrl } });
  // events_api envelopes are emitted under payload.event.type.
  client.on('message', async ({ event, body, ack, envelope_id, retry_num, retry_reason }) => {
    await ack();
    received.push({ text: event.text, eventId: body.event_id, envelopeId: envelope_id, retryNum: retry_num, retryReason: retry_reason });
  });
  return client;
}

test('the socket mode client connects, receives events and its acks complete the delivery', { timeout: TEST_TIMEOUT_MS },
  withTidings(async (td, t) => {
    const { appToken } = await socketWorkspace(td);
    const received = [];
    const client = socketClient(td, appToken, received);
    t.after(() => client.disconnect());
    const connection = await client.start(); // resolves on `hello`
    assert.strictEqual(connection.ok, true);
    assert.match(connection.url, /^ws:\/\/127\.0\.0\.1:\d+\/link\/\?/);

    const eventId = await say(td, 'hello node socket');
    const d = await assertDeliveredOverSocket(td, eventId);
    assert.deepStrictEqual(d.attempts.map((a) => a.transport), ['socket']);
    await waitFor(() => received.length >= 1, 'the event');
    assert.strictEqual(received.length, 1);
    assert.deepStrictEqual(
      { text: received[0].text, eventId: received[0].eventId, retryNum: received[0].retryNum, retryReason: received[0].retryReason },
      { text: 'hello node socket', eventId, retryNum: 0, retryReason: '' },
    );
    await client.disconnect();
  }));

test('a bolt app in socket mode starts, receives events in its listener and acks them', { timeout: TEST_TIMEOUT_MS },
  withTidings(async (td, t) => {
    const { inst, appToken } = await socketWorkspace(td);
    const received = [];
    const bolt = new App({
      token: inst.bot_token,
      appToken,
      socketMode: true,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: td.apiUrl },
    });
    bolt.event('message', async ({ event, body, context }) => {
      received.push({ text: event.text, eventId: body.event_id, retryNum: context.retryNum, botUserId: context.botUserId });
    });
    await bolt.start(); // auth.test, apps.connections.open, then resolves on `hello`
    t.after(() => bolt.stop());

    const eventId = await say(td, 'hello node bolt');
    await assertDeliveredOverSocket(td, eventId);
    await waitFor(() => received.length >= 1, 'the event in the listener');
    assert.deepStrictEqual(received, [{ text: 'hello node bolt', eventId, retryNum: 0, botUserId: inst.bot_user_id }]);
    await bolt.stop();
  }));

test('the socket mode client reconnects after a refresh and still receives events', { timeout: TEST_TIMEOUT_MS },
  withTidingsEnv({ TIDINGS_SOCKET_MODE_CONNECTION_LIFETIME: SHORT_LIFETIME }, async (td, t) => {
    const { appToken } = await socketWorkspace(td);
    const received = [];
    const client = socketClient(td, appToken, received);
    let hellos = 0;
    client.on('connected', () => { hellos += 1; });
    let reconnects = 0;
    client.on('reconnecting', () => { reconnects += 1; });
    t.after(() => client.disconnect());
    const startedAt = Date.now();
    await client.start();

    const first = await say(td, 'node before the refresh');
    await assertDeliveredOverSocket(td, first);
    // Past the first connection's whole lifetime: it was told to disconnect and was replaced.
    await sleep(Math.max(0, startedAt + SHORT_LIFETIME_MS + 1000 - Date.now()));
    const second = await say(td, 'node after the refresh');
    await assertDeliveredOverSocket(td, second);
    await waitFor(() => received.some((r) => r.eventId === second), 'the event after the refresh');
    assert.ok(reconnects >= 1, `reconnecting emitted ${reconnects} times`);
    assert.ok(hellos >= 2, `connected (hello) ${hellos} times`);
    assert.deepStrictEqual([...new Set(received.map((r) => r.text))], ['node before the refresh', 'node after the refresh']);
    await client.disconnect();
  }));
