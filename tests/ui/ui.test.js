// Browser tests of the approval web UI: headless Debian Chromium (playwright-core)
// against the real jitgate binary, one server per test in its own temp dir. Run
// with `npm test` here, or by scripts/test.sh. Screenshots go to artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, connect as tcpConnect } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, openPage, login, screenshot, PASSWORD, BIN } from './harness.js';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A server with alice (requester), bob (dba-team) and prod-postgres approved by dba-team. */
async function world(t, extra) {
  const server = await startServer(extra);
  t.after(() => server.stop());
  await server.user('alice');
  await server.user('bob', { groups: ['dba-team'] });
  await server.admin.post('/connections', {
    name: 'prod-postgres', kind: 'postgres', target: 'db.internal:5432', approval_groups: ['dba-team'], max_duration: '8h',
  });
  return server;
}

async function page(t, server, opts) {
  const p = await openPage(browser, server, opts);
  t.after(() => p.context.close());
  return p;
}

async function text(locator) {
  return (await locator.innerText()).replace(/\s+/g, ' ').trim();
}

/** Waits until the request page shows `status` in its heading badge. */
function statusBadge(p, status) {
  return p.locator('.page-head .badge', { hasText: status }).waitFor();
}

test('a reviewer sees the pending request, opens it, approves it, and the API agrees', async (t) => {
  const server = await world(t);
  await server.admin.post('/connections', { name: 'staging-db', approval_groups: ['dba-team'] });
  const alice = await server.as('alice');
  const req = await alice.post('/requests', { connection: 'prod-postgres', duration: '2h', reason: 'INC-1234: fix the stuck migration' });

  const { page: p, problems } = await page(t, server);
  await p.goto('/');
  await login(p, 'bob');
  const row = p.locator('tbody tr', { hasText: req.id });
  await row.waitFor();
  const cells = await text(row);
  for (const want of ['alice', 'prod-postgres', '2h', 'INC-1234: fix the stuck migration', 'just now', 'dba-team 0/1', 'PENDING']) {
    assert.ok(cells.includes(want), `inbox row shows ${want}: ${cells}`);
  }

  // A new request shows up by itself, without a reload.
  const second = await alice.post('/requests', { connection: 'staging-db', reason: 'read the nightly report' });
  await p.locator('tbody tr', { hasText: second.id }).waitFor({ timeout: 15000 });
  await screenshot(p, 'inbox');

  await row.getByRole('link', { name: req.id }).click();
  await p.waitForURL(`**/#/requests/${req.id}`);
  await p.getByRole('heading', { name: 'Access to prod-postgres for 2h' }).waitFor();
  assert.match(await text(p.locator('.banner')), /Waiting for approval from dba-team \(0\/1\)/);
  await screenshot(p, 'request-pending');

  await p.getByLabel('Comment (optional)').fill('ok for INC-1234');
  await p.getByRole('button', { name: 'Approve', exact: true }).click();
  await statusBadge(p, 'APPROVED');
  assert.match(await text(p.getByRole('timer')), /^1h 59m \d\ds$|^2h 00m 00s$/);
  assert.match(await text(p.locator('.reviews')), /approved by bob .*ok for INC-1234/);
  assert.match(await text(p.locator('.groups')), /dba-team 1 of 1 ✓ approved by bob/);
  // bob is an approver: he may revoke the grant, not end it (that is alice's).
  await p.getByRole('button', { name: 'Revoke access' }).waitFor();
  assert.equal(await p.getByRole('button', { name: 'End access now' }).count(), 0);
  await screenshot(p, 'request-approved');

  const stored = await server.admin.get(`/requests/${req.id}`);
  assert.equal(stored.status, 'APPROVED');
  assert.equal(stored.reviews.length, 1);
  assert.equal(stored.reviews[0].reviewer, 'bob');
  assert.equal(stored.reviews[0].decision, 'approve');
  assert.equal(stored.reviews[0].comment, 'ok for INC-1234');
  assert.deepEqual(problems, []);
});

