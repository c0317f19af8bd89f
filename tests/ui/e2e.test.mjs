// FileSync's UI in a real browser: a real server, two real agents ("laptop", set up entirely
// in the UI, and "desktop", set up from the command line), Debian's headless Chromium. The
// steps run in order and each leaves a screenshot in test-artifacts/ui/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, existsSync, readdirSync, rmSync, mkdirSync, unlinkSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { TestServer, Computer, launchBrowser, openPage, screenshot, tempDir, waitFor, stepper, tearDown, PASSWORD } from './support.mjs';

let dir, server, laptop, desktop, browser, page, revokedPage;

before(async () => {
  dir = tempDir();
  server = await TestServer.start(dir);
  laptop = new Computer(dir, 'laptop');
  desktop = new Computer(dir, 'desktop');
  await laptop.startAgent(); // not logged in yet: it serves the first-run screen and waits
  browser = await launchBrowser(dir);
});

after(() => tearDown({ page, browser, computers: [laptop, desktop], server, dir }));

/// A step of the scenario; when it fails, a screenshot of the page shows where.
const step = stepper('', () => page);

/// The id of the laptop agent's latest "applied the changed configuration" activity (0: none).
async function lastApplied() {
  const log = await page.evaluate(() => fetch('/api/activity?q=applied%20the%20changed').then((r) => r.json()));
  return log.length ? log[0].id : 0;
}

/// Waits until the laptop's agent runs with a configuration saved after activity `id`.
async function appliedAfter(id) {
  await waitFor('the agent to apply the new settings', async () => (await lastApplied()) > id);
}

/// The dashboard card of `folder` on `p`.
const card = (p, folder) => p.locator(`li.folder[data-folder="${folder}"]`);

step('first run: confirm the server fingerprint, register, name this computer', async () => {
  page = await openPage(browser, laptop.url);
  assert.equal(new URL(page.url()).hash, '#/', 'the key leaves the address bar at once');
  await page.getByRole('heading', { name: 'Welcome to FileSync' }).waitFor();
  await page.getByLabel('Server address').fill(server.addr);
  await screenshot(page, '01-first-run-server.png');
  await page.getByRole('button', { name: 'Check server' }).click();

  await page.getByRole('heading', { name: 'Is this your server?' }).waitFor();
  const groups = await page.locator('#fingerprint .fp-group').allTextContents();
  assert.equal(groups.join('').toLowerCase(), server.fingerprint.replace(/^SHA256:/, '').toLowerCase(), 'the fingerprint is shown in full');
  assert.ok(groups.length === 16 && groups.every((g) => /^[0-9A-F]{4}$/.test(g)), `in groups of four to compare by eye: ${groups}`);
  await page.getByRole('button', { name: 'Trust this server' }).click();
  await page.getByText('Compare the fingerprint and tick the box').waitFor();
  await page.getByLabel('Or paste the fingerprint from the server').fill(`SHA256:${'00'.repeat(32)}`);
  await page.getByRole('button', { name: 'Trust this server' }).click();
  await page.getByText('does not match the one the server presents').waitFor();
  assert.equal(existsSync(join(laptop.home, 'token')), false, 'nothing was sent before the fingerprint was confirmed');
  await page.getByLabel('Or paste the fingerprint from the server').fill('');
  await page.getByLabel('I compared the fingerprint, and it matches').check();
  await screenshot(page, '02-first-run-fingerprint.png');
  await page.getByRole('button', { name: 'Trust this server' }).click();

  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByLabel('User name').fill('ann');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill('something else');
  assert.equal(await page.getByLabel('Name of this computer').inputValue(), 'laptop', 'the host name is suggested');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('The passwords do not match.').waitFor();
  await page.getByLabel('Repeat the password').fill(PASSWORD);
  await screenshot(page, '03-first-run-account.png');
  await page.getByRole('button', { name: 'Create account' }).click();

  await page.getByRole('heading', { name: 'Add a folder' }).waitFor();
  const config = readFileSync(join(laptop.home, 'config.toml'), 'utf8');
  assert.match(config, /user = "ann"/);
  assert.match(config, new RegExp(`fingerprint = "${server.fingerprint}"`));
  await waitFor('the laptop to connect', async () => (await page.locator('#conn').textContent()).includes('Connected'));
});

