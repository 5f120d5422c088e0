// The real @slack/rtm-api RTMClient against Tidings, unmodified except its slackApiUrl: it calls
// rtm.connect with a bot token, waits for `hello`, receives a message published to its workspace
// (unwrapped), keeps the connection through its JSON pings (each answered with a `pong` whose
// reply_to it checks), and reconnects on its own after the server's `goodbye`.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { RTMClient, LogLevel } = require('@slack/rtm-api');
const { startTidings } = require('./support');

const TEST_TIMEOUT_MS = 40000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = predicate();
    if (v) return v;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

// Starts a server with extra environment variables (startTidings copies process.env when it
// spawns, before its first await), runs fn, and stops the server.
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

// T01 with U01, app A0RTM subscribed to channel messages and installed with channels:history,
// C01 with U01 and the bot; returns the installation (bot token, bot user).
async function rtmWorkspace(td) {
  await td.admin('POST', '/teams', { id: 'T01', name: 'Acme', domain: 'acme' }, 201);
  await td.admin('POST', '/teams/T01/users', { id: 'U01', name: 'alice' }, 201);
  await td.admin('POST', '/apps', { id: 'A0RTM', name: 'RTM app', bot_events: ['message.channels'] }, 201);
  const inst = (await td.admin('POST', '/apps/A0RTM/installations',
    { team_id: 'T01', installer_user_id: 'U01', bot_scopes: ['channels:history'] }, 201)).body;
  await td.admin('PUT', '/teams/T01/conversations/C01',
    { name: 'general', kind: 'public', members: ['U01', inst.bot_user_id] }, 201);
  return inst;
}

function say(td, text) {
  return td.publish('T01', { type: 'message', channel: 'C01', user: 'U01', text });
}

test('RTMClient connects, receives an event, keeps the connection through pings and reconnects after goodbye',
  { timeout: TEST_TIMEOUT_MS },
  // A lifetime long enough for several of the client's pings, short enough for a test.
  withTidingsEnv({ TIDINGS_RTM_CONNECTION_LIFETIME: '6s' }, async (td) => {
    const inst = await rtmWorkspace(td);
    // Pings after 1 s without outgoing messages; a pong must come within 0.9 s, or the
    // client gives the connection up and reconnects on its own.
    const rtm = new RTMClient(inst.bot_token, {
      slackApiUrl: `${td.url}/api/`,
      logLevel: LogLevel.ERROR,
      clientPingTimeout: 1000,
      serverPongTimeout: 900,
    });
    const messages = [];
    let pongs = 0;
    let goodbyes = 0;
    let readies = 0;
    let pongsBeforeGoodbye = 0;
    let readiesAtGoodbye = 0;
    rtm.on('message', (e) => messages.push(e));
    rtm.on('pong', () => { pongs += 1; });
    rtm.on('goodbye', () => {
      goodbyes += 1;
      if (goodbyes === 1) {
        pongsBeforeGoodbye = pongs;
        readiesAtGoodbye = readies;
      }
    });
    rtm.on('ready', () => { readies += 1; });
    try {
      const started = await rtm.start();
      assert.strictEqual(started.ok, true);
      assert.strictEqual(started.self.id, inst.bot_user_id);
      assert.strictEqual(started.team.id, 'T01');
      await waitFor(() => readies === 1, 'ready (after hello)');

      await say(td, 'hello node rtm');
      const got = await waitFor(() => messages.find((m) => m.text === 'hello node rtm'), 'the published message');
      assert.strictEqual(got.channel, 'C01');
      assert.strictEqual(got.user, 'U01');
      assert.strictEqual(got.event, undefined, 'unwrapped');

      // The server's goodbye at the end of the lifetime: the client reconnects by itself.
      await waitFor(() => goodbyes >= 1 && readies >= 2, 'goodbye and a new ready connection');
      // The first connection lasted until goodbye through several pings (a missed pong
      // would have made the client drop it and reconnect before).
      assert.strictEqual(readiesAtGoodbye, 1, 'the first connection lasted until goodbye');
      assert.ok(pongsBeforeGoodbye >= 3, `pongs on the first connection: ${pongsBeforeGoodbye}`);
      await say(td, 'after goodbye');
      await waitFor(() => messages.some((m) => m.text === 'after goodbye'), 'a message on the new connection');
    } finally {
      await rtm.disconnect().catch(() => {});
    }
  }));
