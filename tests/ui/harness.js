// The browser-test harness: starts the real `jitgate` binary in a temp data dir on a
// free loopback port (plain HTTP: Chromium treats 127.0.0.1 as a secure context, so
// the session cookie's `Secure` flag holds), reads the port from its log and the
// first-start admin credentials from `initial-admin.json`, sets people and policy up
// through the JSON API, and drives Debian's Chromium with playwright-core.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.JITGATE_BIN || join(HERE, '..', '..', 'target', 'debug', 'jitgate');
export const ARTIFACTS = join(HERE, 'artifacts');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery staple';

// CI runs as root; the binary refuses root without --allow-root (when it has it).
const SERVE_HELP = execFileSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
const ROOT_FLAGS = process.getuid && process.getuid() === 0 && SERVE_HELP.includes('--allow-root') ? ['--allow-root'] : [];

/** A running jitgate with an admin API client. `stop()` kills it and removes its dir. */
export async function startServer(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'jitgate-ui-'));
  const dataDir = join(dir, 'data');
  const env = { ...process.env };
  delete env.JITGATE_ADMIN_TOKEN; // first start makes its own admin token
  const child = spawn(BIN, ['serve', ...ROOT_FLAGS, '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--plain-http', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`jitgate did not listen within 30 s:\n${log}`)), 30000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`jitgate exited (${code}) before listening:\n${log}`));
    });
  });
  const admin = JSON.parse(readFileSync(join(dataDir, 'initial-admin.json'), 'utf8'));
  const server = {
    url,
    dir,
    adminPassword: admin.password,
    admin: client(url, { token: admin.token }),
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timeout = new Promise((resolve) => setTimeout(resolve, 10000, 'timeout'));
        if (await Promise.race([exited, timeout]) === 'timeout') child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
    /** A user who logs in with PASSWORD; `groups` they belong to (created if new). */
    async user(username, { admin: isAdmin = false, groups = [] } = {}) {
      await this.admin.post('/users', { username, password: PASSWORD, admin: isAdmin });
      for (const g of groups) {
        await this.admin.call('POST', '/groups', { name: g }, [201, 409]);
        await this.admin.put(`/groups/${g}/members/${username}`);
      }
    },
    /** An API client acting as `username`, through a browser-style session. */
    async as(username, password = PASSWORD) {
      const res = await fetch(`${url}/api/v1/login`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
      });
      if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
      const cookie = res.headers.get('set-cookie').split(';')[0];
      const { csrf_token: csrf } = await res.json();
      return client(url, { cookie, csrf });
    },
  };
  return server;
}

/** A small JSON client: `call(method, path, body, okStatuses)`. */
function client(base, { token, cookie, csrf }) {
  const c = {
    async call(method, path, body, ok = [200, 201]) {
      const headers = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      if (cookie) headers.Cookie = cookie;
      if (csrf && method !== 'GET') headers['X-CSRF-Token'] = csrf;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      if (!ok.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    get: (p) => c.call('GET', p),
    post: (p, b) => c.call('POST', p, b),
    put: (p, b) => c.call('PUT', p, b),
  };
  return c;
}

export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true });
}

/** A fresh browser context and page on `server`, collecting every console error,
 * uncaught exception and dialog (an XSS would open one). `allow` lists console
 * messages a test expects (e.g. the 401 of a wrong password). */
export async function openPage(browser, server, { viewport = { width: 1280, height: 900 }, colorScheme = 'light', allow = [] } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, baseURL: server.url });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const text = `${m.type()}: ${m.text()} (${m.location().url})`;
    if (!allow.some((re) => re.test(text))) problems.push(text);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('dialog', async (d) => {
    problems.push(`dialog opened: ${d.type()} ${d.message()}`);
    await d.dismiss();
  });
  page.setDefaultTimeout(10000);
  return { context, page, problems };
}

/** Logs in through the form. */
export async function login(page, username, password = PASSWORD) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header stays on top
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
