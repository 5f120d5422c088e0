// An app set to Standard Webhooks: the official npm `standardwebhooks` package verifies the
// v1 signature of every request Tidings sends (url_verification, attempts, retries), and
// node:crypto verifies the v1a (ed25519) one with the app's webhook_public_key — with the old
// and the new secret and key alike across a rotation.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const http = require('node:http');
const { Webhook } = require('standardwebhooks');
const { withTidings } = require('./support');

// Verifies one request with an ed25519 public key (`whpk_…`): some v1a signature must match.
function verifyV1a(publicKey, headers, body) {
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ''), 'base64');
  const key = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const signed = Buffer.concat([Buffer.from(`${headers['webhook-id']}.${headers['webhook-timestamp']}.`), body]);
  return headers['webhook-signature'].split(' ')
    .filter((s) => s.startsWith('v1a,'))
    .some((s) => crypto.verify(null, signed, key, Buffer.from(s.slice(4), 'base64')));
}

// A Request URL that checks every request against every (secret, public key) it holds and
// answers 401 unless all pass; with failFirst it answers 500 to each event's first attempt.
function receiver() {
  const rx = { keys: [], hits: [], failFirst: false };
  rx.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const results = rx.keys.map(({ secret, publicKey }) => {
        let v1 = true;
        try {
          new Webhook(secret).verify(body.toString(), req.headers);
        } catch {
          v1 = false;
        }
        return v1 && verifyV1a(publicKey, req.headers, body);
      });
      const doc = JSON.parse(body.toString());
      const first = doc.event_id && !rx.hits.some((h) => h.eventId === doc.event_id);
      rx.hits.push({ eventId: doc.event_id, id: req.headers['webhook-id'], results });
      let status = 200;
      let out = '';
      if (!results.every(Boolean)) status = 401;
      else if (doc.type === 'url_verification') out = doc.challenge;
      else if (first && rx.failFirst) status = 500;
      res.writeHead(status, { 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  return new Promise((resolve) => rx.server.listen(0, '127.0.0.1', () => {
    rx.url = `http://127.0.0.1:${rx.server.address().port}/hooks`;
    resolve(rx);
  }));
}

test('standardwebhooks and ed25519 verify every delivery, retries too, across a rotation', withTidings(async (td) => {
  const ws = await td.makeWorkspace({ botEvents: ['message.channels'], botScopes: ['channels:history'] });
  await td.admin('PUT', `/teams/${ws.teamId}/conversations/C01`, {
    name: 'general', kind: 'public', members: [ws.userId, ws.botUserId],
  }, 201);
  const app = (await td.admin('PATCH', `/apps/${ws.appId}`, { signing_scheme: 'standard_webhooks' }, 200)).body;
  const old = { secret: app.webhook_secret, publicKey: app.webhook_public_key };
  assert.match(old.secret, /^whsec_/);
  assert.match(old.publicKey, /^whpk_/);

  const rx = await receiver();
  try {
    rx.keys = [old];
    const patched = (await td.admin('PATCH', `/apps/${ws.appId}`, { request_url: rx.url }, 200)).body;
    assert.strictEqual(patched.request_url_verified, true);
    const message = (text) => ({ type: 'message', channel: 'C01', user: ws.userId, text });

    const before = await td.publish(ws.teamId, message('before'));
    await td.waitDelivery(before, 'delivered');

    const rotated = (await td.admin('POST', `/apps/${ws.appId}/webhook_secret/rotate`, undefined, 200)).body;
    const next = { secret: rotated.webhook_secret, publicKey: rotated.webhook_public_key };
    assert.notStrictEqual(next.secret, old.secret);
    assert.notStrictEqual(next.publicKey, old.publicKey);
    rx.keys = [old, next];
    rx.failFirst = true;
    const during = await td.publish(ws.teamId, message('during'));
    const d = await td.waitDelivery(during, 'delivered');

    const hits = rx.hits.filter((h) => h.eventId === during);
    assert.strictEqual(hits.length, 2, 'the first attempt (500) and its retry');
    for (const h of hits) assert.deepStrictEqual(h.results, [true, true]);
    assert.deepStrictEqual(hits.map((h) => h.id), [d.id, d.id], 'webhook-id is the delivery id on every attempt');
    assert.ok(rx.hits.every((h) => h.results.every(Boolean)));
  } finally {
    rx.server.close();
  }
}));
