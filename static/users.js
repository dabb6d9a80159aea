// Admin: users (create, make admin, reset password, disable, their tokens) and
// groups with their members.

import { all, api, path } from './api.js';
import { busy, checkbox, confirmButton, errorBox, field, h, replace, timeEl } from './dom.js';
import { tokenList } from './tokens.js';

const NAME_PATTERN = '[A-Za-z0-9._\\-]{1,64}';

export async function usersPage(ctx) {
  ctx.title('Users');
  const users = await all('/users');
  const username = h('input', { name: 'username', required: true, pattern: NAME_PATTERN, maxlength: 64, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none' });
  const display = h('input', { name: 'display_name', maxlength: 128, autocomplete: 'off' });
  const password = h('input', { name: 'password', type: 'password', minlength: 12, autocomplete: 'new-password' });
  const admin = checkbox('Admin', { name: 'admin' }, 'Admins manage everything and may approve any request.');
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create user');
  const form = h('form', { class: 'card form', 'aria-labelledby': 'new-user' },
    h('h2', { id: 'new-user' }, 'New user'),
    h('div', { class: 'row3' },
      field('Username', username, 'Letters, digits, dot, dash, underscore.'),
      field('Display name (optional)', display),
      field('Password', password, 'At least 12 characters. Empty: a token-only service account.')),
    admin,
    err.node,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.clear();
    const body = { username: username.value.trim() };
    if (display.value.trim()) body.display_name = display.value.trim();
    if (password.value) body.password = password.value;
    if (admin.querySelector('input').checked) body.admin = true;
    await busy(submit, async () => {
      try {
        const user = await api('POST', '/users', body);
        ctx.go(`#/admin/users/${encodeURIComponent(user.username)}?created=1`);
      } catch (e) {
        err.show(e);
      }
    });
  });

  return h('section', null,
    h('h1', null, 'Users'),
    h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Users'),
      h('thead', null, h('tr', null, ['Username', 'Name', 'Role', 'State', 'Groups', 'Logs in with', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, users.map((u) => h('tr', null,
        h('td', { 'data-label': 'Username' }, h('a', { href: `#/admin/users/${encodeURIComponent(u.username)}` }, u.username)),
        h('td', { 'data-label': 'Name' }, u.display_name || '—'),
        h('td', { 'data-label': 'Role' }, u.admin ? h('span', { class: 'badge role' }, 'admin') : 'user'),
        h('td', { 'data-label': 'State' }, u.disabled ? h('span', { class: 'badge status-revoked' }, 'disabled') : 'active'),
        h('td', { 'data-label': 'Groups' }, u.groups.length ? u.groups.join(', ') : '—'),
        h('td', { 'data-label': 'Logs in with' }, u.has_password ? 'password' : 'API token only'),
        h('td', { 'data-label': 'Created' }, timeEl(u.created_at)))))),
    form);
}

export async function userPage(ctx) {
  const name = ctx.params[0];
  ctx.title(`User ${name}`);
  let user = await api('GET', path`/users/${name}`);
  const info = h('dl', { class: 'details' });
  const status = h('p', { class: 'success', role: 'status', hidden: true });
  const err = errorBox();
  const buttons = h('div', { class: 'actions' });

  function renderInfo() {
    replace(info, [
      ['Username', user.username],
      ['Display name', user.display_name || '—'],
      ['Role', user.admin ? 'admin' : 'user'],
      ['State', user.disabled ? 'disabled: cannot log in or use tokens' : 'active'],
      ['Groups', user.groups.length ? user.groups.join(', ') : 'none'],
      ['Logs in with', user.has_password ? 'password (and API tokens)' : 'API tokens only'],
      ['Created', timeEl(user.created_at)],
    ].map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
    const self = user.username === ctx.me.username;
    replace(buttons,
      h('button', { type: 'button', onclick: (ev) => patch({ admin: !user.admin }, ev.currentTarget, user.admin ? `${user.username} is no longer an admin.` : `${user.username} is now an admin.`) },
        user.admin ? 'Remove admin' : 'Make admin'),
      user.disabled
        ? h('button', { type: 'button', onclick: (ev) => patch({ disabled: false }, ev.currentTarget, `${user.username} is enabled.`) }, 'Enable')
        : confirmButton('Disable', 'Really disable? Press again', (b) => patch({ disabled: true }, b, `${user.username} is disabled.`)),
      self ? h('span', { class: 'hint' }, ' This is you.') : null);
  }

  async function patch(body, button, message) {
    err.clear();
    status.hidden = true;
    await busy(button, async () => {
      try {
        user = await api('PATCH', path`/users/${user.username}`, body);
        renderInfo();
        status.textContent = message;
        status.hidden = false;
      } catch (e) {
        err.show(e);
      }
    });
  }

  const pw = h('input', { type: 'password', name: 'new-password', minlength: 12, required: true, autocomplete: 'new-password' });
  const pwErr = errorBox();
  const pwDone = h('p', { class: 'success', role: 'status', hidden: true });
  const pwButton = h('button', { type: 'submit' }, 'Set password');
  const pwForm = h('form', { class: 'card form', 'aria-labelledby': 'reset-pw' },
    h('h2', { id: 'reset-pw' }, 'Reset password'),
    field('New password', pw, user.username === ctx.me.username
      ? 'At least 12 characters. Your browser sessions end: you will log in again.'
      : `At least 12 characters; tell it to them out of band. Their browser sessions end and their API tokens are revoked.`),
    pwErr.node, pwDone,
    h('div', { class: 'actions' }, pwButton));
  pwForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    pwErr.clear();
    pwDone.hidden = true;
    await busy(pwButton, async () => {
      try {
        user = await api('PATCH', path`/users/${user.username}`, { password: pw.value });
        pw.value = '';
        renderInfo();
        pwDone.textContent = `The password of ${user.username} is set.`;
        pwDone.hidden = false;
        await tokens.reload(); // a reset revokes their tokens
      } catch (e) {
        pwErr.show(e);
      }
    });
  });

  renderInfo();
  const tokens = await tokenList(ctx, user);
  return h('section', null,
    h('p', { class: 'crumbs' }, h('a', { href: '#/admin/users' }, '← Users')),
    h('h1', null, `User ${user.username}`),
    ctx.query.get('created') ? h('p', { class: 'success', role: 'status' }, `Created ${user.username}.`) : null,
    info,
    h('p', { class: 'hint' }, 'Disabling a user cancels their pending requests and revokes their live grants.'),
    buttons, status, err.node,
    pwForm,
    tokens);
}

export async function groupsPage(ctx) {
  ctx.title('Groups');
  const [groups, users] = await Promise.all([all('/groups'), all('/users')]);
  const list = h('div', { class: 'group-cards' });
  const err = errorBox();

  function card(g) {
    const cardErr = errorBox();
    const candidates = users.filter((u) => !g.members.includes(u.username));
    const pick = h('select', { name: 'member' }, candidates.map((u) => h('option', { value: u.username }, u.username)));
    const add = h('button', { type: 'submit' }, 'Add member');
    const form = h('form', { class: 'inline' }, field(`Add to ${g.name}`, pick), add);
    if (!candidates.length) { pick.disabled = true; add.disabled = true; }
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      cardErr.clear();
      await busy(add, async () => {
        try {
          await api('PUT', path`/groups/${g.name}/members/${pick.value}`);
          await reload(`Added ${pick.value} to ${g.name}.`);
        } catch (e) {
          cardErr.show(e);
        }
      });
    });
    return h('article', { class: 'card', 'aria-labelledby': `g-${g.name}` },
      h('h2', { id: `g-${g.name}` }, g.name),
      g.members.length
        ? h('ul', { class: 'members' }, g.members.map((m) => h('li', null, h('span', null, m),
          h('button', {
            type: 'button', class: 'link', 'aria-label': `Remove ${m} from ${g.name}`,
            onclick: async (ev) => {
              cardErr.clear();
              await busy(ev.currentTarget, async () => {
                try {
                  await api('DELETE', path`/groups/${g.name}/members/${m}`);
                  await reload(`Removed ${m} from ${g.name}.`);
                } catch (e) {
                  cardErr.show(e);
                }
              });
            },
          }, 'Remove'))))
        : h('p', { class: 'muted' }, 'No members.'),
      form,
      cardErr.node,
      h('div', { class: 'actions' }, confirmButton('Delete group', 'Really delete? Press again', async () => {
        cardErr.clear();
        try {
          await api('DELETE', path`/groups/${g.name}`);
          await reload(`Deleted ${g.name}.`);
        } catch (e) {
          cardErr.show(e);
        }
      })));
  }

  async function reload(message) {
    const fresh = await all('/groups');
    replace(list, fresh.length ? fresh.map(card) : h('p', { class: 'empty' }, 'No groups yet.'));
    if (message) ctx.announce(message);
  }

  const name = h('input', { name: 'group', required: true, pattern: NAME_PATTERN, maxlength: 64, autocomplete: 'off', spellcheck: 'false' });
  const create = h('button', { type: 'submit', class: 'primary' }, 'Create group');
  const form = h('form', { class: 'card form inline', 'aria-labelledby': 'new-group' },
    h('h2', { id: 'new-group' }, 'New group'), field('Group name', name), create, err.node);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.clear();
    await busy(create, async () => {
      try {
        await api('POST', '/groups', { name: name.value.trim() });
        name.value = '';
        await reload('Group created.');
      } catch (e) {
        err.show(e);
      }
    });
  });

  replace(list, groups.length ? groups.map(card) : h('p', { class: 'empty' }, 'No groups yet.'));
  return h('section', null,
    h('h1', null, 'Groups'),
    h('p', { class: 'lede' }, 'A connection names the groups that approve it; membership counts at each decision.'),
    form,
    list);
}
