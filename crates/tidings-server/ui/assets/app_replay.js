// One app's bulk replay: a small form that starts a job re-queuing its failed (and, if
// ticked, dropped) deliveries, and the app's jobs with their progress (re-read every 2 s
// while one is running and the page is shown).
import { get, post } from './api.js';
import { h, replace, badge, card, errorBox, flash, num, table, time, withButton } from './dom.js';

const POLL_MS = 2000;

function row(j) {
  return h('tr', { 'data-redelivery': j.id },
    h('td', {}, j.id),
    h('td', {}, time(j.created_at)),
    h('td', {}, j.status.join(', ')),
    h('td', {}, j.state === 'done' ? badge('done', 'ok') : badge('running')),
    h('td', { class: 'num' }, `${num(j.sent)} / ${num(j.total)}`));
}

export function replayCard(appId, alive) {
  const id = encodeURIComponent(appId);
  const dropped = h('input', { type: 'checkbox', id: 'replay-dropped' });
  const start = h('button', { type: 'button', class: 'primary', id: 'replay-start' }, 'Replay failed deliveries');
  const jobs = h('div');
  let timer = null;

  async function load() {
    clearTimeout(timer);
    let list;
    try {
      list = (await get(`/apps/${id}/redeliveries`)).redeliveries;
    } catch (e) {
      replace(jobs, errorBox(e.message));
      return;
    }
    replace(jobs, list.length === 0 ? h('p', { class: 'empty' }, 'No replay yet.')
      : table([{ title: 'Job' }, { title: 'Started' }, { title: 'Statuses' }, { title: 'State' }, { title: 'Re-queued', num: true }],
        list.map(row), { id: 'redeliveries-table' }));
    if (list.some((j) => j.state === 'running')) timer = setTimeout(() => { if (alive()) load(); }, POLL_MS);
  }
  start.addEventListener('click', () => withButton(start, async () => {
    const status = dropped.checked ? ['failed', 'dropped'] : ['failed'];
    const j = await post(`/apps/${id}/redeliveries`, { status });
    flash(`Replay ${j.id} started: ${num(j.total)} deliveries to re-queue.`);
    await load();
  }));
  const form = h('div', { class: 'toolbar' },
    h('label', {}, dropped, ' also dropped deliveries'), start);
  return { section: card('Replay', form, jobs), load };
}
