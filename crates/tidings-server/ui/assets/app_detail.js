// One app: subscriptions, how it receives events, its open Socket Mode connections, its
// delivery log (with attempts, a status filter, "load more" and Redeliver), and signing
// secret rotation (confirmed first; the new secret is shown once). Its installations and
// install link are in app_installs.js, its bulk replay jobs in app_replay.js.
import { get, post, query } from './api.js';
import { h, replace, badge, card, chips, errorBox, flash, ms, num, table, time, timeMs, withButton } from './dom.js';
import { reenable } from './apps.js';
import { installsCard } from './app_installs.js';
import { replayCard } from './app_replay.js';

const STATUSES = ['', 'pending', 'delivered', 'failed', 'dropped'];
const PAGE = 25;

function attemptsCell(d) {
  if (!d.attempts || d.attempts.length === 0) return h('span', { class: 'muted' }, '0');
  return h('details', {},
    h('summary', {}, `${d.attempts.length}`),
    h('ol', { class: 'attempts' }, d.attempts.map((a) => h('li', {},
      `${timeMs(a.at)} · ${a.transport} · ${a.status_code ?? '—'} · ${a.reason || 'ok'} · ${ms(a.latency_ms)} · retry ${a.retry_num}`))));
}

function deliveryRow(d) {
  const tr = h('tr', { 'data-delivery': d.id });
  const button = h('button', { type: 'button', 'data-action': 'redeliver' }, 'Redeliver');
  button.addEventListener('click', () => withButton(button, async () => {
    const updated = await post(`/deliveries/${encodeURIComponent(d.id)}/redeliver`);
    flash(`Delivery ${d.id} will be attempted again now.`);
    tr.replaceWith(deliveryRow(updated));
  }));
  tr.append(
    h('td', {}, time(d.created_at)),
    h('td', {}, h('a', { href: `#/events/${encodeURIComponent(d.event_id)}` }, d.event_id)),
    h('td', {}, d.team_id),
    h('td', {}, d.event_type),
    h('td', {}, badge(d.status)),
    h('td', { class: 'wrap' }, d.reason || '—'),
    h('td', {}, attemptsCell(d)),
    h('td', {}, d.status === 'pending' ? null : button),
  );
  return tr;
}

function deliveryLog(appId) {
  const filter = h('select', { id: 'delivery-status', 'aria-label': 'Status' },
    STATUSES.map((s) => h('option', { value: s }, s || 'any status')));
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const note = h('p', { class: 'muted small' });
  let cursor = null;

  async function load(reset) {
    if (reset) { body.replaceChildren(); cursor = null; }
    const page = await get(`/apps/${encodeURIComponent(appId)}/deliveries${query({ status: filter.value, limit: PAGE, cursor })}`);
    body.append(...page.items.map(deliveryRow));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    note.textContent = body.children.length === 0 ? 'No deliveries match.' : `${num(body.children.length)} shown, newest first.`;
  }
  filter.addEventListener('change', () => withButton(filter, () => load(true)));
  more.addEventListener('click', () => withButton(more, () => load(false)));

  const section = card('Delivery log',
    h('div', { class: 'toolbar' }, filter),
    h('div', { class: 'table-wrap' }, h('table', { id: 'deliveries-table' },
      h('thead', {}, h('tr', {}, ['Created', 'Event', 'Team', 'Type', 'Status', 'Reason', 'Attempts', ''].map((t) => h('th', { scope: 'col' }, t)))),
      body)),
    note, more);
  return { section, load };
}

