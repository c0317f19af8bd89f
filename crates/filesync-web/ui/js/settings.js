// A folder's settings as a form: each control is named after the setting's key (the same
// keys as `filesync folder set NAME KEY VALUE`), values travel as the text a person would
// type, and the agent validates them — its messages appear next to the field.

import { h, field } from './dom.js';

const DIRECTIONS = [
  ['two-way', 'Two-way — changes flow both ways'],
  ['upload-only', 'Upload only — this computer is the source'],
  ['download-only', 'Download only — the server is the source'],
];

export function settingsForm(current) {
  const s = current || { direction: 'two-way' };
  const select = h('select', { id: 'direction', name: 'direction', 'aria-describedby': 'direction-help direction-error' },
    DIRECTIONS.map(([v, label]) => h('option', { value: v, selected: s.direction === v }, label)));
  const element = h('fieldset', { class: 'choice settings' },
    h('legend', {}, 'How this folder syncs'),
    h('div', { class: 'field', 'data-field': 'direction' },
      h('label', { for: 'direction' }, 'Direction'),
      select,
      h('p', { class: 'help', id: 'direction-help' }, 'Two-way suits most folders. One-way folders never change the source side.'),
      h('p', { class: 'error', id: 'direction-error', hidden: true })));
  return {
    element,
    read() {
      return { ok: true, value: { direction: select.value } };
    },
    describe(v) {
      return [['Direction', (DIRECTIONS.find(([k]) => k === v.direction) || [null, v.direction])[1]]];
    },
  };
}

export { field };
