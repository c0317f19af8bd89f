// Adding a folder — a local folder picked with the agent's directory browser, a server folder
// (an existing one or a new one), the direction, and a summary before confirming — and one
// folder's page (state, settings, revert for a one-way folder, unlink).

import { h, mount, patch, heading, field, formError, clearErrors, showError, toast, confirmDialog, fmtBytes, fmtAgo } from './dom.js';
import { get, post, del, api } from './api.js';
import { route } from './app.js';
import { summaryLine, runAction, keptNotice, ticking } from './dashboard.js';
import { settingsForm } from './settings.js';

export function addFolderScreen(main) {
  const choice = { path: null, name: '', existing: null, settings: null };
  let alive = true;

  const browser = h('div', { class: 'browser' });
  const pathInput = h('input', { id: 'path', name: 'path', type: 'text', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'path-help path-error' });
  /// Lists `path`; `pick`: also choose it. The first listing (the home directory) only shows
  /// where to look: the home directory itself is never chosen for the person.
  const browse = async (path, pick = true) => {
    try {
      const l = await get(`/browse${path ? `?path=${encodeURIComponent(path)}` : ''}`);
      if (!alive) return;
      if (pick) {
        pathInput.value = l.path;
        choice.path = l.path;
        const base = l.path.split(/[\\/]/).filter(Boolean).pop() || '';
        const nameInput = document.getElementById('new-name');
        if (nameInput && !nameInput.dataset.touched) nameInput.value = base;
      }
      const mark = (e) => {
        if (e.synced_as) return h('span', { class: 'mark' }, `Synced as ${e.synced_as}`);
        if (e.contains_synced.length) return h('span', { class: 'mark inside' }, `Holds synced ${e.contains_synced.join(', ')}`);
        return null;
      };
      mount(browser,
        h('div', { class: 'browser-bar' },
          h('button', { type: 'button', class: 'button secondary small', disabled: !l.parent, onclick: () => browse(l.parent) }, '↑ Up'),
          h('button', { type: 'button', class: 'button secondary small', onclick: () => browse(l.home) }, 'Home'),
          h('span', { class: 'muted browser-where' }, l.entries.length ? `${l.entries.length} folders in ` : 'No folders in ', h('code', {}, l.path))),
        pick && l.inside_synced ? h('p', { class: 'notice notice-warn browser-note' },
          `This folder is already synced, as ${l.inside_synced} or inside it: choose another one.`) : null,
        h('ul', { class: 'dirs', 'aria-label': `Folders in ${l.path}` }, l.entries.map((e) =>
          h('li', {}, h('button', { type: 'button', class: 'dir', onclick: () => browse(e.path), 'data-synced': e.synced_as ? 'yes' : null },
            h('span', { 'aria-hidden': 'true', class: 'dir-icon' }), e.name, mark(e))))));
    } catch (err) {
      showError(form, 'path', err.message);
    }
  };

  const serverList = h('div', { class: 'server-folders' }, h('p', { class: 'muted' }, 'Loading the server\'s folders…'));
  const loadServerFolders = async () => {
    try {
      const list = await get('/server-folders');
      if (!alive) return;
      // The folders your other computers already sync come first, and the first is chosen:
      // a second computer joins them rather than starting a new one.
      const options = list.filter((f) => !f.linked);
      const about = (f) => {
        const who = f.computers.length
          ? `on ${f.computers.length === 1 ? '1 other computer' : `${f.computers.length} other computers`} (${f.computers.join(', ')})`
          : null;
        const files = `${f.files.toLocaleString()}${f.more ? '+' : ''} ${f.files === 1 && !f.more ? 'file' : 'files'}`;
        return ` — ${[who, files].filter(Boolean).join(' · ')}`;
      };
      mount(serverList,
        h('fieldset', { class: 'choice' },
          h('legend', {}, 'Server folder'),
          options.length ? h('p', { class: 'help' }, 'Your other computers already sync these. Choose one to get its files here too.') : null,
          options.map((f, i) => h('div', { class: 'check' },
            h('input', { type: 'radio', name: 'target', id: `target-${f.id}`, value: f.name, checked: i === 0 }),
            h('label', { for: `target-${f.id}` }, h('strong', {}, f.name), h('span', { class: 'muted' }, about(f))))),
          h('div', { class: 'check' },
            h('input', { type: 'radio', name: 'target', id: 'target-new', value: '', checked: !options.length }),
            h('label', { for: 'target-new' }, 'A new folder on the server')),
          field({ id: 'new-name', label: 'Name of the new server folder', help: 'Computers that use the same server folder share its files.' })));
      const nameInput = document.getElementById('new-name');
      nameInput.value = (choice.path || '').split(/[\\/]/).filter(Boolean).pop() || '';
      nameInput.addEventListener('input', () => { nameInput.dataset.touched = '1'; });
      const syncName = () => {
        nameInput.disabled = !document.getElementById('target-new').checked;
        nameInput.closest('.field').hidden = nameInput.disabled;
      };
      for (const r of serverList.querySelectorAll('input[name=target]')) r.addEventListener('change', syncName);
      syncName();
    } catch (err) {
      mount(serverList, h('p', { class: 'notice notice-warn' }, `The server's folders could not be listed: ${err.message}`),
        field({ id: 'new-name', label: 'Server folder name' }));
    }
  };

  const settings = settingsForm(null, { full: false });
  const form = h('form', { class: 'card', novalidate: true },
    h('div', { class: 'field', 'data-field': 'path' },
      h('label', { for: 'path' }, 'Folder on this computer'),
      h('div', { class: 'row' }, pathInput,
        h('button', { type: 'button', class: 'button secondary', onclick: () => browse(pathInput.value) }, 'Go')),
      h('p', { class: 'help', id: 'path-help' }, 'Pick a folder below, or type its path.'),
      h('p', { class: 'error', id: 'path-error', hidden: true })),
    browser,
    serverList,
    settings.element,
    formError(),
    h('div', { class: 'actions' },
      h('a', { class: 'button secondary', href: '#/' }, 'Cancel'),
      h('button', { class: 'button', type: 'submit' }, 'Review')));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(form);
    const path = pathInput.value.trim();
    if (!path) { showError(form, 'path', 'Choose a folder on this computer: open one in the list below, or type its path.'); return; }
    const target = form.querySelector('input[name=target]:checked');
    const name = target && target.value ? target.value : (document.getElementById('new-name') || {}).value || '';
    if (!name.trim()) { showError(form, 'new-name', 'Name the server folder.'); return; }
    const s = settings.read(form);
    if (!s.ok) return;
    choice.path = path; choice.name = name.trim(); choice.existing = !!(target && target.value); choice.settings = s.value;
    review();
  });

  const review = async () => {
    // Checked before anything is shown as ready: a folder inside or around a synced one,
    // or a name in use, is said here, where the person decides.
    let problem = null;
    try {
      const ok = await post('/folder-check', { path: choice.path, name: choice.name, changes: choice.settings });
      choice.path = ok.path;
    } catch (err) { problem = err.message; }
    if (!alive) return;
    const summary = h('section', { class: 'card', 'aria-labelledby': 'review-title' },
      h('h2', { id: 'review-title', tabindex: '-1' }, 'Check before adding'),
      h('dl', { class: 'summary' },
        h('dt', {}, 'Folder on this computer'), h('dd', {}, h('code', {}, choice.path)),
        h('dt', {}, 'Server folder'), h('dd', {}, choice.name, choice.existing ? ' (existing — its files will be downloaded here)' : ' (new)'),
        settings.describe(choice.settings).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      problem ? h('p', { class: 'notice notice-bad', role: 'alert', id: 'review-problem' }, h('strong', {}, 'This folder cannot be added: '), /[.!?]$/.test(problem) ? problem : `${problem}.`)
        : h('p', { class: 'muted' }, 'Files already in the folder stay and are uploaded; files on the server are added here. Nothing is deleted.'),
      formError(),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button secondary', onclick: () => { summary.remove(); form.hidden = false; } }, problem ? 'Choose another folder' : 'Change'),
        problem ? null : h('button', { type: 'button', class: 'button', id: 'confirm-add', onclick: async () => {
          try {
            await post('/folders', { path: choice.path, name: choice.name, changes: choice.settings });
            toast(`Added ${choice.name}. The first sync starts in a moment.`);
            location.hash = '#/';
          } catch (err) {
            summary.remove(); form.hidden = false;
            showError(form, err.field === 'name' ? 'new-name' : err.field, err.message);
          }
        } }, 'Add folder')));
    form.hidden = true;
    main.appendChild(summary);
    summary.querySelector('h2').focus();
  };

  mount(main, heading('Add a folder'), form);
  browse(null, false).then(loadServerFolders);
  return () => { alive = false; };
}

