// The jitgate web UI: the shell (header, navigation, login), the session, and the
// hash router. Pages live in their own modules; each is `async (ctx) => Node`, and
// `ctx.signal` fires when the person leaves the page, which stops its timers and long
// polls. Routes (the CLI and notifications link to `#/requests/req_…`):
//
//   #/                          inbox (?tab=review|mine|all&status=&connection=)
//   #/requests/req_…            one request, its decision buttons, live updates
//   #/request-access            ask for access (?connection=)
//   #/tokens                    my API tokens
//   #/admin/connections[/NAME|/new], #/admin/users[/NAME], #/admin/groups  (admins)
//   #/audit                     the audit trail and its verification (admins)

import { api, ApiError, onUnauthenticated, setCsrf } from './api.js';
import { errorBox, field, h, replace } from './dom.js';
import { inboxPage } from './inbox.js';
import { requestPage } from './request.js';
import { accessPage } from './access.js';
import { connectionsPage, connectionFormPage } from './connections.js';
import { usersPage, userPage, groupsPage } from './users.js';
import { tokensPage } from './tokens.js';
import { auditPage } from './audit.js';

const main = document.getElementById('main');
const header = document.getElementById('top');
const live = document.getElementById('live');

// A hint (not a secret) that this browser has logged in, so that a first visit shows
// the login form at once instead of asking /me and getting a 401 back.
const HINT = 'jitgate.logged-in';

let me = null;
let leave = null; // AbortController of the page on screen

const ROUTES = [
  { re: /^\/$/, page: inboxPage, nav: 'inbox' },
  { re: /^\/requests\/(req_[0-9a-zA-Z]+)$/, page: requestPage, nav: 'inbox' },
  { re: /^\/request-access$/, page: accessPage, nav: 'access' },
  { re: /^\/tokens$/, page: tokensPage, nav: 'tokens' },
  { re: /^\/admin\/connections$/, page: connectionsPage, nav: 'connections', admin: true },
  { re: /^\/admin\/connections\/new$/, page: connectionFormPage, nav: 'connections', admin: true },
  { re: /^\/admin\/connections\/([^/]+)$/, page: connectionFormPage, nav: 'connections', admin: true },
  { re: /^\/admin\/users$/, page: usersPage, nav: 'users', admin: true },
  { re: /^\/admin\/users\/([^/]+)$/, page: userPage, nav: 'users', admin: true },
  { re: /^\/admin\/groups$/, page: groupsPage, nav: 'groups', admin: true },
  { re: /^\/audit$/, page: auditPage, nav: 'audit', admin: true },
];

const NAV = [
  ['inbox', 'Requests', '#/'],
  ['access', 'Request access', '#/request-access'],
  ['connections', 'Connections', '#/admin/connections', true],
  ['users', 'Users', '#/admin/users', true],
  ['groups', 'Groups', '#/admin/groups', true],
  ['audit', 'Audit', '#/audit', true],
  ['tokens', 'Tokens', '#/tokens'],
];

/** Announces a short message to screen readers (and shows it briefly). */
export function announce(text) {
  live.textContent = '';
  // A new text node after a tick is read out even when the text repeats.
  setTimeout(() => { live.textContent = text; }, 50);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [p, q] = raw.split('?');
  return { path: p.startsWith('/') ? p : '/', query: new URLSearchParams(q || '') };
}

function buildHeader() {
  const nav = h('nav', { 'aria-label': 'Main' },
    h('ul', null, NAV.filter(([, , , admin]) => !admin || me.admin).map(([key, label, href]) =>
      h('li', null, h('a', { href, dataset: { nav: key } }, label)))));
  const logout = h('button', { type: 'button', class: 'link' }, 'Log out');
  logout.addEventListener('click', async () => {
    try {
      await api('POST', '/logout');
    } catch {
      // The session may already have ended: log out locally all the same.
    }
    signedOut('You are logged out.');
  });
  replace(header,
    h('a', { class: 'brand', href: '#/' }, h('img', { class: 'logo', src: '/ui/favicon.svg', alt: '', width: 24, height: 24 }), 'jitgate'),
    nav,
    h('div', { class: 'whoami' },
      h('span', { title: me.display_name || me.username }, h('span', { class: 'sr-only' }, 'Logged in as '), me.username,
        me.admin ? h('span', { class: 'badge role' }, 'admin') : null),
      logout));
  header.hidden = false;
}

