// One app's OAuth installs: the install link (when a redirect URL is registered), and its
// installations with who installed and when, each with an Uninstall button (confirmed
// first; the app is sent tokens_revoked / app_uninstalled as by the operator API).
import { get, api } from './api.js';
import { h, replace, badge, card, errorBox, flash, table, time, withButton } from './dom.js';

function row(appId, i, refresh) {
  const out = h('td');
  if (!i.revoked_at) {
    const start = h('button', { type: 'button', class: 'danger', 'data-action': 'uninstall' }, 'Uninstall');
    start.addEventListener('click', () => {
      const yes = h('button', { type: 'button', class: 'danger', 'data-action': 'uninstall-confirm' }, 'Uninstall now');
      const no = h('button', { type: 'button' }, 'Cancel');
      no.addEventListener('click', () => replace(out, start));
      yes.addEventListener('click', () => withButton(yes, async () => {
        await api('DELETE', `/apps/${encodeURIComponent(appId)}/installations/${encodeURIComponent(i.id)}`);
        flash(`Installation ${i.id} was uninstalled; its tokens no longer work.`);
        await refresh();
      }));
      replace(out, h('div', { class: 'toolbar' }, yes, no));
    });
    out.append(start);
  }
  return h('tr', { 'data-installation': i.id },
    h('td', {}, i.id),
    h('td', {}, i.team_id || i.enterprise_id || '—'),
    h('td', {}, i.installer_user_id),
    h('td', {}, time(i.created_at)),
    h('td', {}, i.revoked_at ? badge(`uninstalled ${time(i.revoked_at)}`, 'bad') : badge('installed', 'ok')),
    out);
}

export function installsCard(appId) {
  const body = h('div');
  async function load() {
    const id = encodeURIComponent(appId);
    const [client, list] = await Promise.allSettled([get(`/apps/${id}/oauth`), get(`/apps/${id}/installations?limit=100`)]);
    const link = client.status === 'rejected' ? errorBox(client.reason.message)
      : client.value.install_url
        ? h('p', {}, 'Install link: ', h('a', { href: client.value.install_url, id: 'install-link' }, client.value.install_url))
        : h('p', { class: 'muted' }, 'Register a redirect URL (PATCH /admin/v1/apps/{app}/oauth) to get an install link.');
    const rows = list.status === 'rejected' ? errorBox(list.reason.message)
      : list.value.items.length === 0 ? h('p', { class: 'empty' }, 'Not installed anywhere yet.')
        : table([{ title: 'Installation' }, { title: 'Team' }, { title: 'Installed by' }, { title: 'When' }, { title: 'Status' }, { title: '' }],
          list.value.items.map((i) => row(appId, i, load)), { id: 'installations-table' });
    replace(body, link, rows);
  }
  return { section: card('Installations', body), load };
}
