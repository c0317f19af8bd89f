// The dashboard: one line that sums everything up, then every folder with its own line —
// "Up to date" only when nothing needs the person, otherwise what does, with the one action
// that helps (Sync now, Retry now, Resume, the conflicts, Log in again) — live progress, what is wrong and
// what to do, and its direction, schedule, limits and excluded subfolders. Live updates are
// patched in place (`patch`), so the keyboard focus and an opened details box stay put; what
// changed is announced once by the app's announcer, not the whole dashboard. Below, the files
// that changed lately, from the activity log.

import { h, mount, patch, heading, fmtBytes, fmtCount, fmtAgo, fmtTime, fmtClock, fmtWait, toast, confirmDialog } from './dom.js';
import { get, post } from './api.js';

/// The line's words. Offline, they are said here, in the reader's own clock, and count down
/// to the next try: "Offline since 10:42 · retrying in 17 s".
export function lineText(sum, now = Date.now() / 1000) {
  if (sum.kind !== 'offline' || !sum.since) return sum.text;
  const next = sum.retry_at && sum.retry_at > now ? `retrying in ${fmtWait(sum.retry_at - now)}` : 'retrying now';
  return `Offline since ${fmtClock(sum.since)} · ${next}`;
}

/// Whether a status has a line that counts down (and so is drawn again every second).
export function ticking(s) {
  return !!s && [s.summary, ...(s.folders || []).map((f) => f.summary)].some((x) => x && x.kind === 'offline' && x.since);
}

/// The line the agent chose for a folder or the whole dashboard (`summary` in /api/status),
/// as a badge with its action beside it and the detail below.
export function summaryLine(sum, folder, key = 'glance') {
  if (!sum) return null;
  return h('div', { class: 'glance', 'data-key': key },
    h('span', { class: `badge badge-${sum.tone}`, 'data-kind': sum.kind },
      h('span', { class: 'dot', 'aria-hidden': 'true' }), lineText(sum)),
    actionFor(sum, folder || sum.folder),
    sum.detail ? h('span', { class: 'detail', 'data-key': 'detail' }, sum.detail) : null);
}

function actionFor(sum, folder) {
  const button = (action, label) => h('button', {
    type: 'button', class: 'button small secondary', 'data-action': action, 'data-folder': folder, 'data-key': `act-${action}`,
  }, label);
  switch (sum.action) {
    case 'conflicts': return h('a', { class: 'button small secondary', href: '#/conflicts', 'data-key': 'act-conflicts' }, 'Resolve…');
    case 'log-in-again': return h('a', { class: 'button small', href: '#/login-again', 'data-key': 'act-log-in-again' }, 'Log in again…');
    case 'sync-now': return button('sync-now', 'Sync now');
    case 'retry-now': return button('retry-now', 'Retry now');
    case 'resume': return button('resume', 'Resume');
    case 'resume-all': return button('resume-all', 'Resume all');
    default: return null;
  }
}

/// Carries out a summary line's action; `el` is the button, with `data-action` and `data-folder`.
export async function runAction(el) {
  const folder = el.dataset.folder;
  const enc = encodeURIComponent(folder || '');
  try {
    switch (el.dataset.action) {
      case 'sync-now': await post(`/folders/${enc}/sync`); toast(`Syncing ${folder} now.`); break;
      case 'retry-now': await post('/reconnect'); toast('Trying the server again now.'); break;
      case 'resume': await post(`/folders/${enc}/pause`, { paused: false }); toast(`Resumed ${folder}.`); break;
      case 'resume-all': await post('/pause', { paused: false }); toast('Resumed every folder.'); break;
      case 'confirm-deletes': await confirmDeletes(folder); break;
      default: break;
    }
  } catch (err) { toast(err.message, 'bad'); }
}

const PHASE = { downloading: 'Downloading', uploading: 'Uploading', scanning: 'Looking for changes' };

/// A pass's progress: the file being moved, the share done, what remains, the rate and the
/// time left at that rate.
function progress(p) {
  if (!p) return null;
  // Still looking: nothing to count yet.
  if (!p.files_total && !p.bytes_total) {
    return h('div', { class: 'progress', 'data-key': 'progress' },
      h('p', { class: 'progress-now', 'data-key': 'now' }, `${PHASE[p.phase] || p.phase || 'Syncing'}…`));
  }
  const pct = p.bytes_total > 0 ? Math.min(99, Math.floor((100 * p.bytes_done) / p.bytes_total)) : 0;
  const rate = p.rate_bps > 0 ? ` · ${fmtBytes(p.rate_bps)}/s` : '';
  const eta = p.eta_secs != null && p.bytes_remaining > 0 ? ` · about ${fmtWait(p.eta_secs)} left` : '';
  const phase = PHASE[p.phase] || p.phase;
  return h('div', { class: 'progress', 'data-key': 'progress' },
    h('p', { class: 'progress-now', 'data-key': 'now' },
      phase ? `${phase} ` : null,
      p.current ? h('code', { class: 'current' }, p.current) : null,
      p.bytes_total > 0 ? h('strong', { class: 'pct' }, ` ${pct} %`) : null),
    h('progress', { max: 100, value: pct, 'aria-label': `Sync progress ${pct}%` }),
    h('p', { class: 'muted', 'data-key': 'left' },
      `${fmtCount(p.files_remaining, 'file', 'files')} and ${fmtBytes(p.bytes_remaining)} remaining${rate}${eta}`));
}

