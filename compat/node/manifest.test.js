// The App Manifest API (issue 23) through the official @slack/web-api WebClient:
// apps.manifest.* and tooling.tokens.rotate with a configuration token, against the real binary.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { WebClient } = require('@slack/web-api');
const { withTidings } = require('./support');

function client(td, token) {
  return new WebClient(token, { slackApiUrl: td.apiUrl, rejectRateLimitedCalls: true, retryConfig: { retries: 0 } });
}

// T01 with `user`, and a configuration token pair for them.
async function developer(td, user) {
  if ((await td.admin('GET', '/teams/T01')).status === 404) {
    await td.admin('POST', '/teams', { id: 'T01', name: 'Acme', domain: 'acme' }, 201);
  }
  await td.admin('POST', '/teams/T01/users', { id: user, name: user.toLowerCase() }, 201);
  return (await td.admin('POST', '/config_tokens', { team_id: 'T01', user_id: user }, 201)).body;
}

const MANIFEST = {
  display_information: { name: 'Node manifest' },
  features: { bot_user: { display_name: 'nodebot' }, app_home: { messages_tab_enabled: true } },
  oauth_config: { scopes: { bot: ['reactions:read'] } },
  settings: { socket_mode_enabled: true, event_subscriptions: { bot_events: ['reaction_added'] } },
};

test('the Node SDK creates, exports, updates and deletes an app from a manifest', withTidings(async (td) => {
  const pair = await developer(td, 'U01');
  const web = client(td, pair.token);
  assert.strictEqual((await web.apps.manifest.validate({ manifest: MANIFEST })).ok, true);
  const created = await web.apps.manifest.create({ manifest: MANIFEST });
  assert.deepStrictEqual(Object.keys(created.credentials).sort(),
    ['client_id', 'client_secret', 'signing_secret', 'verification_token']);
  assert.deepStrictEqual((await web.apps.manifest.export({ app_id: created.app_id })).manifest, MANIFEST);
  const grown = { ...MANIFEST, oauth_config: { scopes: { bot: ['reactions:read', 'chat:write'] } } };
  const updated = await web.apps.manifest.update({ app_id: created.app_id, manifest: grown });
  assert.strictEqual(updated.permissions_updated, true);
  assert.strictEqual((await web.apps.manifest.delete({ app_id: created.app_id })).ok, true);
  await assert.rejects(web.apps.manifest.export({ app_id: created.app_id }),
    (e) => e.data.error === 'invalid_app_id');
}));

test('an invalid manifest is answered with pointers, and tooling.tokens.rotate works once', withTidings(async (td) => {
  const pair = await developer(td, 'U01');
  const web = client(td, pair.token);
  const bad = { ...MANIFEST, oauth_config: { scopes: { bot: ['chat:write'] } } };
  await assert.rejects(web.apps.manifest.validate({ manifest: bad }), (e) => {
    assert.strictEqual(e.data.error, 'invalid_manifest');
    assert.deepStrictEqual(e.data.errors.map((x) => x.pointer), ['/settings/event_subscriptions/bot_events/0']);
    return true;
  });
  const fresh = await client(td).tooling.tokens.rotate({ refresh_token: pair.refresh_token });
  assert.ok(fresh.token.startsWith('xoxe.xoxp-1-'));
  assert.strictEqual((await client(td, fresh.token).apps.manifest.validate({ manifest: MANIFEST })).ok, true);
  await assert.rejects(client(td).tooling.tokens.rotate({ refresh_token: pair.refresh_token }),
    (e) => e.data.error === 'invalid_refresh_token');
  await assert.rejects(client(td, fresh.token).auth.test(), (e) => e.data.error === 'not_allowed_token_type');
}));
