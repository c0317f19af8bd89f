// Small DOM helpers: elements are built as nodes (never from HTML strings), so text from the
// server can never become markup. Also formatting of sizes and times, toasts, and an
// accessible confirmation dialog.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export function fmtCount(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

export function fmtAgo(unix) {
  if (!unix) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(unix * 1000).toLocaleDateString();
}

export function fmtTime(unix) {
  if (!unix) return 'never';
  return new Date(unix * 1000).toLocaleString();
}

/// A clock time in the reader's own time zone: "10:42" today, "29 Nov 10:42" before.
export function fmtClock(unix) {
  const d = new Date(unix * 1000);
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  return d.toDateString() === new Date().toDateString() ? hm : `${d.getDate()} ${d.toLocaleString('en', { month: 'short' })} ${hm}`;
}

/// A wait in words, rounded up: "17 s", "3 min", "2 h".
export function fmtWait(secs) {
  const s = Math.max(0, Math.ceil(secs));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.ceil(s / 60)} min`;
  return `${Math.ceil(s / 3600)} h`;
}

/// A certificate fingerprint ("SHA256:ab12cd34…") as groups of four characters to compare
/// by eye ("AB12", "CD34", …), and the bare digits any pasted form reduces to.
export function fingerprintDigits(fp) {
  return (fp || '').trim().toLowerCase().replace(/^sha256:/, '').replace(/[^0-9a-f]/g, '');
}
export function fingerprintGroups(fp) {
  return fingerprintDigits(fp).toUpperCase().match(/.{1,4}/g) || [];
}

/// A labelled form field with a help text and a slot for a validation message.
export function field({ id, label, type = 'text', value = '', help, attrs = {} }) {
  const helpId = help ? `${id}-help` : null;
  const errId = `${id}-error`;
  const input = type === 'textarea'
    ? h('textarea', { id, name: id, 'aria-describedby': [helpId, errId].filter(Boolean).join(' '), ...attrs }, value)
    : h('input', { id, name: id, type, value, 'aria-describedby': [helpId, errId].filter(Boolean).join(' '), ...attrs });
  // A message about the old value goes as soon as the value changes.
  input.addEventListener('input', () => {
    const err = input.parentElement && input.parentElement.querySelector('.error');
    if (err) { err.hidden = true; err.textContent = ''; }
    input.removeAttribute('aria-invalid');
  });
  return h('div', { class: 'field', 'data-field': id },
    h('label', { for: id }, label),
    input,
    help ? h('p', { class: 'help', id: helpId }, help) : null,
    h('p', { class: 'error', id: errId, hidden: true }));
}

/// Shows `message` next to the field named `name` (or in the form's general error slot).
export function showError(form, name, message) {
  const box = (name && form.querySelector(`[data-field="${name}"]`)) || null;
  if (box) {
    const p = box.querySelector('.error');
    p.textContent = message;
    p.hidden = false;
    const input = box.querySelector('input, textarea, select');
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    return;
  }
  const general = form.querySelector('.form-error');
  if (general) { general.textContent = message; general.hidden = false; general.focus(); }
}

export function clearErrors(form) {
  for (const p of form.querySelectorAll('.error, .form-error')) { p.textContent = ''; p.hidden = true; }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

export function formError() {
  return h('p', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
}

let toastTimer = null;
export function toast(message, kind = 'ok') {
  const t = document.getElementById('toast');
  t.className = `toast toast-${kind}`;
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

/// A modal confirmation; resolves to true when confirmed. Escape or Cancel resolves false.
export function confirmDialog({ title, message, confirm, danger = false }) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': 'dialog-title' });
    const done = (v) => { d.close(); d.remove(); resolve(v); };
    mount(d,
      h('h2', { id: 'dialog-title' }, title),
      h('p', {}, message),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button secondary', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: danger ? 'button danger' : 'button', onclick: () => done(true) }, confirm)));
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.appendChild(d);
    d.showModal();
    d.querySelector('.secondary').focus();
  });
}

/// A page heading that takes focus when a screen opens, so screen readers announce it.
export function heading(text, level = 1) {
  return h(`h${level}`, { tabindex: '-1', class: 'screen-title' }, text);
}

/// A modal asking for one line of text; resolves to the text, or null when cancelled.
export function promptDialog({ title, message, label, value = '', confirm }) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': 'dialog-title' });
    const input = h('input', { id: 'dialog-input', type: 'text', value, spellcheck: 'false' });
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'dialog-title' }, title),
      message ? h('p', {}, message) : null,
      h('div', { class: 'field' }, h('label', { for: 'dialog-input' }, label), input),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button secondary', onclick: () => done(null) }, 'Cancel'),
        h('button', { type: 'submit', class: 'button' }, confirm)));
    const done = (v) => { d.close(); d.remove(); resolve(v); };
    form.addEventListener('submit', (e) => { e.preventDefault(); done(input.value.trim() || null); });
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(null); });
    mount(d, form);
    document.body.appendChild(d);
    d.showModal();
    input.focus();
    input.select();
  });
}

/// Makes the children of `el` look like `children` (built with `h`) while keeping the nodes
/// that stay: a focused button keeps the focus, an opened <details> stays open, and
/// assistive technology sees only what changed. Elements are matched by tag and position, or
/// by `data-key` (give one to each element that comes and goes, and to list items). Event
/// handlers are not carried over, so live parts use `data-action` and one delegated handler.
export function patch(el, ...children) {
  const next = [];
  append({ appendChild: (n) => next.push(n) }, children);
  patchChildren(el, next);
  return el;
}

const keyOf = (n) => (n.nodeType === 1 && n.getAttribute('data-key')) || null;
const sameKind = (a, b) => a.nodeType === b.nodeType && (a.nodeType !== 1 || a.tagName === b.tagName);

function patchChildren(parent, next) {
  const keyed = new Map();
  for (const c of parent.childNodes) if (keyOf(c)) keyed.set(`${c.tagName}|${keyOf(c)}`, c);
  let i = 0;
  for (const n of next) {
    const cur = parent.childNodes[i] || null;
    const key = keyOf(n);
    let match = null;
    if (key) match = keyed.get(`${n.tagName}|${key}`) || null;
    else if (cur && !keyOf(cur) && sameKind(cur, n)) match = cur;
    if (match) {
      if (match !== cur) parent.insertBefore(match, cur);
      patchNode(match, n);
    } else {
      parent.insertBefore(n, cur);
    }
    i++;
  }
  while (parent.childNodes.length > i) parent.lastChild.remove();
}

function patchNode(old, next) {
  if (old.nodeType !== 1) {
    if (old.nodeValue !== next.nodeValue) old.nodeValue = next.nodeValue;
    return;
  }
  // Whether a <details> is open is the person's choice, not the data's.
  const own = (name) => name === 'open' && old.tagName === 'DETAILS';
  for (const { name } of [...old.attributes]) if (!next.hasAttribute(name) && !own(name)) old.removeAttribute(name);
  for (const { name, value } of [...next.attributes]) if (old.getAttribute(name) !== value && !own(name)) old.setAttribute(name, value);
  patchChildren(old, [...next.childNodes]);
}
