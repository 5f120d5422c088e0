// Test support: a real `tidings serve` on 127.0.0.1 (ephemeral port, fresh data dir) and
// operator-API helpers. The binary comes from TIDINGS_BIN.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ADMIN = 'tdk_admin_compat_token_0123456789';

async function startTidings() {
  const bin = process.env.TIDINGS_BIN;
  if (!bin || !fs.existsSync(bin)) throw new Error(`TIDINGS_BIN must point at a built tidings binary (got ${bin})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-node-'));
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
    env: {
      ...process.env,
      TIDINGS_ADMIN_TOKEN: ADMIN,
      TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS: 'true',
      TIDINGS_DELIVERY_RETRY_SCHEDULE: '["0s","300ms","600ms"]',
      TIDINGS_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tidings did not start within 20 s')), 20000);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      if (line.startsWith('tidings listening on ')) {
        clearTimeout(timer);
        resolve(line.split(' ').pop());
      }
    });
    proc.on('exit', (code) => reject(new Error(`tidings exited with ${code}`)));
  });

  async function admin(method, p, body, expect) {
    const res = await fetch(`${url}/admin/v1${p}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const value = text ? JSON.parse(text) : null;
    if (expect !== undefined && res.status !== expect) {
      throw new Error(`${method} ${p} → ${res.status}: ${text}`);
    }
    return { status: res.status, body: value };
  }

  async function publish(team, event) {
    const r = await admin('POST', '/events', { team_id: team, event }, 202);
    return r.body.event_id;
  }

  async function waitDelivery(eventId, status, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      const ev = await admin('GET', `/events/${eventId}`);
      last = ev.body.deliveries[0];
      if (last.status === status) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`delivery of ${eventId} never became ${status}: ${JSON.stringify(last)}`);
  }

  return {
    url,
    apiUrl: `${url}/api/`,
    admin,
    publish,
    waitDelivery,
    stop() {
      proc.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startTidings, ADMIN };
