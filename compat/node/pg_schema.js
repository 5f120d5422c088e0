// A fresh PostgreSQL schema for one test server, when TIDINGS_TEST_DATABASE_URL is set (made
// with psql, dropped with `drop()`); `null` otherwise, and the server stores in SQLite.
// Shared by compat/node/support.js and ui-tests/support.js; needs no npm package.
'use strict';

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');

function postgresSchema() {
  const base = (process.env.TIDINGS_TEST_DATABASE_URL || '').trim();
  if (!base) return null;
  const name = `js_${process.pid}_${crypto.randomBytes(5).toString('hex')}`;
  execFileSync('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE SCHEMA ${name}`], { stdio: 'pipe' });
  const sep = base.includes('?') ? '&' : '?';
  return {
    name,
    url: `${base}${sep}options=-csearch_path%3D${name}`,
    // What a server on this schema needs (a small pool, a short lease for restarts).
    env: {
      TIDINGS_SERVER_DATABASE_URL: `${base}${sep}options=-csearch_path%3D${name}`,
      TIDINGS_DATABASE_MAX_CONNECTIONS: '5',
      TIDINGS_DATABASE_LEASE: '4s',
    },
    drop() {
      try {
        execFileSync('psql', [base, '-qc', `DROP SCHEMA IF EXISTS ${name} CASCADE`], { stdio: 'pipe' });
      } catch { /* best effort */ }
    },
  };
}

module.exports = { postgresSchema };