test('a reviewer opens the link from a notification; refusals show; another reviewer rejects with a reason', async (t) => {
  const server = await world(t);
  await server.user('sam', { groups: ['security'] });
  await server.admin.post('/connections', { name: 'billing', approval_groups: ['dba-team', 'security'] });
  const alice = await server.as('alice');
  const req = await alice.post('/requests', { connection: 'billing', duration: '1h', reason: 'poke at prod' });

  // The one refusal this test provokes on purpose (bob approves twice).
  const { page: p, problems } = await page(t, server, { allow: [/status of 409 .*\/approve\)$/] });
  await p.goto(req.url.replace(/^https?:\/\/[^/]+/, '')); // the link the CLI prints
  await login(p, 'bob');
  await p.getByRole('heading', { name: 'Access to billing for 1h' }).waitFor();

  // bob approves from another tab; this page still offers Approve, and the server says no.
  await (await server.as('bob')).post(`/requests/${req.id}/approve`);
  await p.getByRole('button', { name: 'Approve', exact: true }).click();
  assert.match(await text(p.getByRole('alert').filter({ hasText: 'already' })), /bob has already reviewed req_/);
  const approve = p.getByRole('button', { name: 'Approve', exact: true });
  await p.locator('button.approve[disabled]').waitFor();
  assert.equal(await approve.getAttribute('title'), 'You already approved this request.');
  assert.match(await text(p.locator('.banner')), /Waiting for approval from security \(0\/1\)/);
  assert.match(await text(p.locator('.groups')), /dba-team 1 of 1 ✓ approved by bob/);
  await screenshot(p, 'request-refused');

  // Log out; sam (security) logs in on the same link and rejects.
  await p.getByRole('button', { name: 'Log out' }).click();
  await p.getByText('You are logged out.').waitFor();
  await login(p, 'sam');
  await p.getByRole('heading', { name: 'Access to billing for 1h' }).waitFor();
  await p.getByLabel('Reason for rejecting').fill('use the read replica');
  await p.getByRole('button', { name: 'Reject', exact: true }).click();
  await statusBadge(p, 'REJECTED');
  assert.match(await text(p.locator('.banner')), /Rejected by sam: use the read replica/);
  assert.equal(await p.getByRole('button', { name: 'Approve', exact: true }).count(), 0, 'a final request offers no actions');

  const stored = await server.admin.get(`/requests/${req.id}`);
  assert.equal(stored.status, 'REJECTED');
  assert.equal(stored.ended_by, 'sam');
  assert.deepEqual(stored.reviews.map((r) => [r.reviewer, r.decision, r.comment]),
    [['bob', 'approve', null], ['sam', 'reject', 'use the read replica']]);
  assert.deepEqual(problems, []);
});

