// Overview: events per bucket, deliveries by outcome and key events over a chosen range,
// from the insights endpoints. Canvases have stable ids (#chart-events,
// #chart-deliveries, #chart-key-events) so tests can read Chart.getChart(canvas).data.
import { get, query } from './api.js';
import { h, replace, card, errorBox, num, pct } from './dom.js';
import { draw, fill, label, color } from './charts.js';

const RANGES = [
  { id: '1h', label: 'Last hour', secs: 3600 },
  { id: '24h', label: 'Last 24 hours', secs: 86400 },
  { id: '7d', label: 'Last 7 days', secs: 7 * 86400 },
  { id: '30d', label: 'Last 30 days', secs: 30 * 86400 },
];

// Kept across visits to the page.
const choice = { range: '24h', team: '' };

/// minute up to 6 h, hour up to 7 d, day beyond.
export function granularity(secs) {
  if (secs <= 6 * 3600) return 'minute';
  if (secs <= 7 * 86400) return 'hour';
  return 'day';
}

function tile(value, text, id) {
  return h('div', { class: 'tile', id }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, text));
}

function chartCard(title, id, note) {
  return card(title, note ? h('p', { class: 'muted small' }, note) : null,
    h('div', { class: 'chart-box' }, h('canvas', { id, role: 'img', 'aria-label': title })));
}

export async function render(main, _params, alive) {
  const range = RANGES.find((r) => r.id === choice.range) || RANGES[1];
  const to = Math.floor(Date.now() / 1000);
  const from = to - range.secs;
  const gran = granularity(range.secs);
  const params = { from, to, granularity: gran };
  const teamParams = { ...params, team_id: choice.team };

  const [teams, events, deliveries, keys] = await Promise.allSettled([
    get('/teams?limit=1000'),
    get(`/insights/events${query(teamParams)}`),
    get(`/insights/deliveries${query(params)}`),
    get(`/insights/key_events${query(teamParams)}`),
  ]);
  if (!alive()) return;

  const rangeSelect = h('select', { id: 'range', 'aria-label': 'Range' },
    RANGES.map((r) => h('option', { value: r.id, selected: r.id === range.id }, r.label)));
  const teamSelect = h('select', { id: 'team', 'aria-label': 'Team' },
    h('option', { value: '' }, 'All teams'),
    (teams.status === 'fulfilled' ? teams.value.items : []).map((t) =>
      h('option', { value: t.id, selected: t.id === choice.team }, `${t.name} (${t.id})`)));
  teamSelect.addEventListener('change', () => { choice.team = teamSelect.value; rerender(main, alive); });
  rangeSelect.addEventListener('change', () => { choice.range = rangeSelect.value; rerender(main, alive); });

  const body = [];
  const problems = [teams, events, deliveries, keys].filter((r) => r.status === 'rejected');
  for (const p of problems) body.push(errorBox(p.reason.message));

  const ev = events.status === 'fulfilled' ? events.value : null;
  const dl = deliveries.status === 'fulfilled' ? deliveries.value : null;
  const ke = keys.status === 'fulfilled' ? keys.value : null;
  const totals = dl ? dl.totals : null;
  const finished = totals ? totals.delivered + totals.gave_up : 0;
  body.push(h('div', { class: 'tiles' },
    tile(ev ? num(ev.totals.events) : '—', 'events published', 'total-events'),
    tile(ev ? num(ev.totals.users) : '—', 'users active'),
    tile(ev ? num(ev.totals.refused_too_old) : '—', 'refused as too old'),
    tile(totals ? num(totals.delivered) : '—', 'deliveries delivered'),
    tile(totals ? pct(finished ? totals.delivered / finished : null) : '—', 'delivered of finished'),
    tile(totals ? num(totals.dropped) : '—', 'deliveries dropped'),
  ));
  body.push(h('div', { class: 'grid' },
    chartCard('Events', 'chart-events', `Published per ${gran}${choice.team ? ` in ${choice.team}` : ''}.`),
    chartCard('Deliveries by outcome', 'chart-deliveries',
      `Per ${gran}, all teams. Failed = gave up after every retry; retries are attempts after the first.`),
  ));
  body.push(chartCard('Key events', 'chart-key-events',
    ke ? `Count, and share of the ${num(ke.active_users)} active users who did each.` : null));

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'),
      h('div', { class: 'toolbar' }, rangeSelect, teamSelect)),
    ...body);

  if (ev) {
    const f = fill(ev.series, ev.from, ev.to, ev.granularity, (p) => p.events);
    draw(document.getElementById('chart-events'), {
      type: 'bar',
      data: {
        labels: f.ts.map((t) => label(t, ev.granularity)),
        datasets: [{ label: 'Events', data: f.values, backgroundColor: color.blue }],
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }
  if (dl) {
    const s = dl.totals.series;
    const one = (key, name, c) => ({
      label: name, data: fill(s, dl.from, dl.to, dl.granularity, (p) => p[key]).values, backgroundColor: c, stack: 'outcome',
    });
    draw(document.getElementById('chart-deliveries'), {
      type: 'bar',
      data: {
        labels: fill(s, dl.from, dl.to, dl.granularity, () => 0).ts.map((t) => label(t, dl.granularity)),
        datasets: [
          one('delivered', 'Delivered', color.green),
          one('gave_up', 'Failed', color.red),
          one('dropped', 'Dropped', color.orange),
          one('retries', 'Retries', color.grey),
        ],
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }
  if (ke) {
    const list = ke.key_events;
    draw(document.getElementById('chart-key-events'), {
      type: 'bar',
      data: {
        labels: list.map((k) => k.event_type),
        datasets: [
          { label: 'Count', data: list.map((k) => k.count), backgroundColor: color.violet, yAxisID: 'y' },
          {
            label: 'Share of active users (%)',
            data: list.map((k) => Math.round((k.share_of_active_users || 0) * 1000) / 10),
            backgroundColor: color.orange,
            yAxisID: 'share',
          },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'count' } },
          share: { position: 'right', beginAtZero: true, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: '% of active users' } },
        },
      },
    });
    if (list.length === 0) {
      document.getElementById('chart-key-events').closest('.card')
        .appendChild(h('p', { class: 'empty' }, 'No key events are marked. Mark some on the ', h('a', { href: '#/key-events' }, 'Key events'), ' page.'));
    }
  }
}

function rerender(main, alive) {
  main.dataset.state = 'loading';
  render(main, [], alive)
    .then(() => { if (alive()) main.dataset.state = 'ready'; })
    .catch((e) => { replace(main, errorBox(e.message)); main.dataset.state = 'error'; });
}
