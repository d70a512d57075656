// Calls to the gateway's JSON routes, with the key the user gave for this browser tab.
//
// The key lives in sessionStorage only (it goes when the tab closes) and travels as
// `Authorization: Bearer <key>`. A refusal is an ApiError carrying the API's own `{message, code}`.

const KEY_STORAGE = 'taskhub.apiKey';

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.body = body;
  }

  get needsKey() {
    return this.status === 401 || this.status === 403;
  }

  get unreachable() {
    return this.status === 0;
  }
}

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: the page still works without a key
  }
}

/** Keeps `key` for this tab, or forgets it (null); false when the browser allows no session storage. */
export function storeKey(key) {
  try {
    if (key === null) sessionStorage.removeItem(KEY_STORAGE);
    else sessionStorage.setItem(KEY_STORAGE, key);
    return true;
  } catch {
    return false;
  }
}

export function requestHeaders(extra = {}) {
  const headers = { Accept: 'application/json', ...extra };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** The `{message, code, ...}` of a refusal, or what can be said of an answer that is not one. */
export async function errorBody(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') return body;
  } catch {
    // not JSON: say what we know
  }
  return { message: `The gateway answered ${response.status} ${response.statusText}.`, code: null };
}

let onAnswer = () => {};

/** `listener()` runs after every answered call: the gateway is reachable. */
export function whenAnswered(listener) {
  onAnswer = listener;
}

/** One call; answers the JSON body, or throws ApiError (status 0 when the gateway cannot be reached). */
export async function api(method, path) {
  let response;
  try {
    response = await fetch(path, { method, headers: requestHeaders(), cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, { message: `The gateway cannot be reached (${error.message}).`, code: null });
  }
  onAnswer();
  if (!response.ok) throw new ApiError(response.status, await errorBody(response));
  return response.status === 204 ? null : response.json();
}
