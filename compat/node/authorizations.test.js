// apps.event.authorizations.list through @slack/web-api's paginate().
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { WebClient } = require('@slack/web-api');
const { withTidings } = require('./support');

test('paginate() walks every page of more than 250 authorizations', withTidings(async (td) => {
  const users = Array.from({ length: 260 }, (_, i) => `U${String(i).padStart(5, '0')}`);
  await td.admin('POST', '/teams', { id: 'T01', name: 'Acme', domain: 'acme' }, 201);
  for (const u of users) await td.admin('POST', '/teams/T01/users', { id: u, name: u.toLowerCase() }, 201);
  await td.admin('POST', '/apps', { id: 'A01', name: 'A', bot_events: ['message.channels'], user_events: ['message.channels'] }, 201);
  let bot;
  for (const [i, u] of users.entries()) {
    const inst = (await td.admin('POST', '/apps/A01/installations', {
      team_id: 'T01', installer_user_id: u, bot_scopes: i === 0 ? ['channels:history'] : [], user_scopes: ['channels:history'],
    }, 201)).body;
    bot = bot || inst.bot_user_id;
  }
  await td.admin('PUT', '/teams/T01/conversations/C01', { name: 'all', kind: 'public', members: [...users, bot] }, 201);
  const eventId = await td.publish('T01', { type: 'message', channel: 'C01', user: users[0], text: 'hi' });
  const ev = (await td.admin('GET', `/events/${eventId}`)).body;
  const eventContext = ev.deliveries[0].envelope.event_context;
  const tok = (await td.admin('POST', '/apps/A01/tokens', { scopes: ['authorizations:read'] }, 201)).body;

  const client = new WebClient(tok.token, { slackApiUrl: td.apiUrl });
  const seen = [];
  let pages = 0;
  for await (const page of client.paginate('apps.event.authorizations.list', { event_context: eventContext })) {
    pages += 1;
    seen.push(...page.authorizations);
  }
  assert.strictEqual(pages, 2, 'paginate() asks for 200 per page');
  assert.strictEqual(seen.length, users.length + 1);
  assert.strictEqual(seen[0].is_bot, true);
  assert.strictEqual(new Set(seen.map((a) => a.user_id)).size, users.length + 1);
}));
