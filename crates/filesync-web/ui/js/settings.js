// A folder's settings as a form. Each control is named after the setting's key (the keys of
// `filesync folder set NAME KEY VALUE`); values travel as the text a person would type and the
// agent validates them, so its messages appear next to the field.

import { h, field } from './dom.js';

const DIRECTIONS = [
  ['two-way', 'Two-way — changes flow both ways'],
  ['upload-only', 'Upload only — this computer is the source'],
  ['download-only', 'Download only — the server is the source'],
];

const DEFAULTS = {
  direction: 'two-way', schedule: 'continuous', rescan_secs: 3600, upload_limit: null, download_limit: null,
  guard_percent: 50, guard_min_files: 100,
};

/// A rate in bytes per second as the agent parses it back: unlimited, 512k, 2M…
export function fmtRate(b) {
  if (b === null || b === undefined) return 'unlimited';
  for (const [u, n] of [['G', 2 ** 30], ['M', 2 ** 20], ['k', 2 ** 10]]) if (b % n === 0) return `${b / n}${u}`;
  return String(b);
}

/// The schedules offered as choices; anything else is a custom one, typed.
const SCHEDULES = [
  ['continuous', 'On every change', 'within a second of a change'],
  ['every 5m', 'Every 5 minutes', null],
  ['hourly', 'Hourly', null],
  ['daily', 'Daily', null],
];

/// "every 5 min" and "every 5m" are one schedule: compare them without spaces and units' tails.
function scheduleKey(v) {
  return (v || '').trim().toLowerCase().replace(/\s+/g, '').replace(/(\d+)(s|m|h|d)[a-z]*$/, '$1$2');
}

/// When to sync, as choices, with Custom for any other interval.
function scheduleField(value) {
  const preset = SCHEDULES.find(([v]) => scheduleKey(v) === scheduleKey(value));
  const choice = (v, label, note) => {
    const id = `schedule-${v.replace(/\s+/g, '-')}`;
    return h('div', { class: 'check' },
      h('input', { type: 'radio', name: 'schedule-choice', id, value: v, checked: preset ? preset[0] === v : v === 'custom' }),
      h('label', { for: id }, label, note ? h('span', { class: 'muted small' }, ` — ${note}`) : null));
  };
  const custom = field({ id: 'schedule', label: 'Custom schedule', value: preset ? '' : value, attrs: { spellcheck: 'false' },
    help: 'An interval such as every 90s, every 15m or every 2h.' });
  custom.hidden = !!preset;
  const box = h('fieldset', { class: 'choice schedule-choice' },
    h('legend', {}, 'When to sync'),
    h('div', { class: 'schedule-options' }, SCHEDULES.map(([v, label, note]) => choice(v, label, note)), choice('custom', 'Custom', null)),
    custom);
  for (const r of box.querySelectorAll('input[name=schedule-choice]')) {
    r.addEventListener('change', () => {
      custom.hidden = r.value !== 'custom' || !r.checked;
      if (!custom.hidden) custom.querySelector('input').focus();
    });
  }
  return box;
}

/// The schedule the choices say: a preset's value, or the custom text.
function readSchedule(element) {
  const picked = element.querySelector('input[name=schedule-choice]:checked');
  if (!picked) return null;
  return picked.value === 'custom' ? element.querySelector('#schedule').value.trim() : picked.value;
}

/// A schedule in words for the review: "Every 5 minutes", or the custom text.
export function scheduleWords(v) {
  const preset = SCHEDULES.find(([k]) => scheduleKey(k) === scheduleKey(v));
  return preset ? preset[1] : v;
}

function selectField(id, label, options, value, help) {
  return h('div', { class: 'field', 'data-field': id },
    h('label', { for: id }, label),
    h('select', { id, name: id, 'aria-describedby': `${id}-help ${id}-error` },
      options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))),
    h('p', { class: 'help', id: `${id}-help` }, help),
    h('p', { class: 'error', id: `${id}-error`, hidden: true }));
}

/// `full`: every setting (a folder's page); otherwise the ones that matter when adding.
export function settingsForm(current, { full = true } = {}) {
  const s = { ...DEFAULTS, ...(current || {}) };
  const values = {
    direction: s.direction,
    schedule: s.schedule,
    rescan: String(s.rescan_secs),
    'upload-limit': fmtRate(s.upload_limit),
    'download-limit': fmtRate(s.download_limit),
    'guard-percent': String(s.guard_percent),
    'guard-min-files': String(s.guard_min_files),
  };
  const fields = [
    selectField('direction', 'Direction', DIRECTIONS, values.direction,
      'Two-way suits most folders. A one-way folder never changes its source side.'),
    scheduleField(values.schedule),
  ];
  if (full) {
    fields.push(
      field({ id: 'upload-limit', label: 'Upload limit', value: values['upload-limit'], attrs: { spellcheck: 'false' },
        help: 'Bytes per second: 512k, 2M, or unlimited.' }),
      field({ id: 'download-limit', label: 'Download limit', value: values['download-limit'], attrs: { spellcheck: 'false' },
        help: 'Bytes per second: 512k, 2M, or unlimited.' }),
      field({ id: 'rescan', label: 'Full rescan every (seconds)', value: values.rescan, attrs: { inputmode: 'numeric' },
        help: 'With continuous syncing, a full rescan also runs this often (at least every minute if this folder cannot be watched), for anything the file watcher missed.' }),
      h('div', { class: 'row two' },
        field({ id: 'guard-percent', label: 'Mass-delete guard: share of files (%)', value: values['guard-percent'], attrs: { inputmode: 'numeric' } }),
        field({ id: 'guard-min-files', label: '…and more than this many files', value: values['guard-min-files'], attrs: { inputmode: 'numeric' } })),
      h('p', { class: 'help' }, 'A sync that would delete more than both is held back until you confirm it.'));
  }
  const element = h('fieldset', { class: 'choice settings' }, h('legend', {}, 'How this folder syncs'), fields);
  return {
    element,
    /// The settings that changed, as [key, value] pairs.
    read() {
      const changes = [];
      for (const [key, was] of Object.entries(values)) {
        if (key === 'schedule') {
          const now = readSchedule(element);
          if (now !== null && scheduleKey(now) !== scheduleKey(was)) changes.push([key, now]);
          continue;
        }
        const el = element.querySelector(`[name="${key}"]`);
        if (el && el.value.trim() !== was) changes.push([key, el.value.trim()]);
      }
      return { ok: true, value: changes };
    },
    describe(changes) {
      const get = (k) => (changes.find(([key]) => key === k) || [k, values[k]])[1];
      return [
        ['Direction', (DIRECTIONS.find(([k]) => k === get('direction')) || [null, get('direction')])[1]],
        ['When to sync', scheduleWords(get('schedule'))],
      ];
    },
  };
}
