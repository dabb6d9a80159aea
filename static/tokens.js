// API tokens: a person's own (for the CLI), and, for admins, those of any user
// (scoped `check`/`metrics` tokens for enforcement points and scrapers, `api` tokens
// for service accounts). A new token's secret is shown once.

import { all, api, path } from './api.js';
import { busy, confirmButton, errorBox, field, h, replace, timeEl } from './dom.js';

export async function tokensPage(ctx) {
  ctx.title('API tokens');
  return h('section', null,
    h('h1', null, 'API tokens'),
    h('p', { class: 'lede' }, 'A token lets the jitgate CLI or a script act as you: ',
      h('code', null, `jitgate login ${location.origin} --token …`)),
    await tokenList(ctx, ctx.me));
}

/** The tokens of `user`, with revoke buttons and a form to mint one. */
export async function tokenList(ctx, user) {
  const isSelf = user.username === ctx.me.username;
  const admin = ctx.me.admin;
  const body = h('div');
  const listErr = errorBox();

  async function reload() {
    const tokens = await all(path`/users/${user.username}/tokens`);
    replace(body, tokens.length === 0
      ? h('p', { class: 'muted' }, 'No tokens.')
      : h('table', { class: 'list' },
        h('caption', { class: 'sr-only' }, `API tokens of ${user.username}`),
        h('thead', null, h('tr', null, ['Name', 'Scope', 'Created', 'Expires', 'Last used', ''].map((c) =>
          h('th', { scope: 'col' }, c || h('span', { class: 'sr-only' }, 'Actions'))))),
        h('tbody', null, tokens.map((t) => h('tr', null,
          h('td', { 'data-label': 'Name' }, t.name, ' ', h('span', { class: 'mono muted' }, t.id)),
          h('td', { 'data-label': 'Scope' }, t.scope),
          h('td', { 'data-label': 'Created' }, timeEl(t.created_at)),
          h('td', { 'data-label': 'Expires' }, t.expires_at ? timeEl(t.expires_at) : 'never'),
          h('td', { 'data-label': 'Last used' }, t.last_used_at ? timeEl(t.last_used_at) : 'never'),
          h('td', null, confirmButton(`Revoke ${t.name}`, 'Really revoke? Press again', async () => {
            listErr.clear();
            try {
              await api('DELETE', path`/users/${user.username}/tokens/${t.id}`);
              await reload();
              ctx.announce(`Token ${t.name} revoked.`);
            } catch (e) {
              listErr.show(e);
            }
          }, 'danger small')))))));
  }

  // An admin mints api tokens for service accounts only (a person mints their own:
  // one admin must not be able to act, and approve, as several people).
  const scopes = [];
  if (isSelf || !user.has_password) scopes.push('api');
  if (admin) scopes.push('check', 'metrics');
  let form = null;
  if (scopes.length) {
    const name = h('input', { name: 'token-name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', maxlength: 64, autocomplete: 'off', spellcheck: 'false', placeholder: 'laptop' });
    const expires = h('input', { name: 'expires_in', autocomplete: 'off', spellcheck: 'false', placeholder: '90d' });
    const scope = h('select', { name: 'scope' }, scopes.map((s) => h('option', { value: s }, s)));
    const err = errorBox();
    const shown = h('div', { class: 'secret', hidden: true });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create token');
    form = h('form', { class: 'card form', 'aria-labelledby': `mint-${user.username}` },
      h('h3', { id: `mint-${user.username}` }, 'New token'),
      h('div', { class: 'row3' },
        field('Name', name, 'Unique for this user.'),
        field('Expires in (optional)', expires, 'A duration like 30d; empty: never.'),
        field('Scope', scope, scopes.includes('api')
          ? 'api acts as the user; check only asks /access/check; metrics only reads /metrics.'
          : `check only asks /access/check; metrics only reads /metrics. ${user.username} logs in with a password: they mint their own api tokens.`)),
      err.node, shown,
      h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.clear();
      const req = { name: name.value.trim(), scope: scope.value };
      if (expires.value.trim()) req.expires_in = expires.value.trim();
      await busy(submit, async () => {
        try {
          const made = await api('POST', path`/users/${user.username}/tokens`, req);
          const secret = h('input', { readonly: true, value: made.token, class: 'mono', 'aria-label': 'The new token' });
          const copy = h('button', { type: 'button' }, 'Copy');
          copy.addEventListener('click', async () => {
            secret.select();
            try {
              await navigator.clipboard.writeText(made.token);
              copy.textContent = 'Copied';
            } catch {
              copy.textContent = 'Selected: press Ctrl+C';
            }
          });
          replace(shown, h('p', null, h('strong', null, `Token ${made.name} created.`), ' Copy it now: it is shown this once.'),
            h('div', { class: 'inline' }, secret, copy));
          shown.hidden = false;
          name.value = '';
          await reload();
          secret.focus();
          secret.select();
        } catch (e) {
          err.show(e);
        }
      });
    });
  }

  await reload();
  const section = h('section', { class: 'tokens', 'aria-labelledby': `tokens-${user.username}` },
    h('h2', { id: `tokens-${user.username}` }, isSelf ? 'Your API tokens' : `API tokens of ${user.username}`),
    body, listErr.node, form);
  section.reload = reload;
  return section;
}
