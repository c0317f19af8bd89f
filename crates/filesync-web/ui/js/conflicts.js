// Conflict copies, each with both versions' real file names, device, local time and size;
// keep mine, theirs, or both.

import { h, mount, heading, toast, fmtBytes, fmtTime } from './dom.js';
import { get, post } from './api.js';
import { showPreview } from './preview.js';

function version(what, name, device, when, size, tag) {
  return h('div', { class: 'version' },
    h('p', { class: 'muted small' }, what),
    h('h3', {}, h('code', { class: 'wrap file-name' }, name), tag ? h('span', { class: 'badge badge-ok' }, tag) : null),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'From'), h('dd', {}, device || 'unknown')),
      h('div', {}, h('dt', {}, 'When'), h('dd', {}, when || 'unknown')),
      h('div', {}, h('dt', {}, 'Size'), h('dd', {}, size === null ? 'not here yet' : fmtBytes(size)))));
}

/// A conflict copy's time ("2026-11-24 23:52:06 UTC", as in its name) in local time.
function localFromUtc(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC$/.exec(text || '');
  return m ? fmtTime(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000) : text;
}

export function conflictsScreen(main, store) {
  let alive = true;
  const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Looking for conflicts…'));
  const resolve = async (c, keep) => {
    try {
      const r = await post('/conflicts/resolve', { folder: c.folder, copy: c.copy, keep });
      toast(r.message);
      load();
    } catch (err) { toast(err.message, 'bad'); }
  };
  // A refresh keeps the items that did not change as they are (an opened comparison stays
  // open), redraws nothing when nothing changed, and an older, slower answer never replaces a
  // newer one.
  let shown = new Map(); // folder and copy → { key, el }
  let shownKeys = null;
  let asked = 0;
  const load = async () => {
    const mine = ++asked;
    try {
      const list = await get('/conflicts');
      if (!alive || mine !== asked) return;
      const keys = list.map((c) => JSON.stringify(c));
      if (shownKeys !== null && keys.join('\n') === shownKeys) return;
      shownKeys = keys.join('\n');
      if (!list.length) {
        shown = new Map();
        mount(body, h('div', { class: 'card empty' }, h('h2', {}, 'No conflicts'),
          h('p', {}, 'When two computers change the same file at once, both versions are kept and shown here.')));
        return;
      }
      const next = new Map();
      const items = list.map((c, i) => {
        const id = `${c.folder}\n${c.copy}`;
        const kept = shown.get(id);
        const el = kept && kept.key === keys[i] ? kept.el : item(c);
        next.set(id, { key: keys[i], el });
        return el;
      });
      shown = next;
      mount(body, h('ul', { class: 'conflicts' }, items));
    } catch (err) {
      if (mine !== asked) return;
      shown = new Map();
      shownKeys = null;
      mount(body, h('p', { class: 'notice notice-bad', role: 'alert' }, err.message));
    }
  };
  const item = (c) => {
    const copyMine = c.mine === 'copy';
    const origMine = c.mine === 'original';
    const orig = version('The file', c.original, c.original_device, c.original_time ? fmtTime(c.original_time) : null, c.original_size, origMine ? 'Mine' : (copyMine ? 'Theirs' : null));
    const copy = version('The conflict copy beside it', c.copy, c.copy_device, localFromUtc(c.copy_time), c.copy_size, copyMine ? 'Mine' : (origMine ? 'Theirs' : null));
    const buttons = c.mine
      ? [
        h('button', { type: 'button', class: 'button', onclick: () => resolve(c, 'mine') }, 'Keep mine'),
        h('button', { type: 'button', class: 'button', onclick: () => resolve(c, 'theirs') }, 'Keep theirs'),
        h('button', { type: 'button', class: 'button secondary', onclick: () => resolve(c, 'both') }, 'Keep both')]
      : [
        h('button', { type: 'button', class: 'button', onclick: () => resolve(c, 'original') }, `Keep ${c.original_device || 'the original'}'s`),
        h('button', { type: 'button', class: 'button', onclick: () => resolve(c, 'copy') }, `Keep ${c.copy_device}'s`),
        h('button', { type: 'button', class: 'button secondary', onclick: () => resolve(c, 'both') }, 'Keep both')];
    // Both sides as they are on this computer, beside each other.
    const previewBox = h('div', { class: 'preview', 'aria-live': 'polite' });
    const compare = () => showPreview(previewBox, c.folder,
      { path: c.original, label: `${c.original} (${c.original_device || 'the file'})` },
      { path: c.copy, label: `Conflict copy (${c.copy_device})` });
    return h('li', { class: 'card conflict', 'data-copy': c.copy },
      h('h2', {}, c.original, h('span', { class: 'muted small' }, ` in ${c.folder}`)),
      h('div', { class: 'versions' }, orig, copy),
      c.copy_here ? h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button secondary', 'aria-label': `Compare both versions of ${c.original}`, onclick: compare }, 'Compare both')) : null,
      previewBox,
      c.copy_here ? h('div', { class: 'actions' }, buttons)
        : h('p', { class: 'muted' }, 'The conflict copy is still on its way to this computer; resolve it once it arrives.'));
  };
  mount(main, heading('Conflicts'), body);
  load();
  // The list follows the agent: a copy arriving or a resolution reaching the server.
  let seen = store.status.totals.conflicts;
  const off = store.onStatus((s) => { if (s.totals.conflicts !== seen) { seen = s.totals.conflicts; load(); } });
  return () => { alive = false; off(); };
}
