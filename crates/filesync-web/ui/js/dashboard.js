// The dashboard: every folder with its state — up to date, syncing with live progress (files
// and bytes remaining, transfer rate), paused or in error with the reason and what to do —
// its last sync and totals. Re-rendered on every status event; nothing reloads.

import { h, mount, heading, fmtBytes, fmtCount, fmtAgo, fmtTime, toast, confirmDialog } from './dom.js';
import { post } from './api.js';

const STATE = {
  idle: ['Up to date', 'ok'],
  syncing: ['Syncing', 'busy'],
  paused: ['Paused', 'warn'],
  error: ['Needs attention', 'bad'],
  offline: ['Offline', 'muted'],
  starting: ['Starting', 'muted'],
};

export function stateBadge(state) {
  const [label, kind] = STATE[state] || [state, 'muted'];
  return h('span', { class: `badge badge-${kind}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), label);
}

function progress(p) {
  if (!p) return null;
  const pct = p.bytes_total > 0 ? Math.round((100 * p.bytes_done) / p.bytes_total) : 0;
  const rate = p.rate_bps > 0 ? ` · ${fmtBytes(p.rate_bps)}/s` : '';
  return h('div', { class: 'progress' },
    h('progress', { max: 100, value: pct, 'aria-label': `Sync progress ${pct}%` }),
    h('p', { class: 'muted' },
      `${p.phase ? p.phase + ': ' : ''}${fmtCount(p.files_remaining, 'file', 'files')} and ${fmtBytes(p.bytes_remaining)} remaining${rate}`));
}

/// The mass-delete guard held a pass back: let the deletions through, after asking.
export async function confirmDeletes(name) {
  const ok = await confirmDialog({ title: 'Delete these files everywhere?', danger: true, confirm: 'Confirm the deletions',
    message: `The files deleted on this computer are then deleted on the server and your other computers too. The server keeps them in ${name}'s history and trash for its retention period.` });
  if (!ok) return;
  try { await post(`/folders/${encodeURIComponent(name)}/confirm-deletes`); toast('Confirmed; the agent propagates the deletions now.'); } catch (err) { toast(err.message, 'bad'); }
}

function folderCard(f) {
  const problem = f.state === 'error' || f.state === 'paused' || f.state === 'offline';
  const reason = f.state === 'paused' ? (f.paused_reason || 'Paused.') : f.last_error;
  return h('li', { class: `folder folder-${f.state}`, 'data-folder': f.name },
    h('div', { class: 'folder-head' },
      h('h2', {}, h('a', { href: `#/folder/${encodeURIComponent(f.name)}` }, f.name)),
      stateBadge(f.state)),
    h('p', { class: 'path' }, f.path),
    f.state === 'syncing' ? progress(f.progress) : null,
    problem && (reason || f.hint) ? h('div', { class: `notice notice-${f.state === 'error' ? 'bad' : 'warn'}`, role: f.state === 'error' ? 'alert' : null },
      reason ? h('p', { class: 'reason' }, reason) : null,
      f.hint ? h('p', { class: 'hint' }, h('strong', {}, 'What to do: '), f.hint) : null,
      f.guard_tripped ? h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button danger', onclick: () => confirmDeletes(f.name) }, 'Confirm the deletions…')) : null) : null,
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Files'), h('dd', {}, f.files.toLocaleString())),
      h('div', {}, h('dt', {}, 'Size'), h('dd', {}, fmtBytes(f.bytes))),
      h('div', {}, h('dt', {}, 'Last sync'), h('dd', { title: f.last_sync ? fmtTime(f.last_sync) : null }, fmtAgo(f.last_sync))),
      f.pending ? h('div', {}, h('dt', {}, 'Pending'), h('dd', {}, f.pending.toLocaleString())) : null,
      f.conflicts ? h('div', {}, h('dt', {}, 'Conflicts'), h('dd', {}, h('a', { href: '#/conflicts' }, f.conflicts.toLocaleString()))) : null),
    f.skipped && f.skipped.length ? h('details', { class: 'skipped' },
      h('summary', {}, `${fmtCount(f.skipped.length, 'item', 'items')} skipped on this computer`),
      h('ul', {}, f.skipped.slice(0, 20).map((s) => h('li', {}, h('code', {}, s.path), ` — ${s.reason}`)))) : null);
}

export function dashboardScreen(main, store) {
  const title = heading('Dashboard');
  const body = h('div', { 'aria-live': 'polite' });
  const pauseAll = h('button', { type: 'button', class: 'button secondary', id: 'pause-all' });
  pauseAll.addEventListener('click', async () => {
    const paused = !store.status.paused_all;
    try {
      await post('/pause', { paused });
      toast(paused ? 'Paused every folder.' : 'Resumed every folder.');
    } catch (err) { toast(err.message, 'bad'); }
  });
  mount(main, h('div', { class: 'screen-head' }, title,
    h('div', { class: 'row' }, pauseAll, h('a', { class: 'button', href: '#/add' }, 'Add folder'))), body);
  const render = (s) => {
    pauseAll.textContent = s.paused_all ? 'Resume all' : 'Pause all';
    pauseAll.hidden = !s.folders.length;
    const banner = s.connection !== 'online' && s.connection !== 'starting'
      ? h('div', { class: `notice notice-${s.connection === 'error' ? 'bad' : 'warn'}`, role: 'alert' },
        h('p', { class: 'reason' }, s.message || 'Not connected to the server.'),
        s.hint ? h('p', { class: 'hint' }, h('strong', {}, 'What to do: '), s.hint) : null)
      : null;
    const t = s.totals;
    const summary = h('p', { class: 'totals' },
      `${fmtCount(t.folders, 'folder', 'folders')} · ${fmtCount(t.files, 'file', 'files')} · ${fmtBytes(t.bytes)}`,
      t.conflicts ? [' · ', h('a', { href: '#/conflicts' }, fmtCount(t.conflicts, 'conflict', 'conflicts'))] : null,
      s.user ? ` · ${s.user} on ${s.device_name}` : null);
    const list = s.folders.length
      ? h('ul', { class: 'folders' }, s.folders.map(folderCard))
      : h('div', { class: 'card empty' },
        h('h2', {}, 'No folders yet'),
        h('p', {}, 'Choose a folder on this computer to keep in sync with your other computers.'),
        h('a', { class: 'button', href: '#/add' }, 'Add your first folder'));
    // Keep the keyboard focus on the same link across live updates.
    const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute('href') : null;
    mount(body, banner, summary, list);
    if (focused) { const again = body.querySelector(`a[href="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  };
  render(store.status);
  return store.onStatus(render);
}