test('a requester has no Approve button on their own request, and sees the decision land by itself', async (t) => {
  const server = await world(t);
  const bob = await server.as('bob');
  const { page: p, problems } = await page(t, server, { viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  await p.goto('/');
  await login(p, 'alice');

  // Ask from the browser: the policy is shown, the maximum is enforced before sending.
  await p.getByRole('link', { name: 'Request access' }).first().click();
  await p.getByLabel('Connection').selectOption('prod-postgres');
  assert.match(await text(p.locator('.policy')), /Approved by 1 approval from each of: dba-team.*Longest duration 8h/);
  await p.getByLabel('Duration').fill('12h');
  await p.getByRole('button', { name: 'Request access' }).click();
  await p.getByRole('alert').filter({ hasText: '12h is longer than the maximum of 8h for prod-postgres' }).waitFor();
  await p.getByLabel('Duration').fill('30m');
  await p.getByLabel(/^Reason/).fill('INC-77 check the replication lag');
  await p.getByRole('button', { name: 'Request access' }).click();
  await p.getByRole('heading', { name: 'Access to prod-postgres for 30m' }).waitFor();
  await statusBadge(p, 'PENDING');
  const id = p.url().split('#/requests/')[1];
  assert.match(id, /^req_[0-9a-f]{20}$/);

  assert.equal(await p.getByRole('button', { name: 'Approve' }).count(), 0);
  assert.equal(await p.getByRole('button', { name: 'Reject' }).count(), 0);
  await p.getByRole('button', { name: 'Cancel request' }).waitFor();
  await screenshot(p, 'request-phone-dark');

  // bob approves elsewhere; the open page follows (long poll), no reload.
  await bob.post(`/requests/${id}/approve`, { comment: 'go ahead' });
  await statusBadge(p, 'APPROVED');
  assert.match(await text(p.getByRole('timer')), /^(29m|30m) \d\ds$/);
  await p.getByRole('button', { name: 'End access now' }).click();
  await p.getByRole('button', { name: /Really end it/ }).click();
  await statusBadge(p, 'EXECUTED');
  const stored = await server.admin.get(`/requests/${id}`);
  assert.equal(stored.status, 'EXECUTED');
  assert.equal(stored.ended_by, 'alice');
  assert.equal(stored.reason, 'INC-77 check the replication lag');
  await p.getByRole('link', { name: '← All requests' }).click();
  await p.locator('tbody tr', { hasText: id }).waitFor();
  await screenshot(p, 'inbox-phone-dark');
  assert.deepEqual(problems, []);
});

test('a reason full of markup shows as text, never as HTML', async (t) => {
  const server = await world(t);
  const evil = '<img src=x onerror=alert(1)><script>alert(2)</script>&amp; "quoted"';
  const alice = await server.as('alice');
  const req = await alice.post('/requests', { connection: 'prod-postgres', reason: evil });

  const { page: p, problems } = await page(t, server);
  await p.goto('/');
  await login(p, 'bob');
  const cell = p.locator('tbody tr', { hasText: req.id }).locator('td.reason');
  await cell.waitFor();
  assert.equal(await cell.textContent(), evil);
  // By keyboard: Tab from the filter lands on the request's link, with a visible focus ring.
  await p.getByLabel('Connection').focus();
  await p.keyboard.press('Tab');
  const ring = await p.evaluate(() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    return `${el.textContent} ${s.outlineStyle} ${s.outlineWidth}`;
  });
  assert.equal(ring, `${req.id} solid 3px`);
  await p.keyboard.press('Enter');
  await p.locator('.details .reason').waitFor();
  assert.equal(await p.locator('.details .reason').textContent(), evil);
  assert.equal(await p.locator('main img, main script').count(), 0);
  assert.deepEqual(problems, []); // an executed onerror would have opened a dialog
});

test('an admin creates and edits a connection through the form', async (t) => {
  const server = await world(t);
  await server.admin.post('/groups', { name: 'security' });
  // The one refusal this test provokes on purpose (max_duration 45d).
  const { page: p, problems } = await page(t, server, { allow: [/status of 400 .*\/api\/v1\/connections\/billing-db\)$/] });
  await p.goto('/');
  await login(p, 'admin', server.adminPassword);
  await p.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Connections' }).click();
  await p.getByRole('link', { name: 'New connection' }).click();
  await p.getByLabel('Name').fill('billing-db');
  await p.getByLabel('Kind').selectOption('postgres');
  await p.getByLabel('Target').fill('billing.internal:5432');
  await p.getByLabel('dba-team').check();
  await p.getByLabel('security').check();
  await p.getByLabel('Approvals needed from each group').fill('1');
  await p.getByLabel('Default duration').fill('30m');
  await p.getByLabel('Maximum duration').fill('4h');
  await p.getByLabel('Pending TTL').fill('2h');
  await p.getByLabel('Approve admins’ requests at once').uncheck();
  await p.getByLabel('Require a reason').check();
  await screenshot(p, 'connection-form');
  await p.getByRole('button', { name: 'Create connection' }).click();
  await p.getByText('Saved billing-db.').waitFor();
  assert.match(await text(p.locator('tr', { hasText: 'billing-db' })), /billing-db postgres billing.internal:5432 dba-team, security 1 30m 4h 2h no required/);

  assert.deepEqual(await server.admin.get('/connections/billing-db'), {
    name: 'billing-db', kind: 'postgres', target: 'billing.internal:5432', approval_groups: ['dba-team', 'security'],
    min_approvals: 1, default_duration: '30m', max_duration: '4h', pending_ttl: '2h', auto_approve_admins: false, require_reason: true,
  });

  // Edit: a bad value gets the server's message; a good one is saved.
  await p.getByRole('link', { name: 'billing-db' }).click();
  await p.getByLabel('Maximum duration').fill('45d');
  await p.getByRole('button', { name: 'Save changes' }).click();
  const refusal = await text(p.getByRole('alert').filter({ hasText: /30d/ }));
  assert.match(refusal, /max_duration/);
  await p.getByLabel('Maximum duration').fill('2h');
  await p.getByLabel('security').uncheck();
  await p.getByRole('button', { name: 'Save changes' }).click();
  await p.getByText('Saved billing-db.').waitFor();
  const edited = await server.admin.get('/connections/billing-db');
  assert.equal(edited.max_duration, '2h');
  assert.deepEqual(edited.approval_groups, ['dba-team']);
  assert.deepEqual(problems, []);
});

