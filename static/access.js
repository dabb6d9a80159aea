// Ask for access from the browser: pick a connection (its policy shown: who
// approves, default and maximum duration, whether a reason is required), a duration
// bounded by the maximum, a reason; then the request's own page, which follows the
// decision by itself.

import { all, api } from './api.js';
import { errorBox, field, h, parseDuration, replace } from './dom.js';

const SUGGESTED = ['15m', '30m', '1h', '2h', '4h', '8h', '12h', '1d'];

/** "90m" → "1h30m": a duration as the server writes it. */
function fmt(secs) {
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (secs >= size) {
      parts.push(`${Math.floor(secs / size)}${unit}`);
      secs %= size;
    }
  }
  return parts.join('') || '0s';
}

export async function accessPage(ctx) {
  ctx.title('Request access');
  const connections = await all('/connections');
  if (connections.length === 0) {
    return h('section', null, h('h1', null, 'Request access'),
      h('p', null, 'There are no connections yet. ',
        ctx.me.admin ? h('a', { href: '#/admin/connections/new' }, 'Create the first one.') : 'Ask an admin to add one.'));
  }
  const byName = new Map(connections.map((c) => [c.name, c]));
  const wanted = ctx.query.get('connection');
  const select = h('select', { name: 'connection', required: true },
    h('option', { value: '' }, 'Choose a connection…'),
    connections.map((c) => h('option', { value: c.name }, c.name)));
  if (wanted && byName.has(wanted)) select.value = wanted;
  else if (connections.length === 1) select.value = connections[0].name;

  const policy = h('div', { class: 'policy', 'aria-live': 'polite' });
  const duration = h('input', { name: 'duration', list: 'durations', autocomplete: 'off', spellcheck: 'false', inputmode: 'text' });
  const durations = h('datalist', { id: 'durations' });
  const durationHint = h('span');
  const durationError = h('p', { class: 'field-error', id: 'access-duration-error', 'aria-live': 'polite', hidden: true });
  const reason = h('textarea', { name: 'reason', rows: 3, maxlength: 1000 });
  const reasonLabel = h('span', null, 'Reason');
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Request access');

  function current() {
    return byName.get(select.value) || null;
  }

  function showPolicy() {
    const c = current();
    if (!c) {
      replace(policy, h('p', { class: 'muted' }, 'Choose a connection to see who approves it and for how long.'));
      duration.placeholder = '';
      durationHint.textContent = 'Whole units s, m, h, d: 30m, 2h, 1h30m.';
      replace(durations);
      return;
    }
    const approvers = c.approval_groups.length
      ? `${c.min_approvals} approval${c.min_approvals === 1 ? '' : 's'} from each of: ${c.approval_groups.join(', ')}`
      : 'nobody: requests are approved at once';
    replace(policy, h('dl', { class: 'details compact' },
      h('div', null, h('dt', null, 'Kind'), h('dd', null, c.target ? `${c.kind} (${c.target})` : c.kind)),
      h('div', null, h('dt', null, 'Approved by'), h('dd', null, approvers)),
      h('div', null, h('dt', null, 'Default duration'), h('dd', null, c.default_duration)),
      h('div', null, h('dt', null, 'Longest duration'), h('dd', null, c.max_duration)),
      h('div', null, h('dt', null, 'Waits for approval'), h('dd', null, `up to ${c.pending_ttl}, then it is cancelled`)),
      h('div', null, h('dt', null, 'Reason'), h('dd', null, c.require_reason ? 'required' : 'optional')),
      c.auto_approve_admins && ctx.me.admin && c.approval_groups.length
        ? h('div', null, h('dt', null, 'As an admin'), h('dd', null, 'your request is approved at once')) : null));
    duration.placeholder = c.default_duration;
    durationHint.textContent = `Leave empty for the default (${c.default_duration}); at most ${c.max_duration}. Whole units s, m, h, d: 30m, 2h, 1h30m. Counted from approval.`;
    const max = parseDuration(c.max_duration);
    replace(durations, SUGGESTED.filter((d) => parseDuration(d) <= max).concat(c.max_duration)
      .filter((d, i, a) => a.indexOf(d) === i).map((d) => h('option', { value: d })));
    reason.required = c.require_reason;
    reasonLabel.textContent = c.require_reason ? 'Reason (required)' : 'Reason (optional)';
    checkDuration();
  }

  function checkDuration() {
    const c = current();
    const text = duration.value.trim();
    let problem = '';
    if (text && c) {
      const secs = parseDuration(text);
      const max = parseDuration(c.max_duration);
      if (secs === null) problem = 'Write a duration like 30m, 2h or 1h30m.';
      else if (max && secs > max) problem = `${fmt(secs)} is longer than the maximum of ${c.max_duration} for ${c.name}.`;
    }
    duration.setAttribute('aria-invalid', problem ? 'true' : 'false');
    durationError.textContent = problem;
    durationError.hidden = !problem;
    return problem;
  }

  select.addEventListener('change', showPolicy);
  duration.addEventListener('input', checkDuration);

  // Checked here rather than by the browser's bubbles, so every message reads the same.
  const form = h('form', { class: 'card form', 'aria-labelledby': 'access-title', novalidate: true },
    field('Connection', select),
    policy,
    h('div', { class: 'field' },
      h('label', { for: 'access-duration' }, 'Duration'),
      duration,
      durations,
      durationError,
      h('p', { class: 'hint', id: 'access-duration-hint' }, durationHint)),
    h('div', { class: 'field' }, h('label', { for: 'access-reason' }, reasonLabel), reason,
      h('p', { class: 'hint', id: 'access-reason-hint' }, 'A ticket or incident number helps the approvers.')),
    err.node,
    h('div', { class: 'actions' }, submit));
  duration.id = 'access-duration';
  duration.setAttribute('aria-describedby', 'access-duration-error access-duration-hint');
  reason.id = 'access-reason';
  reason.setAttribute('aria-describedby', 'access-reason-hint');

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.clear();
    const c = current();
    if (!c) {
      err.show(new Error('Choose a connection.'));
      select.focus();
      return;
    }
    const problem = checkDuration();
    if (problem) {
      err.show(new Error(problem));
      duration.focus();
      return;
    }
    if (c.require_reason && !reason.value.trim()) {
      err.show(new Error(`${c.name} needs a reason: say why you need access.`));
      reason.focus();
      return;
    }
    const body = { connection: select.value };
    if (duration.value.trim()) body.duration = duration.value.trim();
    if (reason.value.trim()) body.reason = reason.value.trim();
    submit.disabled = true;
    try {
      const created = await api('POST', '/requests', body);
      ctx.go(`#/requests/${created.id}${created.reused ? '?reused=1' : ''}`);
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });

  showPolicy();
  return h('section', { class: 'access' },
    h('h1', { id: 'access-title' }, 'Request access'),
    h('p', { class: 'lede' }, 'Access is time-boxed: it starts when the request is approved and ends by itself.'),
    form);
}
