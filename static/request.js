// One request (`#/requests/req_…`, the link the CLI and notifications print): who,
// which connection, how long, why, when; each approval group and who approved; the
// actions this person may take; a live countdown while the grant runs. It follows
// the request with the long poll (`/wait`), so a decision made elsewhere shows up at
// once. The server decides who may act (403/404/409); the page predicts it from
// /me and the connection's approval groups, and shows the server's word when it
// refuses. Below, the grant's sessions of `jitgate connect`: each stream, its bytes
// and end, and for PostgreSQL the SQL it sent (as text, never markup).

import { api, ApiError, path } from './api.js';
import {
  busy, confirmButton, countdown, errorBox, field, h, now, replace, statusBadge, timeEl,
} from './dom.js';

const FINAL = new Set(['REJECTED', 'CANCELLED', 'EXECUTED', 'REVOKED']);
const WAIT = '25s';

/** What `me` may do with `req` now, as the server's rules say (DESIGN.md, lifecycle):
 * `{approve, reject, revoke, cancel, end}`, each absent (not theirs to do, so not
 * shown), `true`, or a string saying why not (shown disabled, with that tooltip). */
export function permissions(req, me, conn) {
  const owner = req.user === me.username;
  const eligible = me.admin || Boolean(conn && conn.approval_groups.some((g) => me.groups.includes(g)));
  const live = effectiveStatus(req);
  const out = {};
  if (req.status === 'PENDING' && eligible && (!owner || me.admin)) {
    const mine = req.reviews.find((r) => r.reviewer === me.username);
    let why = true;
    if (mine) why = `You already ${mine.decision === 'approve' ? 'approved' : 'rejected'} this request.`;
    else if (live !== 'PENDING') why = 'This request has outlived its pending time.';
    out.approve = why;
    out.reject = why;
  }
  if (live === 'PENDING' && owner) out.cancel = true;
  if (live === 'APPROVED' && eligible) out.revoke = true;
  if (live === 'APPROVED' && owner) out.end = true;
  return out;
}

/** The status the server will report once its timer has run: a grant past its
 * expiry has ended, a request past its pending deadline is cancelled. */
function effectiveStatus(req) {
  if (req.status === 'APPROVED' && req.expires_at && Date.parse(req.expires_at) <= now()) return 'EXECUTED';
  if (req.status === 'PENDING' && Date.parse(req.pending_until) <= now()) return 'CANCELLED';
  return req.status;
}

