// Every call to the daemon goes through api(): JSON in and out, 401 opens the login form,
// 403 (a read-only login) shows the daemon's message.
export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

const handlers = { unauthorized: () => {}, forbidden: () => {} };

export function onAuthProblems(unauthorized, forbidden) {
  handlers.unauthorized = unauthorized;
  handlers.forbidden = forbidden;
}

function send(path, method, body, accept) {
  const options = { method, headers: { Accept: accept }, credentials: 'same-origin' };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  return fetch(path, options);
}

function parse(text) {
  try { return text ? JSON.parse(text) : null; } catch { return text; }
}

function failure(path, reply, data) {
  const detail = data && typeof data === 'object' && 'detail' in data ? data.detail : data;
  const error = new ApiError(reply.status, detail);
  if (reply.status === 401 && !path.startsWith('/api/auth/')) handlers.unauthorized(error);
  if (reply.status === 403) handlers.forbidden(error);
  return error;
}

export async function api(path, { method = 'GET', body } = {}) {
  const reply = await send(path, method, body, 'application/json');
  if (reply.status === 204) return null;
  const data = parse(await reply.text());
  if (!reply.ok) throw failure(path, reply, data);
  return data;
}

/** Like api(), for an answer that is a file (a JPEG preview): its Blob. */
export async function apiBlob(path, { method = 'GET', body, accept = '*/*' } = {}) {
  const reply = await send(path, method, body, accept);
  if (!reply.ok) throw failure(path, reply, parse(await reply.text()));
  return reply.blob();
}

/** A readable line from any error body FastAPI or Nightowl sends. */
export function describe(detail) {
  if (detail === null || detail === undefined) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${d.path || (d.loc || []).join('.')}: ${d.msg || d.message}`).join('; ');
  }
  if (typeof detail === 'object') return detail.message || detail.msg || JSON.stringify(detail);
  return String(detail);
}