function markNav(key) {
  for (const a of header.querySelectorAll('a[data-nav]')) {
    if (a.dataset.nav === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route({ focus = true } = {}) {
  if (leave) leave.abort();
  if (!me) return;
  const here = new AbortController();
  leave = here;
  const { path, query } = parseHash();
  let found = null;
  let params = [];
  for (const r of ROUTES) {
    const m = path.match(r.re);
    if (m) {
      found = r;
      params = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  markNav(found ? found.nav : '');
  const ctx = {
    me,
    params,
    query,
    signal: here.signal,
    announce,
    title(t) { document.title = `${t} · jitgate`; },
    go(hash) { location.hash = hash; },
    /** Runs `fn` every `ms` while the page is on screen and the tab is visible. */
    every(ms, fn) {
      const id = setInterval(() => { if (document.visibilityState === 'visible') fn(); }, ms);
      here.signal.addEventListener('abort', () => clearInterval(id));
    },
    sleep(ms) {
      return new Promise((resolve) => {
        const id = setTimeout(resolve, ms);
        here.signal.addEventListener('abort', () => { clearTimeout(id); resolve(); });
      });
    },
    async refreshMe() {
      const fresh = await api('GET', '/me');
      me = fresh;
      ctx.me = fresh;
      setCsrf(fresh.csrf_token);
      return fresh;
    },
  };
  let node;
  try {
    if (!found) {
      ctx.title('Not found');
      node = h('section', null, h('h1', { tabindex: '-1' }, 'Page not found'),
        h('p', null, 'There is nothing at this address. ', h('a', { href: '#/' }, 'Go to the requests.')));
    } else if (found.admin && !me.admin) {
      ctx.title('Admins only');
      node = h('section', null, h('h1', { tabindex: '-1' }, 'Admins only'),
        h('p', null, 'This page is for admins. ', h('a', { href: '#/' }, 'Go to the requests.')));
    } else {
      if (!main.firstElementChild || focus) main.setAttribute('aria-busy', 'true');
      node = await found.page(ctx);
    }
  } catch (err) {
    if (here.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) return; // the login form is up
    const box = errorBox();
    box.show(err);
    const title = err instanceof ApiError && err.status === 404 ? 'Not found' : 'Something went wrong';
    ctx.title(title);
    node = h('section', null, h('h1', { tabindex: '-1' }, title), box.node,
      h('p', null, h('a', { href: '#/' }, 'Go to the requests.')));
  }
  if (here.signal.aborted) return;
  main.removeAttribute('aria-busy');
  replace(main, node);
  if (focus) {
    const h1 = main.querySelector('h1');
    if (h1) {
      h1.setAttribute('tabindex', '-1');
      h1.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
}

function signedIn(user, csrf) {
  me = user;
  setCsrf(csrf);
  try { localStorage.setItem(HINT, '1'); } catch { /* private mode: no hint */ }
  buildHeader();
  route();
}

function signedOut(message) {
  if (leave) leave.abort();
  me = null;
  setCsrf(null);
  try { localStorage.removeItem(HINT); } catch { /* nothing to remove */ }
  header.hidden = true;
  header.replaceChildren();
  showLogin(message);
}

function showLogin(message) {
  document.title = 'Log in · jitgate';
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = errorBox();
  const button = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', tabindex: '-1' }, 'Log in to jitgate'),
    message ? h('p', { class: 'notice', role: 'status' }, message) : null,
    field('Username', user),
    field('Password', pass),
    err.node,
    h('div', { class: 'actions' }, button),
    h('p', { class: 'hint' }, 'Accounts are made by an admin. Service accounts use API tokens, not this form.'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.clear();
    button.disabled = true;
    try {
      const res = await api('POST', '/login', { username: user.value.trim(), password: pass.value });
      signedIn(res.user, res.csrf_token);
    } catch (e) {
      pass.value = '';
      if (e.status === 401) {
        err.show(new Error('Wrong username or password.'));
      } else if (e.status === 429) {
        const secs = Number(e.retryAfter);
        const wait = Number.isFinite(secs) && secs > 0 ? `in ${secs} second${secs === 1 ? '' : 's'}` : 'in a minute';
        err.show(new Error(`Too many login attempts. Wait and try again ${wait}.`));
      } else {
        err.show(e);
      }
      (e.status === 401 ? pass : user).focus();
    } finally {
      button.disabled = false;
    }
  });
  replace(main, h('section', { class: 'login-wrap' }, form));
  main.removeAttribute('aria-busy');
  (user.value ? pass : user).focus();
}

async function boot() {
  onUnauthenticated(() => {
    if (me) signedOut('Your session has ended: log in again.');
  });
  document.getElementById('skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    const target = main.querySelector('h1') || main;
    target.setAttribute('tabindex', '-1');
    target.focus();
  });
  window.addEventListener('hashchange', () => route());
  let hinted = false;
  try { hinted = localStorage.getItem(HINT) === '1'; } catch { hinted = false; }
  if (!hinted) {
    showLogin();
    return;
  }
  try {
    const who = await api('GET', '/me');
    signedIn(who, who.csrf_token);
  } catch (e) {
    if (e.status === 401) signedOut();
    else {
      const box = errorBox();
      box.show(e);
      replace(main, h('section', null, h('h1', null, 'jitgate cannot load'), box.node));
    }
  }
}

boot();
