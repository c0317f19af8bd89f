// This account's computers with their last-seen time; revoke one (after a confirmation):
// its token stops working at once and its connection is closed. A revoked one can be removed
// from the list; a revoked computer that logs in again takes its old place.

import { h, mount, heading, toast, confirmDialog, promptDialog, fmtAgo, fmtTime } from './dom.js';
import { get, post } from './api.js';

export function devicesScreen(main) {
  let alive = true;
  const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading your computers…'));
  const load = async () => {
    try {
      const list = await get('/devices');
      if (!alive) return;
      list.sort((a, b) => (b.current - a.current) || (a.revoked - b.revoked) || a.name.localeCompare(b.name));
      mount(body, h('ul', { class: 'devices' }, list.map((d) => h('li', { class: `device${d.revoked ? ' revoked' : ''}`, 'data-device': d.name },
        h('div', { class: 'device-main' },
          h('h2', {}, d.name, d.current ? h('span', { class: 'badge badge-ok' }, 'This computer') : null,
            d.revoked ? h('span', { class: 'badge badge-bad' }, 'Revoked') : null),
          h('p', { class: 'muted' },
            `Last seen ${fmtAgo(d.last_seen || d.created_at)}`,
            h('span', { class: 'sep', 'aria-hidden': 'true' }, ' · '),
            `added ${fmtTime(d.created_at)}`)),
        h('div', { class: 'row' },
        h('button', { type: 'button', class: 'button secondary', 'aria-label': `Rename ${d.name}`,
          onclick: async () => {
            const name = await promptDialog({ title: `Rename ${d.name}`, label: 'New name', value: d.name, confirm: 'Rename' });
            if (!name || name === d.name) return;
            try { await post(`/devices/${d.id}/rename`, { name }); toast(`Renamed to ${name}.`); load(); } catch (err) { toast(err.message, 'bad'); }
          } }, 'Rename…'),
        !d.current && !d.revoked ? h('button', { type: 'button', class: 'button danger secondary',
          'aria-label': `Revoke ${d.name}`,
          onclick: async () => {
            const ok = await confirmDialog({
              title: `Revoke ${d.name}?`, danger: true, confirm: 'Revoke',
              message: `${d.name} is disconnected at once and can no longer sync. Its files stay on it. To use it again, choose Log in again on it.`,
            });
            if (!ok) return;
            try { await post(`/devices/${d.id}/revoke`); toast(`${d.name} is revoked.`); load(); } catch (err) { toast(err.message, 'bad'); }
          } }, 'Revoke…') : null,
        d.revoked ? h('button', { type: 'button', class: 'button danger secondary',
          'aria-label': `Remove ${d.name}`,
          onclick: async () => {
            const ok = await confirmDialog({
              title: `Remove ${d.name} from the list?`, danger: true, confirm: 'Remove',
              message: `${d.name} is already revoked. Removing it only tidies this list; its files stay on it, and it can still log in again later.`,
            });
            if (!ok) return;
            try { await post(`/devices/${d.id}/remove`); toast(`${d.name} is removed from the list.`); load(); } catch (err) { toast(err.message, 'bad'); }
          } }, 'Remove…') : null)))));
    } catch (err) {
      mount(body, h('p', { class: 'notice notice-bad', role: 'alert' }, err.message));
    }
  };
  mount(main, heading('Devices'), h('p', { class: 'muted' }, 'The computers that sync with your account.'), body);
  load();
  return () => { alive = false; };
}
