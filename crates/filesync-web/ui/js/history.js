// History and trash: the deleted files the server still keeps, grouped by what was deleted
// together ("Restore all"; a deleted folder restores with its files), restored in place or
// under a new name; and the versions of any file, each named by its local time — previewed
// beside the current one, downloaded, restored in place or as a new file. The server's
// revision numbers stay out of sight.

import { h, mount, heading, toast, fmtBytes, fmtTime, fmtAgo, promptDialog } from './dom.js';
import { get, post } from './api.js';
import { showPreview, downloadLink } from './preview.js';

/// The trash in the deletions made together (the API gives each item its `group`), in the
/// order listed (most recent first); `tops` are the items not inside another item of the group
/// (a deleted folder stands for the files deleted with it).
export function groupTrash(list) {
  const groups = [];
  for (const t of list) {
    let g = groups.find((x) => x.key === t.group && x.folder === t.folder);
    if (!g) { g = { key: t.group, folder: t.folder, device: t.deleted_by, at: t.deleted_at, items: [] }; groups.push(g); }
    g.items.push(t);
    g.at = Math.max(g.at, t.deleted_at);
  }
  for (const g of groups) {
    const paths = new Set(g.items.map((t) => t.path));
    const inside = (t) => t.path.split('/').slice(0, -1).some((_, i, parts) => paths.has(parts.slice(0, i + 1).join('/')));
    g.tops = g.items.filter((t) => !inside(t));
    for (const t of g.tops) t.inside = g.items.filter((c) => c.path.startsWith(`${t.path}/`));
  }
  return groups;
}

function trashRow(t, restore, restoreAs, preview) {
  const n = t.inside.length;
  return h('li', { class: 'row-item', 'data-path': t.path },
    h('div', { class: 'grow' },
      h('p', { class: 'strong' }, h('code', { class: 'wrap' }, t.path),
        t.kind === 'folder' ? (n ? ` (folder with ${n === 1 ? '1 item' : `${n} items`})` : ' (folder)') : ''),
      h('p', { class: 'muted small' }, `Deleted ${fmtTime(t.deleted_at)} on ${t.deleted_by} · last version ${fmtTime(t.last_at)} from ${t.last_device}${t.size !== null && t.kind === 'file' ? ` · ${fmtBytes(t.size)}` : ''}`),
      n ? h('details', { class: 'inside' }, h('summary', {}, n === 1 ? 'What was in it' : `The ${n} items that were in it`),
        h('ul', { class: 'plain small' }, t.inside.map((c) => h('li', {}, h('code', { class: 'wrap' }, c.path.slice(t.path.length + 1)),
          c.kind === 'folder' ? ' (folder)' : c.size !== null ? ` · ${fmtBytes(c.size)}` : '')))) : null),
    h('div', { class: 'row wrap-row' },
      t.kind === 'file' ? h('button', { type: 'button', class: 'button secondary', 'aria-label': `Preview ${t.path} as it was deleted`, onclick: () => preview(t) }, 'Preview') : null,
      h('button', { type: 'button', class: 'button', 'aria-label': `Restore ${t.path}`, onclick: () => restore(t) }, 'Restore'),
      h('button', { type: 'button', class: 'button secondary', 'aria-label': `Restore ${t.path} under a new name`,
        onclick: () => restoreAs(t.path, (to) => restore(t, to)) }, 'Restore as…')));
}

