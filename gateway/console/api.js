// The console's only door to the gateway: JSON requests to /api/v1 with the bearer token kept in
// sessionStorage, steps that must be applied once (an Idempotency-Key per step, retried with the
// same key over a flaky connection), downloads fetched with that header, and the order event
// stream (SSE), the one request that carries the token in its URL (EventSource cannot send headers).

const TOKEN_KEY = 'console.token';

/** An answer other than 2xx, with the API's `{"error": ...}` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The saved token, or '' when none (a gateway with auth disabled needs none). */
export function token() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    return '';
  }
}

/** Saves (or with '' forgets) the token for this tab. */
export function setToken(value) {
  try {
    if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
    else window.sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // Without storage the token lives until the page reloads.
  }
}

function headers(extra) {
  const result = { Accept: 'application/json', ...extra };
  const value = token();
  if (value) result.Authorization = `Bearer ${value}`;
  return result;
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = text;
    }
  }
  if (!response.ok) {
    const message = body && typeof body === 'object' && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** GET `/api/v1{path}` as JSON; `query` values that are '' or null are left out. */
export async function get(path, query) {
  const response = await fetch(url(path, query, false), { headers: headers(), cache: 'no-store' });
  return answer(response);
}

/** POST a JSON body to `/api/v1{path}`. */
export async function post(path, body) {
  const response = await fetch(url(path, null, false), {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body ?? {}),
  });
  return answer(response);
}

/** A new idempotency key for one step: 32 hex characters from the browser's random source. */
export function newKey() {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Waits between two sends of one step when the connection failed: 0.5, 1, 2, 4 s. */
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000];
const STEP_PREFIX = 'console.step.';

function pause(ms) {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}

function remembered(name) {
  try {
    return window.sessionStorage.getItem(STEP_PREFIX + name);
  } catch (_) {
    return null;
  }
}

function remember(name, key) {
  try {
    if (key) window.sessionStorage.setItem(STEP_PREFIX + name, key);
    else window.sessionStorage.removeItem(STEP_PREFIX + name);
  } catch (_) {
    // Without storage the key lives as long as this call.
  }
}

/**
 * POSTs a step that must be applied once. Its Idempotency-Key is kept in sessionStorage under
 * the step and its body until the gateway answers, so every send of the same step (the
 * automatic retries after a network failure or a 502/503/504, and the person pressing the
 * button again, even after a reload) carries the same key: the gateway applies it once and
 * answers a repeat with the first answer. A refusal (4xx) forgets the key: nothing was applied.
 */
export async function postStep(path, body) {
  const text = JSON.stringify(body ?? {});
  const name = `${path} ${text}`;
  let key = remembered(name);
  if (!key) {
    key = newKey();
    remember(name, key);
  }
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(url(path, null, false), {
        method: 'POST',
        headers: headers({ 'Content-Type': 'application/json', 'Idempotency-Key': key }),
        body: text,
      });
    } catch (error) {
      if (attempt >= RETRY_DELAYS_MS.length) throw new ApiError(0, error.message || String(error));
      await pause(RETRY_DELAYS_MS[attempt]);
      continue;
    }
    if ([502, 503, 504].includes(response.status) && attempt < RETRY_DELAYS_MS.length) {
      await pause(RETRY_DELAYS_MS[attempt]);
      continue;
    }
    if (response.status < 500) remember(name, null);
    return answer(response);
  }
}

/**
 * The URL of `/api/v1{path}` with `query`; with `withToken`, the token rides along as
 * `access_token` (only for EventSource, which cannot send an Authorization header).
 */
export function url(path, query, withToken) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== '' && value !== null && value !== undefined) params.set(key, String(value));
  }
  if (withToken && token()) params.set('access_token', token());
  const search = params.toString();
  return `/api/v1${path}${search ? `?${search}` : ''}`;
}

/**
 * A click handler for a download link of `/api/v1{path}` with `query`. Without a token (a
 * gateway with auth disabled) the plain link does the work. With one, the file is fetched with
 * the Authorization header and handed over as a local object URL, so the token never rides in
 * a URL (proxy logs, browser history): the gateway accepts `access_token` only on the stream.
 * `filename` saves it; without one it opens in a new tab.
 */
export function download(path, query, filename) {
  return async (event) => {
    if (!token()) return;
    event.preventDefault();
    const response = await fetch(url(path, query, false), { headers: headers({ Accept: '*/*' }), cache: 'no-store' });
    if (!response.ok) {
      window.alert(`${response.status} ${response.statusText}`);
      return;
    }
    const objectUrl = URL.createObjectURL(await response.blob());
    if (filename) {
      const link = document.createElement('a');
      link.href = objectUrl;
      link.download = filename;
      link.click();
    } else {
      window.open(objectUrl, '_blank', 'noopener');
    }
    window.setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
  };
}

/**
 * The live order stream. `onEvent(notice)` gets each `order` event's data; `onLagged()` when the
 * gateway says events were dropped; `onState(state)` gets 'connecting', 'open' or 'closed'.
 * EventSource reconnects by itself. Returns a function that closes the stream.
 */
export function stream({ onEvent, onLagged, onState }) {
  const source = new EventSource(url('/stream', null, true));
  onState('connecting');
  source.addEventListener('open', () => onState('open'));
  source.addEventListener('error', () => onState(source.readyState === EventSource.CLOSED ? 'closed' : 'connecting'));
  source.addEventListener('order', (event) => {
    try {
      onEvent(JSON.parse(event.data));
    } catch (_) {
      // A malformed event is skipped; the lists reload on the next one anyway.
    }
  });
  source.addEventListener('lagged', () => onLagged());
  return () => source.close();
}

const cache = new Map();

/** A registry list (`townships`, `villages`, `teams`, `parts`), fetched once per page load. */
export function registry(name) {
  if (!cache.has(name)) {
    const promise = get(`/registry/${name}`).catch((error) => {
      cache.delete(name);
      throw error;
    });
    cache.set(name, promise);
  }
  return cache.get(name);
}

/** Forgets cached registry lists (after signing in with another token). */
export function forgetRegistry() {
  cache.clear();
}
