// The console's shell: sign-in, the routes (#/list, #/new, #/havip/<id>),
// and the edit dialog the list and the detail page share.

import { api, ApiError, enc, token, whenUnauthenticated } from './api.js';
import { $, clearFlash, flash, h, modal } from './dom.js';
import { renderList } from './list.js';
import { renderWizard } from './wizard.js';
import { renderDetail } from './detail.js';

/** Timers and listeners of the page shown; cleared on navigation. */
const page = { timers: [] };
let routeSeq = 0;
export function every(ms, f) {
  page.timers.push(setInterval(f, ms));
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

whenUnauthenticated((e) => {
  token.clear();
  showLogin(e.describe());
});

function showLogin(message) {
  routeSeq += 1; // a page still loading is not shown over this one
  for (const t of page.timers) clearInterval(t);
  page.timers = [];
  $('#logout').hidden = true;
  $('#who').textContent = '';
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'Bearer token' });
  const error = h('p', { id: 'login-error', class: 'error', hidden: !message }, message || '');
  const submit = async () => {
    const t = input.value.trim();
    if (!t) {
      error.textContent = '请输入令牌 Enter the API token of your project';
      error.hidden = false;
      return;
    }
    token.set(t);
    try {
      await api('GET', '/v1/havips?page_size=1');
    } catch (e) {
      token.clear();
      error.textContent = e instanceof ApiError ? e.describe() : String(e);
      error.hidden = false;
      return;
    }
    clearFlash();
    if (!location.hash.startsWith('#/') || location.hash === '#/login') location.hash = '#/list';
    else route();
  };
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') submit(); });
  $('#view').replaceChildren(h('div', { class: 'card login', id: 'login' },
    h('h2', {}, '登录 Sign in'),
    h('p', { class: 'muted' }, 'Use the same bearer token as the HAVIP API (a project token). ' +
      'It is kept in this browser tab only (sessionStorage).'),
    h('label', {}, 'API 令牌 Token', input),
    error,
    h('div', { class: 'actions left' },
      h('button', { id: 'login-submit', type: 'button', class: 'primary', onclick: submit }, '登录 Sign in'))));
  input.focus();
}

async function route() {
  for (const t of page.timers) clearInterval(t);
  page.timers = [];
  if (!token.get()) return showLogin();
  $('#logout').hidden = false;
  $('#who').textContent = 'signed in';
  const [path, qs] = (location.hash.slice(1) || '/list').split('?');
  const params = new URLSearchParams(qs || '');
  // Each page is built aside and shown only if no later navigation
  // started meanwhile (answers can arrive out of order).
  const seq = ++routeSeq;
  const view = h('div', {});
  const show = () => { if (seq === routeSeq) $('#view').replaceChildren(view); };
  try {
    if (path === '/new') await renderWizard(view);
    else if (path.startsWith('/havip/')) await renderDetail(view, decodeURIComponent(path.slice(7)));
    else await renderList(view, params);
    show();
  } catch (e) {
    if (e instanceof ApiError && e.code === 'unauthenticated') return; // signed out
    show();
    view.replaceChildren(h('div', { class: 'card' },
      h('p', { class: 'error', id: 'page-error' }, e instanceof ApiError ? e.describe() : String(e)),
      h('a', { href: '#/list' }, '← 返回列表 Back to the list')));
  }
}

/** The edit dialog: name and description, in any state. Resolves to the
 * updated HAVIP, or null when cancelled. */
export function editHavip(vip) {
  const name = $('#e-name');
  const desc = $('#e-desc');
  const error = $('#e-error');
  name.value = vip.name;
  desc.value = vip.description || '';
  error.hidden = true;
  setTimeout(() => name.focus(), 0);
  return modal($('#edit'), $('#e-save'), $('#e-cancel'), async () => {
    if (!name.value.trim()) {
      error.textContent = '名称必填 A name is required';
      error.hidden = false;
      return undefined;
    }
    try {
      const updated = await api('PATCH', `/v1/havips/${enc(vip.id)}`,
        { name: name.value, description: desc.value });
      flash(`已更新 Updated ${updated.name} (${updated.id})`);
      return updated;
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.describe() : String(e);
      error.hidden = false;
      return undefined;
    }
  });
}

$('#logout').addEventListener('click', () => {
  token.clear();
  location.hash = '#/login';
  showLogin();
});
window.addEventListener('hashchange', route);
route();
