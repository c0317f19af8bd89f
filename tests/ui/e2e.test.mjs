// FileSync's UI in a real browser: a real server, two real agents ("laptop", set up entirely
// in the UI, and "desktop", set up from the command line), Debian's headless Chromium. The
// steps run in order and each leaves a screenshot in test-artifacts/ui/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TestServer, Computer, launchBrowser, openPage, screenshot, tempDir, waitFor, PASSWORD } from './support.mjs';

let dir, server, laptop, desktop, browser, page;

before(async () => {
  dir = tempDir();
  server = await TestServer.start(dir);
  laptop = new Computer(dir, 'laptop');
  desktop = new Computer(dir, 'desktop');
  await laptop.startAgent(); // not logged in yet: it serves the first-run screen and waits
  browser = await launchBrowser(dir);
});

after(async () => {
  if (page) assert.deepEqual(page.problems.filter((p) => !p.includes('Failed to load resource')), [], 'no script errors or CSP violations');
  if (browser) await browser.close();
  if (laptop) await laptop.stopAgent();
  if (desktop) await desktop.stopAgent();
  if (server) server.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/// The dashboard card of `folder` on `p`.
const card = (p, folder) => p.locator(`li.folder[data-folder="${folder}"]`);

test('first run: confirm the server fingerprint, register, name this computer', async () => {
  page = await openPage(browser, laptop.url);
  assert.equal(new URL(page.url()).hash, '#/', 'the key leaves the address bar at once');
  await page.getByRole('heading', { name: 'Welcome to FileSync' }).waitFor();
  await page.getByLabel('Server address').fill(server.addr);
  await screenshot(page, '01-first-run-server.png');
  await page.getByRole('button', { name: 'Check server' }).click();

  await page.getByRole('heading', { name: 'Is this your server?' }).waitFor();
  assert.equal((await page.locator('#fingerprint').textContent()).trim(), server.fingerprint, 'the fingerprint is shown in full');
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

test('add a folder with the directory browser; a file made on the other computer shows as synced', async () => {
  await page.getByRole('button', { name: 'Documents' }).click();
  await waitFor('the browser to enter Documents', async () => (await page.getByLabel('Folder on this computer').inputValue()) === laptop.docs);
  assert.equal(await page.getByLabel('Name of the new server folder').inputValue(), 'Documents');
  await screenshot(page, '04-add-folder.png');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('heading', { name: 'Check before adding' }).waitFor();
  await screenshot(page, '05-add-folder-summary.png');
  await page.getByRole('button', { name: 'Add folder', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await card(page, 'Documents').getByText('Up to date').waitFor({ timeout: 20000 });

  // The other computer joins from the command line and creates a file.
  desktop.run(['login', '--server', server.addr, '--user', 'ann', '--password-stdin', '--device-name', 'desktop',
    '--fingerprint', server.fingerprint], `${PASSWORD}\n`);
  desktop.run(['folder', 'add', desktop.docs, '--name', 'Documents']);
  await desktop.startAgent();
  writeFileSync(join(desktop.docs, 'report.txt'), 'quarterly numbers\n');
  writeFileSync(join(desktop.docs, 'notes.md'), '# notes\n');

  await waitFor('the files to reach the laptop', () => existsSync(join(laptop.docs, 'report.txt')) && existsSync(join(laptop.docs, 'notes.md')));
  const docs = card(page, 'Documents');
  await waitFor('the dashboard to show 2 synced files, up to date', async () =>
    (await docs.locator('dd').first().textContent()) === '2' && (await docs.textContent()).includes('Up to date'));
  assert.match(await page.locator('.totals').textContent(), /1 folder · 2 files/);
  await screenshot(page, '06-dashboard.png');

  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, '07-dashboard-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });
});

test('a conflict is listed with both versions and resolved from the UI', async () => {
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

  await page.getByRole('link', { name: 'Conflicts' }).click();
  await page.getByRole('heading', { name: 'Conflicts' }).waitFor();
  const item = page.locator('li.conflict').first();
  await item.waitFor();
  await item.getByRole('button', { name: 'Keep theirs' }).waitFor();
  const text = await item.textContent();
  assert.match(text, /desktop/);
  assert.match(text, /laptop/);
  await screenshot(page, '08-conflicts.png');
  await item.getByRole('button', { name: 'Keep theirs' }).click();
  await page.getByText('No conflicts').waitFor();
  assert.equal(readFileSync(join(laptop.docs, 'report.txt'), 'utf8'), 'desktop version\n', "the desktop's version won");
  assert.ok(!readdirSync(laptop.docs).some((n) => n.includes('conflicted copy')));
  await waitFor('the resolution to reach the desktop', () =>
    readFileSync(join(desktop.docs, 'report.txt'), 'utf8') === 'desktop version\n' &&
    !readdirSync(desktop.docs).some((n) => n.includes('conflicted copy')), 20000);
});

test('activity is listed and searchable', async () => {
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.getByRole('heading', { name: 'Activity' }).waitFor();
  await page.locator('.entry').first().waitFor();
  const all = await page.locator('.entry').count();
  await page.getByLabel('Search the activity').fill('report.txt');
  await waitFor('the search to filter', async () => {
    const shown = await page.locator('.entry .message').allTextContents();
    return shown.length >= 1 && shown.length < all && shown.every((t) => t.includes('report.txt'));
  });
  await screenshot(page, '09-activity.png');
});

test('revoke the other computer: it goes offline', async () => {
  const other = await openPage(browser, desktop.url);
  await other.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await waitFor('the desktop to be connected', async () => (await other.locator('#conn').textContent()).includes('Connected'));

  await page.getByRole('link', { name: 'Devices' }).click();
  await page.getByRole('heading', { name: 'Devices' }).waitFor();
  const row = page.locator('li.device[data-device="desktop"]');
  await row.waitFor();
  assert.match(await page.locator('li.device[data-device="laptop"]').textContent(), /This computer/);
  await screenshot(page, '10-devices.png');
  await row.getByRole('button', { name: 'Revoke desktop' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await screenshot(page, '11-revoke-confirm.png');
  await dialog.getByRole('button', { name: 'Revoke' }).click();
  await row.getByText('Revoked').waitFor();

  await waitFor('the desktop to show it is no longer accepted', async () =>
    (await other.locator('#conn').textContent()).includes('Not accepted'), 20000);
  await other.getByText('What to do:').first().waitFor();
  await screenshot(other, '12-revoked-computer.png');
  assert.deepEqual(other.problems.filter((p) => !p.includes('Failed to load resource')), []);
  await other.close();
});

test('the account screen shows the pinned server and logs out', async () => {
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Account' }).waitFor();
  assert.match(await page.locator('main').textContent(), new RegExp(server.fingerprint));
  await screenshot(page, '13-account.png');
  await page.getByRole('button', { name: 'Log out…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Welcome to FileSync' }).waitFor();
  assert.equal(existsSync(join(laptop.home, 'token')), false, 'the token is gone');
});
