// The API client: JSON in and out, the access token in `Authorization`, errors as ApiError.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// The API's origin: this page's own, unless a <meta name="dubbing-api"> names another (a page hosted
// on a separate frontend origin, allowed through CORS_ORIGINS).
const meta = document.querySelector('meta[name="dubbing-api"]');
const base = (meta && meta.content ? meta.content : '').replace(/\/$/, '');

export function apiUrl(path) {
  return `${base}${path}`;
}

let tokenSource = async () => null;
let unauthorized = () => {};

export function configureApi({ getToken, onUnauthorized }) {
  tokenSource = getToken;
  unauthorized = onUnauthorized;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export async function api(method, path, body, { signal, auth = true, headers: extra = {} } = {}) {
  const headers = { Accept: 'application/json', ...extra };
  if (auth) {
    const token = await tokenSource();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network_error', 'The service could not be reached. Check your connection and try again.');
  }
  const data = await readBody(response);
  if (!response.ok) {
    const detail = (data && data.error) || {};
    const error = new ApiError(
      response.status,
      detail.code || `http_${response.status}`,
      detail.message || `The service answered with an error (${response.status}).`,
    );
    if (response.status === 401 && auth) unauthorized(error);
    throw error;
  }
  return data;
}

// Supabase Storage (and the local signed routes) answer `{statusCode, code, error, message}`.
export function storageError(status, bodyText) {
  let data = null;
  try {
    data = JSON.parse(bodyText);
  } catch {
    data = null;
  }
  const code = (data && (data.code || data.error)) || `http_${status}`;
  const message = (data && data.message) || `Storage refused the file (${status}).`;
  return new ApiError(Number((data && data.statusCode) || status), code, message);
}
