// Helpers for the browser tests: a real `filesync server`, real agents each with its own home,
// folder and user directory, Debian's Chromium driven by playwright-core, conditions awaited
// with deadlines (never fixed sleeps), and screenshots saved to test-artifacts/ui/.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, existsSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { test } from 'node:test';
import assert from 'node:assert/strict';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'ui');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery';

/// The newest `filesync` binary under target/ (or $FILESYNC_BIN).
export function filesyncBin() {
  if (process.env.FILESYNC_BIN) return process.env.FILESYNC_BIN;
  const candidates = ['release', 'debug'].map((p) => join(ROOT, 'target', p, 'filesync')).filter(existsSync);
  if (!candidates.length) throw new Error('no filesync binary: run `cargo build -p filesync` first (or set FILESYNC_BIN)');
  return candidates.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

/// Polls `cond` until it returns a truthy value; fails with `what` after `ms`.
export async function waitFor(what, cond, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

export class TestServer {
  /// Starts a server on a free port, or on `listen` (a restart keeps its address and data).
  static async start(dir, listen = '127.0.0.1:0') {
    const data = join(dir, 'server');
    const child = track(spawn(filesyncBin(), ['server', '--data', data, '--listen', listen], {
      env: { ...process.env, FILESYNC_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'],
    }));
    const lines = createInterface({ input: child.stdout });
    const s = new TestServer();
    s.child = child;
    await new Promise((resolveStart, reject) => {
      child.on('exit', (code) => reject(new Error(`server exited early (${code})`)));
      lines.on('line', (l) => {
        const a = l.match(/^FileSync server listening on (.+)$/);
        if (a) s.addr = a[1].trim();
        const f = l.match(/^certificate fingerprint: (.+)$/);
        if (f) s.fingerprint = f[1].trim();
        if (s.addr && s.fingerprint) resolveStart();
      });
    });
    return s;
  }

  stop() { this.child.kill('SIGTERM'); }

  /// Stops the server and waits until it has exited.
  async stopAndWait() {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((r) => { c.once('exit', r); c.kill('SIGTERM'); });
  }
}

/// One computer: a FileSync home, a user directory (what the folder picker shows) and an agent.
export class Computer {
  constructor(dir, name) {
    this.name = name;
    this.home = join(dir, `${name}-home`);
    this.userDir = join(dir, `${name}-user`);
    this.docs = join(this.userDir, 'Documents');
    mkdirSync(this.docs, { recursive: true });
    mkdirSync(join(this.userDir, 'Pictures'), { recursive: true });
    mkdirSync(join(this.userDir, 'Projects'), { recursive: true });
  }

  env() {
    return { ...process.env, FILESYNC_LOG: 'warn', HOME: this.userDir, HOSTNAME: this.name };
  }

  /// Runs a `filesync` command for this computer; throws on failure.
  run(args, input) {
    const r = spawnSync(filesyncBin(), ['--home', this.home, ...args], { env: this.env(), input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`filesync ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /// Starts the agent with its UI on a free loopback port; resolves once the UI answers.
  async startAgent() {
    const addrFile = join(this.home, 'ui-address');
    rmSync(addrFile, { force: true });
    this.agent = track(spawn(filesyncBin(), ['--home', this.home, 'agent', '--ui-listen', '127.0.0.1:0'], {
      env: this.env(), stdio: ['ignore', 'ignore', 'inherit'],
    }));
    const addr = await waitFor(`${this.name}'s agent to serve its UI`, () => existsSync(addrFile) && readFileSync(addrFile, 'utf8').trim());
    this.url = this.run(['ui', '--print-url']).trim();
    if (!this.url.startsWith(`http://${addr}/#key=`)) throw new Error(`unexpected UI URL ${this.url}`);
    return this.url;
  }

  /// Calls the agent's local API as a script would, with the UI secret from the home.
  async api(method, path, body) {
    const base = new URL(this.url).origin;
    const secret = readFileSync(join(this.home, 'ui-secret'), 'utf8').trim();
    const r = await fetch(`${base}/api${path}`, {
      method,
      headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  }

  /// Stops the agent the way a service manager does (SIGTERM) and waits for it to exit.
  async stopAgent() {
    const a = this.agent;
    if (!a || a.exitCode !== null) return;
    await new Promise((r) => { a.once('exit', r); a.kill('SIGTERM'); });
  }
}

/// Debian's Chromium, headless, in a fresh profile, with everything that phones home turned off.
export async function launchBrowser(dir) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  const profile = mkdtempSync(join(dir, 'chromium-profile-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--no-first-run', '--disable-default-apps', '--disable-extensions'],
  });
}

/// A page that records console errors and CSP violations, so a test can insist there are none.
export async function openPage(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(m.text()); });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  await page.goto(url);
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  // A toast from the previous step would cover part of a full-page picture of this one.
  // A sticky header would otherwise be drawn where the page was scrolled to.
  await page.evaluate(() => {
    const t = document.getElementById('toast');
    if (t) t.hidden = true;
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'filesync-ui-'));
}

/// The steps of one scenario: `step(name, fn)` runs `fn` as a test, and when it fails a
/// screenshot (`FAILED-<prefix><name>.png`) of the page `currentPage()` returns shows where.
export function stepper(prefix, currentPage) {
  return (name, fn) => test(name, async () => {
    try {
      await fn();
    } catch (e) {
      const page = currentPage();
      if (page) await screenshot(page, `FAILED-${prefix}${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`).catch(() => {});
      throw e;
    }
  });
}

/// Ends a scenario: its page had no script errors or CSP violations, then the browser, the
/// agents and the server stop and the temporary directory goes.
export async function tearDown({ page, browser, computers, server, dir }) {
  if (page) assert.deepEqual(page.problems.filter((p) => !p.includes('Failed to load resource')), [], 'no script errors or CSP violations');
  if (browser) await browser.close();
  for (const c of computers) if (c) await c.stopAgent();
  if (server) server.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
