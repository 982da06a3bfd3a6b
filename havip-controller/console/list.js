// The list page: every HAVIP of the project, with fuzzy search, filters
// (status, VPC, subnet, IP version), the API's pages, delete, batch delete
// and the Excel download.

import { api, ApiError, download, enc, networks, query } from './api.js';
import { $, $$, confirmDialog, flash, h, options, STATUS, statusBadge, when } from './dom.js';
import { editHavip, go } from './app.js';

const FILTERS = ['q', 'status', 'vpc', 'subnet', 'ip_version'];
const PAGE_SIZES = [10, 20, 50, 100];
/** Only these states can be deleted (§15.5). */
export const DELETABLE = ['available', 'failed'];

/** Ids checked for the batch delete, kept across pages. */
const selected = new Map();

function listHash(params) {
  return `#/list${query(params)}`;
}

/** The bound VMs of a HAVIP: "vm (port)" each. */
export function boundVms(vip) {
  return vip.ports.map((b) => `${b.vm} (${b.port})`);
}

/** The master: its port, VM and (for operators) host. */
export function masterText(vip) {
  const m = vip.master;
  if (!m) return '—';
  const b = vip.ports.find((p) => p.port === m.port);
  const parts = [m.port];
  if (b) parts.push(b.vm);
  if (m.host) parts.push(m.host);
  return parts.join(' · ') + (m.split_brain ? ' (split brain)' : '');
}

