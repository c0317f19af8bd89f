// First run: the server's address, its certificate fingerprint shown in full and confirmed
// (ticked after comparing, or pasted) before any credential is sent, then register or log
// in, and a name for this computer.

import { h, mount, heading, field, formError, clearErrors, showError } from './dom.js';
import { get, post } from './api.js';

export function setupScreen(main, store) {
  const state = { server: '', fingerprint: null };

  const stepServer = () => {
    const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'setup-title' },
      h('p', { class: 'step' }, 'Step 1 of 2'),
      h('h1', { id: 'setup-title', class: 'screen-title', tabindex: '-1' }, 'Welcome to FileSync'),
      h('p', {}, 'FileSync keeps your folders the same on all your computers, through a server you run. First, where is your server?'),
      field({ id: 'server', label: 'Server address', value: state.server,
        help: 'Its name or IP address, as printed when the server starts — for example 192.168.1.20 (the port is 7443 unless the server says otherwise).',
        attrs: { autocomplete: 'off', spellcheck: 'false', required: true, inputmode: 'url' } }),
      formError(),
      h('div', { class: 'actions' }, h('button', { class: 'button', type: 'submit' }, 'Check server')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const btn = form.querySelector('button[type=submit]');
      btn.disabled = true; btn.textContent = 'Checking…';
      try {
        const r = await post('/setup/probe', { server: form.server.value });
        state.server = r.server; state.fingerprint = r.fingerprint;
        stepTrust();
      } catch (err) {
        showError(form, err.field || 'server', err.message);
      } finally { btn.disabled = false; btn.textContent = 'Check server'; }
    });
    mount(main, form);
    form.querySelector('.screen-title').focus();
  };

  const stepTrust = () => {
    const fp = state.fingerprint;
    const confirmBox = h('input', { type: 'checkbox', id: 'fp-ok' });
    const form = h('form', { class: 'card narrow', novalidate: true },
      h('p', { class: 'step' }, 'Step 1 of 2'),
      h('h1', { class: 'screen-title', tabindex: '-1' }, 'Is this your server?'),
      h('p', {}, `The server at ${state.server} presents this certificate fingerprint:`),
      h('p', { class: 'fingerprint', id: 'fingerprint' }, h('code', {}, fp)),
      h('p', {}, 'On the server, run ', h('code', {}, 'filesync server fingerprint'),
        ' and compare. If they differ, stop: someone may be intercepting the connection. Nothing has been sent to the server yet.'),
      h('div', { class: 'check' }, confirmBox, h('label', { for: 'fp-ok' }, 'I compared the fingerprint, and it matches')),
      field({ id: 'fp-paste', label: 'Or paste the fingerprint from the server', help: 'It is checked here, character by character.',
        attrs: { autocomplete: 'off', spellcheck: 'false' } }),
      formError(),
      h('div', { class: 'actions' },
        h('button', { class: 'button secondary', type: 'button', onclick: stepServer }, 'Back'),
        h('button', { class: 'button', type: 'submit' }, 'Trust this server')));
    const norm = (s) => s.trim().toLowerCase().replace(/^sha256:/, '').replace(/[\s:]/g, '');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearErrors(form);
      const pasted = form['fp-paste'].value;
      if (pasted && norm(pasted) !== norm(fp)) {
        showError(form, 'fp-paste', 'This fingerprint does not match the one the server presents. Do not continue unless you know why.');
        return;
      }
      if (!pasted && !confirmBox.checked) {
        showError(form, null, 'Compare the fingerprint and tick the box (or paste it) before continuing.');
        return;
      }
      stepAccount();
    });
    mount(main, form);
    form.querySelector('.screen-title').focus();
  };

  const stepAccount = () => {
    const status = store.status || {};
    const mode = (v) => form.querySelector(`input[name=mode][value=${v}]`);
    const form = h('form', { class: 'card narrow', novalidate: true },
      h('p', { class: 'step' }, 'Step 2 of 2'),
      h('h1', { class: 'screen-title', tabindex: '-1' }, 'Your account'),
      h('p', { class: 'muted' }, 'Server ', h('strong', {}, state.server), ' · trusted fingerprint ', h('code', { class: 'small' }, `${state.fingerprint.slice(0, 23)}…`)),
      h('fieldset', { class: 'choice' },
        h('legend', {}, 'Do you have an account on this server?'),
        h('div', { class: 'check' }, h('input', { type: 'radio', name: 'mode', id: 'mode-register', value: 'register', checked: true }),
          h('label', { for: 'mode-register' }, 'No — create one')),
        h('div', { class: 'check' }, h('input', { type: 'radio', name: 'mode', id: 'mode-login', value: 'login' }),
          h('label', { for: 'mode-login' }, 'Yes — log in'))),
      field({ id: 'user', label: 'User name', attrs: { autocomplete: 'username', required: true, spellcheck: 'false' } }),
      field({ id: 'password', label: 'Password', type: 'password', help: 'At least 8 characters.', attrs: { autocomplete: 'new-password', required: true } }),
      field({ id: 'password2', label: 'Repeat the password', type: 'password', attrs: { autocomplete: 'new-password' } }),
      field({ id: 'device_name', label: 'Name of this computer', value: status.default_device_name || '',
        help: 'How your other computers will see this one.', attrs: { required: true } }),
      formError(),
      h('div', { class: 'actions' },
        h('button', { class: 'button secondary', type: 'button', onclick: stepTrust }, 'Back'),
        h('button', { class: 'button', type: 'submit' }, 'Create account')));
    const sync = () => {
      const register = mode('register').checked;
      form.querySelector('[data-field=password2]').hidden = !register;
      form.password.setAttribute('autocomplete', register ? 'new-password' : 'current-password');
      form.querySelector('[data-field=password] .help').hidden = !register;
      form.querySelector('button[type=submit]').textContent = register ? 'Create account' : 'Log in';
    };
    for (const r of form.querySelectorAll('input[name=mode]')) r.addEventListener('change', sync);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const register = mode('register').checked;
      if (register && form.password.value !== form.password2.value) {
        showError(form, 'password2', 'The passwords do not match.');
        return;
      }
      const btn = form.querySelector('button[type=submit]');
      btn.disabled = true;
      try {
        await post('/setup/account', {
          server: state.server, fingerprint: state.fingerprint, user: form.user.value,
          password: form.password.value, device_name: form.device_name.value, register,
        });
        location.hash = '#/add';
        store.set(await get('/status'));
      } catch (err) {
        showError(form, err.field, err.message);
      } finally { btn.disabled = false; }
    });
    mount(main, form);
    sync();
    form.querySelector('.screen-title').focus();
  };

  stepServer();
  return null;
}