/// The excluded subfolders still on this computer, and why their copy here cannot go yet.
export function keptNotice(f) {
  if (!f.kept || !f.kept.length) return null;
  return h('div', { class: 'notice notice-warn kept', 'data-key': 'kept' },
    f.kept.map((k) => h('p', { 'data-key': k.path },
      h('strong', {}, `${k.path} is kept on this computer: `), `${k.reason}.`)),
    h('p', { class: 'hint' }, 'Excluded subfolders are removed here only once every file in them is safely on the server.'));
}

/// The mass-delete guard held a pass back: let the deletions through, after asking.
async function confirmDeletes(name) {
  const ok = await confirmDialog({ title: 'Delete these files everywhere?', danger: true, confirm: 'Confirm the deletions',
    message: `The files deleted on this computer are then deleted on the server and your other computers too. The server keeps them in ${name}'s history and trash for its retention period.` });
  if (!ok) return;
  try { await post(`/folders/${encodeURIComponent(name)}/confirm-deletes`); toast('Confirmed; the agent propagates the deletions now.'); } catch (err) { toast(err.message, 'bad'); }
}

const DIRECTION = { 'two-way': 'Two-way', 'upload-only': 'Upload only', 'download-only': 'Download only' };
const UNIT = { s: 's', m: 'min', h: 'h', d: 'days' };

/// "continuous", "hourly", "every 5m" in words.
export function scheduleText(schedule) {
  const s = (schedule || 'continuous').trim().toLowerCase();
  if (s === 'continuous') return 'On every change';
  if (s === 'hourly') return 'Hourly';
  if (s === 'daily') return 'Daily';
  const m = s.match(/^every\s*(\d+)\s*([smhd])/);
  return m ? `Every ${m[1]} ${UNIT[m[2]]}` : schedule;
}

function limitsText(st) {
  if (!st.upload_limit && !st.download_limit) return null;
  const one = (n) => (n ? `${fmtBytes(n)}/s` : 'unlimited');
  return `up ${one(st.upload_limit)} · down ${one(st.download_limit)}`;
}

function fact(key, label, value, attrs = {}) {
  return h('div', { 'data-key': key }, h('dt', {}, label), h('dd', attrs, value));
}

function folderCard(f) {
  // A folder paused by the person says so in its line, with Resume beside it: no notice.
  const byPerson = f.summary && (f.summary.action === 'resume' || f.summary.action === 'resume-all');
  const problem = (f.state === 'error' || f.state === 'paused' || f.state === 'offline') && !byPerson;
  const reason = f.state === 'paused' ? (f.paused_reason || 'Paused.') : f.last_error;
  const st = f.settings || {};
  const limits = limitsText(st);
  return h('li', { class: `folder folder-${f.summary ? f.summary.tone : f.state}`, 'data-folder': f.name, 'data-key': `folder:${f.name}` },
    h('div', { class: 'folder-head' },
      h('h2', {}, h('a', { href: `#/folder/${encodeURIComponent(f.name)}` }, f.name)),
      summaryLine(f.summary, f.name)),
    h('p', { class: 'path' }, f.path),
    f.state === 'syncing' ? progress(f.progress) : null,
    keptNotice(f),
    problem && (reason || f.hint) ? h('div', { class: `notice notice-${f.state === 'error' ? 'bad' : 'warn'}`, role: f.state === 'error' ? 'alert' : null, 'data-key': 'notice' },
      reason ? h('p', { class: 'reason' }, reason) : null,
      f.hint ? h('p', { class: 'hint' }, h('strong', {}, 'What to do: '), f.hint) : null,
      f.guard_tripped ? h('div', { class: 'actions', 'data-key': 'guard' },
        h('button', { type: 'button', class: 'button danger', 'data-action': 'confirm-deletes', 'data-folder': f.name }, 'Confirm the deletions…')) : null) : null,
    h('dl', { class: 'facts' },
      fact('files', 'Files', f.files.toLocaleString()),
      fact('size', 'Size', fmtBytes(f.bytes)),
      fact('last', 'Last sync', fmtAgo(f.last_sync), { title: f.last_sync ? fmtTime(f.last_sync) : null }),
      f.pending ? fact('pending', 'Pending', f.pending.toLocaleString()) : null,
      f.conflicts ? fact('conflicts', 'Conflicts', h('a', { href: '#/conflicts' }, f.conflicts.toLocaleString())) : null,
      fact('direction', 'Direction', DIRECTION[st.direction] || st.direction),
      fact('schedule', 'Syncs', scheduleText(st.schedule)),
      limits ? fact('limits', 'Speed limits', limits) : null,
      st.excluded && st.excluded.length ? fact('excluded', 'Not synced here', st.excluded.join(', ')) : null),
    f.skipped && f.skipped.length ? h('details', { class: 'skipped', 'data-key': 'skipped' },
      h('summary', {}, `${fmtCount(f.skipped.length, 'item', 'items')} skipped on this computer`),
      h('ul', {}, f.skipped.slice(0, 20).map((s) => h('li', { 'data-key': s.path }, h('code', {}, s.path), ` — ${s.reason}`)))) : null);
}

