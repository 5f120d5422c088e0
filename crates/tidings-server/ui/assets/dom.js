// DOM helpers. Data only ever reaches the page as text nodes or attribute values set
// through the DOM API: nothing here parses HTML.

/// h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child, [more]) → element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/// A table in a horizontally scrolling wrapper. `columns`: [{title, num?}], `rows`: [tr].
export function table(columns, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.title)))),
      h('tbody', {}, rows)));
}

export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

export function errorBox(message) {
  return h('div', { class: 'error-box', role: 'alert' }, message);
}

let flashTimer;
/// A short message under the top bar; errors stay until the next message.
export function flash(message, kind = 'info') {
  const el = document.getElementById('flash');
  el.textContent = message;
  el.className = kind === 'error' ? 'error' : '';
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.hidden = false;
  clearTimeout(flashTimer);
  if (kind !== 'error') flashTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

export function hideFlash() {
  const el = document.getElementById('flash');
  if (el) el.hidden = true;
}

/// Runs `action` with the button disabled; shows its error (never swallows it).
export async function withButton(button, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (e) {
    flash(e.message, 'error');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || text}` }, text);
}

export function time(unixSeconds) {
  if (unixSeconds === null || unixSeconds === undefined) return '—';
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function timeMs(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toLocaleString();
}

export function pct(ratio) {
  if (ratio === null || ratio === undefined) return '—';
  return `${(ratio * 100).toFixed(ratio >= 0.999 || ratio === 0 ? 0 : 1)} %`;
}

export function num(n) {
  if (n === null || n === undefined) return '—';
  return Number(n).toLocaleString();
}

export function ms(n) {
  if (n === null || n === undefined) return '—';
  return `${num(Math.round(n))} ms`;
}

export function chips(list) {
  if (!list || list.length === 0) return h('span', { class: 'empty' }, 'none');
  return h('ul', { class: 'chips' }, list.map((x) => h('li', {}, x)));
}

/// Replaces the children of `el`; null, undefined and false children are left out.
export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}
