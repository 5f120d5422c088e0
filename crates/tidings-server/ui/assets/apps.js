// Apps: every app with its health, disabled ones first, with the reason and a Re-enable
// button, and who owns it (developers who created it with a configuration token). Apps come
// from GET /apps; health and latency from GET /insights/deliveries; owners from
// GET /app_owners. Below, a form issues a developer a configuration token (shown once).
import { get, post } from './api.js';
import { h, replace, badge, errorBox, flash, ms, num, pct, table, time, withButton } from './dom.js';

export async function reenable(appId, button, after) {
  await withButton(button, async () => {
    await post(`/apps/${encodeURIComponent(appId)}/events/enable`);
    flash(`Event subscriptions of ${appId} are enabled again.`);
    await after();
  });
}

function row(app, stats, owners, refresh) {
  const disabled = app.events_enabled === false;
  const button = disabled
    ? h('button', { type: 'button', class: 'primary', 'data-action': 'reenable', 'data-app': app.id }, 'Re-enable')
    : null;
  if (button) button.addEventListener('click', () => reenable(app.id, button, refresh));
  return h('tr', { class: disabled ? 'disabled' : null, 'data-app': app.id },
    h('td', {}, h('a', { href: `#/apps/${encodeURIComponent(app.id)}` }, app.name), h('div', { class: 'muted small' }, app.id)),
    h('td', {}, disabled ? badge('disabled', 'bad') : badge('enabled', 'ok')),
    h('td', { class: 'wrap' }, app.disabled_reason || '—'),
    h('td', {}, time(app.disabled_at)),
    h('td', { class: 'owners' }, owners && owners.length ? owners.join(', ') : h('span', { class: 'muted' }, 'operator')),
    h('td', {}, app.socket_mode ? 'Socket Mode' : app.request_url ? 'Request URL' : h('span', { class: 'empty' }, 'none')),
    h('td', { class: 'num' }, stats ? pct(stats.success_ratio) : '—'),
    h('td', { class: 'num' }, stats ? num(stats.attempts) : '—'),
    h('td', { class: 'num' }, stats && stats.latency_ms ? ms(stats.latency_ms.p50) : '—'),
    h('td', { class: 'num' }, stats && stats.latency_ms ? ms(stats.latency_ms.p99) : '—'),
    h('td', {}, button),
  );
}

export async function render(main, _params, alive) {
  const [apps, insights, owners] = await Promise.allSettled([
    get('/apps?limit=1000'), get('/insights/deliveries'), get('/app_owners')]);
  if (!alive()) return;
  if (apps.status === 'rejected') throw apps.reason;
  const stats = new Map();
  if (insights.status === 'fulfilled') for (const a of insights.value.apps) stats.set(a.app_id, a);
  const list = [...apps.value.items].sort((a, b) =>
    (a.events_enabled === b.events_enabled ? 0 : a.events_enabled ? 1 : -1) || a.name.localeCompare(b.name));
  const ownersOf = owners.status === 'fulfilled' ? owners.value.owners : {};
  const refresh = () => render(main, _params, alive);
  const disabledCount = list.filter((a) => !a.events_enabled).length;
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Apps'),
      h('span', { class: 'muted' }, `${num(list.length)} app${list.length === 1 ? "" : "s"}, ${num(disabledCount)} disabled · delivery figures for the last 24 hours`)),
    insights.status === 'rejected' ? errorBox(`Delivery figures are unavailable: ${insights.reason.message}`) : null,
    h('section', { class: 'card' },
      list.length === 0
        ? h('p', { class: 'empty' }, 'No apps yet. Create one with POST /admin/v1/apps or tidings apps create.')
        : table([
          { title: 'App' }, { title: 'Events' }, { title: 'Disabled because' }, { title: 'Disabled at' }, { title: 'Owners' }, { title: 'Transport' },
          { title: 'Success', num: true }, { title: 'Attempts', num: true }, { title: 'p50', num: true }, { title: 'p99', num: true }, { title: '' },
        ], list.map((a) => row(a, stats.get(a.id), ownersOf[a.id], refresh)), { id: 'apps-table' })),
    configTokenCard(),
  );
}

// Issues a configuration token pair for a developer (a user of a team): they manage their
// own apps with it through apps.manifest.* or `tidings apps apply`. Shown once.
function configTokenCard() {
  const team = h('input', { name: 'team_id', placeholder: 'T…', required: true });
  const user = h('input', { name: 'user_id', placeholder: 'U…', required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Issue token');
  const out = h('div', { id: 'config-token-out' });
  const form = h('form', { id: 'config-token-form' },
    h('label', {}, 'Team ', team), ' ', h('label', {}, 'User ', user), ' ', button);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    withButton(button, async () => {
      const t = await post('/config_tokens', { team_id: team.value.trim(), user_id: user.value.trim() });
      replace(out,
        h('p', {}, `Configuration token for ${t.user_id} in ${t.team_id}, valid until `, time(t.exp), ' (shown once):'),
        h('pre', { class: 'wrap' }, `TIDINGS_CONFIG_TOKEN=${t.token}\nrefresh token: ${t.refresh_token}`));
    });
  });
  return h('section', { class: 'card' }, h('h2', {}, 'Configuration tokens'),
    h('p', { class: 'muted' }, 'A developer manages the apps they create with it (App Manifest API, tidings apps apply).'),
    form, out);
}
