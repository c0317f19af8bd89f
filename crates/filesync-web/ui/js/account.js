// The account: who and where this computer is logged in, the pinned certificate, the
// password, log out — and "Log in again" for a computer whose access was revoked, which asks
// only for the password and keeps the server, the certificate, the name and the folders.

import { h, mount, heading, toast, confirmDialog, field, formError, clearErrors, showError, fmtBytes, fmtCount, fingerprintGroups } from './dom.js';
import { get, post } from './api.js';

/// Whether the server refuses this computer's token, so that only logging in again helps.
export const needsLogInAgain = (s) => Boolean(s && s.summary && s.summary.action === 'log-in-again');

/// "Log in again": the password only; everything else stays as it is.
export function loginAgainScreen(main, store) {
  const s = store.status;
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'again-title' },
    h('h2', { id: 'again-title' }, 'Your password'),
    h('dl', { class: 'summary' },
      h('dt', {}, 'User'), h('dd', {}, s.user || '—'),
      h('dt', {}, 'Server'), h('dd', {}, s.server || '—'),
      h('dt', {}, 'This computer'), h('dd', {}, s.device_name || '—')),
    field({ id: 'password', label: 'Password', type: 'password', attrs: { autocomplete: 'current-password' } }),
    formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Log in again')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    try {
      await post('/login-again', { password: form.password.value });
      toast('Logged in again; syncing resumes now.');
      location.hash = '#/';
    } catch (err) { showError(form, err.field || 'password', err.message); }
  });
  mount(main, heading('Log in again'),
    h('p', {}, needsLogInAgain(s)
      ? "This computer's access was revoked on the server. Enter the account's password to sync again: the server, its certificate, this computer's name and its folders stay as they are, and the server's device list keeps one entry for it."
      : 'The server still accepts this computer; there is nothing to do here.'),
    form);
  return null;
}

function passwordForm() {
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'pw-title' },
    h('h2', { id: 'pw-title' }, 'Change password'),
    field({ id: 'current_password', label: 'Current password', type: 'password', attrs: { autocomplete: 'current-password' } }),
    field({ id: 'new_password', label: 'New password', type: 'password', help: 'At least 8 characters.', attrs: { autocomplete: 'new-password' } }),
    field({ id: 'new_password2', label: 'Repeat the new password', type: 'password', attrs: { autocomplete: 'new-password' } }),
    h('div', { class: 'check' },
      h('input', { type: 'checkbox', id: 'log_out_other_devices', name: 'log_out_other_devices' }),
      h('label', { for: 'log_out_other_devices' }, 'Log out every other computer (each must log in again with the new password)')),
    formError(),
    h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Change password')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (form.new_password.value !== form.new_password2.value) { showError(form, 'new_password2', 'The new passwords do not match.'); return; }
    try {
      const out = await post('/account/password', { current_password: form.current_password.value,
        new_password: form.new_password.value, log_out_other_devices: form.log_out_other_devices.checked });
      form.reset();
      toast(out.logged_out_others ? 'Password changed; every other computer is logged out.' : 'Password changed; your computers stay logged in.');
    } catch (err) { showError(form, err.field, err.message); }
  });
  return form;
}

/// "Storage on the server": what the account stores, of its quota if it has one.
function storageCard() {
  const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Asking the server…'));
  const card = h('section', { class: 'card', 'aria-labelledby': 'storage-title' }, h('h2', { id: 'storage-title' }, 'Storage on the server'), body);
  get('/usage').then((u) => {
    const used = fmtBytes(u.bytes_stored);
    const line = u.quota !== null && u.quota !== undefined ? `${used} used of ${fmtBytes(u.quota)}` : `${used} used`;
    const pct = u.quota ? Math.min(100, Math.round((u.bytes_stored / u.quota) * 100)) : null;
    mount(body,
      h('p', { class: 'strong storage-used' }, line, u.quota === null || u.quota === undefined ? h('span', { class: 'muted' }, ' · no quota') : ` (${pct === 0 && u.bytes_stored > 0 ? 'under 1' : pct} %)`),
      pct !== null ? h('meter', { min: '0', max: '100', value: String(pct), high: '90', optimum: '0', 'aria-label': `${pct} % of the quota used` }) : null,
      h('p', { class: 'muted small' }, `${fmtCount(u.files_current, 'current file', 'current files')} (${fmtBytes(u.bytes_current)}) and ${fmtCount(u.versions_history, 'older version', 'older versions')} (${fmtBytes(u.bytes_history)}); what the server stores counts each piece of content once.`));
  }).catch((err) => mount(body, h('p', { class: 'muted' }, `Storage use is not known right now: ${err.message}`)));
  return card;
}

export function accountScreen(main, store) {
  const s = store.status;
  const logout = async () => {
    const ok = await confirmDialog({ title: 'Log out this computer?', danger: true, confirm: 'Log out',
      message: 'This computer stops syncing and its access is revoked on the server. Your files stay here.' });
    if (!ok) return;
    try {
      await post('/logout', { force: false });
      toast('Logged out.');
    } catch (err) {
      // Honest whatever went wrong: the message says what it was.
      const force = await confirmDialog({ title: 'Log out on this computer only?', confirm: 'Log out anyway', danger: true,
        message: `${err.message} Its access can be revoked later from another computer's Devices screen.` });
      if (force) { try { await post('/logout', { force: true }); toast('Logged out on this computer.'); } catch (e) { toast(e.message, 'bad'); } }
    }
  };
  mount(main, heading('Account'),
    needsLogInAgain(s) ? h('section', { class: 'notice notice-bad', role: 'alert' },
      h('p', { class: 'reason' }, "This computer's access was revoked on the server."),
      h('p', { class: 'hint' }, h('strong', {}, 'What to do: '), 'Log in again with your password; nothing else changes.'),
      h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/login-again' }, 'Log in again…'))) : null,
    h('section', { class: 'card' },
      h('dl', { class: 'summary' },
        h('dt', {}, 'User'), h('dd', {}, s.user || '—'),
        h('dt', {}, 'Server'), h('dd', {}, s.server || '—'),
        h('dt', {}, 'This computer'), h('dd', {}, s.device_name || '—', s.device_id ? ` (device ${s.device_id})` : ''),
        h('dt', {}, 'Server certificate'), h('dd', {}, s.fingerprint
          ? h('span', { class: 'fp-groups', title: s.fingerprint, 'aria-label': `SHA-256 fingerprint ${fingerprintGroups(s.fingerprint).join(' ')}` },
            fingerprintGroups(s.fingerprint).map((g) => h('code', { class: 'fp-group' }, g)))
          : '—'))),
    storageCard(),
    passwordForm(),
    h('section', { class: 'card' },
      h('h2', {}, 'Log out'),
      h('p', {}, 'Stop syncing on this computer and revoke its access on the server.'),
      h('button', { type: 'button', class: 'button danger', onclick: logout }, 'Log out…')));
  return null;
}