test('an admin manages users, groups and tokens, and sees the audit trail verified', async (t) => {
  const server = await world(t);
  const { page: p, problems } = await page(t, server);
  await p.goto('/');
  await login(p, 'admin', server.adminPassword);
  const nav = p.getByRole('navigation', { name: 'Main' });

  await nav.getByRole('link', { name: 'Users' }).click();
  await p.getByLabel('Username').fill('carol');
  await p.getByLabel('Display name (optional)').fill('Carol C.');
  await p.getByLabel('Password').fill('first password 123');
  await p.getByRole('button', { name: 'Create user' }).click();
  await p.getByRole('heading', { name: 'User carol' }).waitFor();
  await p.getByRole('button', { name: 'Make admin' }).click();
  await p.getByText('carol is now an admin.').waitFor();
  await p.getByLabel('New password').fill('second password 456');
  await p.getByRole('button', { name: 'Set password' }).click();
  await p.getByText('The password of carol is set.').waitFor();
  await p.getByRole('button', { name: 'Disable' }).click();
  await p.getByRole('button', { name: /Really disable/ }).click();
  await p.getByText('carol is disabled.').waitFor();
  let carol = await server.admin.get('/users/carol');
  assert.equal(carol.admin, true);
  assert.equal(carol.disabled, true);
  assert.equal(carol.display_name, 'Carol C.');

  // A check token for an enforcement point, shown once.
  await p.getByLabel('Name', { exact: true }).fill('envoy');
  await p.getByLabel('Scope').selectOption('check');
  await p.getByRole('button', { name: 'Create token' }).click();
  const secret = await p.getByLabel('The new token').inputValue();
  assert.match(secret, /^jg_[0-9a-f]{64}$/);
  const tokens = await server.admin.get('/users/carol/tokens');
  assert.deepEqual(tokens.items.map((tk) => [tk.name, tk.scope]), [['envoy', 'check']]);

  await nav.getByRole('link', { name: 'Groups' }).click();
  await p.getByLabel('Group name').fill('oncall');
  await p.getByRole('button', { name: 'Create group' }).click();
  await p.getByRole('heading', { name: 'oncall' }).waitFor();
  await p.getByLabel('Add to oncall').selectOption('alice');
  await p.locator('article', { hasText: 'oncall' }).getByRole('button', { name: 'Add member' }).click();
  await p.getByRole('button', { name: 'Remove alice from oncall' }).waitFor();
  assert.deepEqual((await server.admin.get('/groups/oncall')).members, ['alice']);

  await nav.getByRole('link', { name: 'Audit' }).click();
  await p.getByText('✓ The audit chain verifies.').waitFor();
  await p.getByLabel('Target').fill('carol');
  await p.getByRole('button', { name: 'Filter' }).click();
  await p.waitForFunction(() => {
    const targets = [...document.querySelectorAll('tbody td[data-label="Target"]')].map((td) => td.textContent);
    return targets.length > 0 && targets.every((x) => x === 'carol');
  });
  const actions = await p.locator('tbody td[data-label="Action"]').allTextContents();
  assert.ok(actions.includes('user.created'), actions.join(', '));
  assert.ok(actions.every((a) => a.startsWith('user.') || a.startsWith('token.')), actions.join(', '));
  await screenshot(p, 'audit');
  carol = null;
  assert.deepEqual(problems, []);
});

