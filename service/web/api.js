// Talking to the service the page came from: JSON in and out, the session
// cookie sent by the browser, and the session's CSRF token on every request
// that changes something.

let csrf = null;

/** Remembers the CSRF token of this page's session (from whoami). */
export function setCsrf(token) {
  csrf = token || null;
}

/** An error as every bonebank service sends it: {code, message, hint}. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || 'internal';
    this.hint = body.hint || null;
  }
}

/** Calls `path`; `body` is sent as JSON. Returns the parsed answer. */
export async function api(path, { method = 'GET', body } = {}) {
  // The page's language, so that what the service writes later (a
  // requester's notice) is in it too.
  const headers = { Accept: 'application/json', 'Accept-Language': document.documentElement.lang || 'en' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  if (!response.ok) throw new ApiError(response.status, parsed || {});
  return parsed;
}

/** Signs out of this service's session and goes back to its first page. */
export async function signOut() {
  await api('/auth/logout', { method: 'POST' });
  window.location.assign('/');
}
