// The agent's JSON API (docs/agent-api.md): one fetch wrapper that turns errors into
// exceptions carrying the message and the form field it concerns, and the live event stream.

export class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `request failed (${status})`);
    this.status = status;
    this.code = body.code || 'error';
    this.field = body.field || null;
  }
}

export async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/api${path}`, opts);
  } catch (e) {
    throw new ApiError(0, { error: 'The FileSync agent is not answering. Is it still running?', code: 'agent_down' });
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data || {});
    if (resp.status === 401 && err.code === 'unauthorized') window.dispatchEvent(new CustomEvent('filesync-unauthorized'));
    throw err;
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b = {}) => api('POST', p, b);
export const del = (p) => api('DELETE', p);

/// Follows the agent's server-sent events; returns a function that stops following.
export function follow({ status, activity, down }) {
  const es = new EventSource('/api/events');
  es.addEventListener('status', (e) => status && status(JSON.parse(e.data)));
  es.addEventListener('activity', (e) => activity && activity(JSON.parse(e.data)));
  es.addEventListener('error', () => down && down());
  return () => es.close();
}
