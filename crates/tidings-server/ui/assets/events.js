// Events: find one by event_id; show the event, each delivery it implied (with attempts)
// and the exact envelope each delivery sends. "Try an event" runs a publish body through
// POST /events/validate (a dry run: nothing is stored) and shows what publish would do.
import { get, post } from './api.js';
import { h, replace, badge, card, ms, table, time, timeMs, errorBox } from './dom.js';

const EXAMPLE = {
  team_id: 'T01',
  event: { type: 'message', channel: 'C01', user: 'U01', text: 'Hello from the dashboard' },
};

function verdict(v) {
  const deliveries = v.deliveries || [];
  return h('div', { id: 'try-result' },
    h('div', { class: 'toolbar' },
      v.valid ? badge('valid', 'ok') : badge('invalid', 'bad'),
      v.event_type ? h('span', {}, ` catalog type ${v.event_type}`) : null,
      v.duplicate_of ? h('span', { class: 'muted' }, ` duplicate of ${v.duplicate_of}`) : null),
    (v.messages || []).length === 0 ? null : h('ul', { class: 'messages' }, v.messages.map((m) =>
      h('li', {}, h('code', {}, m.code), ` ${m.field_path ? `${m.field_path}: ` : ''}${m.description}`))),
    v.valid && deliveries.length === 0 ? h('p', { class: 'empty' }, 'No app would get a delivery.') : null,
    deliveries.length === 0 ? null : table([{ title: 'App' }, { title: 'Team' }, { title: 'Authorization' }, { title: 'Status' }, { title: 'Envelope' }],
      deliveries.map((d) => h('tr', { 'data-app': d.app_id },
        h('td', {}, h('a', { href: `#/apps/${encodeURIComponent(d.app_id)}` }, d.app_id)),
        h('td', {}, d.team_id),
        h('td', {}, `${d.authorization.user_id}${d.authorization.is_bot ? ' (bot)' : ''}`),
        h('td', {}, badge(d.status), d.reason ? ` ${d.reason}` : ''),
        h('td', { class: 'wrap' }, h('details', {}, h('summary', {}, 'show'), h('pre', {}, JSON.stringify(d.envelope, null, 2)))))),
      { id: 'try-deliveries' }));
}

function tryForm() {
  const input = h('textarea', { id: 'try-body', name: 'body', rows: 8, spellcheck: 'false', 'aria-label': 'Publish body (JSON)' });
  input.value = JSON.stringify(EXAMPLE, null, 2);
  const out = h('div', {});
  const form = h('form', { id: 'try-form' }, input,
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'primary' }, 'Validate'),
      h('span', { class: 'muted small' }, 'A dry run of POST /admin/v1/events: nothing is stored or sent.')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let body;
    try {
      body = JSON.parse(input.value);
    } catch (err) {
      replace(out, errorBox(`Not valid JSON: ${err.message}`));
      return;
    }
    try {
      replace(out, verdict(await post('/events/validate', body)));
    } catch (err) {
      replace(out, errorBox(err.message));
    }
  });
  return card('Try an event', form);
}

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
    replace(main, head, finder(''), tryForm());
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