export function dashboardScreen(main, store) {
  const title = heading('Dashboard');
  const body = h('div', { class: 'dashboard' });
  const pauseAll = h('button', { type: 'button', class: 'button secondary', id: 'pause-all' });
  pauseAll.addEventListener('click', async () => {
    const paused = !store.status.paused_all;
    try {
      await post('/pause', { paused });
      toast(paused ? 'Paused every folder.' : 'Resumed every folder.');
    } catch (err) { toast(err.message, 'bad'); }
  });
  // The parts are patched in place, so their buttons are handled here, by what they say.
  body.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (b) runAction(b);
  });
  mount(main, h('div', { class: 'screen-head' }, title,
    h('div', { class: 'row' }, pauseAll, h('a', { class: 'button', href: '#/add' }, 'Add folder'))), body);
  let renders = 0;
  const render = (s) => {
    pauseAll.textContent = s.paused_all ? 'Resume all' : 'Pause all';
    pauseAll.hidden = !s.folders.length;
    const banner = s.connection !== 'online' && s.connection !== 'starting'
      ? h('div', { class: `notice notice-${s.connection === 'error' ? 'bad' : 'warn'}`, role: 'alert', 'data-key': 'banner' },
        h('p', { class: 'reason' }, s.message || 'Not connected to the server.'),
        s.hint ? h('p', { class: 'hint' }, h('strong', {}, 'What to do: '), s.hint) : null)
      : null;
    const t = s.totals;
    const summary = h('p', { class: 'totals', 'data-key': 'totals' },
      `${fmtCount(t.folders, 'folder', 'folders')} · ${fmtCount(t.files, 'file', 'files')} · ${fmtBytes(t.bytes)}`,
      t.conflicts ? [' · ', h('a', { href: '#/conflicts', 'data-key': 'conflicts' }, fmtCount(t.conflicts, 'conflict', 'conflicts'))] : null,
      s.user ? ` · ${s.user} on ${s.device_name}` : null);
    const list = s.folders.length
      ? h('ul', { class: 'folders', 'data-key': 'folders' }, s.folders.map(folderCard))
      : h('div', { class: 'card empty', 'data-key': 'empty' },
        h('h2', {}, 'No folders yet'),
        h('p', {}, 'Choose a folder on this computer to keep in sync with your other computers.'),
        h('a', { class: 'button', href: '#/add' }, 'Add your first folder'));
    const overall = s.folders.length ? summaryLine(s.summary, null, 'overall') : null;
    if (overall) overall.classList.add('overall');
    patch(body, overall, banner, summary, list);
    body.dataset.renders = String(++renders);
  };
  render(store.status);
  const recent = recentFiles(main, store);
  const off = store.onStatus(render);
  // Countdowns move on between statuses.
  const tick = setInterval(() => { if (ticking(store.status)) render(store.status); }, 1000);
  return () => { off(); recent(); clearInterval(tick); };
}

/// How many recently changed files the dashboard lists.
const RECENT = 8;

/// "Recently changed": the newest files of the activity log's sync entries, newest first. Text
/// only (nothing to focus), so replacing it on a new entry disturbs no one.
function recentFiles(main, store) {
  let alive = true;
  let entries = [];
  const box = h('section', { class: 'card recent', 'aria-labelledby': 'recent-title', hidden: true });
  const show = () => {
    const seen = new Set();
    const rows = [];
    for (const a of entries) {
      if (a.kind !== 'sync') continue;
      for (const f of a.files || []) {
        const key = `${a.folder}/${f}`;
        if (rows.length < RECENT && !seen.has(key)) { seen.add(key); rows.push({ f, a }); }
      }
    }
    box.hidden = !rows.length;
    mount(box, h('h2', { id: 'recent-title' }, 'Recently changed'),
      h('ul', { class: 'files recent-files' }, rows.map(({ f, a }) => h('li', {},
        h('code', {}, f), h('span', { class: 'muted small' }, ` ${a.folder ? `${a.folder} · ` : ''}${fmtAgo(a.at)}`)))));
  };
  main.appendChild(box);
  get('/activity').then((v) => { if (alive) { entries = v; show(); } }).catch(() => {});
  const off = store.onActivity((a) => { entries.unshift(a); show(); });
  return () => { alive = false; off(); };
}
