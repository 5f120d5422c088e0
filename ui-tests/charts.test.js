// The dashboard's bucket arithmetic (crates/tidings-server/ui/assets/charts.js), in Node:
// the insights series are sparse, and the charts must show every bucket of the range.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const charts = () => import(pathToFileURL(path.join(__dirname, '../crates/tidings-server/ui/assets/charts.js')).href);
const overview = () => import(pathToFileURL(path.join(__dirname, '../crates/tidings-server/ui/assets/overview.js')).href);

test('sparse series are filled with zeros, one value per bucket', async () => {
  const { fill } = await charts();
  const from = 1_700_000_000 - 3600; // not on a minute boundary
  const to = 1_700_000_000;
  const start = Math.floor(from / 60) * 60;
  const series = [{ t: start, events: 2 }, { t: start + 600, events: 5 }];
  const f = fill(series, from, to, 'minute', (p) => p.events);
  assert.equal(f.ts.length, f.values.length);
  assert.equal(f.ts[0], start);
  assert.ok(f.ts.at(-1) < to && f.ts.at(-1) + 60 >= to, 'the last bucket holds `to`');
  assert.equal(f.values[0], 2);
  assert.equal(f.values[10], 5);
  assert.equal(f.values.reduce((a, v) => a + v, 0), 7);
  assert.equal(f.values.filter((v) => v === 0).length, f.values.length - 2);
});

test('points outside the range are left out and days are whole UTC days', async () => {
  const { fill } = await charts();
  const day = 86400;
  const from = 20_000 * day + 5;
  const f = fill([{ t: 19_999 * day, n: 9 }, { t: 20_002 * day, n: 1 }, { t: 20_100 * day, n: 9 }], from, from + 30 * day, 'day', (p) => p.n);
  assert.equal(f.ts[0], 20_000 * day);
  assert.equal(f.values.reduce((a, v) => a + v, 0), 1);
  assert.equal(f.values[2], 1);
});

test('granularity: minute up to 6 h, hour up to 7 d, day beyond', async () => {
  const { granularity } = await overview();
  assert.equal(granularity(3600), 'minute');
  assert.equal(granularity(6 * 3600), 'minute');
  assert.equal(granularity(86400), 'hour');
  assert.equal(granularity(7 * 86400), 'hour');
  assert.equal(granularity(30 * 86400), 'day');
});
