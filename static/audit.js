// Admin: the hash-chained audit trail, newest first, filtered by actor, action and
// target, with the chain's verification result on top.

import { api, qs } from './api.js';
import { busy, errorBox, field, h, replace, timeEl } from './dom.js';

export async function auditPage(ctx) {
  ctx.title('Audit');
  const filters = { actor: ctx.query.get('actor') || '', action: ctx.query.get('action') || '', target: ctx.query.get('target') || '' };
  const verdict = h('div', { class: 'verdict', role: 'status' });
  const verifyButton = h('button', { type: 'button' }, 'Verify again');
  const body = h('tbody');
  const table = h('table', { class: 'list audit' },
    h('caption', { class: 'sr-only' }, 'Audit events, newest first'),
    h('thead', null, h('tr', null, ['#', 'When', 'Actor', 'Action', 'Target', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const empty = h('p', { class: 'empty', hidden: true }, 'No event matches these filters.');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const err = errorBox();
  let cursor = null;

  async function verify() {
    await busy(verifyButton, async () => {
      try {
        const v = await api('GET', '/audit/verify');
        verdict.className = `verdict ${v.ok ? 'ok' : 'bad'}`;
        replace(verdict, v.ok
          ? h('p', null, h('strong', null, '✓ The audit chain verifies.'), ` ${v.events} event${v.events === 1 ? '' : 's'}, none changed, deleted or inserted.`)
          : h('p', null, h('strong', null, '✗ The audit chain is broken'), ` at event #${v.first_bad}: ${v.problem || 'it does not match its hash'}. ${v.events} event${v.events === 1 ? '' : 's'} verified before it.`));
      } catch (e) {
        verdict.className = 'verdict bad';
        replace(verdict, h('p', null, `Verification failed: ${e.message}`));
      }
    });
  }
  verifyButton.addEventListener('click', verify);

  function row(e) {
    return h('tr', null,
      h('td', { 'data-label': '#' }, String(e.seq)),
      h('td', { 'data-label': 'When' }, timeEl(e.at)),
      h('td', { 'data-label': 'Actor' }, e.actor),
      h('td', { 'data-label': 'Action' }, h('code', null, e.action)),
      h('td', { 'data-label': 'Target' }, /^req_/.test(e.target) ? h('a', { href: `#/requests/${e.target}`, class: 'mono' }, e.target) : e.target),
      h('td', { 'data-label': 'Detail', class: 'detail' }, h('code', null, JSON.stringify(e.detail))));
  }

  async function load(append) {
    err.clear();
    try {
      const page = await api('GET', `/audit${qs({ ...filters, limit: 100, cursor: append ? cursor : '' })}`, undefined, { signal: ctx.signal });
      if (append) body.append(...page.items.map(row));
      else replace(body, page.items.map(row));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const none = body.childElementCount === 0;
      table.hidden = none;
      empty.hidden = !none;
    } catch (e) {
      if (!ctx.signal.aborted) err.show(e);
    }
  }
  more.addEventListener('click', () => busy(more, () => load(true)));

  const inputs = Object.fromEntries(Object.keys(filters).map((k) =>
    [k, h('input', { name: k, value: filters[k], autocomplete: 'off', spellcheck: 'false' })]));
  const apply = h('button', { type: 'submit' }, 'Filter');
  const form = h('form', { class: 'filters audit-filters', 'aria-label': 'Filter audit events' },
    field('Actor', inputs.actor, 'A username, or system'),
    field('Action', inputs.action, 'e.g. request.approved'),
    field('Target', inputs.target, 'A request id or a name'),
    h('div', { class: 'actions' }, apply));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(filters)) filters[k] = inputs[k].value.trim();
    history.replaceState(null, '', `#/audit${qs(filters)}`);
    await busy(apply, () => load(false));
  });

  await Promise.all([verify(), load(false)]);
  return h('section', null,
    h('h1', null, 'Audit trail'),
    h('div', { class: 'verify' }, verdict, verifyButton),
    form,
    err.node,
    table,
    empty,
    more);
}