export async function renderList(view, params) {
  const state = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || '']));
  const page = Math.max(1, Number(params.get('page')) || 1);
  const pageSize = PAGE_SIZES.includes(Number(params.get('page_size'))) ? Number(params.get('page_size')) : 20;
  const [net, result] = await Promise.all([
    networks(),
    api('GET', `/v1/havips${query({ ...state, page, page_size: pageSize })}`),
  ]);

  const nav = (changes) => go(listHash({ ...state, page, page_size: pageSize, ...changes }));
  const search = h('input', { id: 'search', type: 'search', value: state.q,
    placeholder: '搜索 名称/备注/ID/IP  Search name, description, id, address' });
  search.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') nav({ q: search.value.trim(), page: 1 }); });
  const filter = (id, key, values) => h('select', { id, onchange: (ev) => nav({ [key]: ev.target.value, page: 1 }) },
    options([['', values.all], ...values.list], state[key]));
  const subnets = net.subnets.filter((s) => !state.vpc || s.vpc === state.vpc);

  const rows = result.items.map((vip) => row(vip, net));
  const pages = Math.max(1, Math.ceil(result.total / pageSize));
  const batch = h('button', { id: 'batch-delete', type: 'button', class: 'danger', onclick: () => batchDelete() },
    '批量删除 Delete selected');
  const allBox = h('input', { type: 'checkbox', id: 'select-all', title: 'Select this page' });
  const refreshBatch = () => {
    batch.disabled = selected.size === 0;
    batch.textContent = `批量删除 Delete selected (${selected.size})`;
    const boxes = $$('input.pick', view);
    allBox.checked = boxes.length > 0 && boxes.every((b) => b.checked);
  };
  allBox.addEventListener('change', () => {
    const on = allBox.checked;
    for (const b of $$('input.pick', view)) {
      b.checked = on;
      b.dispatchEvent(new Event('change'));
    }
  });

  view.replaceChildren(
    h('h2', {}, '高可用VIP Highly available VIPs'),
    h('div', { class: 'toolbar' },
      search,
      h('button', { id: 'do-search', type: 'button', onclick: () => nav({ q: search.value.trim(), page: 1 }) }, '搜索 Search'),
      filter('f-status', 'status', { all: '全部状态 Any status', list: Object.entries(STATUS) }),
      filter('f-vpc', 'vpc', { all: '全部VPC Any VPC', list: net.vpcs.map((v) => [v.id, v.name ? `${v.name} (${v.id})` : v.id]) }),
      filter('f-subnet', 'subnet', { all: '全部子网 Any subnet', list: subnets.map((s) => [s.id, s.name ? `${s.name} (${s.id})` : s.id]) }),
      filter('f-ipver', 'ip_version', { all: 'IPv4/IPv6', list: [['ipv4', 'IPv4'], ['ipv6', 'IPv6']] }),
      h('button', { id: 'reset', type: 'button', onclick: () => go('#/list') }, '重置 Reset'),
      h('span', { class: 'spacer' }),
      h('button', { id: 'new', type: 'button', class: 'primary', onclick: () => go('#/new') }, '新建 New'),
      batch,
      h('button', { id: 'export', type: 'button', onclick: exportXlsx }, '下载 Excel Download')),
    h('table', { id: 'havips' },
      h('thead', {}, h('tr', {},
        h('th', {}, allBox),
        ['名称/备注 Name', '资源ID ID', '状态 Status', 'VPC/子网 Subnet', 'IP地址 Address',
          '关联资源 Bound VMs', '当前主 Master', '项目组 Project', '创建时间 Created', '操作 Actions']
          .map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.length ? rows
        : h('tr', {}, h('td', { colspan: 11, class: 'empty', id: 'no-havips' },
          FILTERS.some((f) => state[f]) ? '没有匹配的高可用VIP No HAVIP matches' : '还没有高可用VIP No HAVIP yet')))),
    h('div', { class: 'pager', id: 'pager' },
      h('span', { id: 'total' }, `共 ${result.total} 条 Total ${result.total}`),
      h('button', { id: 'prev', type: 'button', disabled: page <= 1, onclick: () => nav({ page: page - 1 }) }, '‹'),
      h('span', { id: 'page' }, `${page} / ${pages}`),
      h('button', { id: 'next', type: 'button', disabled: page >= pages, onclick: () => nav({ page: page + 1 }) }, '›'),
      h('select', { id: 'page-size', onchange: (ev) => nav({ page_size: ev.target.value, page: 1 }) },
        options(PAGE_SIZES.map((n) => [String(n), `${n} / 页 page`]), String(pageSize)))));
  for (const b of $$('input.pick', view)) b.addEventListener('change', refreshBatch);
  refreshBatch();

  function row(vip) {
    const pick = h('input', { type: 'checkbox', class: 'pick', value: vip.id, checked: selected.has(vip.id),
      onchange: (ev) => { if (ev.target.checked) selected.set(vip.id, vip); else selected.delete(vip.id); } });
    const deletable = DELETABLE.includes(vip.status);
    return h('tr', { dataset: { id: vip.id } },
      h('td', {}, pick),
      h('td', { class: 'name' },
        h('a', { href: `#/havip/${enc(vip.id)}`, class: 'name-link' }, vip.name),
        h('button', { type: 'button', class: 'link edit', title: '编辑 Edit',
          onclick: async () => { if (await editHavip(vip)) nav({}); } }, '✎ 编辑'),
        vip.description ? h('div', { class: 'desc' }, vip.description) : null),
      h('td', {}, h('code', {}, vip.id)),
      h('td', { class: 'status-cell' }, statusBadge(vip.status),
        vip.status_reason ? h('div', { class: 'desc' }, vip.status_reason) : null),
      h('td', { class: 'net' }, `${vip.vpc} / ${vip.subnet}`),
      h('td', { class: 'address' }, h('code', {}, vip.address), h('div', { class: 'desc' }, vip.ip_version === 'ipv6' ? 'IPv6' : 'IPv4')),
      h('td', { class: 'vms' }, vip.ports.length ? boundVms(vip).map((t) => h('div', {}, t)) : '—'),
      h('td', { class: 'master' }, masterText(vip)),
      h('td', {}, vip.project),
      h('td', {}, when(vip.created_at)),
      h('td', {},
        h('a', { href: `#/havip/${enc(vip.id)}` }, '详情 Details'), ' ',
        h('button', { type: 'button', class: 'link delete', disabled: !deletable,
          title: deletable ? '删除 Delete' : '仅可删除可用或失败状态 Only available or failed HAVIPs can be deleted',
          onclick: () => deleteOne(vip) }, '删除 Delete')));
  }

  async function deleteOne(vip) {
    const ok = await confirmDialog('删除高可用VIP Delete HAVIP',
      '删除后会自动解绑关联的虚拟机。Its VMs are unbound first; this cannot be undone.',
      [`${vip.name} (${vip.id}) ${vip.address}`]);
    if (!ok) return;
    try {
      await api('DELETE', `/v1/havips/${enc(vip.id)}`);
      selected.delete(vip.id);
      flash(`已删除 Deleted ${vip.name} (${vip.id})`);
    } catch (e) {
      flash(e instanceof ApiError ? e.describe() : String(e), true);
    }
    nav({});
  }

  async function batchDelete() {
    const vips = [...selected.values()];
    if (!vips.length) return;
    const ok = await confirmDialog(`批量删除 Delete ${vips.length} HAVIPs`,
      '删除后会自动解绑关联的虚拟机。Their VMs are unbound first; this cannot be undone.',
      vips.map((v) => `${v.name} (${v.id}) ${v.address}`));
    if (!ok) return;
    try {
      const { results } = await api('POST', '/v1/havips/batch-delete', { ids: vips.map((v) => v.id) });
      const failed = results.filter((r) => !r.deleted);
      for (const r of results) if (r.deleted) selected.delete(r.id);
      if (failed.length) {
        flash(`已删除 ${results.length - failed.length}, 失败 ${failed.length} Not deleted: ` +
          failed.map((r) => `${r.id}: ${r.error ? new ApiError(0, r.error.code, r.error.message).describe() : '?'}`).join('; '), true);
      } else {
        flash(`已删除 Deleted ${results.length} HAVIPs`);
      }
    } catch (e) {
      flash(e instanceof ApiError ? e.describe() : String(e), true);
    }
    nav({ page: 1 });
  }
}

async function exportXlsx() {
  try {
    const blob = await download('/v1/havips/export?format=xlsx');
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: 'havips.xlsx', hidden: true });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    flash('已下载 Downloaded havips.xlsx');
  } catch (e) {
    flash(e instanceof ApiError ? e.describe() : String(e), true);
  }
}
