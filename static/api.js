// The JSON API client of the web UI: same-origin fetch with the session cookie, the
// CSRF token on every call that changes state, JSON bodies, and the server's error
// (`{"error": {"code", "message"}}`) turned into an ApiError whose message is shown
// to the person as it is.

import { noteServerDate } from './dom.js';

let csrfToken = null;
let onSessionEnded = null;

export function setCsrf(token) {
  csrfToken = token || null;
}

/** Called with the error when a call answers 401 (the session has ended). */
export function onUnauthenticated(fn) {
  onSessionEnded = fn;
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** `/requests/a b` → `/requests/a%20b`: every path segment from data is encoded. */
export function path(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

/** Calls `/api/v1` + `url`. Resolves to the decoded JSON; rejects with ApiError (or
 * an AbortError when `signal` fires). */
export async function api(method, url, body, { signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch(`/api/v1${url}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
  }
  noteServerDate(res.headers.get('Date'));
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError(
      res.status,
      e.code || `http_${res.status}`,
      e.message || `The server answered ${res.status} ${res.statusText}.`,
      res.headers.get('Retry-After'),
    );
    if (res.status === 401 && url !== '/login' && onSessionEnded) onSessionEnded(err);
    throw err;
  }
  return data;
}

/** Every item of a paged list (follows `next_cursor`, up to `max` items). */
export async function all(url, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const page = await api('GET', `${url}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
