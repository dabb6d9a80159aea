// DOM and formatting helpers of the jitgate web UI.
//
// Every piece of text reaches the page through `h()` (text nodes and
// `setAttribute`), never as HTML: a reason of `<img src=x onerror=alert(1)>` shows
// literally. Nothing here parses markup, and `on*` attributes are refused unless they
// are functions (bound with addEventListener), so no string ever becomes code.

/** Builds an element. `props`: attributes, plus `class`, `text`, `value`, `checked`,
 * `dataset` and `onEvent` handlers; children: nodes, strings, numbers, arrays, or
 * null/false (skipped). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (see `h`) to `parent`. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let nextId = 0;
/** A unique element id, to tie labels, hints and errors to their fields. */
export function uid(prefix = 'f') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled form field: `<div class="field"><label>…</label>control hint</div>`.
 * `control` is an element (input, select, textarea); its id is set here, and the
 * hint is tied to it with aria-describedby. */
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('p', { class: 'hint', id: hintId }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/** A checkbox with its label after it. */
export function checkbox(label, props, hint) {
  const id = uid('c');
  const input = h('input', { type: 'checkbox', id, ...props });
  const parts = [input, h('label', { for: id }, label)];
  if (hint) {
    input.setAttribute('aria-describedby', `${id}-hint`);
    parts.push(h('p', { class: 'hint', id: `${id}-hint` }, hint));
  }
  return h('div', { class: 'check' }, parts);
}

/** An area that shows an error (role=alert, so it is read out when it appears). */
export function errorBox() {
  const box = h('div', { class: 'error', role: 'alert', hidden: true });
  return {
    node: box,
    show(err) {
      replace(box, errorText(err));
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      box.replaceChildren();
    },
  };
}

/** What to tell a person about a failed call. */
export function errorText(err) {
  if (err && err.status) return err.message;
  return err && err.message ? err.message : String(err);
}

// ---- Time ------------------------------------------------------------------

// The server's clock decides expiry; when the browser's clock is off by more than
// a few seconds (read from the Date header of API replies), countdowns follow the
// server's.
let skewMs = 0;
export function noteServerDate(dateHeader) {
  const server = Date.parse(dateHeader || '');
  if (Number.isNaN(server)) return;
  const skew = server - Date.now();
  skewMs = Math.abs(skew) > 3000 ? skew : 0;
}
export function now() {
  return Date.now() + skewMs;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago". */
export function ago(iso) {
  const secs = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
  if (secs < 45) return 'just now';
  const mins = Math.round(secs / 60);
  if (mins < 60) return `${mins} min ago`;
  const hours = Math.floor(mins / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** "1h 05m 09s", "4m 02s", "9s". */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(total / 86400);
  const hrs = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${hrs}h ${pad(m)}m`;
  if (hrs) return `${hrs}h ${pad(m)}m ${pad(s)}s`;
  if (m) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

/** A `<time>` with the local date and time, and the UTC value as its tooltip. */
export function timeEl(iso, withAgo = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const local = new Date(iso).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  return h('time', { datetime: iso, title: iso }, withAgo ? `${local} (${ago(iso)})` : local);
}

/** Seconds in a duration like `90s`, `1h30m`, `1d` (whole units s m h d, combinable),
 * or null when it is not one. The server has the last word; this only warns early. */
export function parseDuration(text) {
  const t = String(text || '').trim();
  if (!/^(\d+[smhd])+$/.test(t)) return null;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 };
  let secs = 0;
  for (const [, n, u] of t.matchAll(/(\d+)([smhd])/g)) secs += Number(n) * unit[u];
  return secs > 0 ? secs : null;
}

// ---- Small widgets ---------------------------------------------------------

/** The status as a coloured badge (the word is always there: colour is not the
 * only signal). */
export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}` }, status);
}

/** Per-group approval progress: "dba-team 1/1 ✓ (bob)". */
export function groupProgress(groups, withNames = false) {
  if (!groups || groups.length === 0) return h('span', { class: 'muted' }, 'no approval needed');
  return h('ul', { class: 'progress' }, groups.map((g) => {
    const done = g.approvals.length >= g.required;
    const label = `${g.group} ${g.approvals.length}/${g.required}`;
    return h('li', {
      class: done ? 'chip done' : 'chip',
      title: g.approvals.length ? `approved by ${g.approvals.join(', ')}` : 'no approval yet',
    },
    done ? `${label} ✓` : label,
    withNames && g.approvals.length ? h('span', { class: 'who' }, ` (${g.approvals.join(', ')})`) : null);
  }));
}

/** A button that asks "are you sure?" by changing its label for a few seconds:
 * the first press arms it, the second runs `action`. */
export function confirmButton(label, confirmLabel, action, cls = 'danger') {
  let armed = null;
  const btn = h('button', { type: 'button', class: cls }, label);
  btn.addEventListener('click', async () => {
    if (!armed) {
      btn.textContent = confirmLabel;
      armed = setTimeout(() => { armed = null; btn.textContent = label; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    btn.textContent = label;
    await action(btn);
  });
  return btn;
}

/** Runs `fn` with `button` disabled and marked busy, so a double click sends once. */
export async function busy(button, fn) {
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  try {
    return await fn();
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}
