// The operator API (/admin/v1) with the session cookie. State-changing calls carry the
// session's CSRF token (from GET /ui/session). Failures become ApiError with the
// problem+json `detail`, for the page to show.

let csrf = null;

export class ApiError extends Error {
  constructor(status, detail, problem) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

function signedOut() {
  location.assign('/ui/login');
  return new ApiError(401, 'Your session has ended; sign in again.');
}

export async function csrfToken() {
  if (csrf) return csrf;
  const res = await fetch('/ui/session', { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (res.status === 401) throw signedOut();
  if (!res.ok) throw new ApiError(res.status, `could not read the session (HTTP ${res.status})`);
  csrf = (await res.json()).csrf_token;
  return csrf;
}

export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = await csrfToken();
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/admin/v1${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `${method} ${path.split('?')[0]}: the server did not answer (${e.message})`);
  }
  if (res.status === 401) throw signedOut();
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const detail = data && typeof data.detail === 'string' ? data.detail : `HTTP ${res.status}`;
    throw new ApiError(res.status, `${method} ${path.split('?')[0]}: ${detail}`, data);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/// A query string from the defined, non-empty values of `params`.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function logout() {
  const token = await csrfToken().catch(() => '');
  await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: { 'x-csrf-token': token } });
  csrf = null;
  location.assign('/ui/login');
}
