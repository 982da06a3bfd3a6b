// DOM helpers: elements are built with text nodes only (a name or a
// description is never parsed as HTML), plus the shared dialogs and the
// flash message.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** h('td', {class: 'x', onclick: f}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Options of a <select>: [[value, label], ...]; `selected` chosen. */
export function options(values, selected) {
  return values.map(([v, label]) => h('option', { value: v, selected: v === selected }, label));
}

export const STATUS = {
  creating: '创建中 creating',
  available: '可用 available',
  failed: '失败 failed',
  deleting: '删除中 deleting',
};

export function statusBadge(status) {
  return h('span', { class: `status status-${status}`, dataset: { status } }, STATUS[status] || status);
}

/** A local time as YYYY-MM-DD HH:MM:SS. */
export function when(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso ? String(iso) : '—';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

let flashTimer;
/** A message above the page; errors stay until the next one. */
export function flash(text, isError = false) {
  const el = $('#flash');
  el.textContent = text;
  el.classList.toggle('error', isError);
  el.hidden = false;
  clearTimeout(flashTimer);
  if (!isError) flashTimer = setTimeout(() => { el.hidden = true; }, 8000);
}
export function clearFlash() {
  $('#flash').hidden = true;
}

/** Shows the modal `dlg` until `cancel` (or Escape) or `ok` ends it.
 * `onOk` answers what the dialog resolves to, or undefined to stay open
 * (e.g. to show an error); a cancel resolves to null. */
export function modal(dlg, ok, cancel, onOk) {
  return new Promise((resolve) => {
    const finish = (result) => {
      ok.onclick = null;
      cancel.onclick = null;
      dlg.onclose = null;
      if (dlg.open) dlg.close();
      resolve(result);
    };
    cancel.onclick = () => finish(null);
    dlg.onclose = () => finish(null);
    ok.onclick = async () => {
      const result = await onOk();
      if (result !== undefined) finish(result);
    };
    dlg.showModal();
  });
}

/** Asks before a destructive action; resolves true on OK. */
export async function confirmDialog(title, text, items = [], okLabel = '删除 Delete') {
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-list').replaceChildren(...items.map((i) => h('li', {}, i)));
  $('#confirm-ok').textContent = okLabel;
  return (await modal($('#confirm'), $('#confirm-ok'), $('#confirm-cancel'), async () => true)) === true;
}