test('wrong credentials and too many attempts get clear messages', async (t) => {
  const server = await world(t, ['--login-attempts-per-minute', '2']);
  const { page: p, problems } = await page(t, server, { allow: [/Failed to load resource: .* (401|429) .*\/api\/v1\/login\)$/] });
  await p.goto('/');
  await p.getByLabel('Username').fill('bob');
  await p.getByLabel('Password').fill('not the password');
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
  assert.equal(await p.getByLabel('Password').inputValue(), '', 'the wrong password is cleared');
  await p.getByLabel('Password').fill('still not it');
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
  await p.getByLabel('Password').fill(PASSWORD);
  await p.getByRole('button', { name: 'Log in' }).click();
  const msg = await text(p.getByRole('alert').filter({ hasText: 'Too many login attempts' }));
  assert.match(msg, /^Too many login attempts\. Wait and try again in \d+ seconds?\.$/);
  assert.deepEqual(problems, []);
});

/** A PostgreSQL frontend message: `kind`, then the length, then `body`. */
function pgMessage(kind, body) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length + 4);
  return Buffer.concat([kind ? Buffer.from(kind) : Buffer.alloc(0), len, body]);
}

test('a grant\'s sessions show their streams and the SQL they sent, as text', async (t) => {
  const server = await world(t);
  // A target that takes what it is sent: the gateway records the client's side.
  const sink = createServer((sock) => sock.on('data', () => {}).on('error', () => {}));
  await new Promise((resolve) => sink.listen(0, '127.0.0.1', resolve));
  t.after(() => sink.close());
  await server.admin.post('/connections', {
    name: 'pg-lab', kind: 'postgres', target: `127.0.0.1:${sink.address().port}`, approval_groups: [],
  });
  const alice = await server.as('alice');
  const { token } = await alice.post('/users/alice/tokens', { name: 'connect' }); // her own: she has a password
  const home = mkdtempSync(join(tmpdir(), 'jitgate-ui-home-'));
  const cli = spawn(BIN, ['connect', 'pg-lab', '--duration', '1h', '--port', '0'], {
    env: { ...process.env, HOME: home, JITGATE_SERVER: server.url, JITGATE_TOKEN: token, JITGATE_CONFIG: join(home, 'none.toml') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => cli.kill('SIGTERM'));
  let out = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connect did not listen:\n${out}`)), 30000);
    const seen = (chunk) => {
      out += chunk;
      const m = out.match(/Listening on 127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    cli.stdout.on('data', seen);
    cli.stderr.on('data', seen);
  });
  // One stream: a startup message, then a query whose text is markup.
  const sql = "select '<b onmouseover=alert(1)>bold</b>' as x";
  await new Promise((resolve, reject) => {
    const sock = tcpConnect(port, '127.0.0.1', () => {
      const proto = Buffer.alloc(4);
      proto.writeUInt32BE(196608);
      sock.write(pgMessage(null, Buffer.concat([proto, Buffer.from('user\0alice\0\0')])));
      sock.end(pgMessage('Q', Buffer.from(`${sql}\0`)), resolve);
    });
    sock.on('error', reject);
  });
  const [grant] = (await alice.get('/requests?connection=pg-lab')).items;
  // The stream's end flushes its statements: wait for them rather than for a time.
  for (let i = 0; i < 100; i += 1) {
    const [s] = (await alice.get(`/sessions?request=${grant.id}`)).items;
    const full = s && await alice.get(`/sessions/${s.id}`);
    if (full?.streams?.[0]?.ended_at && full.streams[0].queries.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const { page: p, problems } = await page(t, server);
  await p.goto(`/#/requests/${grant.id}`);
  await login(p, 'alice');
  const statement = p.locator('.sessions .sql');
  await statement.waitFor();
  assert.equal(await statement.textContent(), sql);
  assert.equal(await p.locator('.sessions b, .sessions script').count(), 0);
  assert.match(await text(p.locator('.sessions .stream')), /B up, \d+ B down; ended .*client closed/);
  await screenshot(p, 'request-sessions');
  assert.deepEqual(problems, []);
});