export function historyScreen(main, store, params) {
  let alive = true;
  const folders = store.status.folders.map((f) => f.name);
  let folder = params.get('folder') || folders[0] || '';
  const enc = () => encodeURIComponent(folder);

  const select = h('select', { id: 'folder', name: 'folder' }, folders.map((f) => h('option', { value: f, selected: f === folder }, f)));
  const trashBox = h('div', { 'aria-live': 'polite' });
  const search = h('input', { type: 'search', id: 'file-q', name: 'file-q', placeholder: 'Part of a file name', autocomplete: 'off' });
  const fileList = h('div', { 'aria-live': 'polite' });
  const versionsBox = h('div', { id: 'versions', 'aria-live': 'polite' });

  const done = (r) => toast([r.message, r.version_time ? `That version is from ${fmtTime(r.version_time)}.` : '',
    r.sync === 'synced' ? '' : `(${r.sync})`].filter(Boolean).join(' '));

  const restoreAs = async (path, doRestore) => {
    const dot = path.lastIndexOf('.');
    const suggestion = dot > path.lastIndexOf('/') + 0 && dot > 0 ? `${path.slice(0, dot)} (restored)${path.slice(dot)}` : `${path} (restored)`;
    const to = await promptDialog({ title: 'Restore under a new name', label: 'New path inside the folder', value: suggestion, confirm: 'Restore',
      message: 'The restored file appears beside the current one on every computer.' });
    if (to) await doRestore(to);
  };

  // A refresh keeps the list on screen until the new one is there (no flicker, nothing to lose
  // a click on); an older, slower answer never replaces a newer one.
  let trashFolder = null;
  let trashAsked = 0;
  let seenRev = null; // the folder's server revision the trash list was last loaded for
  // A refresh the server prompted is dropped if the person went into the list meanwhile.
  const busyInTrash = () => trashBox.contains(document.activeElement) || trashBox.querySelector('details[open]');
  const loadTrash = async ({ refresh = false } = {}) => {
    if (!folder) { mount(trashBox, h('p', { class: 'muted' }, 'Add a folder first.')); return; }
    if (trashFolder !== folder) mount(trashBox, h('p', { class: 'muted' }, 'Loading the trash…'));
    trashFolder = folder;
    const mine = ++trashAsked;
    try {
      const list = await get(`/trash?folder=${enc()}`);
      if (!alive || mine !== trashAsked) return;
      if (refresh && busyInTrash()) { seenRev = null; return; }
      if (!list.length) { mount(trashBox, h('p', { class: 'muted' }, 'The trash is empty: nothing deleted in this folder is kept.')); return; }
      const restore = async (t, to) => {
        try { done(await post('/trash/restore', { folder: t.folder, path: t.path, to })); loadTrash(); } catch (err) { toast(err.message, 'bad'); }
      };
      const restoreAll = async (g) => {
        try { done(await post('/trash/restore-group', { folder: g.folder, group: g.key })); loadTrash(); } catch (err) { toast(err.message, 'bad'); }
      };
      // A deleted file's last version, shown below the list.
      const trashPreview = h('div', { class: 'preview', id: 'trash-preview', 'aria-live': 'polite' });
      const preview = (t) => showPreview(trashPreview, t.folder, { path: t.path, rev: t.last_rev, label: `${t.path} as it was deleted (${fmtTime(t.last_at)})` })
        .then(() => trashPreview.scrollIntoView({ block: 'nearest' }));
      mount(trashBox, h('ul', { class: 'rows trash' }, groupTrash(list).map((g) => {
        const rows = g.tops.map((t) => trashRow(t, restore, restoreAs, preview));
        if (g.items.length === 1) return rows;
        const what = `${g.items.length} items deleted on ${g.device} at ${fmtTime(g.at)}`;
        return h('li', { class: 'trash-group', 'data-group': g.key },
          h('div', { class: 'group-head' },
            h('p', { class: 'strong' }, what),
            h('button', { type: 'button', class: 'button secondary', 'aria-label': `Restore all ${what}`, onclick: () => restoreAll(g) }, 'Restore all')),
          h('ul', { class: 'rows' }, rows));
      })), trashPreview);
    } catch (err) { if (mine === trashAsked) mount(trashBox, h('p', { class: 'notice notice-bad', role: 'alert' }, err.message)); }
  };

  const showVersions = async (path) => {
    mount(versionsBox, h('p', { class: 'muted' }, `Loading the versions of ${path}…`));
    try {
      const r = await get(`/history?folder=${enc()}&path=${encodeURIComponent(path)}`);
      if (!alive) return;
      const restore = async (v, to) => {
        try { done(await post('/restore', { folder, path, rev: v.rev, to })); showVersions(path); } catch (err) { toast(err.message, 'bad'); }
      };
      const current = r.versions[0];
      const previewBox = h('div', { class: 'preview', id: 'preview', 'aria-live': 'polite' });
      const fileUrl = (v) => `/api/file?${new URLSearchParams({ folder, path, rev: v.rev, download: 1 })}`;
      // An old version beside the current one, its differences marked; the current one alone.
      const preview = (v, when) => {
        const label = v.current ? `Current version (${when})` : `Version of ${when}`;
        const other = !v.current && current && !current.deleted && current.kind === 'file'
          ? { path, rev: current.rev, label: `Current version (${fmtTime(current.committed_at)})` } : null;
        showPreview(previewBox, folder, { path, rev: v.rev, label }, other)
          .then(() => previewBox.scrollIntoView({ block: 'nearest' }));
      };
      mount(versionsBox, h('section', { class: 'card', 'aria-labelledby': 'versions-title' },
        h('h2', { id: 'versions-title' }, `Versions of ${path}`),
        h('ol', { class: 'rows' }, r.versions.map((v) => {
          const when = fmtTime(v.committed_at);
          const file = !v.deleted && v.kind === 'file';
          return h('li', { class: 'row-item', 'data-rev': v.rev },
            h('div', { class: 'grow' },
              h('p', { class: 'strong version-time' }, when,
                v.current ? h('span', { class: 'badge badge-ok' }, 'Current') : null,
                v.deleted ? h('span', { class: 'badge badge-bad' }, 'Deleted') : null),
              h('p', { class: 'muted small' }, `${fmtAgo(v.committed_at)} · from ${v.device}${v.size !== null && v.kind === 'file' ? ` · ${fmtBytes(v.size)}` : ''}`)),
            h('div', { class: 'row wrap-row' },
              file ? h('button', { type: 'button', class: 'button secondary', 'aria-label': `Preview the version of ${when}`, onclick: () => preview(v, when) }, 'Preview') : null,
              file ? downloadLink(fileUrl(v), `Download the version of ${when}`) : null,
              !v.current && !v.deleted ? h('button', { type: 'button', class: 'button', 'aria-label': `Restore the version of ${when}`, onclick: () => restore(v) }, 'Restore') : null,
              !v.current && !v.deleted ? h('button', { type: 'button', class: 'button secondary', 'aria-label': `Restore the version of ${when} under a new name`,
                onclick: () => restoreAs(path, (to) => restore(v, to)) }, 'Restore as…') : null));
        })),
        previewBox));
      versionsBox.querySelector('h2').scrollIntoView({ block: 'nearest' });
    } catch (err) { mount(versionsBox, h('p', { class: 'notice notice-bad', role: 'alert' }, err.message)); }
  };

  let timer = null;
  let asked = 0;
  const loadFiles = async () => {
    if (!folder) return;
    const mine = ++asked; // an older, slower answer must not replace a newer one
    try {
      const r = await get(`/folders/${enc()}/files?q=${encodeURIComponent(search.value)}`);
      if (!alive || mine !== asked) return;
      const files = r.files.filter((f) => !f.is_dir);
      mount(fileList, files.length
        ? h('ul', { class: 'files' }, files.map((f) => h('li', {},
          h('button', { type: 'button', class: 'dir', onclick: () => showVersions(f.path) },
            h('code', {}, f.path), h('span', { class: 'muted small' }, ` ${fmtBytes(f.size)} · ${fmtTime(f.committed_at)}`)))))
        : h('p', { class: 'muted' }, search.value ? 'No file matches.' : 'No files yet.'),
      r.more ? h('p', { class: 'muted small' }, 'More files match; type more of the name.') : null);
    } catch (err) { mount(fileList, h('p', { class: 'notice notice-bad' }, err.message)); }
  };
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(loadFiles, 150); });
  select.addEventListener('change', () => { folder = select.value; mount(versionsBox); loadTrash(); loadFiles(); });

  mount(main, heading('History and trash'),
    h('div', { class: 'field' }, h('label', { for: 'folder' }, 'Folder'), select),
    h('section', { class: 'card', 'aria-labelledby': 'trash-title' }, h('h2', { id: 'trash-title' }, 'Deleted files'),
      h('p', { class: 'help' }, 'The server keeps deleted files for its retention period. A restored file comes back on every computer.'),
      trashBox),
    h('section', { class: 'card', 'aria-labelledby': 'files-title' }, h('h2', { id: 'files-title' }, 'Earlier versions of a file'),
      h('div', { class: 'field' }, h('label', { for: 'file-q' }, 'Find a file'), search),
      fileList),
    versionsBox);
  loadTrash();
  loadFiles();
  // The trash follows the server: a deletion or a restore from another computer shows up —
  // but not while the person is inside the list (focus or an opened box would be lost).
  const serverRev = (s) => (s.folders.find((f) => f.name === folder) || {}).server_rev;
  seenRev = serverRev(store.status);
  const off = store.onStatus((s) => {
    const rev = serverRev(s);
    if (rev === seenRev) return;
    if (busyInTrash()) return;
    seenRev = rev;
    loadTrash({ refresh: true });
  });
  return () => { alive = false; clearTimeout(timer); off(); };
}