function rotateBox(app) {
  const out = h('div');
  const start = h('button', { type: 'button', id: 'rotate-secret' }, 'Rotate signing secret');
  start.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'danger', id: 'rotate-confirm' }, 'Rotate now');
    const no = h('button', { type: 'button' }, 'Cancel');
    no.addEventListener('click', () => replace(out, start));
    yes.addEventListener('click', () => withButton(yes, async () => {
      const a = await post(`/apps/${encodeURIComponent(app.id)}/signing_secret/rotate`);
      replace(out,
        h('p', {}, 'The new signing secret, shown once here: deliveries are signed with it from now on, so put it in the app\'s configuration.'),
        h('code', { class: 'secret', id: 'new-secret' }, a.signing_secret),
        h('p', {}, start));
      flash(`The signing secret of ${app.id} was rotated.`);
    }));
    replace(out,
      h('p', {}, 'The app will reject deliveries until it is given the new secret. Rotate it?'),
      h('div', { class: 'toolbar' }, yes, no));
  });
  out.append(start);
  return card('Signing secret', out);
}

export async function render(main, [appId], alive) {
  const id = encodeURIComponent(appId);
  const [app, conns] = await Promise.allSettled([get(`/apps/${id}`), get(`/apps/${id}/connections`)]);
  if (!alive()) return;
  if (app.status === 'rejected') throw app.reason;
  const a = app.value;
  const log = deliveryLog(a.id);
  const installs = installsCard(a.id);
  const replay = replayCard(a.id, alive);
  const refresh = () => render(main, [appId], alive);

  const reenableButton = a.events_enabled ? null : h('button', { type: 'button', class: 'primary', 'data-action': 'reenable' }, 'Re-enable');
  if (reenableButton) reenableButton.addEventListener('click', () => reenable(a.id, reenableButton, refresh));

  let connections;
  if (conns.status === 'rejected') connections = errorBox(conns.reason.message);
  else if (conns.value.items.length === 0) connections = h('p', { class: 'empty' }, a.socket_mode ? 'No connection is open on this node.' : 'Not in Socket Mode.');
  else connections = table([{ title: 'Connection' }, { title: 'Opened' }, { title: 'Waiting for ack', num: true }],
    conns.value.items.map((c) => h('tr', {}, h('td', {}, c.id), h('td', {}, time(c.opened_at)), h('td', { class: 'num' }, num(c.pending_acks)))),
    { id: 'connections-table' });

  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, a.name, ' ', h('span', { class: 'muted' }, a.id)),
      h('div', { class: 'toolbar' }, a.events_enabled ? badge('events enabled', 'ok') : badge('events disabled', 'bad'), reenableButton)),
    a.events_enabled ? null : errorBox(`Disabled ${time(a.disabled_at)}: ${a.disabled_reason || 'no reason recorded'}`),
    a.request_url_gone ? errorBox(`Needs a new Request URL since ${time(a.request_url_gone_at)}: ${a.request_url_gone}`) : null,
    h('div', { class: 'grid' },
      card('Subscriptions',
        h('dl', { class: 'facts' },
          h('dt', {}, 'Bot events'), h('dd', {}, chips(a.bot_events)),
          h('dt', {}, 'User events'), h('dd', {}, chips(a.user_events)),
          h('dt', {}, 'Event shape'), h('dd', {}, a.event_shape),
          h('dt', {}, 'Signing'), h('dd', {}, a.signing_scheme === 'standard_webhooks' ? 'Standard Webhooks' : 'Slack v0'))),
      card('Connection mode',
        h('dl', { class: 'facts' },
          h('dt', {}, 'Mode'), h('dd', {}, a.socket_mode ? 'Socket Mode' : 'Events API over HTTP'),
          h('dt', {}, 'Request URL'), h('dd', {}, a.request_url ? h('code', {}, a.request_url) : '—'),
          h('dt', {}, 'Verified'), h('dd', {}, a.request_url ? (a.request_url_verified ? badge('verified', 'ok') : badge('not verified', 'bad')) : '—'),
          h('dt', {}, 'Created'), h('dd', {}, time(a.created_at))))),
    card('Socket Mode connections', connections),
    installs.section,
    log.section,
    replay.section,
    rotateBox(a),
  );
  await Promise.all([installs.load(), log.load(true), replay.load()]);
}
