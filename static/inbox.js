// The requests inbox: what waits for my review, my own requests, and (admins) all
// requests, filtered by status and connection. It polls every few seconds while the
// tab is visible, so a new request shows up without a reload; focus and the filters
// survive each refresh.

import { all, api, qs } from './api.js';
import { ago, errorText, groupProgress, h, replace, statusBadge } from './dom.js';

const STATUSES = ['PENDING', 'APPROVED', 'REJECTED', 'CANCELLED', 'EXECUTED', 'REVOKED'];
const REFRESH_MS = 4000;

export async function inboxPage(ctx) {
  ctx.title('Requests');
  const me = await ctx.refreshMe(); // group membership may have changed
  const reviewer = me.admin || me.groups.length > 0;
  // Only approvers (members of a group, or admins) ever have something to review.
  const tabs = [];
  if (reviewer) tabs.push(['review', 'To review', 'Requests waiting for your approval']);
  tabs.push(['mine', 'My requests', 'Requests you made']);
  if (me.admin) tabs.push(['all', 'All', 'Every request']);
  const state = {
    tab: ctx.query.get('tab') || (reviewer ? 'review' : 'mine'),
    status: ctx.query.get('status') || '',
    connection: ctx.query.get('connection') || '',
    shown: 50,
    cursor: null,
    items: [],
    seen: null, // ids on screen, to announce new ones
  };
  if (!tabs.some(([k]) => k === state.tab)) state.tab = 'mine';

  const connections = await all('/connections').catch(() => []);

  const tabButtons = tabs.map(([key, label, description]) => {
    const b = h('button', { type: 'button', class: 'tab', 'aria-pressed': String(key === state.tab), title: description }, label);
    b.addEventListener('click', () => {
      state.tab = key;
      for (const other of tabButtons) other.setAttribute('aria-pressed', String(other === b));
      changed();
    });
    return b;
  });

  const statusSel = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === state.status }, s)));
  const connSel = h('select', { id: 'filter-connection' },
    h('option', { value: '' }, 'Any connection'),
    connections.map((c) => h('option', { value: c.name, selected: c.name === state.connection }, c.name)));
  statusSel.value = state.status;
  connSel.value = state.connection;
  statusSel.addEventListener('change', () => { state.status = statusSel.value; changed(); });
  connSel.addEventListener('change', () => { state.connection = connSel.value; changed(); });

  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const updated = h('p', { class: 'updated muted' });
  const problem = h('p', { class: 'warning', role: 'status', hidden: true });
  const body = h('tbody');
  const table = h('table', { class: 'requests' },
    h('caption', { class: 'sr-only' }, 'Access requests, newest first'),
    h('thead', null, h('tr', null,
      ['Request', 'Requester', 'Connection', 'Duration', 'Reason', 'Age', 'Approvals', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const empty = h('p', { class: 'empty', hidden: true });
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  more.addEventListener('click', loadMore);

  // Requests waiting for my review are all PENDING: no status filter there.
  const statusField = h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'Status'), statusSel);
  function syncControls() {
    statusField.hidden = state.tab === 'review';
  }

  function params(extra) {
    return {
      reviewable: state.tab === 'review' ? 'true' : '',
      user: state.tab === 'mine' ? me.username : '',
      status: state.tab === 'review' ? '' : state.status,
      connection: state.connection,
      ...extra,
    };
  }

  function changed() {
    const q = qs({ tab: state.tab, status: state.status, connection: state.connection });
    history.replaceState(null, '', `#/${q}`);
    state.shown = 50;
    state.seen = null;
    syncControls();
    refresh();
  }

  let loading = 0;
  async function refresh() {
    const mine = ++loading;
    try {
      const page = await api('GET', `/requests${qs(params({ limit: Math.min(200, state.shown) }))}`, undefined, { signal: ctx.signal });
      if (mine !== loading) return; // a newer refresh started
      state.items = page.items;
      state.cursor = page.next_cursor;
      problem.hidden = true;
      render();
    } catch (e) {
      if (ctx.signal.aborted || mine !== loading) return;
      problem.textContent = `Could not refresh the list: ${errorText(e)}`;
      problem.hidden = false;
    }
  }

  async function loadMore() {
    if (!state.cursor) return;
    more.disabled = true;
    try {
      const page = await api('GET', `/requests${qs(params({ limit: 50, cursor: state.cursor }))}`, undefined, { signal: ctx.signal });
      state.items = state.items.concat(page.items);
      state.cursor = page.next_cursor;
      state.shown = Math.min(200, state.items.length);
      render();
    } catch (e) {
      if (!ctx.signal.aborted) {
        problem.textContent = errorText(e);
        problem.hidden = false;
      }
    } finally {
      more.disabled = false;
    }
  }

  let drawn = '';
  function render() {
    // Redraw only what changed, keeping keyboard focus on the same row's link.
    const sig = JSON.stringify(state.items.map((r) => [r, ago(r.created_at)]));
    if (sig !== drawn) {
      drawn = sig;
      const focusedKey = body.contains(document.activeElement) ? document.activeElement.dataset.key : null;
      replace(body, state.items.map(row));
      if (focusedKey) {
        const again = body.querySelector(`a[data-key="${CSS.escape(focusedKey)}"]`);
        if (again) again.focus();
      }
    }
    const n = state.items.length;
    table.hidden = n === 0;
    empty.hidden = n !== 0;
    empty.textContent = emptyText();
    count.textContent = n === 0 ? '' : `${n}${state.cursor ? '+' : ''} request${n === 1 ? '' : 's'}`;
    more.hidden = !state.cursor;
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes by itself.`;
    const ids = new Set(state.items.map((r) => r.id));
    if (state.seen && state.tab === 'review') {
      const fresh = [...ids].filter((id) => !state.seen.has(id)).length;
      if (fresh) ctx.announce(`${fresh} new request${fresh === 1 ? '' : 's'} to review`);
    }
    state.seen = ids;
  }

  function emptyText() {
    const filtered = state.connection || (state.status && state.tab !== 'review');
    if (state.tab === 'review') return filtered ? 'Nothing waits for your review on this connection.' : 'Nothing waits for your review.';
    if (state.tab === 'mine') return filtered ? 'None of your requests match these filters.' : 'You have made no requests yet.';
    return 'No request matches these filters.';
  }

  function row(r) {
    const link = h('a', { href: `#/requests/${r.id}`, class: 'mono', dataset: { key: r.id } }, r.id);
    const tr = h('tr', { class: 'clickable' },
      h('td', { 'data-label': 'Request' }, link),
      h('td', { 'data-label': 'Requester' }, r.user),
      h('td', { 'data-label': 'Connection', class: 'nowrap' }, r.connection),
      h('td', { 'data-label': 'Duration', class: 'nowrap' }, r.duration),
      h('td', { 'data-label': 'Reason', class: 'reason' }, r.reason ? h('span', { class: 'clamp', title: r.reason }, r.reason) : h('span', { class: 'muted' }, 'none given')),
      h('td', { 'data-label': 'Age', class: 'nowrap' }, h('time', { datetime: r.created_at, title: r.created_at }, ago(r.created_at))),
      h('td', { 'data-label': 'Approvals' }, groupProgress(r.groups)),
      h('td', { 'data-label': 'Status' }, statusBadge(r.status)));
    // The whole row opens the request (the link stays the keyboard's way in).
    tr.addEventListener('click', (ev) => {
      if (ev.target.closest('a') || String(window.getSelection())) return;
      ctx.go(`#/requests/${r.id}`);
    });
    return tr;
  }

  syncControls();
  await refresh();
  ctx.every(REFRESH_MS, refresh);
  // Back to a tab that was hidden: catch up at once.
  const onVisible = () => { if (document.visibilityState === 'visible') refresh(); };
  document.addEventListener('visibilitychange', onVisible);
  ctx.signal.addEventListener('abort', () => document.removeEventListener('visibilitychange', onVisible));

  return h('section', { class: 'inbox' },
    h('div', { class: 'page-head' },
      h('h1', null, 'Access requests'),
      h('a', { class: 'button primary', href: '#/request-access' }, 'Request access')),
    h('div', { class: 'toolbar' },
      tabButtons.length > 1 ? h('div', { class: 'tabs', role: 'group', 'aria-label': 'Which requests' }, tabButtons) : h('span'),
      h('div', { class: 'filters' },
        statusField,
        h('div', { class: 'field' }, h('label', { for: 'filter-connection' }, 'Connection'), connSel))),
    problem,
    count,
    h('div', { class: 'table-wrap' }, table),
    empty,
    more,
    updated);
}
