// The application shell: signs in (exchanging the key from the `filesync ui` link for a
// cookie), follows the agent's live status, and shows the screen the address names
// (#/, #/add, #/folder/NAME, #/conflicts, #/devices, #/activity, #/account, #/login-again). The state also
// shows outside the page: in the tab's title and icon, and as a count on Conflicts; and a
// change of a folder's line is announced once to screen readers.

import { h, mount, heading, field, formError, clearErrors, showError } from './dom.js';
import { get, post, follow } from './api.js';
import { setupScreen } from './setup.js';
import { dashboardScreen } from './dashboard.js';
import { addFolderScreen, folderScreen } from './folders.js';
import { devicesScreen } from './devices.js';
import { conflictsScreen } from './conflicts.js';
import { activityScreen } from './activity.js';
import { accountScreen, loginAgainScreen } from './account.js';
import { historyScreen } from './history.js';

const main = () => document.getElementById('main');

/// The latest status from the agent, and who wants to hear about changes.
export const store = {
  status: null,
  listeners: new Set(),
  activityListeners: new Set(),
  set(s) {
    const wasLoggedIn = this.status && this.status.logged_in;
    const before = this.status;
    this.status = s;
    renderConnection(s);
    renderGlance(s);
    announceChanges(before, s);
    for (const l of this.listeners) l(s);
    if (wasLoggedIn !== undefined && wasLoggedIn !== null && wasLoggedIn !== s.logged_in) route();
  },
  onStatus(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  onActivity(fn) { this.activityListeners.add(fn); return () => this.activityListeners.delete(fn); },
};

let cleanup = null;
let stopFollowing = null;

function renderConnection(s) {
  const el = document.getElementById('conn');
  const labels = {
    online: 'Connected', offline: 'Offline', error: 'Not accepted by the server',
    'logged-out': 'Not logged in', starting: 'Starting…',
  };
  el.className = `conn conn-${s.connection}`;
  const where = s.server ? ` · ${s.server}` : '';
  mount(el, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${labels[s.connection] || s.connection}${s.connection === 'online' ? where : ''}`);
  document.getElementById('nav').hidden = !s.logged_in;
  document.getElementById('menu-button').hidden = !s.logged_in;
}

/// On a phone the nav folds behind a Menu button: it opens and closes the list, Escape closes
/// it (giving the focus back to the button), and following a link closes it.
function setUpMenu() {
  const button = document.getElementById('menu-button');
  const bar = button.closest('.topbar');
  const open = (yes) => {
    bar.classList.toggle('menu-open', yes);
    button.setAttribute('aria-expanded', String(yes));
  };
  button.addEventListener('click', () => {
    const yes = button.getAttribute('aria-expanded') !== 'true';
    open(yes);
    if (yes) { const first = document.querySelector('#nav a'); if (first) first.focus(); }
  });
  document.getElementById('nav').addEventListener('click', (e) => { if (e.target.closest('a')) open(false); });
  bar.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && button.getAttribute('aria-expanded') === 'true') { open(false); button.focus(); }
  });
}
setUpMenu();

/// The screen's name, for the tab's title.
let screenName = 'Dashboard';

const ICONS = { ok: 'icon.svg', muted: 'icon.svg', busy: 'icon-busy.svg', warn: 'icon-warn.svg', bad: 'icon-bad.svg' };

function setTitle() {
  const s = store.status;
  const state = s && s.logged_in ? s.title : null;
  document.title = [state, screenName === 'Dashboard' && state ? null : screenName, 'FileSync'].filter(Boolean).join(' · ');
}

/// The state outside the page: the tab's title and icon, and the count on Conflicts.
function renderGlance(s) {
  setTitle();
  const tone = s.logged_in && s.summary ? s.summary.tone : 'ok';
  const icon = document.getElementById('favicon');
  const href = `/assets/${ICONS[tone] || ICONS.ok}`;
  if (icon.getAttribute('href') !== href) icon.setAttribute('href', href);
  const n = (s.totals && s.totals.conflicts) || 0;
  const link = document.getElementById('nav-conflicts');
  if (link.dataset.count !== String(n)) {
    link.dataset.count = String(n);
    mount(link, 'Conflicts', n ? h('span', { class: 'count' }, h('span', { class: 'sr-only' }, ': '), String(n),
      h('span', { class: 'sr-only' }, ' open')) : null);
    // The folded menu carries the count too, so that it is not hidden on a phone.
    const badge = document.querySelector('#menu-button .menu-count');
    badge.hidden = !n;
    mount(badge, n ? [h('span', { class: 'sr-only' }, ', '), String(n), h('span', { class: 'sr-only' }, n === 1 ? ' conflict' : ' conflicts')] : []);
  }
}

/// Says, once, what changed: a folder's line turned from one kind to another ("Documents: 2
/// conflicts need you"), or the connection's. Countdowns and progress are not news.
function announceChanges(before, s) {
  if (!before || !before.logged_in || !s.logged_in) return;
  const said = [];
  const was = new Map((before.folders || []).map((f) => [f.name, f.summary && f.summary.kind]));
  for (const f of s.folders || []) {
    if (f.summary && was.has(f.name) && was.get(f.name) !== f.summary.kind) said.push(`${f.name}: ${f.summary.text}`);
  }
  if (!said.length && before.summary && s.summary && before.summary.kind !== s.summary.kind) said.push(s.summary.text);
  if (said.length) document.getElementById('announce').textContent = said.join('. ');
}

function markNav(path) {
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').slice(1);
    if (target === path || (target !== '/' && path.startsWith(target))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

export function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const s = store.status;
  const [path, query] = ((location.hash || '#/').slice(1) || '/').split('?');
  const params = new URLSearchParams(query || '');
  const m = main();
  if (s && !s.logged_in) {
    markNav('');
    cleanup = setupScreen(m, store);
  } else if (path.startsWith('/folder/')) {
    cleanup = folderScreen(m, store, decodeURIComponent(path.slice('/folder/'.length)));
  } else {
    const screens = {
      '/': dashboardScreen, '/add': addFolderScreen, '/conflicts': conflictsScreen,
      '/devices': devicesScreen, '/activity': activityScreen, '/account': accountScreen, '/history': historyScreen,
      '/login-again': loginAgainScreen,
    };
    cleanup = (screens[path] || dashboardScreen)(m, store, params);
  }
  markNav(path);
  const title = m.querySelector('.screen-title');
  if (title) {
    title.focus({ preventScroll: true });
    screenName = title.textContent;
    setTitle();
  }
}

function signInScreen(passwordRequired) {
  document.getElementById('nav').hidden = true;
  const m = main();
  if (!passwordRequired) {
    mount(m, h('section', { class: 'card narrow' },
      heading('Open FileSync from this computer'),
      h('p', {}, 'For your safety, this page only works when opened by FileSync itself. In a terminal on this computer, run:'),
      h('pre', {}, h('code', {}, 'filesync ui')),
      h('p', { class: 'muted' }, 'It opens this page with a one-time link that signs you in.')));
    return;
  }
  const form = h('form', { class: 'card narrow', novalidate: true },
    heading('Sign in to FileSync'),
    h('p', {}, 'This FileSync agent can be reached from other computers, so it asks for its UI password.'),
    field({ id: 'password', label: 'UI password', type: 'password', attrs: { autocomplete: 'current-password', required: true } }),
    formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    try {
      await post('/session', { password: form.password.value });
      start();
    } catch (err) { showError(form, err.field, err.message); }
  });
  mount(m, form);
  form.password.focus();
}

async function start() {
  // A `#key=…` link from `filesync ui`: trade it for the session cookie, then forget it.
  const hash = location.hash;
  if (hash.startsWith('#key=')) {
    const key = decodeURIComponent(hash.slice(5));
    history.replaceState(null, '', '/#/');
    try { await post('/session', { key }); } catch { /* shown below as not signed in */ }
  }
  const session = await get('/session');
  if (!session.authenticated) { signInScreen(session.password_required); return; }
  store.status = null;
  store.set(await get('/status'));
  if (stopFollowing) stopFollowing();
  stopFollowing = follow({
    status: (s) => store.set(s),
    activity: (a) => { for (const l of store.activityListeners) l(a); },
  });
  route();
}

window.addEventListener('hashchange', () => { if (store.status) route(); });
window.addEventListener('filesync-unauthorized', () => { if (stopFollowing) stopFollowing(); start(); });
start().catch((e) => mount(main(), h('section', { class: 'card narrow', role: 'alert' },
  heading('FileSync is not answering'), h('p', {}, e.message))));
