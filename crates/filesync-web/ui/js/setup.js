// First run: the server's address, its certificate fingerprint shown in full and confirmed
// (ticked after comparing, or pasted) before any credential is sent, then register or log
// in, and a name for this computer.

import { h, mount, heading, field, formError, clearErrors, showError, fingerprintDigits, fingerprintGroups } from './dom.js';
import { get, post } from './api.js';

export function setupScreen(main, store) {
  const state = { server: '', fingerprint: null };

  const stepServer = () => {
    const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'setup-title' },
      h('p', { class: 'step' }, 'Step 1 of 2'),
      h('h1', { id: 'setup-title', class: 'screen-title', tabindex: '-1' }, 'Welcome to FileSync'),
      h('p', {}, 'FileSync keeps your folders the same on all your computers, through a server you run. First, where is your server?'),
      field({ id: 'server', label: 'Server address', value: state.server,
        help: 'Its name or IP address, as printed when the server starts — for example 192.168.1.20, nas.local:7443 or https://nas.local:7443 (the port is 7443 unless the server says otherwise).',
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
      h('p', { class: 'fingerprint', id: 'fingerprint', 'aria-label': `SHA-256 fingerprint ${fingerprintGroups(fp).join(' ')}` },
        h('span', { class: 'fp-kind' }, 'SHA-256'),
        h('span', { class: 'fp-groups' }, fingerprintGroups(fp).map((g, i) => h('code', { class: 'fp-group', 'data-i': String(i) }, g)))),
      h('p', {}, 'On the server, run ', h('code', {}, 'filesync server fingerprint'),
        ' and compare. If they differ, stop: someone may be intercepting the connection. Nothing has been sent to the server yet.'),
      h('div', { class: 'check' }, confirmBox, h('label', { for: 'fp-ok' }, 'I compared the fingerprint, and it matches')),
      field({ id: 'fp-paste', label: 'Or paste the fingerprint from the server', help: 'It is checked here as you type or paste, character by character; spaces, colons and case do not matter.',
        attrs: { autocomplete: 'off', spellcheck: 'false' } }),
      h('p', { class: 'fp-verdict', id: 'fp-verdict', role: 'status', 'aria-live': 'polite' }),
      formError(),
      h('div', { class: 'actions' },
        h('button', { class: 'button secondary', type: 'button', onclick: stepServer }, 'Back'),
        h('button', { class: 'button', type: 'submit' }, 'Trust this server')));
    const norm = fingerprintDigits;
    // The pasted fingerprint is judged live: a tick when it matches in full, the groups that
    // agree so far, or a clear mark from the first group that differs.
    const want = norm(fp);
    const paste = form.querySelector('#fp-paste');
    const verdict = form.querySelector('#fp-verdict');
    const groups = [...form.querySelectorAll('.fp-group')];
    const judge = () => {
      const got = norm(paste.value);
      let same = 0;
      while (same < got.length && same < want.length && got[same] === want[same]) same += 1;
      groups.forEach((g, i) => {
        g.classList.toggle('fp-ok', same >= (i + 1) * 4);
        g.classList.toggle('fp-bad', got.length > same && i === Math.floor(same / 4));
      });
      verdict.className = 'fp-verdict';
      if (!got) { verdict.textContent = ''; return; }
      if (got === want) {
        verdict.classList.add('fp-match');
        verdict.textContent = '✓ Matches the fingerprint the server presents.';
      } else if (same === got.length) {
        verdict.textContent = `So far it matches (${got.length} of ${want.length} characters).`;
      } else {
        verdict.classList.add('fp-differs');
        verdict.textContent = `✗ Different from the fingerprint the server presents, from group ${Math.floor(same / 4) + 1} on.`;
      }
    };
    paste.addEventListener('input', judge);
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
      field({ id: 'invite', label: 'Invite code (if the server asks for one)',
        help: 'A server that takes new accounts by invite: the code its operator gave you.', attrs: { spellcheck: 'false', autocomplete: 'off' } }),
      field({ id: 'device_name', label: 'Name of this computer', value: status.default_device_name || '',
        help: 'How your other computers will see this one.', attrs: { required: true } }),
      formError(),
      h('div', { class: 'actions' },
        h('button', { class: 'button secondary', type: 'button', onclick: stepTrust }, 'Back'),
        h('button', { class: 'button', type: 'submit' }, 'Create account')));
    const sync = () => {
      const register = mode('register').checked;
      form.querySelector('[data-field=password2]').hidden = !register;
      form.querySelector('[data-field=invite]').hidden = !register;
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
          invite: register ? form.invite.value : null,
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
