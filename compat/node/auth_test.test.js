// auth.test through the official @slack/web-api WebClient, and @slack/bolt's startup, which
// depends on it (SLACK-WIRE.md §3.2, §3.5).
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { WebClient } = require('@slack/web-api');
const { App, LogLevel } = require('@slack/bolt');
const { withTidings } = require('./support');

const BOT_SCOPES = ['channels:history', 'chat:write'];
const USER_SCOPES = ['stars:read', 'reactions:read'];

// Application errors must reject at once, never be retried.
function client(td, token) {
  return new WebClient(token, { slackApiUrl: td.apiUrl, rejectRateLimitedCalls: true, retryConfig: { retries: 0 } });
}

test('a bot token is described with its bot user, bot id, app and scopes', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botScopes: BOT_SCOPES });
  const res = await client(td, ws.botToken).auth.test();
  assert.strictEqual(res.ok, true);
  assert.strictEqual(res.team_id, ws.teamId);
  assert.strictEqual(res.user_id, ws.botUserId);
  assert.strictEqual(res.bot_id, ws.botId);
  assert.strictEqual(res.app_id, ws.appId);
  assert.strictEqual(res.is_enterprise_install, false);
  // The SDK turns the x-oauth-scopes header into response_metadata.scopes.
  assert.deepStrictEqual(res.response_metadata.scopes, BOT_SCOPES);
}));

test('a user token is described as its installer, without a bot id', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botScopes: BOT_SCOPES, userScopes: USER_SCOPES });
  const res = await client(td, ws.userToken).auth.test();
  assert.strictEqual(res.user_id, ws.userId);
  assert.strictEqual(res.team_id, ws.teamId);
  assert.strictEqual(res.bot_id, undefined);
  assert.deepStrictEqual(res.response_metadata.scopes, USER_SCOPES);
}));

test('an unknown token rejects with invalid_auth', withTidings(async (td) => {
  await assert.rejects(client(td, 'xoxb-not-a-real-token').auth.test(), (e) => {
    assert.strictEqual(e.code, 'slack_webapi_platform_error');
    assert.strictEqual(e.data.ok, false);
    assert.strictEqual(e.data.error, 'invalid_auth');
    return true;
  });
}));

test('a call without a token rejects with not_authed', withTidings(async (td) => {
  await assert.rejects(client(td, undefined).auth.test(), (e) => e.data && e.data.error === 'not_authed');
}));

test('tokens of an uninstalled app reject with token_revoked', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botScopes: BOT_SCOPES, userScopes: USER_SCOPES });
  assert.strictEqual((await client(td, ws.botToken).auth.test()).ok, true);
  await td.admin('DELETE', `/apps/${ws.appId}/installations/${ws.installationId}`, undefined, 200);
  for (const token of [ws.botToken, ws.userToken]) {
    await assert.rejects(client(td, token).auth.test(), (e) => e.data && e.data.error === 'token_revoked');
  }
}));

test('a bolt app initialises from auth.test and hands listeners the bot identity', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botEvents: ['app_mention'], botScopes: ['app_mentions:read'] });
  const bolt = new App({
    token: ws.botToken,
    signingSecret: ws.signingSecret,
    deferInitialization: true, // init() is where Bolt calls auth.test; it throws if that fails
    logLevel: LogLevel.ERROR,
    clientOptions: { slackApiUrl: td.apiUrl, retryConfig: { retries: 0 } },
  });
  await bolt.init();
  let seen;
  bolt.event('app_mention', async ({ context }) => {
    seen = { botUserId: context.botUserId, botId: context.botId, teamId: context.teamId };
  });
  await bolt.processEvent({
    body: {
      type: 'event_callback', team_id: ws.teamId, api_app_id: ws.appId, event_id: 'Ev0COMPAT', event_time: 1700000000,
      event: { type: 'app_mention', user: ws.userId, text: `<@${ws.botUserId}> hi`, channel: 'C0COMPAT', ts: '1700000000.000100' },
      authorizations: [{ enterprise_id: null, team_id: ws.teamId, user_id: ws.botUserId, is_bot: true, is_enterprise_install: false }],
    },
    ack: async () => {},
  });
  assert.deepStrictEqual(seen, { botUserId: ws.botUserId, botId: ws.botId, teamId: ws.teamId });
}));

test('a bolt app refuses to initialise with a revoked token', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botScopes: BOT_SCOPES });
  await td.admin('DELETE', `/apps/${ws.appId}/installations/${ws.installationId}`, undefined, 200);
  const bolt = new App({
    token: ws.botToken, signingSecret: ws.signingSecret, deferInitialization: true, logLevel: LogLevel.ERROR,
    clientOptions: { slackApiUrl: td.apiUrl, retryConfig: { retries: 0 } },
  });
  await assert.rejects(bolt.init(), (e) => e.data && e.data.error === 'token_revoked');
}));
