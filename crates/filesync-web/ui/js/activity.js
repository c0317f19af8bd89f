// The recent sync events and errors, newest first, each naming its files; searchable by file
// name, folder or text; new entries arrive live.

import { h, mount, heading, fmtTime } from './dom.js';
import { get } from './api.js';

const KIND = { sync: 'Synced', error: 'Error', connection: 'Connection', action: 'Action' };

export function activityScreen(main, store) {
  let alive = true;
  let entries = [];
  const search = h('input', { type: 'search', id: 'q', name: 'q', placeholder: 'Search file names, folders, errors…', autocomplete: 'off' });
  const list = h('ol', { class: 'activity', 'aria-live': 'polite' });
  const count = h('p', { class: 'muted', role: 'status' });
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const has = (t) => (t || '').toLowerCase().includes(q);
    const shown = entries.filter((a) => !q || has(a.message) || has(a.folder) || (a.files || []).some(has));
    count.textContent = q ? `${shown.length} of ${entries.length} entries match` : `${entries.length} recent entries`;
    mount(list, shown.length ? shown.map((a) => h('li', { class: `entry entry-${a.kind}` },
      h('span', { class: `badge badge-${a.kind === 'error' ? 'bad' : a.kind === 'sync' ? 'ok' : 'muted'}` }, KIND[a.kind] || a.kind),
      h('time', { datetime: new Date(a.at * 1000).toISOString() }, fmtTime(a.at)),
      a.folder ? h('strong', {}, a.folder) : null,
      h('span', { class: 'message' }, a.message),
      a.files && a.files.length > 3 ? h('details', { class: 'files' },
        h('summary', {}, `All ${a.files.length} files`),
        h('ul', {}, a.files.map((f) => h('li', {}, h('code', {}, f))))) : null))
      : h('li', { class: 'muted' }, entries.length ? 'Nothing matches.' : 'Nothing has happened yet since the agent started.'));
  };
  search.addEventListener('input', render);
  mount(main, heading('Activity'),
    h('div', { class: 'field' }, h('label', { for: 'q' }, 'Search the activity'), search),
    count, list);
  get('/activity').then((v) => { if (alive) { entries = v; render(); } }).catch((e) => mount(list, h('li', { class: 'notice notice-bad' }, e.message)));
  const off = store.onActivity((a) => { entries.unshift(a); render(); });
  return () => { alive = false; off(); };
}
