// Events: find one by event_id; show the event, each delivery it implied (with attempts)
// and the exact envelope each delivery sends.
import { get } from './api.js';
import { h, replace, badge, card, ms, table, time, timeMs } from './dom.js';

function finder(current) {
  const input = h('input', { type: 'search', id: 'event-id', name: 'event_id', placeholder: 'Ev…', value: current || '', 'aria-label': 'Event id', required: true, autocomplete: 'off' });
  const form = h('form', { class: 'inline', role: 'search' }, input, h('button', { type: 'submit', class: 'primary' }, 'Find'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/events/${encodeURIComponent(id)}`;
  });
  return card('Find an event', form);
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export async function render(main, [eventId], alive) {
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Events'));
  if (!eventId) {
    replace(main, head, finder(''));
    return;
  }
  const data = await get(`/events/${encodeURIComponent(eventId)}`);
  if (!alive()) return;
  const ev = data.event;
  const deliveries = data.deliveries || [];
  replace(main,
    head,
    finder(eventId),
    h('div', { class: 'grid' },
      card(`Event ${ev.id}`, facts([
        ['Type', ev.event_type], ['Team', ev.team_id], ['Enterprise', ev.enterprise_id], ['App', ev.app_id],
        ['Channel', ev.channel_id], ['Actor', ev.actor_id], ['Event time', time(ev.event_time)],
        ['Accepted', time(ev.created_at)], ['Idempotency key', ev.idempotency_key],
      ])),
      card('Inner event', h('pre', { id: 'event-json' }, JSON.stringify(ev.event, null, 2)))),
    card(`Deliveries (${deliveries.length})`,
      deliveries.length === 0
        ? h('p', { class: 'empty' }, 'No app was subscribed, installed and allowed to see this event.')
        : table([{ title: 'App' }, { title: 'Team' }, { title: 'Status' }, { title: 'Reason' }, { title: 'Attempts' }, { title: 'Envelope' }],
          deliveries.map((d) => h('tr', { 'data-delivery': d.id },
            h('td', {}, h('a', { href: `#/apps/${encodeURIComponent(d.app_id)}` }, d.app_id), h('div', { class: 'muted small' }, d.id)),
            h('td', {}, d.team_id),
            h('td', {}, badge(d.status)),
            h('td', { class: 'wrap' }, d.reason || '—'),
            h('td', { class: 'wrap' }, (d.attempts || []).length === 0 ? '0' : h('ol', { class: 'attempts' }, d.attempts.map((a) =>
              h('li', {}, `${timeMs(a.at)} · ${a.transport} · ${a.status_code ?? '—'} · ${a.reason || 'ok'} · ${ms(a.latency_ms)}`)))),
            h('td', { class: 'wrap' }, d.envelope
              ? h('details', {}, h('summary', {}, 'show'), h('pre', {}, JSON.stringify(d.envelope, null, 2)))
              : '—'))),
          { id: 'event-deliveries' })),
  );
}
