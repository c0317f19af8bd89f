// A newcomer's second computer, in a real browser: "desktop" already syncs Documents (set up
// from the command line); "laptop" joins it entirely in the UI. Covers the fingerprint shown
// in groups and a pasted one ticked live, the server address pasted as a URL, add-folder
// defaulting to the server's existing folders (never the home directory), folders already
// synced marked in the browser, nesting refused at the review step, the schedule as choices,
// the phone menu, progress naming the file with an ETA, a file still being written, an
// excluded subfolder that cannot be removed and why, and "Offline since HH:MM". Each step
// leaves screenshots (n…png) at desktop and phone width in test-artifacts/ui/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, existsSync, mkdirSync, appendFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TestServer, Computer, launchBrowser, openPage, screenshot, tempDir, waitFor, stepper, tearDown, PASSWORD } from './support.mjs';

let dir, server, laptop, desktop, browser, page;

const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

before(async () => {
  dir = tempDir();
  server = await TestServer.start(dir);
  desktop = new Computer(dir, 'desktop');
  laptop = new Computer(dir, 'laptop');
  // The first computer: an account, Documents with a few files, from the command line.
  desktop.run(['register', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'desktop',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  writeFileSync(join(desktop.docs, 'report.txt'), 'quarterly numbers\n');
  mkdirSync(join(desktop.docs, 'Projects', 'old'), { recursive: true });
  writeFileSync(join(desktop.docs, 'Projects', 'plan.txt'), 'the plan\n');
  writeFileSync(join(desktop.docs, 'Projects', 'old', 'notes.txt'), 'old notes\n');
  desktop.run(['folder', 'add', desktop.docs, '--name', 'Documents']);
  await desktop.startAgent();
  await waitFor('the desktop to upload Documents', () => {
    try { desktop.run(['history', join(desktop.docs, 'Projects', 'old', 'notes.txt')]); return true; } catch { return false; }
  });
  await laptop.startAgent();
  browser = await launchBrowser(dir);
});

after(() => tearDown({ page, browser, computers: [laptop, desktop], server, dir }));

/// A step of the scenario; when it fails, a screenshot of the page shows where.
const step = stepper('n-', () => page);

/// Screenshots the page at desktop width, then at phone width, and back.
async function both(name) {
  await screenshot(page, `${name}.png`);
  await page.setViewportSize(PHONE);
  await screenshot(page, `${name}-phone.png`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= PHONE.width, `${name}: nothing wider than the phone (${wide} px)`);
  await page.setViewportSize(DESKTOP);
}

const card = (folder) => page.locator(`li.folder[data-folder="${folder}"]`);
const config = () => readFileSync(join(laptop.home, 'config.toml'), 'utf8');
const status = () => page.evaluate(() => fetch('/api/status').then((r) => r.json()));

async function dashboard() {
  await page.goto(new URL('/#/', page.url()).href);
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

step('first run: the server address pasted as a URL, the fingerprint in groups, a pasted one ticked live', async () => {
  page = await openPage(browser, laptop.url);
  await page.getByRole('heading', { name: 'Welcome to FileSync' }).waitFor();
  await page.getByLabel('Server address').fill(`https://${server.addr}/`);
  await page.getByRole('button', { name: 'Check server' }).click();
  await page.getByRole('heading', { name: 'Is this your server?' }).waitFor();
  assert.match(await page.locator('main').textContent(), new RegExp(`The server at ${server.addr.replace(/\./g, '\\.')} presents`), 'the URL was read as host:port');

  const digits = server.fingerprint.replace(/^SHA256:/, '').toUpperCase();
  const groups = await page.locator('#fingerprint .fp-group').allTextContents();
  assert.deepEqual(groups, digits.match(/.{4}/g), 'sixteen groups of four, in order');
  const paste = page.getByLabel('Or paste the fingerprint from the server');
  const verdict = page.locator('#fp-verdict');
  // Typed part of the way: it matches so far; the groups typed are ticked.
  await paste.pressSequentially(digits.slice(0, 9).toLowerCase());
  await waitFor('a partial match', async () => /So far it matches \(9 of 64 characters\)/.test(await verdict.textContent()));
  assert.equal(await page.locator('.fp-group.fp-ok').count(), 2);
  // A different one is marked at the group where it differs.
  const wrong = digits.slice(0, 20) + (digits[20] === '0' ? '1' : '0') + digits.slice(21);
  await paste.fill(wrong);
  await waitFor('the difference to be marked', async () => /Different .* from group 6 on/.test(await verdict.textContent()));
  assert.equal(await page.locator('.fp-group.fp-bad').getAttribute('data-i'), '5');
  await both('n01-fingerprint-differs');
  // Pasted as the server prints it (with the prefix, in any case and with spaces): ticked.
  await paste.fill(`sha256: ${digits.match(/.{4}/g).join(' ').toLowerCase()}`);
  await waitFor('the match to be ticked', async () => (await verdict.textContent()).startsWith('✓ Matches'));
  assert.equal(await page.locator('.fp-group.fp-ok').count(), 16);
  await both('n02-fingerprint-matches');
  await page.getByRole('button', { name: 'Trust this server' }).click();

  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByLabel('Yes — log in').check();
  await page.getByLabel('User name').fill('ann');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Add a folder' }).waitFor();
  assert.match(config(), new RegExp(`server = "${server.addr}"`));
});

step("a second computer's add-folder defaults to the server's folders, never to the home directory", async () => {
  const existing = page.getByRole('radio', { name: /^Documents — on 1 other computer \(desktop\) · 3 files$/ });
  await existing.waitFor();
  assert.equal(await existing.isChecked(), true, 'the folder the other computer syncs is chosen');
  assert.equal(await page.getByLabel('Name of the new server folder').isDisabled(), true);
  assert.equal(await page.getByLabel('Folder on this computer').inputValue(), '', 'the home directory is not chosen for the person');
  await both('n03-add-folder-second-computer');
  // Review without a folder: told to choose one.
  await page.getByRole('button', { name: 'Review' }).click();
  await page.locator('#path-error').getByText('Choose a folder on this computer').waitFor();
  await page.getByRole('button', { name: 'Documents' }).click();
  await waitFor('Documents to be chosen', async () => (await page.getByLabel('Folder on this computer').inputValue()) === laptop.docs);
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('heading', { name: 'Check before adding' }).waitFor();
  assert.match(await page.locator('.summary').textContent(), /Documents \(existing — its files will be downloaded here\)/);
  assert.match(await page.locator('.summary').textContent(), /When to syncOn every change/);
  await page.getByRole('button', { name: 'Add folder', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await waitFor('the files to arrive', () => existsSync(join(laptop.docs, 'Projects', 'old', 'notes.txt')), 30000);
  await card('Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 30000 });
});

step('the schedule is offered as choices, and the one chosen is saved', async () => {
  await page.getByRole('link', { name: 'Add folder' }).first().click();
  await page.getByRole('heading', { name: 'Add a folder' }).waitFor();
  await page.getByRole('button', { name: 'Pictures' }).click();
  await waitFor('Pictures to be chosen', async () => (await page.getByLabel('Folder on this computer').inputValue()) === join(laptop.userDir, 'Pictures'));
  await page.getByRole('radio', { name: 'A new folder on the server' }).check();
  assert.equal(await page.getByLabel('Name of the new server folder').inputValue(), 'Pictures');
  for (const name of ['On every change', 'Every 5 minutes', 'Hourly', 'Daily', 'Custom']) {
    await page.getByRole('radio', { name: new RegExp(`^${name}`) }).waitFor();
  }
  assert.equal(await page.getByLabel('Custom schedule').isHidden(), true);
  await page.getByRole('radio', { name: 'Every 5 minutes' }).check();
  await both('n04-schedule-choices');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('heading', { name: 'Check before adding' }).waitFor();
  assert.match(await page.locator('.summary').textContent(), /When to syncEvery 5 minutes/);
  await page.getByRole('button', { name: 'Add folder', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await waitFor('the schedule to be saved', () => /name = "Pictures"[\s\S]*schedule = "every 5m"/.test(config()));
  await card('Pictures').getByText('Every 5 min').waitFor();

  // A custom schedule is typed; the folder page shows the saved one chosen.
  await card('Pictures').getByRole('link', { name: 'Pictures' }).click();
  await page.getByRole('heading', { name: 'Pictures', level: 1 }).waitFor();
  assert.equal(await page.getByRole('radio', { name: 'Every 5 minutes' }).isChecked(), true);
  await page.getByRole('radio', { name: 'Custom' }).check();
  await page.getByLabel('Custom schedule').fill('every 2h');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await waitFor('the custom schedule to be saved', () => /schedule = "every 2h"/.test(config()));
  await waitFor('the custom schedule to show', async () => (await page.getByLabel('Custom schedule').inputValue()) === 'every 2h');
});

step('folders already synced are marked in the browser, and nesting is refused at the review step', async () => {
  mkdirSync(join(laptop.docs, 'Inner'), { recursive: true });
  await dashboard();
  await page.getByRole('link', { name: 'Add folder' }).first().click();
  await page.getByRole('heading', { name: 'Add a folder' }).waitFor();
  const docs = page.getByRole('button', { name: /^Documents/ });
  await docs.getByText('Synced as Documents').waitFor();
  await page.getByRole('button', { name: /^Pictures/ }).getByText('Synced as Pictures').waitFor();
  await both('n05-browser-marks');
  await docs.click();
  await page.getByText('This folder is already synced, as Documents or inside it').waitFor();
  await page.getByRole('button', { name: 'Inner' }).click();
  await waitFor('Inner to be chosen', async () => (await page.getByLabel('Folder on this computer').inputValue()) === join(laptop.docs, 'Inner'));
  await page.getByRole('radio', { name: 'A new folder on the server' }).check();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('heading', { name: 'Check before adding' }).waitFor();
  const problem = page.locator('#review-problem');
  await problem.getByText('is inside the synced folder Documents').waitFor();
  assert.match(await problem.textContent(), /Choose a folder outside it/);
  assert.equal(await page.getByRole('button', { name: 'Add folder', exact: true }).count(), 0, 'nothing to confirm');
  await both('n06-nesting-refused');
  await page.getByRole('button', { name: 'Choose another folder' }).click();
  await page.getByRole('button', { name: 'Review' }).waitFor();
  assert.doesNotMatch(config(), /name = "Inner"/);
});

step('on a phone, the menu reaches every screen, by touch and by keyboard', async () => {
  await dashboard();
  await page.setViewportSize(PHONE);
  const menu = page.getByRole('button', { name: 'Menu' });
  await menu.waitFor();
  assert.equal(await page.locator('#nav').isVisible(), false, 'folded');
  await screenshot(page, 'n07-phone-menu-closed.png');
  await menu.click();
  assert.equal(await menu.getAttribute('aria-expanded'), 'true');
  const links = page.locator('#nav a');
  assert.equal(await links.count(), 7);
  for (let i = 0; i < 7; i++) {
    const box = await links.nth(i).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width && box.y + box.height <= PHONE.height,
      `${await links.nth(i).textContent()} is on screen: ${JSON.stringify(box)}`);
  }
  await screenshot(page, 'n08-phone-menu-open.png');
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Account' }).waitFor();
  assert.equal(await page.locator('#nav').isVisible(), false, 'following a link folds the menu');

  // By keyboard: Enter opens it on the first item, Tab walks the items, Escape folds it.
  await menu.focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Dashboard');
  for (let i = 0; i < 6; i++) await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Account');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#nav').isVisible(), false);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'menu-button');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Add a folder' }).waitFor();
  await page.setViewportSize(DESKTOP);
  assert.equal(await menu.isVisible(), false, 'no menu button at desktop width');
  assert.equal(await page.locator('#nav').isVisible(), true);
});

step('progress names the file being moved, with a percentage and the time left', async () => {
  await dashboard();
  await laptop.api('PUT', '/folders/Documents/settings', { changes: [['download-limit', '4M']] });
  await waitFor('the limit to be saved', () => /download_limit = 4194304/.test(config()));
  await card('Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  const big = Buffer.alloc(24 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(desktop.docs, 'video.bin'), big);
  const docs = card('Documents');
  await waitFor('the progress to name the file, the share done and the time left', async () => {
    const t = (await docs.locator('.progress').textContent({ timeout: 200 }).catch(() => '')) || '';
    return /Downloading video\.bin \d+ %/.test(t) && /about \d+ (s|min) left/.test(t);
  }, 30000);
  await both('n09-progress-file-eta');
  await waitFor('the file to arrive', () => existsSync(join(laptop.docs, 'video.bin')) &&
    statSync(join(laptop.docs, 'video.bin')).size === big.length, 40000);
  await laptop.api('PUT', '/folders/Documents/settings', { changes: [['download-limit', 'unlimited']] });
  await waitFor('the limit to be lifted', () => !/download_limit/.test(config()));
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
});

step('a file still being written waits, and says so instead of "Up to date"', async () => {
  const docs = card('Documents');
  const growing = join(laptop.docs, 'recording.log');
  // Big enough that reading it takes longer than the gap between two writes.
  writeFileSync(growing, Buffer.alloc(24 << 20, 7));
  const chunk = Buffer.alloc(64 << 10, 9);
  const writer = setInterval(() => appendFileSync(growing, chunk), 5);
  try {
    await docs.getByText('1 file waiting (still being written)', { exact: true }).waitFor({ timeout: 30000 });
    const f = (await status()).folders.find((x) => x.name === 'Documents');
    assert.deepEqual(f.changing, ['recording.log']);
    assert.equal(f.in_sync, false);
    assert.match(await docs.locator('.glance .detail').textContent(), /recording\.log is still changing; it syncs once it stops/);
    await both('n10-still-being-written');
  } finally {
    clearInterval(writer);
  }
  // Once it stops growing it is read whole, uploaded, and the folder is up to date.
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 30000 });
  await waitFor('the whole file to reach the desktop', () => existsSync(join(desktop.docs, 'recording.log')) &&
    statSync(join(desktop.docs, 'recording.log')).size === statSync(growing).size, 40000);
});

step('an excluded subfolder that cannot be removed says why, on the card and the folder page', async () => {
  // Files the ignore rules leave out are never checked against the server: their subfolder stays.
  await laptop.api('PUT', '/folders/Documents/ignore', { text: '*.cache\n' });
  for (const n of ['a', 'b', 'c']) writeFileSync(join(laptop.docs, 'Projects', 'old', `${n}.cache`), 'scratch');
  await laptop.api('PUT', '/folders/Documents/settings', { changes: [['exclude', 'Projects']] });
  await waitFor('the synced files of Projects to go', () => !existsSync(join(laptop.docs, 'Projects', 'plan.txt')) &&
    !existsSync(join(laptop.docs, 'Projects', 'old', 'notes.txt')), 30000);
  assert.ok(existsSync(join(laptop.docs, 'Projects', 'old', 'a.cache')), 'the ignored files stay');
  const why = 'Projects is kept on this computer: 3 files in it are ignored by your rules, so FileSync cannot tell they are safely on the server.';
  const kept = card('Documents').locator('.kept');
  await waitFor('the card to say why', async () => ((await kept.textContent({ timeout: 200 }).catch(() => '')) || '').includes(why), 20000);
  // Nothing fails: the folder is in sync, and the notice says what stays and why.
  await card('Documents').getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  assert.equal(await card('Documents').getByText(/could not be synced/).count(), 0, 'regression: retried forever');
  await both('n11-kept-subfolder-card');
  await card('Documents').getByRole('link', { name: 'Documents' }).click();
  await page.getByRole('heading', { name: 'Documents', level: 1 }).waitFor();
  await page.locator('.live .kept').getByText('3 files in it are ignored by your rules').waitFor();
  await both('n12-kept-subfolder-page');
  // Once they are gone, so is the subfolder, and the explanation.
  for (const n of ['a', 'b', 'c']) rmSync(join(laptop.docs, 'Projects', 'old', `${n}.cache`));
  await laptop.api('POST', '/folders/Documents/sync');
  await waitFor('Projects to leave the laptop', () => !existsSync(join(laptop.docs, 'Projects')), 30000);
  await waitFor('the explanation to go', async () => (await page.locator('.live .kept').count()) === 0, 20000);
});

step('the server goes away: "Offline since HH:MM" in local time, counting down to the next try', async () => {
  await dashboard();
  const docs = card('Documents');
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
  await server.stopAndWait();
  const line = docs.locator('.glance .badge');
  await waitFor('the card to say since when', async () => /^Offline since \d\d:\d\d · retrying (in \d+ (s|min)|now)$/.test(await line.textContent()), 30000);
  const s = await status();
  const expected = await page.evaluate((t) => {
    const d = new Date(t * 1000);
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }, s.offline_since);
  assert.match(await line.textContent(), new RegExp(`^Offline since ${expected} · `), 'the browser\'s local clock time');
  // The countdown moves between status updates.
  const far = await waitFor('a wait of several seconds before the next try', async () => {
    const t = await line.textContent();
    const m = t.match(/retrying in (\d+) s$/);
    return m && Number(m[1]) >= 4 && Number(m[1]);
  }, 40000);
  await waitFor('the countdown to tick', async () => {
    const m = (await line.textContent()).match(/retrying in (\d+) s$/);
    return m && Number(m[1]) < far;
  }, 5000);
  await page.locator('.glance.overall').getByRole('button', { name: 'Retry now' }).waitFor();
  await both('n13-offline-since');
  server = await TestServer.start(dir, server.addr);
  await page.locator('.glance.overall').getByRole('button', { name: 'Retry now' }).click();
  await waitFor('the laptop to reconnect', async () => (await status()).connection === 'online', 15000);
  await docs.getByText('Up to date', { exact: true }).waitFor({ timeout: 20000 });
});

step('every screen, at desktop and at phone width, fits a phone without sideways scrolling', async () => {
  const screens = [
    ['/', 'Dashboard'], ['/add', 'Add a folder'], ['/conflicts', 'Conflicts'], ['/history', 'History and trash'],
    ['/devices', 'Devices'], ['/activity', 'Activity'], ['/account', 'Account'], ['/folder/Documents', 'Documents'],
  ];
  for (const [path, heading] of screens) {
    await page.goto(new URL(`/#${path}`, page.url()).href);
    await page.locator('main .screen-title').first().waitFor();
    assert.equal((await page.locator('main .screen-title').first().textContent()).trim(), heading, `${path}: its title`);
    await both(`n20-screen-${path.replace(/[^a-z]+/gi, '-').replace(/^-|-$/g, '') || 'dashboard'}`);
  }
});
