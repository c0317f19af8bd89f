// Previews of a file's old versions and of both sides of a conflict: text beside text with the
// differences marked (the agent computes the rows), images as thumbnails, a download link for
// each side, and a plain sentence when there is nothing to show (not text, or too large). Text
// from the files is only ever set as text, never parsed as markup; images are same-origin
// URLs the agent serves as images only.

import { h, mount, fmtBytes } from './dom.js';
import { get } from './api.js';

/// A download link for one side (`label` says which, for screen readers).
export function downloadLink(href, label, small = false) {
  return h('a', { class: small ? 'button secondary small' : 'button secondary', href, download: '', 'aria-label': label }, 'Download');
}

function query(folder, a, b) {
  const p = new URLSearchParams({ folder, a: a.path });
  if (a.rev !== undefined && a.rev !== null) p.set('a_rev', a.rev);
  if (b) {
    p.set('b', b.path);
    if (b.rev !== undefined && b.rev !== null) p.set('b_rev', b.rev);
  }
  return `/compare?${p}`;
}

function sideHead(side, label) {
  return h('div', { class: 'preview-head' },
    h('p', { class: 'strong' }, label),
    h('p', { class: 'muted small' }, h('code', { class: 'wrap' }, side.name), ` · ${fmtBytes(side.size)}`),
    downloadLink(side.download_url, `Download ${label}`, true));
}

function nothingToShow(side) {
  return h('p', { class: 'notice preview-none' }, side.kind === 'too_large'
    ? `Too large to preview (${fmtBytes(side.size)}). Download it to open it.`
    : 'No preview: this is neither text nor a picture. Download it to open it.');
}

function image(side, label) {
  const img = h('img', { class: 'thumb', src: side.url, alt: `Picture: ${label}`, loading: 'lazy' });
  img.addEventListener('error', () => img.replaceWith(h('p', { class: 'notice preview-none' }, 'This picture cannot be shown. Download it to open it.')));
  return img;
}

function one(side, label, text) {
  if (side.kind === 'image') return image(side, label);
  if (side.kind === 'text') return h('pre', { class: 'preview-text' }, text);
  return nothingToShow(side);
}

const MARK = { delete: ['del', 'removed'], insert: ['ins', 'added'], replace: ['chg', 'changed'] };

function cells(line, cls, what) {
  if (!line) return [h('td', { class: 'n' }), h('td', { class: 'empty' })];
  return [h('td', { class: `n ${cls}` }, String(line.n)),
    h('td', { class: `t ${cls}` }, what ? h('span', { class: 'sr-only' }, `${what}: `) : null, line.text)];
}

/// The rows of two texts beside each other, changed lines marked.
function diffTable(rows, leftLabel, rightLabel) {
  const changes = rows.filter((r) => r.tag !== 'equal' && r.tag !== 'skip').length;
  const body = rows.map((r) => {
    if (r.tag === 'skip') {
      return h('tr', { class: 'skip' }, h('td', { colspan: '4' }, `${r.count} unchanged line${r.count === 1 ? '' : 's'}`));
    }
    const [cls, what] = MARK[r.tag] || ['', ''];
    const leftWhat = r.tag === 'insert' ? '' : what;
    const rightWhat = r.tag === 'delete' ? '' : what;
    return h('tr', { class: r.tag }, cells(r.left, r.left ? cls : '', leftWhat), cells(r.right, r.right ? cls : '', rightWhat));
  });
  return [
    h('p', { class: 'muted small diff-summary' }, changes
      ? `${changes} line${changes === 1 ? '' : 's'} differ. Removed or changed lines are marked on the left, added or changed lines on the right.`
      : 'The two are the same text.'),
    h('div', { class: 'diff-wrap' },
      h('table', { class: 'diff' },
        h('colgroup', {}, h('col', { class: 'n' }), h('col', {}), h('col', { class: 'n' }), h('col', {})),
        h('thead', {}, h('tr', {}, h('th', { colspan: '2', scope: 'col' }, leftLabel), h('th', { colspan: '2', scope: 'col' }, rightLabel))),
        h('tbody', {}, body))),
  ];
}

/// Shows in `box` a preview of `a` (and `b` beside it): each `{ path, rev?, label }`, `rev`
/// absent for the file on this computer.
export async function showPreview(box, folder, a, b) {
  mount(box, h('p', { class: 'muted' }, 'Loading the preview…'));
  try {
    const r = await get(query(folder, a, b));
    const heads = [sideHead(r.a, a.label), r.b ? sideHead(r.b, b.label) : null];
    let content;
    if (r.rows) content = diffTable(r.rows, a.label, b.label);
    else if (r.b) content = h('div', { class: 'preview-pair' }, one(r.a, a.label, r.a_text), one(r.b, b.label, r.b_text));
    else content = one(r.a, a.label, r.a_text);
    mount(box, h('div', { class: r.b ? 'preview-heads two' : 'preview-heads' }, heads), content);
  } catch (err) {
    mount(box, h('p', { class: 'notice notice-bad', role: 'alert' }, err.message));
  }
}
