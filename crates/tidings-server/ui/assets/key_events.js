// Key events: every event type of the catalog with a mark/unmark toggle
// (PUT/DELETE /key_events/{type}); the overview charts the marked ones.
import { get, put, del } from './api.js';
import { h, replace, badge, card, flash, num, table, time, withButton } from './dom.js';

function toggle(type, marked, onChange) {
  const b = h('button', { type: 'button', 'aria-pressed': marked ? 'true' : 'false', 'data-event-type': type.name },
    marked ? '★ Key event' : '☆ Mark');
  b.addEventListener('click', () => withButton(b, async () => {
    const path = `/key_events/${encodeURIComponent(type.name)}`;
    if (marked) await del(path); else await put(path);
    flash(marked ? `${type.name} is no longer a key event.` : `${type.name} is now a key event.`);
    await onChange();
  }));
  return b;
}

export async function render(main, _params, alive) {
  const [types, keys] = await Promise.all([get('/event_types?limit=1000'), get('/key_events?limit=1000')]);
  if (!alive()) return;
  const marked = new Map(keys.items.map((k) => [k.event_type, k]));
  const refresh = () => render(main, _params, alive);
  const filter = h('input', { type: 'search', id: 'type-filter', placeholder: 'Filter event types', 'aria-label': 'Filter event types', autocomplete: 'off' });
  const rows = types.items.map((t) => {
    const k = marked.get(t.name);
    return h('tr', { 'data-event-type': t.name },
      h('td', {}, h('code', {}, t.name)),
      h('td', {}, t.inner_type),
      h('td', {}, t.custom ? badge('custom', 'pending') : ''),
      h('td', {}, k ? time(k.created_at) : '—'),
      h('td', {}, toggle(t, !!k, refresh)));
  });
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const r of rows) r.hidden = q !== '' && !r.dataset.eventType.toLowerCase().includes(q);
  });
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Key events'),
      h('span', { class: 'muted' }, `${num(marked.size)} of ${num(types.items.length)} event types are key events`)),
    card(null,
      h('p', { class: 'muted' }, 'Key events are the event types that matter most to your product; the overview counts them and the share of active users who did each.'),
      h('div', { class: 'toolbar' }, filter),
      table([{ title: 'Event type' }, { title: 'Inner type' }, { title: '' }, { title: 'Marked' }, { title: 'Key event' }], rows, { id: 'key-events-table' })),
  );
}