export async function requestPage(ctx) {
  const id = ctx.params[0];
  const [me, first] = await Promise.all([
    ctx.refreshMe(),
    api('GET', path`/requests/${id}`, undefined, { signal: ctx.signal }),
  ]);
  let conn = null;
  try {
    conn = await api('GET', path`/connections/${first.connection}`, undefined, { signal: ctx.signal });
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e; // a deleted connection: no policy to show
  }
  let req = first;
  ctx.title(`${req.connection} · ${req.id}`);

  const badge = h('span', { class: 'status-slot' });
  const banner = h('div', { class: 'banner' });
  const details = h('dl', { class: 'details' });
  const groups = h('div');
  const reviews = h('div');
  const actions = h('div', { class: 'actions-panel' });
  const done = h('p', { class: 'success', role: 'status', hidden: true });
  const liveNote = h('p', { class: 'warning', role: 'status', hidden: true });
  const timer = h('span', { role: 'timer', class: 'countdown' });
  const sessions = h('div', { class: 'sessions' });
  let actionKey = '';
  // Outlives the redraws of the panel: a refusal stays on screen after the page
  // catches up with the state that caused it.
  const err = errorBox();

  function render() {
    replace(badge, statusBadge(req.status));
    renderBanner();
    renderDetails();
    replace(groups, req.groups.length
      ? groupList()
      : h('p', { class: 'muted' }, req.auto_approved ? 'Approved on creation: no approval was needed.' : 'This connection needs no approval.'));
    replace(reviews, req.reviews.length ? reviewList() : h('p', { class: 'muted' }, 'No reviews yet.'));
    const perms = permissions(req, me, conn);
    const key = `${req.status}|${JSON.stringify(perms)}`;
    if (key !== actionKey) {
      actionKey = key;
      renderActions(perms);
    }
    tick();
  }

  function renderBanner() {
    const s = req.status;
    let text;
    if (s === 'PENDING') {
      const missing = req.groups.filter((g) => g.approvals.length < g.required)
        .map((g) => `${g.group} (${g.approvals.length}/${g.required})`);
      text = [h('strong', null, 'Waiting for approval'), missing.length ? ` from ${missing.join(', ')}.` : '.'];
    } else if (s === 'APPROVED') {
      text = [h('strong', null, 'Access granted.'), ' Expires in ', timer, '.'];
    } else if (s === 'REJECTED') {
      text = [h('strong', null, `Rejected by ${req.ended_by || 'a reviewer'}`), req.end_reason ? [': ', h('q', null, req.end_reason)] : '.'];
    } else if (s === 'CANCELLED') {
      text = [h('strong', null, 'Cancelled'), req.ended_by === 'system' ? ` (${req.end_reason || 'pending time ran out'}).` : ` by ${req.ended_by || 'the requester'}${req.end_reason ? `: ${req.end_reason}` : '.'}`];
    } else if (s === 'EXECUTED') {
      text = [h('strong', null, 'Access ended'), req.ended_by === 'system' ? ': the time ran out.' : ` by ${req.ended_by}${req.end_reason ? `: ${req.end_reason}` : '.'}`];
    } else if (s === 'REVOKED') {
      text = [h('strong', null, `Revoked by ${req.ended_by || 'an approver'}`), req.end_reason ? [': ', h('q', null, req.end_reason)] : '.'];
    }
    banner.className = `banner status-${s.toLowerCase()}`;
    replace(banner, h('p', null, text));
  }

  function renderDetails() {
    const rows = [
      ['Requester', req.user],
      ['Connection', conn ? [req.connection, h('span', { class: 'muted' }, ` (${conn.kind}${conn.target ? `, ${conn.target}` : ''})`)] : req.connection],
      ['Duration', `${req.duration}, counted from approval`],
      ['Reason', req.reason ? h('span', { class: 'reason' }, req.reason) : h('span', { class: 'muted' }, 'none given')],
      ['Requested', timeEl(req.created_at, true)],
    ];
    if (req.status === 'PENDING') rows.push(['Pending until', timeEl(req.pending_until)]);
    if (req.approved_at) rows.push(['Approved', timeEl(req.approved_at)]);
    if (req.expires_at) rows.push([req.status === 'APPROVED' ? 'Expires' : 'Was to expire', timeEl(req.expires_at)]);
    if (req.ended_at) rows.push(['Ended', timeEl(req.ended_at)]);
    if (req.ended_by) rows.push(['Ended by', req.end_reason ? `${req.ended_by} (${req.end_reason})` : req.ended_by]);
    replace(details, rows.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
  }

  function groupList() {
    return h('ul', { class: 'groups' }, req.groups.map((g) => {
      const ok = g.approvals.length >= g.required;
      return h('li', { class: ok ? 'done' : '' },
        h('span', { class: 'group-name' }, g.group),
        h('span', { class: 'tally' }, `${g.approvals.length} of ${g.required} ${ok ? '✓' : ''}`),
        h('span', { class: 'who' }, g.approvals.length ? `approved by ${g.approvals.join(', ')}` : 'no approval yet'));
    }));
  }

  function reviewList() {
    return h('ol', { class: 'reviews' }, req.reviews.map((r) => h('li', null,
      h('span', { class: `decision ${r.decision}` }, r.decision === 'approve' ? '✓ approved' : '✗ rejected'),
      ' by ', h('strong', null, r.reviewer), ' ', timeEl(r.at),
      r.comment ? h('blockquote', null, r.comment) : null)));
  }

  function renderActions(perms) {
    const parts = [];
    const run = async (action, body, button, message) => {
      err.clear();
      done.hidden = true;
      await busy(button, async () => {
        try {
          const next = await api('POST', path`/requests/${req.id}/${action}`, body);
          req = next;
          render();
          done.textContent = message;
          done.hidden = false;
          ctx.announce(message);
        } catch (e) {
          err.show(e);
          if (e.status === 409 || e.status === 403) refetch();
        }
      });
    };
    const disabledNote = (why) => h('p', { class: 'hint' }, why);

    if (perms.approve !== undefined) {
      const comment = h('textarea', { name: 'comment', rows: 2, maxlength: 1000 });
      const reason = h('textarea', { name: 'reason', rows: 2, maxlength: 1000, required: true });
      const approve = h('button', { type: 'submit', class: 'approve' }, 'Approve');
      const reject = h('button', { type: 'submit', class: 'danger' }, 'Reject');
      const allowed = perms.approve === true;
      for (const b of [approve, reject]) {
        if (!allowed) {
          b.disabled = true;
          b.title = perms.approve;
        }
      }
      const approveForm = h('form', { class: 'decide approve-form', 'aria-label': 'Approve' },
        field('Comment (optional)', comment), h('div', { class: 'actions' }, approve));
      const rejectForm = h('form', { class: 'decide reject-form', 'aria-label': 'Reject' },
        field('Reason for rejecting (the requester sees it)', reason), h('div', { class: 'actions' }, reject));
      approveForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const text = comment.value.trim();
        run('approve', text ? { comment: text } : undefined, approve, 'You approved this request.');
      });
      rejectForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        run('reject', { reason: reason.value.trim() }, reject, 'You rejected this request.');
      });
      if (!allowed) { comment.disabled = true; reason.disabled = true; }
      parts.push(h('div', { class: 'decide-row' }, approveForm, rejectForm));
      if (!allowed) parts.push(disabledNote(perms.approve));
    }
    if (perms.revoke) {
      const reason = h('textarea', { name: 'revoke-reason', rows: 2, maxlength: 1000 });
      const revoke = h('button', { type: 'submit', class: 'danger' }, 'Revoke access');
      const form = h('form', { class: 'decide', 'aria-label': 'Revoke' },
        field('Reason for revoking (optional)', reason, 'Live sessions on this grant are cut at once.'),
        h('div', { class: 'actions' }, revoke));
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const text = reason.value.trim();
        run('revoke', text ? { reason: text } : undefined, revoke, 'You revoked this grant.');
      });
      parts.push(form);
    }
    if (perms.cancel) {
      parts.push(h('div', { class: 'actions' },
        confirmButton('Cancel request', 'Really cancel? Press again', (b) => run('cancel', undefined, b, 'You cancelled this request.'))));
    }
    if (perms.end) {
      parts.push(h('div', { class: 'actions' },
        confirmButton('End access now', 'Really end it? Press again', (b) => run('end', undefined, b, 'You ended this grant.')),
        h('span', { class: 'hint' }, ' Gives the grant back before it expires.')));
    }
    if (parts.length === 0) {
      let why;
      if (FINAL.has(req.status)) why = 'This request is final: nothing more can be done with it.';
      else if (req.status === 'PENDING') why = 'You are not an approver of this connection; its approvers decide.';
      else why = 'Only the requester, the approvers of this connection and admins can act on this grant.';
      parts.push(h('p', { class: 'muted' }, why));
    }
    replace(actions, h('h2', null, 'Actions'), parts, err.node);
  }

  function tick() {
    if (req.status !== 'APPROVED' || !req.expires_at) return;
    const left = Date.parse(req.expires_at) - now();
    timer.textContent = left > 0 ? countdown(left) : '0s (ending…)';
    timer.setAttribute('aria-label', `expires in ${countdown(left)}`);
  }

  // The grant's sessions, read again whenever the request moves (a revoke ends them).
  async function loadSessions() {
    try {
      const list = await api('GET', `/sessions?request=${encodeURIComponent(req.id)}&limit=20`, undefined, { signal: ctx.signal });
      const full = await Promise.all(list.items.map((s) => api('GET', path`/sessions/${s.id}`, undefined, { signal: ctx.signal })));
      replace(sessions, full.length ? full.map(sessionView) : h('p', { class: 'muted' }, 'No session: nobody has connected through jitgate with this grant.'));
    } catch (e) {
      if (!ctx.signal.aborted) replace(sessions, h('p', { class: 'muted' }, `Sessions could not be read (${e.message}).`));
    }
  }

  function sessionView(s) {
    const state = s.ended_at ? ['ended ', timeEl(s.ended_at), s.end_reason ? ` (${s.end_reason})` : ''] : h('strong', null, 'live');
    return h('article', { class: 'session' },
      h('h3', null, h('span', { class: 'mono' }, s.id), ' from ', s.client_addr || 'an unknown address'),
      h('p', { class: 'muted' }, 'Started ', timeEl(s.started_at), ', ', state),
      (s.streams_total ?? 0) > s.streams.length
        ? h('p', { class: 'muted' }, `The newest ${s.streams.length} of ${s.streams_total} streams:`)
        : null,
      s.streams.length
        ? h('ol', { class: 'streams' }, s.streams.map(streamView))
        : h('p', { class: 'muted' }, 'No stream yet.'));
  }

  function streamView(st) {
    const end = st.ended_at ? ['ended ', timeEl(st.ended_at), ` (${st.end_reason || '?'})`] : h('strong', null, 'live');
    const total = st.queries_total ?? st.queries.length;
    return h('li', { class: 'stream' },
      h('p', null, h('span', { class: 'mono' }, st.id), ` to ${st.target}: `, `${st.bytes_up} B up, ${st.bytes_down} B down; `, end),
      total > st.queries.length ? h('p', { class: 'muted' }, `The newest ${st.queries.length} of ${total} statements:`) : null,
      st.queries.length
        ? h('ol', { class: 'statements' }, st.queries.map((q) => h('li', null,
          timeEl(q.at), ' ', h('span', { class: 'muted' }, q.kind), ' ',
          h('code', { class: 'sql' }, q.sql), q.truncated ? h('span', { class: 'muted' }, ' (truncated)') : null)))
        : null);
  }

  async function refetch() {
    try {
      req = await api('GET', path`/requests/${req.id}`, undefined, { signal: ctx.signal });
      render();
    } catch {
      // the long poll keeps trying
    }
  }

  // Follows the request: the long poll answers as soon as the status moves, or with
  // the request as it is after WAIT (which brings new partial approvals too).
  async function follow() {
    while (!ctx.signal.aborted && !FINAL.has(req.status)) {
      try {
        const next = await api('GET', `${path`/requests/${req.id}/wait`}?status=${req.status}&timeout=${WAIT}`, undefined, { signal: ctx.signal });
        liveNote.hidden = true;
        const moved = next.status !== req.status;
        req = next;
        render();
        if (moved) {
          ctx.announce(`The request is now ${req.status}.`);
          loadSessions();
        }
      } catch (e) {
        if (ctx.signal.aborted || e.status === 401) return;
        if (e.status === 404) {
          liveNote.textContent = 'This request is no longer visible to you.';
          liveNote.hidden = false;
          return;
        }
        liveNote.textContent = `Live updates paused (${e.message}); retrying.`;
        liveNote.hidden = e.status === 503; // busy server: retry quietly
        await ctx.sleep(e.status === 503 ? 2000 : 5000);
      }
    }
  }

  render();
  ctx.every(1000, tick);
  follow();
  loadSessions();

  return h('section', { class: 'request' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← All requests')),
    h('div', { class: 'page-head' },
      h('h1', null, `Access to ${req.connection} for ${req.duration}`),
      badge),
    h('p', { class: 'mono muted id' }, req.id),
    ctx.query.get('reused') ? h('p', { class: 'notice' }, 'You already had a live request for this connection: here it is.') : null,
    banner,
    liveNote,
    details,
    h('div', { class: 'cols' },
      h('section', { 'aria-labelledby': 'h-approvals' }, h('h2', { id: 'h-approvals' }, 'Approval groups'), groups),
      h('section', { 'aria-labelledby': 'h-reviews' }, h('h2', { id: 'h-reviews' }, 'Reviews'), reviews)),
    done,
    actions,
    h('section', { 'aria-labelledby': 'h-sessions' },
      h('h2', { id: 'h-sessions' }, 'Sessions'),
      h('p', { class: 'muted' }, 'Each run of ', h('code', null, 'jitgate connect'), ' on this grant, its streams, and the SQL they sent.'),
      sessions));
}
