// The dashboard's router: `#/…` routes, one module per page. Each page's `render(main,
// params)` fills <main>; `main.dataset.state` says loading/ready/error (tests wait on it).
import { logout } from './api.js';
import { clear, errorBox, flash, hideFlash } from './dom.js';
import * as overview from './overview.js';
import * as apps from './apps.js';
import * as appDetail from './app_detail.js';
import * as events from './events.js';
import * as keyEvents from './key_events.js';

const routes = [
  [/^\/?$/, 'overview', overview],
  [/^\/apps\/?$/, 'apps', apps],
  [/^\/apps\/([^/]+)$/, 'apps', appDetail],
  [/^\/events\/?$/, 'events', events],
  [/^\/events\/([^/]+)$/, 'events', events],
  [/^\/key-events\/?$/, 'key-events', keyEvents],
];

let generation = 0;

async function route() {
  const main = document.getElementById('main');
  const path = decodeURIComponent(location.hash.replace(/^#/, '').split('?')[0]);
  const found = routes.find(([re]) => re.test(path));
  hideFlash();
  for (const a of document.querySelectorAll('#nav a')) {
    if (found && a.dataset.route === found[1]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const mine = ++generation;
  main.dataset.state = 'loading';
  clear(main);
  if (!found) {
    main.appendChild(errorBox(`There is no page ${path}.`));
    main.dataset.state = 'error';
    return;
  }
  const [re, name, page] = found;
  document.body.dataset.page = name;
  const params = path.match(re).slice(1);
  try {
    await page.render(main, params, () => mine === generation);
    if (mine === generation) main.dataset.state = 'ready';
  } catch (e) {
    if (mine !== generation) return;
    main.appendChild(errorBox(e.message));
    main.dataset.state = 'error';
  }
}

document.getElementById('logout').addEventListener('click', () => {
  logout().catch((e) => flash(e.message, 'error'));
});
window.addEventListener('hashchange', route);
route();
