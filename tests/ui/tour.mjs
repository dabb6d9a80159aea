// Not a test: screenshots of every page, light and dark, desktop and phone, for a
// person to look at (`npm run tour`; files in artifacts/tour/).
import { startServer, launchBrowser, openPage, login, ARTIFACTS } from './harness.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const server = await startServer();
const browser = await launchBrowser();
try {
  await server.user('alice');
  await server.user('bob', { groups: ['dba-team'] });
  await server.user('sam', { groups: ['security'] });
  await server.admin.post('/connections', { name: 'prod-postgres', kind: 'postgres', target: 'db.internal:5432', approval_groups: ['dba-team', 'security'], require_reason: true });
  await server.admin.post('/connections', { name: 'staging', approval_groups: ['dba-team'] });
  const alice = await server.as('alice');
  const r1 = await alice.post('/requests', { connection: 'prod-postgres', duration: '2h', reason: 'INC-1234: the nightly job is stuck and needs a manual rerun with a longer statement timeout' });
  const r2 = await alice.post('/requests', { connection: 'staging', duration: '30m', reason: 'check' });
  await (await server.as('bob')).post(`/requests/${r1.id}/approve`, { comment: 'fine by dba' });
  await (await server.as('bob')).post(`/requests/${r2.id}/reject`, { reason: 'use the replica' });
  const dir = join(ARTIFACTS, 'tour');
  mkdirSync(dir, { recursive: true });
  const pages = ['#/', `#/requests/${r1.id}`, '#/request-access?connection=prod-postgres', '#/admin/connections', '#/admin/connections/prod-postgres', '#/admin/users', '#/admin/users/alice', '#/admin/groups', '#/audit', '#/tokens', '#/?tab=all'];
  for (const [label, viewport, colorScheme] of [['desk', { width: 1280, height: 800 }, 'light'], ['phone', { width: 390, height: 844 }, 'dark']]) {
    const { page, problems, context } = await openPage(browser, server, { viewport, colorScheme });
    await page.goto('/');
    await page.screenshot({ path: join(dir, `${label}-login.png`) });
    await login(page, 'admin', server.adminPassword);
    for (const [i, hash] of pages.entries()) {
      await page.goto(`/${hash}`);
      await page.waitForTimeout(700);
      await page.screenshot({ path: join(dir, `${label}-${String(i).padStart(2, '0')}.png`), fullPage: true });
    }
    console.log(label, problems);
    await context.close();
  }
} finally {
  await browser.close();
  await server.stop();
}
