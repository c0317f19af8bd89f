// Adding a folder — a local folder picked with the agent's directory browser, a server folder
// (an existing one or a new one), the direction, and a summary before confirming — and one
// folder's page (state, settings, unlink).

import { h, mount, heading, field, formError, clearErrors, showError, toast, confirmDialog, fmtBytes, fmtAgo } from './dom.js';
import { get, post, del, api } from './api.js';
import { stateBadge } from './dashboard.js';
import { settingsForm } from './settings.js';

export function addFolderScreen(main) {
  const choice = { path: null, name: '', existing: null, settings: null };
  let alive = true;

  const browser = h('div', { class: 'browser' });
  const pathInput = h('input', { id: 'path', name: 'path', type: 'text', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'path-help path-error' });
  const browse = async (path) => {
    try {
      const l = await get(`/browse${path ? `?path=${encodeURIComponent(path)}` : ''}`);
      if (!alive) return;
      pathInput.value = l.path;
      choice.path = l.path;
      const base = l.path.split(/[\\/]/).filter(Boolean).pop() || '';
      const nameInput = document.getElementById('new-name');
      if (nameInput && !nameInput.dataset.touched) nameInput.value = base;
      mount(browser,
        h('div', { class: 'browser-bar' },
          h('button', { type: 'button', class: 'button secondary small', disabled: !l.parent, onclick: () => browse(l.parent) }, '↑ Up'),
          h('button', { type: 'button', class: 'button secondary small', onclick: () => browse(l.home) }, 'Home'),
          h('span', { class: 'muted' }, l.entries.length ? `${l.entries.length} folders inside` : 'No folders inside')),
        h('ul', { class: 'dirs', 'aria-label': `Folders in ${l.path}` }, l.entries.map((e) =>
          h('li', {}, h('button', { type: 'button', class: 'dir', onclick: () => browse(e.path) },
            h('span', { 'aria-hidden': 'true', class: 'dir-icon' }, '📁'), e.name)))));
    } catch (err) {
      showError(form, 'path', err.message);
    }
  };

  const serverList = h('div', { class: 'server-folders' }, h('p', { class: 'muted' }, 'Loading the server\'s folders…'));
  const loadServerFolders = async () => {
    try {
      const list = await get('/server-folders');
      if (!alive) return;
      const options = list.filter((f) => !f.linked);
      mount(serverList,
        h('fieldset', { class: 'choice' },
          h('legend', {}, 'Server folder'),
          h('div', { class: 'check' },
            h('input', { type: 'radio', name: 'target', id: 'target-new', value: '', checked: true }),
            h('label', { for: 'target-new' }, 'A new folder on the server')),
          field({ id: 'new-name', label: 'Name of the new server folder', help: 'Computers that use the same server folder share its files.' }),
          options.map((f) => h('div', { class: 'check' },
            h('input', { type: 'radio', name: 'target', id: `target-${f.id}`, value: f.name }),
            h('label', { for: `target-${f.id}` }, `Existing: ${f.name}`)))));
      const nameInput = document.getElementById('new-name');
      nameInput.value = (choice.path || '').split(/[\\/]/).filter(Boolean).pop() || '';
      nameInput.addEventListener('input', () => { nameInput.dataset.touched = '1'; });
      for (const r of serverList.querySelectorAll('input[name=target]')) {
        r.addEventListener('change', () => { nameInput.disabled = !document.getElementById('target-new').checked; });
      }
    } catch (err) {
      mount(serverList, h('p', { class: 'notice notice-warn' }, `The server's folders could not be listed: ${err.message}`),
        field({ id: 'new-name', label: 'Server folder name' }));
    }
  };

  const settings = settingsForm(null);
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
    if (!path) { showError(form, 'path', 'Choose a folder.'); return; }
    const target = form.querySelector('input[name=target]:checked');
    const name = target && target.value ? target.value : (document.getElementById('new-name') || {}).value || '';
    if (!name.trim()) { showError(form, 'new-name', 'Name the server folder.'); return; }
    const s = settings.read(form);
    if (!s.ok) return;
    choice.path = path; choice.name = name.trim(); choice.existing = !!(target && target.value); choice.settings = s.value;
    review();
  });

  const review = () => {
    const summary = h('section', { class: 'card', 'aria-labelledby': 'review-title' },
      h('h2', { id: 'review-title', tabindex: '-1' }, 'Check before adding'),
      h('dl', { class: 'summary' },
        h('dt', {}, 'Folder on this computer'), h('dd', {}, h('code', {}, choice.path)),
        h('dt', {}, 'Server folder'), h('dd', {}, choice.name, choice.existing ? ' (existing — its files will be downloaded here)' : ' (new)'),
        settings.describe(choice.settings).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('p', { class: 'muted' }, 'Files already in the folder stay and are uploaded; files on the server are added here. Nothing is deleted.'),
      formError(),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button secondary', onclick: () => { summary.remove(); form.hidden = false; } }, 'Change'),
        h('button', { type: 'button', class: 'button', id: 'confirm-add', onclick: async () => {
          try {
            await post('/folders', { path: choice.path, name: choice.name, settings: choice.settings });
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
  browse(null).then(loadServerFolders);
  return () => { alive = false; };
}

export function folderScreen(main, store, name) {
  const body = h('div');
  const render = (s) => {
    const f = s.folders.find((x) => x.name === name);
    if (!f) { mount(body, h('p', {}, `There is no folder named ${name} on this computer. `, h('a', { href: '#/' }, 'Back to the dashboard'))); return; }
    mount(body.querySelector('.live') || body.appendChild(h('div', { class: 'live' })),
      h('p', {}, stateBadge(f.state), ' ', h('code', {}, f.path)),
      f.last_error ? h('p', { class: 'notice notice-bad' }, f.last_error) : null,
      f.paused_reason ? h('p', { class: 'notice notice-warn' }, f.paused_reason) : null,
      h('p', { class: 'muted' }, `${f.files.toLocaleString()} files · ${fmtBytes(f.bytes)} · last sync ${fmtAgo(f.last_sync)}`));
  };
  const unlink = async () => {
    const ok = await confirmDialog({ title: `Unlink ${name}?`, danger: true, confirm: 'Unlink',
      message: 'The folder stops syncing on this computer. Its files stay here and on the server; nothing is deleted.' });
    if (!ok) return;
    try { await del(`/folders/${encodeURIComponent(name)}`); toast(`Unlinked ${name}.`); location.hash = '#/'; } catch (err) { toast(err.message, 'bad'); }
  };
  const f = store.status.folders.find((x) => x.name === name);
  const settings = f ? settingsForm(f.settings) : null;
  const form = settings ? h('form', { class: 'card', novalidate: true },
    h('h2', {}, 'Settings'),
    settings.element,
    formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Save settings'))) : null;
  if (form) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const s = settings.read(form);
      if (!s.ok) return;
      try {
        await api('PUT', `/folders/${encodeURIComponent(name)}/settings`, s.value);
        toast('Settings saved; the agent applies them right away.');
      } catch (err) { showError(form, err.field, err.message); }
    });
  }
  mount(main, heading(name), body, form,
    h('section', { class: 'card' }, h('h2', {}, 'Unlink'),
      h('p', {}, 'Stop syncing this folder on this computer. Files stay where they are.'),
      h('button', { type: 'button', class: 'button danger', onclick: unlink }, 'Unlink folder…')));
  render(store.status);
  return store.onStatus(render);
}