export function folderScreen(main, store, name) {
  let alive = true;
  const enc = encodeURIComponent(name);
  // Patched in place on every status; the app's announcer says what changed.
  const live = h('div', { class: 'live' });
  live.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (b) runAction(b);
  });
  const pauseButton = h('button', { type: 'button', class: 'button secondary', id: 'pause-toggle' });
  const render = (s) => {
    const f = s.folders.find((x) => x.name === name);
    if (!f) { mount(live, h('p', {}, `There is no folder named ${name} on this computer. `, h('a', { href: '#/' }, 'Back to the dashboard'))); return; }
    patch(live,
      summaryLine(f.summary, f.name),
      h('p', { 'data-key': 'path' }, h('code', { class: 'wrap' }, f.path)),
      f.state === 'error' && f.last_error ? h('p', { class: 'notice notice-bad', 'data-key': 'error' }, f.last_error) : null,
      f.paused_reason ? h('p', { class: 'notice notice-warn', 'data-key': 'paused' }, f.paused_reason) : null,
      keptNotice(f),
      h('p', { class: 'muted', 'data-key': 'counts' }, `${f.files.toLocaleString()} files · ${fmtBytes(f.bytes)} · last sync ${fmtAgo(f.last_sync)}`),
      f.guard_tripped ? h('div', { class: 'actions', 'data-key': 'guard' },
        h('button', { type: 'button', class: 'button danger', 'data-action': 'confirm-deletes', 'data-folder': name }, 'Confirm the deletions…')) : null);
    const paused = !!f.settings.paused;
    pauseButton.textContent = paused ? 'Resume syncing' : 'Pause syncing';
    pauseButton.dataset.paused = paused ? '1' : '';
  };
  pauseButton.addEventListener('click', async () => {
    const paused = !pauseButton.dataset.paused;
    try {
      await post(`/folders/${enc}/pause`, { paused });
      toast(paused ? `Paused ${name}; nothing syncs until you resume it.` : `Resumed ${name}.`);
      store.set(await get('/status'));
    } catch (err) { toast(err.message, 'bad'); }
  });

  const f = store.status.folders.find((x) => x.name === name);
  const settings = settingsForm(f ? f.settings : null);
  const settingsCard = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'settings-title' },
    h('h2', { id: 'settings-title' }, 'Settings'),
    settings.element,
    formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Save settings')));
  settingsCard.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(settingsCard);
    const { value } = settings.read();
    if (!value.length) { toast('Nothing changed.'); return; }
    try {
      const r = await api('PUT', `/folders/${enc}/settings`, { changes: value });
      toast(`Saved. ${r.messages.join(' ')}`);
      store.set(await get('/status'));
      route();
    } catch (err) { showError(settingsCard, err.field, err.message); }
  });

  // Selective sync: every subfolder with a checkbox; unticked ones stay off this computer.
  const tree = h('div', { class: 'tree' }, h('p', { class: 'muted' }, 'Loading the subfolders…'));
  const selectiveCard = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'selective-title' },
    h('h2', { id: 'selective-title' }, 'Subfolders on this computer'),
    h('p', { class: 'help' }, 'Untick a subfolder to keep it on the server and your other computers only. Its copy here is removed once everything in it is safely on the server.'),
    tree, formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Save subfolders')));
  let excluded = [];
  const loadTree = async () => {
    try {
      const r = await get(`/folders/${enc}/subfolders`);
      if (!alive) return;
      excluded = r.excluded.map((e) => e.replace(/^\/+|\/+$/g, ''));
      if (!r.subfolders.length) { mount(tree, h('p', { class: 'muted' }, 'This folder has no subfolders yet.')); return; }
      const covered = (p) => excluded.some((e) => p === e || p.startsWith(`${e}/`));
      mount(tree, h('ul', { class: 'subfolders' }, r.subfolders.map((p, i) => {
        const depth = p.split('/').length - 1;
        const id = `sub-${i}`;
        return h('li', { class: `check depth-${Math.min(depth, 3)}` },
          h('input', { type: 'checkbox', id, 'data-path': p, checked: !covered(p) }),
          h('label', { for: id }, p.split('/').pop(), depth ? h('span', { class: 'muted small' }, `  ${p}`) : null));
      })));
      for (const box of tree.querySelectorAll('input[type=checkbox]')) {
        box.addEventListener('change', () => {
          // A subfolder follows its parent.
          for (const other of tree.querySelectorAll('input[type=checkbox]')) {
            if (other.dataset.path.startsWith(`${box.dataset.path}/`)) { other.checked = box.checked; other.disabled = !box.checked; }
          }
        });
        if (!box.checked) for (const other of tree.querySelectorAll('input[type=checkbox]')) {
          if (other.dataset.path.startsWith(`${box.dataset.path}/`)) other.disabled = true;
        }
      }
    } catch (err) { mount(tree, h('p', { class: 'notice notice-bad' }, err.message)); }
  };
  selectiveCard.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(selectiveCard);
    const boxes = [...tree.querySelectorAll('input[type=checkbox]')];
    const unticked = boxes.filter((b) => !b.checked).map((b) => b.dataset.path);
    // Only the top-most unticked folder of each branch is excluded.
    const wanted = unticked.filter((p) => !unticked.some((q) => p !== q && p.startsWith(`${q}/`)));
    const changes = [
      ...excluded.filter((p) => !wanted.includes(p)).map((p) => ['include', p]),
      ...wanted.filter((p) => !excluded.includes(p)).map((p) => ['exclude', p]),
    ];
    if (!changes.length) { toast('Nothing changed.'); return; }
    try {
      const r = await api('PUT', `/folders/${enc}/settings`, { changes });
      toast(r.messages.join(' '));
      loadTree();
    } catch (err) { showError(selectiveCard, null, err.message); }
  });

  // Ignore rules: .filesyncignore, with a preview of what the rules leave out.
  const rules = h('textarea', { id: 'ignore-rules', name: 'ignore-rules', rows: 6, spellcheck: 'false', 'aria-describedby': 'ignore-help ignore-rules-error' });
  const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
  const ignoreCard = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'ignore-title' },
    h('h2', { id: 'ignore-title' }, 'Ignore rules'),
    h('div', { class: 'field', 'data-field': 'ignore-rules' },
      h('label', { for: 'ignore-rules' }, 'Files and folders not to sync (.filesyncignore)'),
      rules,
      h('p', { class: 'help', id: 'ignore-help' }, 'One pattern a line, like .gitignore: *.tmp, build/, !keep.tmp. The file syncs to your other computers too. Always ignored: system junk such as .DS_Store, Thumbs.db, editor swap files.'),
      h('p', { class: 'error', id: 'ignore-rules-error', hidden: true })),
    preview, formError(),
    h('div', { class: 'actions' },
      h('button', { class: 'button secondary', type: 'button', id: 'ignore-preview', onclick: async () => {
        try {
          const r = await post(`/folders/${enc}/ignore/preview`, { text: rules.value });
          mount(preview, r.paths.length
            ? [h('p', {}, h('strong', {}, `${r.paths.length}${r.more ? '+' : ''} ${r.paths.length === 1 ? 'item' : 'items'} would not sync:`)),
              h('ul', { class: 'preview-list' }, r.paths.map((p) => h('li', {}, h('code', {}, p.path + (p.is_dir ? '/' : '')))))]
            : h('p', { class: 'muted' }, 'These rules leave nothing out.'));
        } catch (err) { showError(ignoreCard, 'ignore-rules', err.message); }
      } }, 'Preview'),
      h('button', { class: 'button', type: 'submit' }, 'Save rules')));
  ignoreCard.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(ignoreCard);
    try { await api('PUT', `/folders/${enc}/ignore`, { text: rules.value }); toast('Ignore rules saved; they apply from the next sync.'); } catch (err) { showError(ignoreCard, 'ignore-rules', err.message); }
  });
  get(`/folders/${enc}/ignore`).then((r) => { if (alive) rules.value = r.text; }).catch(() => {});

  // Revert, for a one-way folder: make the receiving side equal to the sending one, after a
  // preview of what changes (the CLI's `folder revert`).
  const direction = f ? f.settings.direction : 'two-way';
  const revert = async () => {
    let p;
    try { p = await get(`/folders/${enc}/revert`); } catch (err) { toast(err.message, 'bad'); return; }
    if (!p.changes.length) { toast(`${name} already matches; there is nothing to revert.`); return; }
    const ok = await confirmDialog({ title: `Revert ${name}?`, danger: true, confirm: 'Revert',
      message: `This will ${p.effect}: ${p.changes.join('; ')}.` });
    if (!ok) return;
    try { await post(`/folders/${enc}/revert`); toast(`Reverting ${name} now.`); } catch (err) { toast(err.message, 'bad'); }
  };
  const revertCard = direction === 'two-way' ? null : h('section', { class: 'card', 'aria-labelledby': 'revert-title' },
    h('h2', { id: 'revert-title' }, 'Revert'),
    h('p', {}, direction === 'download-only'
      ? "This computer only receives. Revert makes it equal to the server: your edits here are replaced by the server's version, and files that are only here are removed."
      : 'This computer only sends. Revert makes the server equal to this computer: changes made elsewhere are overwritten, and files not here are deleted on the server (its history keeps them).'),
    h('button', { type: 'button', class: 'button danger', onclick: revert }, 'Revert…'));

  const unlink = async () => {
    const ok = await confirmDialog({ title: `Unlink ${name}?`, danger: true, confirm: 'Unlink',
      message: 'The folder stops syncing on this computer. Its files stay here and on the server; nothing is deleted.' });
    if (!ok) return;
    try { await del(`/folders/${enc}`); toast(`Unlinked ${name}.`); location.hash = '#/'; } catch (err) { toast(err.message, 'bad'); }
  };
  mount(main,
    h('div', { class: 'screen-head' }, heading(name), h('div', { class: 'row' }, pauseButton,
      h('a', { class: 'button secondary', href: `#/history?folder=${enc}` }, 'History and trash'))),
    live, settingsCard, revertCard, selectiveCard, ignoreCard,
    h('section', { class: 'card', 'aria-labelledby': 'unlink-title' }, h('h2', { id: 'unlink-title' }, 'Unlink'),
      h('p', {}, 'Stop syncing this folder on this computer. Files stay where they are.'),
      h('button', { type: 'button', class: 'button danger', onclick: unlink }, 'Unlink folder…')));
  render(store.status);
  loadTree();
  const off = store.onStatus(render);
  const tick = setInterval(() => { if (ticking(store.status)) render(store.status); }, 1000);
  return () => { alive = false; off(); clearInterval(tick); };
}
