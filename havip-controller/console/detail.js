// The detail page: every field, editing the name and description (any
// state), the bound VMs (remove one; add, remove or replace several at
// once), the current master, the failover history where the API has it,
// and delete. The read-only parts refresh every few seconds.

import { api, ApiError, enc, limits, subnetPorts } from './api.js';
import { $, confirmDialog, flash, h, statusBadge, when } from './dom.js';
import { editHavip, every, go } from './app.js';
import { DELETABLE, masterText } from './list.js';
import { portPicker } from './wizard.js';

const REFRESH_MS = 2000;

const describe = (e) => (e instanceof ApiError ? e.describe() : String(e));

export async function renderDetail(view, id) {
  let vip = await api('GET', `/v1/havips/${enc(id)}`);
  const lim = await limits(vip.project);
  const perVip = () => Math.min(vip.ports_per_vip ?? lim.ports_per_vip, 16);

  const title = h('h2', { id: 'd-title' });
  const fields = h('dl', { class: 'fields', id: 'd-fields' });
  const master = h('div', { id: 'master' });
  const bound = h('div', { id: 'bound' });
  const editor = h('div', { id: 'ports-editor' });
  const events = h('div', { class: 'card', id: 'events-card', hidden: true },
    h('h3', {}, '切换记录 Failover history'), h('div', { id: 'events' }));
  const deleteBtn = h('button', { id: 'delete', type: 'button', class: 'danger', onclick: deleteVip }, '删除 Delete');

  function renderFields() {
    title.replaceChildren(vip.name, ' ', statusBadge(vip.status));
    const rows = [
      ['资源ID ID', h('code', {}, vip.id)],
      ['名称 Name', h('span', { id: 'd-name' }, vip.name)],
      ['备注 Description', h('span', { id: 'd-desc' }, vip.description || '—')],
      ['状态 Status', h('span', { id: 'd-status' }, statusBadge(vip.status),
        vip.status_reason ? ` ${vip.status_reason}` : '')],
      ['类型 Type', vip.network_type === 'internet' ? '外网 Internet' : '内网 Intranet'],
      ['VPC', vip.vpc],
      ['子网 Subnet', vip.subnet],
      ['IP 版本 IP version', vip.ip_version === 'ipv6' ? 'IPv6' : 'IPv4'],
      ['IP 地址 Address', h('code', { id: 'd-address' }, vip.address)],
      ['项目组 Project', vip.project],
      ['创建时间 Created', when(vip.created_at)],
      ['代 Generation', `${vip.generation}` + (vip.pending_ports.length
        ? ` (等待主机确认 waiting for the hosts of ${vip.pending_ports.join(', ')})` : '')],
    ];
    fields.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    deleteBtn.disabled = !DELETABLE.includes(vip.status);
    deleteBtn.title = deleteBtn.disabled ? '仅可删除可用或失败状态 Only available or failed HAVIPs can be deleted' : '';
  }

  function renderMaster() {
    const m = vip.master;
    if (!m) {
      master.replaceChildren(h('p', { class: 'muted', id: 'no-master' },
        '尚无主 No master yet: no bound VM has announced the address.'));
      return;
    }
    const b = vip.ports.find((p) => p.port === m.port);
    const items = [
      ['端口 Port', h('code', { id: 'master-port' }, m.port)],
      ['虚拟机 VM', h('span', { id: 'master-vm' }, b ? b.vm : '—')],
      ['主机 Host', h('span', { id: 'master-host' }, m.host || b?.host || '（仅运维可见 shown to operators）')],
      ['自 Since', when(m.since)],
    ];
    if (m.split_brain) {
      items.push(['脑裂 Split brain', h('span', { class: 'split', id: 'split-brain' },
        `${m.split_brain.ports.join(', ')}` + (m.split_brain.pending ? ` (waiting: ${m.split_brain.pending})` : ''))]);
    }
    master.replaceChildren(h('dl', { class: 'fields', dataset: { master: masterText(vip) } },
      items.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  }

  function renderBound() {
    const rows = vip.ports.map((b) => h('tr', { dataset: { port: b.port } },
      h('td', {}, h('code', {}, b.port)), h('td', {}, b.vm),
      h('td', {}, b.host || '—'),
      h('td', {}, vip.master?.port === b.port ? '主 master' : ''),
      h('td', {}, vip.pending_ports.includes(b.port) ? '下发中 programming' : '✓'),
      h('td', {}, h('button', { type: 'button', class: 'link unbind', onclick: () => unbind(b) }, '解绑 Remove'))));
    bound.replaceChildren(
      h('p', { class: 'muted', id: 'bound-count' }, `${vip.ports.length} / ${perVip()} VMs`),
      h('table', { id: 'bound-table' },
        h('thead', {}, h('tr', {}, ['端口 Port', '虚拟机 VM', '主机 Host', '', '状态 Programmed', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'empty' }, '未关联虚拟机 No VM bound')))));
  }

  async function renderEditor() {
    const ports = await subnetPorts(vip.subnet);
    const picker = portPicker('d-ports', ports, perVip(), lim.vips_per_port, vip.ports.map((b) => b.port), vip.id);
    const save = h('button', { id: 'save-ports', type: 'button', class: 'primary', onclick: async () => {
      const wanted = picker.value();
      const removed = vip.ports.filter((b) => !wanted.includes(b.port));
      if (removed.length && !await confirmDialog('更新关联虚拟机 Change the VMs',
        '这些虚拟机将被解绑 These VMs will be unbound:', removed.map((b) => `${b.vm} (${b.port})`), '确定 OK')) return;
      await change(() => api('PUT', `/v1/havips/${enc(vip.id)}/ports`, { ports: wanted }),
        `已更新关联虚拟机 VMs now: ${wanted.join(', ') || 'none'}`);
    } }, '保存关联 Save VMs');
    editor.replaceChildren(h('p', { class: 'muted' },
      '勾选要关联的虚拟机（可替换、删除、新增）Check the VMs to bind: replace, add and remove at once.'),
    picker.el, h('div', { class: 'actions left' }, save));
  }

  async function refreshEvents() {
    let body;
    try {
      body = await api('GET', `/v1/havips/${enc(vip.id)}/events`);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        events.hidden = true; // no history on this controller
        return;
      }
      events.hidden = false;
      $('#events', events).replaceChildren(h('p', { class: 'error' }, describe(e)));
      return;
    }
    const list = Array.isArray(body) ? body : (body?.events || body?.items || []);
    events.hidden = false;
    $('#events', events).replaceChildren(list.length ? eventsTable(list)
      : h('p', { class: 'muted' }, '暂无切换 No failover yet'));
  }

  async function change(call, message) {
    try {
      vip = await call();
      flash(message);
    } catch (e) {
      flash(describe(e), true);
    }
    await redraw(true);
  }

  async function unbind(b) {
    if (!await confirmDialog('解绑虚拟机 Unbind a VM', `${b.vm} (${b.port}) 将不再能持有 ${vip.address}`,
      [], '解绑 Remove')) return;
    await change(() => api('DELETE', `/v1/havips/${enc(vip.id)}/ports/${enc(b.port)}`), `已解绑 Unbound ${b.vm} (${b.port})`);
  }

  async function deleteVip() {
    if (!await confirmDialog('删除高可用VIP Delete HAVIP',
      '删除后会自动解绑关联的虚拟机。Its VMs are unbound first; this cannot be undone.',
      [`${vip.name} (${vip.id}) ${vip.address}`])) return;
    try {
      await api('DELETE', `/v1/havips/${enc(vip.id)}`);
      flash(`已删除 Deleted ${vip.name} (${vip.id})`);
      go('#/list');
    } catch (e) {
      flash(describe(e), true);
    }
  }

  async function redraw(withEditor) {
    renderFields();
    renderMaster();
    renderBound();
    if (withEditor) await renderEditor();
    await refreshEvents();
  }

  view.replaceChildren(
    h('p', {}, h('a', { href: '#/list', id: 'back' }, '← 返回列表 Back to the list')),
    title,
    h('div', { class: 'card' }, h('h3', {}, '基本信息 Details'), fields,
      h('div', { class: 'actions left' },
        h('button', { id: 'edit-open', type: 'button', onclick: async () => {
          const updated = await editHavip(vip);
          if (updated) { vip = updated; await redraw(false); }
        } }, '编辑 Edit name and description'),
        deleteBtn)),
    h('div', { class: 'card' }, h('h3', {}, '当前主 Current master'), master),
    h('div', { class: 'card' }, h('h3', {}, '关联虚拟机 Bound VMs'), bound, editor),
    events);
  await redraw(true);

  // The master, the status and the history change without the user.
  every(REFRESH_MS, async () => {
    if ($('#d-title') !== title) return;
    try {
      vip = await api('GET', `/v1/havips/${enc(vip.id)}`);
      await redraw(false);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'not_found') go('#/list');
    }
  });
}

/** The failover history, whatever fields each event has: its time first. */
function eventsTable(list) {
  const TIME = ['at', 'time', 'timestamp', 'since'];
  const keys = [];
  for (const ev of list) {
    for (const k of Object.keys(ev)) if (!TIME.includes(k) && !keys.includes(k)) keys.push(k);
  }
  const text = (v) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  return h('table', { id: 'events-table' },
    h('thead', {}, h('tr', {}, h('th', {}, '时间 Time'), keys.map((k) => h('th', {}, k)))),
    h('tbody', {}, list.map((ev) => h('tr', {},
      h('td', {}, when(TIME.map((k) => ev[k]).find((v) => v))),
      keys.map((k) => h('td', {}, text(ev[k])))))));
}
