// Admin: connections and their access policy (approval groups, minimum approvals,
// default and maximum duration, pending TTL, auto-approve admins, require reason,
// kind, target). Create with POST, change with PUT (every field sent), delete.

import { all, api, path } from './api.js';
import { checkbox, confirmButton, errorBox, field, h, parseDuration } from './dom.js';

const KINDS = [
  ['generic', 'generic: recorded and enforced by others (access check API)'],
  ['postgres', 'postgres: proxied PostgreSQL, queries recorded'],
  ['tcp', 'tcp: proxied TCP'],
];

export async function connectionsPage(ctx) {
  ctx.title('Connections');
  const items = await all('/connections');
  const notice = ctx.query.get('saved');
  return h('section', null,
    h('div', { class: 'page-head' },
      h('h1', null, 'Connections'),
      h('a', { class: 'button primary', href: '#/admin/connections/new' }, 'New connection')),
    notice ? h('p', { class: 'success', role: 'status' }, `Saved ${notice}.`) : null,
    items.length === 0
      ? h('p', { class: 'empty' }, 'No connections yet.')
      : h('table', { class: 'list' },
        h('caption', { class: 'sr-only' }, 'Connections and their policy'),
        h('thead', null, h('tr', null, ['Name', 'Kind', 'Target', 'Approval groups', 'Approvals per group', 'Default', 'Max', 'Pending TTL', 'Admins auto-approved', 'Reason']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, items.map((c) => h('tr', null,
          h('td', { 'data-label': 'Name' }, h('a', { href: `#/admin/connections/${encodeURIComponent(c.name)}` }, c.name)),
          h('td', { 'data-label': 'Kind' }, c.kind),
          h('td', { 'data-label': 'Target' }, c.target || '—'),
          h('td', { 'data-label': 'Approval groups' }, c.approval_groups.length ? c.approval_groups.join(', ') : h('span', { class: 'muted' }, 'none (approved at once)')),
          h('td', { 'data-label': 'Approvals per group' }, String(c.min_approvals)),
          h('td', { 'data-label': 'Default' }, c.default_duration),
          h('td', { 'data-label': 'Max' }, c.max_duration),
          h('td', { 'data-label': 'Pending TTL' }, c.pending_ttl),
          h('td', { 'data-label': 'Admins auto-approved' }, c.auto_approve_admins ? 'yes' : 'no'),
          h('td', { 'data-label': 'Reason' }, c.require_reason ? 'required' : 'optional'))))));
}

export async function connectionFormPage(ctx) {
  const editing = ctx.params[0] || null;
  ctx.title(editing ? `Connection ${editing}` : 'New connection');
  const [conn, groups] = await Promise.all([
    editing ? api('GET', path`/connections/${editing}`) : null,
    all('/groups'),
  ]);
  const c = conn || {
    name: '', kind: 'generic', target: '', approval_groups: [], min_approvals: 1, default_duration: '1h',
    max_duration: '8h', pending_ttl: '24h', auto_approve_admins: true, require_reason: false,
  };

  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', maxlength: 64, value: c.name, autocomplete: 'off', spellcheck: 'false' });
  if (editing) name.readOnly = true;
  const kind = h('select', { name: 'kind' }, KINDS.map(([v, label]) => h('option', { value: v }, label)));
  kind.value = c.kind;
  const target = h('input', { name: 'target', value: c.target || '', placeholder: 'db.internal:5432', autocomplete: 'off', spellcheck: 'false' });
  const minApprovals = h('input', { name: 'min_approvals', type: 'number', min: 1, max: 10, required: true, value: String(c.min_approvals) });
  const dur = (n, v) => h('input', { name: n, value: v, required: true, autocomplete: 'off', spellcheck: 'false' });
  const defaultDuration = dur('default_duration', c.default_duration);
  const maxDuration = dur('max_duration', c.max_duration);
  const pendingTtl = dur('pending_ttl', c.pending_ttl);
  const autoAdmins = checkbox('Approve admins\u2019 requests at once', { name: 'auto_approve_admins', checked: c.auto_approve_admins });
  const requireReason = checkbox('Require a reason', { name: 'require_reason', checked: c.require_reason });
  groups.sort((a, b) => a.name.localeCompare(b.name));
  const groupBoxes = groups.map((g) => checkbox(g.name, { name: 'approval_groups', value: g.name, checked: c.approval_groups.includes(g.name) },
    g.members.length ? `members: ${g.members.join(', ')}` : 'no members yet'));
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save changes' : 'Create connection');

  function syncTarget() {
    target.required = kind.value !== 'generic';
  }
  kind.addEventListener('change', syncTarget);
  syncTarget();

  const form = h('form', { class: 'card form', 'aria-labelledby': 'conn-title', novalidate: false },
    field('Name', name, editing ? 'The name cannot change.' : 'Letters, digits, dot, dash and underscore; up to 64.'),
    field('Kind', kind),
    field('Target', target, 'host:port; needed for postgres and tcp.'),
    h('fieldset', null,
      h('legend', null, 'Approval groups'),
      h('p', { class: 'hint' }, 'Each chosen group must approve; none chosen: every request is approved at once. At most 8.'),
      groupBoxes.length ? h('div', { class: 'checks' }, groupBoxes)
        : h('p', { class: 'muted' }, 'No groups yet: ', h('a', { href: '#/admin/groups' }, 'create one first'), '.')),
    field('Approvals needed from each group', minApprovals, 'From distinct people: one person never counts for two groups.'),
    h('div', { class: 'row3' },
      field('Default duration', defaultDuration, 'When a request names none; at most the maximum.'),
      field('Maximum duration', maxDuration, 'Up to 30d.'),
      field('Pending TTL', pendingTtl, 'A request still pending after this is cancelled.')),
    autoAdmins,
    requireReason,
    err.node,
    h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: '#/admin/connections' }, 'Back to connections')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.clear();
    for (const [input, label] of [[defaultDuration, 'Default duration'], [maxDuration, 'Maximum duration'], [pendingTtl, 'Pending TTL']]) {
      if (parseDuration(input.value) === null) {
        err.show(new Error(`${label}: write a duration like 30m, 2h, 1h30m or 1d.`));
        input.focus();
        return;
      }
    }
    if (!form.reportValidity()) return;
    const body = {
      kind: kind.value,
      target: target.value.trim(),
      approval_groups: [...form.querySelectorAll('input[name="approval_groups"]:checked')].map((i) => i.value).sort(),
      min_approvals: Number(minApprovals.value),
      default_duration: defaultDuration.value.trim(),
      max_duration: maxDuration.value.trim(),
      pending_ttl: pendingTtl.value.trim(),
      auto_approve_admins: autoAdmins.querySelector('input').checked,
      require_reason: requireReason.querySelector('input').checked,
    };
    submit.disabled = true;
    try {
      let saved;
      if (editing) {
        saved = await api('PUT', path`/connections/${editing}`, body);
      } else {
        if (!body.target) delete body.target;
        saved = await api('POST', '/connections', { name: name.value.trim(), ...body });
      }
      ctx.go(`#/admin/connections?saved=${encodeURIComponent(saved.name)}`);
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });

  let danger = null;
  if (editing) {
    const delErr = errorBox();
    danger = h('section', { class: 'card danger-zone', 'aria-labelledby': 'conn-delete' },
      h('h2', { id: 'conn-delete' }, 'Delete this connection'),
      h('p', null, 'Its pending requests are cancelled and its live grants end now. The audit trail keeps everything.'),
      confirmButton('Delete connection', 'Really delete? Press again', async () => {
        delErr.clear();
        try {
          await api('DELETE', path`/connections/${editing}`);
          ctx.go('#/admin/connections');
        } catch (e) {
          delErr.show(e);
        }
      }),
      delErr.node);
  }

  return h('section', null,
    h('p', { class: 'crumbs' }, h('a', { href: '#/admin/connections' }, '← Connections')),
    h('h1', { id: 'conn-title' }, editing ? `Connection ${editing}` : 'New connection'),
    form,
    danger);
}