step('add a folder with the directory browser; a file made on the other computer shows as synced', async () => {
  await page.getByRole('button', { name: 'Documents' }).click();
  await waitFor('the browser to enter Documents', async () => (await page.getByLabel('Folder on this computer').inputValue()) === laptop.docs);
  assert.equal(await page.getByLabel('Name of the new server folder').inputValue(), 'Documents');
  await screenshot(page, '04-add-folder.png');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('heading', { name: 'Check before adding' }).waitFor();
  await screenshot(page, '05-add-folder-summary.png');
  await page.getByRole('button', { name: 'Add folder', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await card(page, 'Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });

  // The other computer joins from the command line and creates a file.
  desktop.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'desktop',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  desktop.run(['folder', 'add', desktop.docs, '--name', 'Documents']);
  await desktop.startAgent();
  writeFileSync(join(desktop.docs, 'report.txt'), 'quarterly numbers\n');
  writeFileSync(join(desktop.docs, 'notes.md'), '# notes\n');
  mkdirSync(join(desktop.docs, 'Projects', 'old'), { recursive: true });
  writeFileSync(join(desktop.docs, 'Projects', 'plan.txt'), 'the plan\n');

  await waitFor('the files to reach the laptop', () => existsSync(join(laptop.docs, 'report.txt')) &&
    existsSync(join(laptop.docs, 'notes.md')) && existsSync(join(laptop.docs, 'Projects', 'plan.txt')));
  const docs = card(page, 'Documents');
  await waitFor('the dashboard to show 3 synced files, up to date', async () =>
    (await docs.locator('dd').first().textContent()) === '3' && (await docs.textContent()).includes('Up to date'));
  assert.match(await page.locator('.totals').textContent(), /1 folder · 3 files/);
  // The dashboard names the files that changed lately.
  await waitFor('the recently changed files to be listed', async () => {
    const names = await page.locator('.recent-files code').allTextContents();
    return ['report.txt', 'notes.md', 'Projects/plan.txt'].every((n) => names.includes(n));
  });
  await screenshot(page, '06-dashboard.png');

  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, '07-dashboard-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });
});

step('change settings: validation next to the field, pause obeyed, a subfolder excluded', async () => {
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  await page.getByRole('heading', { name: 'Documents', level: 1 }).waitFor();
  await page.getByRole('heading', { name: 'Subfolders on this computer' }).waitFor();
  await page.getByRole('checkbox', { name: 'Projects', exact: true }).waitFor();

  // A wrong value is explained next to its field, and nothing is saved.
  await page.getByRole('radio', { name: 'Custom' }).check();
  await page.getByLabel('Custom schedule').fill('sometimes');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.locator('#schedule-error').getByText('is not a schedule').waitFor();

  // The ignore rules' preview shows what a rule would leave out.
  await page.getByLabel('Files and folders not to sync (.filesyncignore)').fill('*.md');
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.locator('.preview').getByText('notes.md').waitFor();
  await screenshot(page, '08-folder-settings.png');
  await page.getByLabel('Files and folders not to sync (.filesyncignore)').fill('');
  await page.getByLabel('Custom schedule').fill('every 1m');
  assert.equal(await page.locator('#schedule-error').isHidden(), true, 'the message goes once the field is edited');
  await page.getByRole('radio', { name: 'On every change' }).check();
  assert.equal(await page.getByLabel('Custom schedule').isHidden(), true, 'a preset needs no text');

  // Pause: the agent reports the folder paused and does not download meanwhile.
  await page.getByRole('button', { name: 'Pause syncing' }).click();
  await page.getByRole('button', { name: 'Resume syncing' }).waitFor();
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await card(page, 'Documents').getByText('Paused by you', { exact: true }).waitFor({ timeout: 20000 });
  await card(page, 'Documents').getByRole('button', { name: 'Resume' }).waitFor();
  writeFileSync(join(desktop.docs, 'while-paused.txt'), 'made while the laptop was paused\n');
  await waitFor('the desktop to upload it', () => {
    try { desktop.run(['history', join(desktop.docs, 'while-paused.txt')]); return true; } catch { return false; }
  });
  assert.equal(existsSync(join(laptop.docs, 'while-paused.txt')), false, 'a paused folder downloads nothing');
  await screenshot(page, '09-dashboard-paused.png');
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  await page.getByRole('button', { name: 'Resume syncing' }).click();
  await waitFor('the file to arrive once resumed', () => existsSync(join(laptop.docs, 'while-paused.txt')), 20000);

  // Selective sync: untick Projects; the agent removes it here, the desktop keeps it.
  await page.getByRole('checkbox', { name: 'Projects', exact: true }).uncheck();
  await page.getByRole('button', { name: 'Save subfolders' }).click();
  await waitFor('Projects to leave the laptop', () => !existsSync(join(laptop.docs, 'Projects')), 20000);
  assert.ok(existsSync(join(desktop.docs, 'Projects', 'plan.txt')), 'the other computer keeps it');
  assert.match(readFileSync(join(laptop.home, 'config.toml'), 'utf8'), /excluded = \["Projects"\]/);
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await card(page, 'Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
});

step('a download limit is obeyed; the dashboard shows live progress, what remains and the rate', async () => {
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  const applied = await lastApplied();
  await page.getByLabel('Download limit').fill('4M');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await waitFor('the limit to be saved', () => /download_limit = 4194304/.test(readFileSync(join(laptop.home, 'config.toml'), 'utf8')));
  await appliedAfter(applied);
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await card(page, 'Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  // Transfers advance in batches of up to 8 MiB: 24 MiB at 4 MiB/s shows progress along the way.
  const big = Buffer.alloc(24 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  const started = Date.now();
  writeFileSync(join(desktop.docs, 'video.bin'), big);
  const docs = card(page, 'Documents');
  await docs.getByText(/^Syncing/).waitFor({ timeout: 20000 });
  await waitFor('the tab title to show the share done', async () => /^⟳ \d+ % · FileSync$/.test(await page.title()));
  await waitFor('the progress to show what remains and the rate', async () => {
    const t = (await docs.locator('.progress').textContent({ timeout: 200 }).catch(() => '')) || '';
    return /remaining/.test(t) && /\/s/.test(t);
  });
  await screenshot(page, '10-dashboard-syncing.png');
  await waitFor('the file to arrive', () => existsSync(join(laptop.docs, 'video.bin')) &&
    statSync(join(laptop.docs, 'video.bin')).size === big.length, 40000);
  assert.ok(Date.now() - started > 4000, 'at 4 MiB/s, 24 MiB takes longer than 4 s');
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  await page.getByLabel('Download limit').fill('unlimited');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await waitFor('the limit to be lifted', () => !/download_limit/.test(readFileSync(join(laptop.home, 'config.toml'), 'utf8')));
  await page.getByRole('link', { name: 'Dashboard' }).click();
});

step('the mass-delete guard holds a big deletion until it is confirmed in the UI', async () => {
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  const applied = await lastApplied();
  await page.getByLabel('Mass-delete guard: share of files (%)').fill('10');
  await page.getByLabel('…and more than this many files').fill('2');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await appliedAfter(applied);
  const scratch = ['draft-1.txt', 'draft-2.txt', 'draft-3.txt'];
  for (const n of scratch) writeFileSync(join(laptop.docs, n), `${n}\n`);
  await waitFor('the drafts to reach the desktop', () => scratch.every((n) => existsSync(join(desktop.docs, n))), 20000);
  // Deleted while the folder is paused, so that one pass sees all three even when a busy
  // machine delivers the watcher's events more than its settle time apart (a burst spread
  // over passes trips the guard too, but only after its first deletions went through).
  await laptop.api('POST', '/folders/Documents/pause', { paused: true });
  for (const n of scratch) unlinkSync(join(laptop.docs, n));
  await laptop.api('POST', '/folders/Documents/pause', { paused: false });

  await page.getByRole('link', { name: 'Dashboard' }).click();
  const docs = card(page, 'Documents');
  await docs.getByText('Deletions wait for you to confirm them', { exact: true }).waitFor({ timeout: 20000 });
  await docs.getByRole('button', { name: 'Confirm the deletions…' }).waitFor();
  assert.ok(scratch.every((n) => existsSync(join(desktop.docs, n))), 'nothing was deleted elsewhere meanwhile');
  await screenshot(page, '11-mass-delete-guard.png');
  await docs.getByRole('button', { name: 'Confirm the deletions…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm the deletions' }).click();
  await waitFor('the deletions to reach the desktop', () => scratch.every((n) => !existsSync(join(desktop.docs, n))), 20000);
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });

  await docs.getByRole('link', { name: 'Documents' }).click();
  const again = await lastApplied();
  await page.getByLabel('Mass-delete guard: share of files (%)').fill('50');
  await page.getByLabel('…and more than this many files').fill('100');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await appliedAfter(again);
  await page.getByRole('link', { name: 'Dashboard' }).click();
});

step('a conflict is listed with both versions and resolved from the UI', async () => {
  // Both computers edit report.txt while the desktop's agent is stopped.
  await desktop.stopAgent();
  writeFileSync(join(laptop.docs, 'report.txt'), 'laptop version\n');
  writeFileSync(join(desktop.docs, 'report.txt'), 'desktop version\n');
  await waitFor('the laptop to upload its edit', async () => {
    const s = await page.evaluate(() => fetch('/api/status').then((r) => r.json()));
    return s.folders[0].state === 'idle' && s.folders[0].pending === 0 && s.folders[0].last_sync;
  });
  await desktop.startAgent();
  await waitFor('the conflict copy to reach the laptop', () =>
    readdirSync(laptop.docs).some((n) => n.includes('conflicted copy')), 30000);

  // Regression: "Up to date" showed while conflicts were open. The card, the dashboard's
  // line, the nav and the tab all say what needs the person.
  const docs = card(page, 'Documents');
  await docs.getByText('1 conflict needs you', { exact: true }).waitFor({ timeout: 20000 });
  assert.equal(await docs.getByText('Up to date').count(), 0, 'the card does not say up to date');
  assert.equal(await page.locator('.glance.overall .badge').textContent(), '1 conflict needs you');
  assert.equal(await page.locator('#nav-conflicts .count').textContent(), ': 1 open');
  await page.getByRole('link', { name: /^Conflicts\W+1 open$/ }).waitFor();
  await waitFor('the tab title to carry the conflict', async () => (await page.title()) === '1 conflict · FileSync');
  assert.match(await page.locator('#favicon').getAttribute('href'), /icon-warn\.svg$/);
  // Screen readers hear the one line that changed, not the dashboard.
  await waitFor('the change to be announced', async () =>
    (await page.locator('#announce').textContent()) === 'Documents: 1 conflict needs you');
  await screenshot(page, '12a-dashboard-conflict.png');

  await page.getByRole('link', { name: 'Conflicts' }).first().click();
  await page.getByRole('heading', { name: 'Conflicts' }).waitFor();
  const item = page.locator('li.conflict').first();
  await item.waitFor();
  await item.getByRole('button', { name: 'Keep theirs' }).waitFor();
  const text = await item.textContent();
  assert.match(text, /desktop/);
  assert.match(text, /laptop/);
  // Both files by their real names, and times in local time (never the copy name's UTC).
  const copyName = readdirSync(laptop.docs).find((n) => n.includes('conflicted copy'));
  assert.deepEqual(await item.locator('code.file-name').allTextContents(), ['report.txt', copyName]);
  assert.doesNotMatch(text, /UTC/);
  const [c] = await page.evaluate(() => fetch('/api/conflicts').then((r) => r.json()));
  const local = await page.evaluate((t) => new Date(t * 1000).toLocaleString(), c.original_time);
  assert.ok(text.includes(local), `the original's time ${local} is shown in local time: ${text}`);
  await screenshot(page, '12-conflicts.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, '12b-conflicts-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });
  await item.getByRole('button', { name: 'Keep theirs' }).click();
  await page.getByText('No conflicts').waitFor();
  assert.equal(readFileSync(join(laptop.docs, 'report.txt'), 'utf8'), 'desktop version\n', "the desktop's version won");
  assert.ok(!readdirSync(laptop.docs).some((n) => n.includes('conflicted copy')));
  await waitFor('the resolution to reach the desktop', () =>
    readFileSync(join(desktop.docs, 'report.txt'), 'utf8') === 'desktop version\n' &&
    !readdirSync(desktop.docs).some((n) => n.includes('conflicted copy')), 20000);
  await waitFor('the nav count to go', async () => (await page.locator('#nav-conflicts .count').count()) === 0);
  await waitFor('the tab title to say up to date', async () => (await page.title()) === 'Up to date · Conflicts · FileSync');
});

step('live updates patch the dashboard in place: focus and an opened details box stay', async () => {
  // A symbolic link is skipped on this computer, so the card has a "skipped" details box.
  symlinkSync('report.txt', join(laptop.docs, 'link-to-report'));
  await page.getByRole('link', { name: 'Dashboard' }).click();
  const docs = card(page, 'Documents');
  const details = docs.locator('details.skipped');
  await details.waitFor({ timeout: 20000 });
  assert.equal(await page.locator('main [aria-live]').count(), 0, 'the dashboard itself is not a live region');
  await details.locator('summary').click();
  assert.equal(await details.evaluate((d) => d.open), true);
  // The keyboard reaches the folder's link; both nodes are marked to prove they are the same later.
  const link = docs.getByRole('link', { name: 'Documents', exact: true });
  await link.focus();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Shift+Tab');
  await page.evaluate(() => { document.activeElement.probe = 'focused'; document.querySelector('details.skipped').probe = 'opened'; });
  const renders = async () => Number(await page.locator('.dashboard').getAttribute('data-renders'));
  const before = await renders();
  // Something changes: the other computer adds a file, the laptop syncs it.
  writeFileSync(join(desktop.docs, 'live.txt'), 'made during the live update\n');
  await waitFor('live.txt to reach the laptop', () => existsSync(join(laptop.docs, 'live.txt')), 20000);
  await waitFor('several live updates', async () => (await renders()) >= before + 3, 20000);
  assert.equal(await page.evaluate(() => document.activeElement.probe), 'focused', 'the focus stayed on the same link');
  assert.equal(await page.evaluate(() => document.querySelector('details.skipped').probe), 'opened', 'the same details box');
  assert.equal(await details.evaluate((d) => d.open), true, 'and it is still open');
  // The announcer speaks a line, never the whole dashboard.
  const said = await page.locator('#announce').textContent();
  assert.ok(said.length < 120 && !said.includes('skipped'), `announced: ${said}`);
  // Each card shows how the folder syncs.
  const facts = await docs.locator('.facts').textContent();
  assert.match(facts, /DirectionTwo-way/);
  assert.match(facts, /SyncsOn every change/);
  assert.match(facts, /Not synced hereProjects/);
  await screenshot(page, '12b-dashboard-skipped-open.png');
  unlinkSync(join(laptop.docs, 'link-to-report'));
  await waitFor('the skipped box to go', async () => (await details.count()) === 0, 20000);
});

step('a scheduled folder says when it syncs next, and Sync now syncs it', async () => {
  const pictures = join(laptop.userDir, 'Pictures');
  laptop.run(['folder', 'add', pictures, '--name', 'Pictures']);
  laptop.run(['folder', 'set', 'Pictures', 'schedule', 'every 5m']);
  const pics = card(page, 'Pictures');
  await pics.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  await pics.getByText(/^Next sync in [45] min$/).waitFor({ timeout: 20000 });
  assert.match(await pics.locator('.facts').textContent(), /SyncsEvery 5 min/);

  // A change here waits for the schedule: the card says when, not "Up to date".
  writeFileSync(join(pictures, 'holiday.txt'), 'sunny\n');
  await pics.getByText(/^Next sync in [45] min$/).first().waitFor();
  await waitFor('the card to say a change waits', async () => (await pics.textContent()).includes('Changes waiting for the next scheduled sync'), 20000);
  assert.equal(await pics.getByText('Up to date').count(), 0, 'not up to date while a change waits');
  await screenshot(page, '12c-dashboard-scheduled.png');
  await pics.getByRole('button', { name: 'Sync now' }).click();
  await waitFor('Sync now to upload the change', () => {
    try { laptop.run(['history', join(pictures, 'holiday.txt')]); return true; } catch { return false; }
  }, 20000);
  await pics.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  laptop.run(['folder', 'remove', 'Pictures']);
  await waitFor('the Pictures card to go', async () => (await pics.count()) === 0, 20000);
});

step('a deleted file is restored from the trash; older versions are listed', async () => {
  unlinkSync(join(desktop.docs, 'notes.md'));
  await waitFor('the deletion to reach the laptop', () => !existsSync(join(laptop.docs, 'notes.md')), 20000);
  await page.getByRole('link', { name: 'History' }).click();
  await page.getByRole('heading', { name: 'History and trash' }).waitFor();
  const item = page.locator('li.row-item[data-path="notes.md"]');
  await item.waitFor();
  assert.match(await item.textContent(), /desktop/);
  await page.getByLabel('Find a file').fill('report');
  await waitFor('the file list to show only matches', async () => {
    const names = await page.locator('ul.files code').allTextContents();
    return names.length === 1 && names[0] === 'report.txt';
  });
  await page.getByRole('button', { name: /report\.txt/ }).click();
  await page.getByRole('heading', { name: 'Versions of report.txt' }).waitFor();
  assert.ok(await page.locator('#versions li.row-item').count() >= 3, 'every version is listed');
  // Versions are named by their local time, not by the server's revision numbers.
  const hist = await page.evaluate(() => fetch('/api/history?folder=Documents&path=report.txt').then((r) => r.json()));
  const labels = await page.locator('#versions .version-time').allTextContents();
  const times = await page.evaluate((vs) => vs.map((v) => new Date(v.committed_at * 1000).toLocaleString()), hist.versions);
  assert.deepEqual(labels.map((l) => l.replace(/(Current|Deleted)$/, '')), times);
  // "rev" as a word: the Preview buttons contain those letters.
  assert.doesNotMatch(await page.locator('#versions').textContent(), /Version \d|\brev\b/i);
  await screenshot(page, '13-history-and-trash.png');
  await item.getByRole('button', { name: 'Restore notes.md', exact: true }).click();
  // The toast names the version by who saved it and when, in local time.
  const toastText = await waitFor('the restore to be confirmed', async () => {
    const t = await page.locator('#toast').textContent();
    return /^Restored notes\.md to its version from desktop\. That version is from /.test(t) && t;
  });
  assert.doesNotMatch(toastText, /version \d|UTC/);
  await waitFor('notes.md to come back on both computers', () =>
    existsSync(join(laptop.docs, 'notes.md')) && existsSync(join(desktop.docs, 'notes.md')), 20000);
  assert.equal(readFileSync(join(laptop.docs, 'notes.md'), 'utf8'), '# notes\n');
  await waitFor('notes.md to leave the trash', async () => (await item.count()) === 0);
});

step('activity is listed and searchable', async () => {
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.getByRole('heading', { name: 'Activity' }).waitFor();
  await page.locator('.entry').first().waitFor();
  const all = await page.locator('.entry').count();
  await page.getByLabel('Search the activity').fill('report.txt');
  await waitFor('the search to filter', async () => {
    const shown = await page.locator('.entry').allTextContents();
    return shown.length >= 1 && shown.length < all && shown.every((t) => t.includes('report.txt'));
  });
  // Regression: entries said "synced: 1 downloaded" and a search by file name found nothing.
  await page.getByLabel('Search the activity').fill('plan.txt');
  await waitFor('a sync entry naming its files to be found by the name', async () => {
    const found = await page.locator('.entry').evaluateAll((es) => es.map((e) => [e.className, e.textContent]));
    return found.length >= 1 && found.every(([c]) => c.includes('entry-sync')) &&
      found.some(([, t]) => /downloaded \(/.test(t) && /plan\.txt/.test(t));
  });
  await page.getByLabel('Search the activity').fill('report.txt');
  await screenshot(page, '14-activity.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, '14d-activity-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });
});

step('a download-only folder is reverted from its page, as the CLI can; the message names that button', async () => {
  const before = await lastApplied();
  const set = await laptop.api('PUT', '/folders/Documents/settings', { changes: [['direction', 'download-only']] });
  assert.match(set.messages[0], /^Direction: download-only .*Revert on the folder's page/, 'the UI is pointed to its own button');
  assert.doesNotMatch(set.messages.join(' '), /`|filesync folder/, 'no command-line syntax in the UI');
  await appliedAfter(before);
  const theirs = readFileSync(join(desktop.docs, 'report.txt'), 'utf8');
  writeFileSync(join(laptop.docs, 'report.txt'), 'an edit that stays here\n');
  writeFileSync(join(laptop.docs, 'only-here.txt'), 'never uploaded\n');
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await card(page, 'Documents').getByText('Download only', { exact: true }).waitFor();
  await card(page, 'Documents').getByRole('link', { name: 'Documents' }).click();
  await page.getByRole('heading', { name: 'Revert' }).waitFor();
  await page.getByRole('button', { name: 'Revert…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByText(/make this computer equal to the server: .*local file\(s\) replaced/).waitFor();
  await screenshot(page, '14c-revert-confirm.png');
  await dialog.getByRole('button', { name: 'Revert' }).click();
  await waitFor('the revert to restore the server copy and remove the local-only file', () =>
    readFileSync(join(laptop.docs, 'report.txt'), 'utf8') === theirs && !existsSync(join(laptop.docs, 'only-here.txt')), 20000);
  assert.ok(!existsSync(join(desktop.docs, 'only-here.txt')), 'nothing was uploaded');
  const back = await lastApplied();
  await laptop.api('PUT', '/folders/Documents/settings', { changes: [['direction', 'two-way']] });
  await appliedAfter(back);
});

step('the server goes away: offline, with the next try and Retry now, never "Up to date"', async () => {
  await page.getByRole('link', { name: 'Dashboard' }).click();
  const docs = card(page, 'Documents');
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  await server.stopAndWait();
  await docs.getByText(/^Offline since \d\d:\d\d · retrying (in \d+ s|now)$/).waitFor({ timeout: 20000 });
  assert.equal(await docs.getByText('Up to date').count(), 0, 'regression: up to date while the server was gone');
  await waitFor('the tab title to say offline', async () => (await page.title()) === 'Offline · FileSync');
  assert.match(await page.locator('#favicon').getAttribute('href'), /icon-warn\.svg$/);
  const retry = page.locator('.glance.overall').getByRole('button', { name: 'Retry now' });
  await retry.waitFor();
  await screenshot(page, '14a-dashboard-offline.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, '14b-dashboard-offline-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });

  // The agent backs off; once its next try is far enough away, the server comes back and
  // Retry now connects long before that try.
  const status = () => page.evaluate(() => fetch('/api/status').then((r) => r.json()));
  const far = await waitFor('a long wait before the next try', async () => {
    const s = await status();
    return s.next_retry_at && s.next_retry_at - Date.now() / 1000 > 10 && s;
  }, 40000);
  assert.ok(far.offline_since <= Date.now() / 1000, 'the status says since when');
  server = await TestServer.start(dir, server.addr);
  await retry.click();
  await waitFor('the laptop to reconnect', async () => (await status()).connection === 'online', 8000);
  assert.ok(Date.now() / 1000 < far.next_retry_at, 'Retry now reconnected before the scheduled try');
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  // The other computer's agent is asked the same through its API, as a script would.
  await desktop.api('POST', '/reconnect');
  await waitFor('the desktop to reconnect', async () => (await desktop.api('GET', '/status')).connection === 'online', 40000);
});

step('revoke the other computer: it goes offline', async () => {
  const other = await openPage(browser, desktop.url);
  await other.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await waitFor('the desktop to be connected', async () => (await other.locator('#conn').textContent()).includes('Connected'));

  await page.getByRole('link', { name: 'Devices' }).click();
  await page.getByRole('heading', { name: 'Devices' }).waitFor();
  const row = page.locator('li.device[data-device="desktop"]');
  await row.waitFor();
  assert.match(await page.locator('li.device[data-device="laptop"]').textContent(), /This computer/);
  await screenshot(page, '15-devices.png');

  // The keyboard alone reaches the button, opens the confirmation, and Escape cancels it;
  // whatever has the focus shows a visible outline.
  await page.locator('main .screen-title').focus();
  const revoke = row.getByRole('button', { name: 'Revoke desktop' });
  await waitFor('Tab to reach the revoke button', async () => {
    if (await revoke.evaluate((b) => b === document.activeElement)) return true;
    await page.keyboard.press('Tab');
    return false;
  }, 10000);
  const outline = await revoke.evaluate((b) => getComputedStyle(b).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused button shows a focus ring');
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel', 'the safe choice has the focus');
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  assert.doesNotMatch(await row.textContent(), /Revoked/);

  await revoke.click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await screenshot(page, '16-revoke-confirm.png');
  await dialog.getByRole('button', { name: 'Revoke' }).click();
  await row.getByText('Revoked').waitFor();

  await waitFor('the desktop to show it is no longer accepted', async () =>
    (await other.locator('#conn').textContent()).includes('Not accepted'), 20000);
  await other.getByText('What to do:').first().waitFor();
  // Regression: the card promised that syncing "resumes by itself"; only logging in again helps.
  const revokedCard = card(other, 'Documents');
  await revokedCard.getByRole('link', { name: 'Log in again…' }).waitFor();
  assert.doesNotMatch(await other.locator('main').textContent(), /by itself/, 'no false promise on the revoked computer');
  assert.match(await revokedCard.textContent(), /logs in again/);
  await screenshot(other, '17-revoked-computer.png');
  await other.setViewportSize({ width: 390, height: 844 });
  await screenshot(other, '17a-revoked-computer-phone.png');
  await other.setViewportSize({ width: 1280, height: 860 });

  // A device can be renamed, revoked or not.
  await row.getByRole('button', { name: 'Rename desktop' }).click();
  await page.getByLabel('New name').fill('old desktop');
  await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
  await page.locator('li.device[data-device="old desktop"]').getByText('Revoked').waitFor();
  revokedPage = other;
});

step('the revoked computer logs in again with its password only: one row for it, and it syncs again', async () => {
  const other = revokedPage;
  await other.locator('.glance.overall').getByRole('link', { name: 'Log in again…' }).click();
  await other.getByRole('heading', { name: 'Log in again' }).waitFor();
  const form = other.locator('form[aria-labelledby="again-title"]');
  const kept = await form.textContent();
  for (const want of ['ann', server.addr, 'desktop']) assert.ok(kept.includes(want), `${want} is kept: ${kept}`);
  await other.getByLabel('Password', { exact: true }).fill('not the password');
  await other.getByRole('button', { name: 'Log in again' }).click();
  await other.locator('#password-error').getByText('the password is wrong').waitFor();
  await screenshot(other, '17b-log-in-again.png');
  await other.setViewportSize({ width: 390, height: 844 });
  await screenshot(other, '17c-log-in-again-phone.png');
  await other.setViewportSize({ width: 1280, height: 860 });
  await other.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await other.getByRole('button', { name: 'Log in again' }).click();
  await other.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await waitFor('the desktop to be connected again', async () => (await other.locator('#conn').textContent()).includes('Connected'), 20000);
  await card(other, 'Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });

  // Its folder syncs again, both ways.
  writeFileSync(join(laptop.docs, 'after-revoke.txt'), 'back in\n');
  await waitFor('a new file to reach the desktop', () => existsSync(join(desktop.docs, 'after-revoke.txt')), 20000);
  writeFileSync(join(desktop.docs, 'from-desktop.txt'), 'hello again\n');
  await waitFor('a new file to reach the laptop', () => existsSync(join(laptop.docs, 'from-desktop.txt')), 20000);

  // The laptop's Devices list has one row for it, live again (the server reused its row).
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.getByRole('link', { name: 'Devices' }).click();
  await page.locator('li.device[data-device="desktop"]').waitFor();
  const rows = await page.locator('li.device').allTextContents();
  assert.equal(rows.length, 2, `one row per computer: ${rows.join(' | ')}`);
  assert.doesNotMatch(rows.join(' '), /Revoked|old desktop/);
  assert.deepEqual(other.problems.filter((p) => !p.includes('Failed to load resource')), []);
  await other.close();

  // From the command line: a revoked computer logs in again with `login-again`, and a revoked
  // computer can be removed from the list (in the UI here, with `devices remove` there).
  const spare = new Computer(dir, 'spare');
  spare.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'spare',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  const spareId = () => JSON.parse(spare.run(['devices', 'list', '--json'])).find((d) => d.current).id;
  const id = spareId();
  await laptop.api('POST', `/devices/${id}/revoke`, {});
  assert.throws(() => spare.run(['devices', 'list']), /log in again/);
  spare.run(['login-again', '--password-stdin'], `${PASSWORD}\n`);
  assert.equal(spareId(), id, 'the same device, not a new one');
  const twice = new Computer(dir, 'twice');
  twice.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'twice',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  const twiceId = JSON.parse(twice.run(['devices', 'list', '--json'])).find((d) => d.current).id;
  spare.run(['devices', 'revoke', String(twiceId)]);
  assert.throws(() => spare.run(['devices', 'remove', String(id)]), /computer you are using/, 'never the computer in use');
  spare.run(['devices', 'remove', String(twiceId)]);
  // A revoked computer logs out without a detour: its token is already dead on the server.
  assert.match(twice.run(['logout']), /Logged out/);
  assert.ok(!JSON.parse(spare.run(['devices', 'list', '--json'])).some((d) => d.id === twiceId), 'removed with the CLI');
  spare.run(['logout']);

  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.getByRole('link', { name: 'Devices' }).click();
  const spareRow = page.locator('li.device[data-device="spare"]');
  await spareRow.getByText('Revoked').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Remove desktop' }).count(), 0, 'only revoked devices can be removed');
  await spareRow.getByRole('button', { name: 'Remove spare' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await waitFor('the revoked device to leave the list', async () => (await spareRow.count()) === 0);
  await screenshot(page, '17d-devices-after-log-in-again.png');
});

step('the account screen shows the pinned server and logs out', async () => {
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Account' }).waitFor();
  // The pinned fingerprint, in groups of four to compare by eye, the whole one in its title.
  const groups = await page.locator('main .fp-groups .fp-group').allTextContents();
  assert.equal(groups.join('').toLowerCase(), server.fingerprint.replace(/^SHA256:/, '').toLowerCase());
  assert.equal(await page.locator('main .fp-groups').getAttribute('title'), server.fingerprint);
  await page.getByLabel('Current password').fill('not the password');
  await page.getByLabel('New password', { exact: true }).fill('a brand new password');
  await page.getByLabel('Repeat the new password').fill('a brand new password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.locator('#current_password-error').getByText('the current password is wrong').waitFor();
  await screenshot(page, '18-account.png');
  // Another computer of the account, logged out by the change below.
  const phone = new Computer(dir, 'phone');
  phone.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'phone',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  phone.run(['devices', 'list']);
  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByLabel('Log out every other computer').check();
  await page.getByRole('button', { name: 'Change password' }).click();
  await waitFor('the form to clear', async () => (await page.getByLabel('Current password').inputValue()) === '');
  await page.getByText('every other computer is logged out').waitFor();
  assert.throws(() => phone.run(['devices', 'list']), /log in again/, 'the other computer is logged out');
  const tablet = new Computer(dir, 'tablet');
  tablet.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'tablet',
    '--fingerprint', server.fingerprint], 'a brand new password\n');

  await page.getByRole('button', { name: 'Log out…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Welcome to FileSync' }).waitFor();
  assert.equal(existsSync(join(laptop.home, 'token')), false, 'the token is gone');
});
