// The creation wizard (§15.2): name and description, type, network (VPC,
// subnet), IP version, an address given by hand (checked as it is typed:
// in use, out of range, reserved) or allocated, and VMs of the same VPC
// and subnet up to the ports-per-VIP limit.

import { api, ApiError, enc, idempotencyKey, limits, networks, subnetPorts } from './api.js';
import { $$, flash, h, options } from './dom.js';
import { go } from './app.js';

const CHECK_TEXT = {
  free: '✓ 可用 This address is free',
  in_use: '⚠ 该IP地址已被占用 This address is already in use',
  out_of_range: '✗ 不在所选网段内 Not inside the subnet',
  reserved: '✗ 保留地址 Reserved address',
  invalid: '✗ 不是有效的IP地址 Not an IP address',
};

const isV6 = (a) => a.includes(':');
const looksLikeIp = (a) => /^[0-9.]+$/.test(a) ? /^\d{1,3}(\.\d{1,3}){3}$/.test(a) : /^[0-9a-fA-F:.]+$/.test(a) && a.includes(':');

/** The VMs picker: checkboxes of `ports`, at most `max` checked; ports at
 * their own VIPs-per-port limit cannot be picked. Returns the element and
 * a function giving the checked port ids. */
export function portPicker(id, ports, max, vipsPerPort, checked = [], vipId = null) {
  const count = h('span', { class: 'muted', id: `${id}-count` });
  const list = h('ul', { class: 'ports', id });
  const update = () => {
    const boxes = $$('input', list);
    const n = boxes.filter((b) => b.checked).length;
    count.textContent = `已选 ${n} / ${max} Selected (at most ${max} VMs per HAVIP)`;
    for (const b of boxes) b.disabled = b.dataset.full === 'true' || (!b.checked && n >= max);
  };
  for (const p of ports) {
    const boundHere = vipId !== null && p.vips.some((v) => v.id === vipId);
    const full = !boundHere && p.vips.length >= (p.vips_per_port ?? vipsPerPort);
    const box = h('input', { type: 'checkbox', value: p.id, checked: checked.includes(p.id),
      dataset: { full: String(full) }, onchange: update });
    list.appendChild(h('li', {}, h('label', { class: 'inline' }, box,
      h('span', {}, h('strong', {}, p.vm), ` — ${p.id} — ${p.fixed_ips.join(', ')}`),
      h('span', { class: 'muted' }, ` ${p.vips.length} / ${p.vips_per_port ?? vipsPerPort} VIPs` +
        (full ? ' (已达上限 at its limit)' : '')))));
  }
  if (!ports.length) list.appendChild(h('li', { class: 'muted' }, '该子网没有虚拟机 No VM in this subnet'));
  update();
  const value = () => $$('input', list).filter((b) => b.checked).map((b) => b.value);
  return { el: h('div', {}, count, list), value };
}

export async function renderWizard(view) {
  const net = await networks();
  const key = idempotencyKey();
  const name = h('input', { id: 'c-name', maxlength: 64, required: true, placeholder: 'web-vip' });
  const desc = h('textarea', { id: 'c-desc', rows: 2, maxlength: 256 });
  const vpc = h('select', { id: 'c-vpc' }, options(net.vpcs.map((v) => [v.id, v.name ? `${v.name} (${v.id})` : v.id])));
  const subnet = h('select', { id: 'c-subnet' });
  const ipver = h('select', { id: 'c-ipver' });
  const auto = h('input', { type: 'radio', name: 'addr-mode', id: 'c-addr-auto', value: 'auto', checked: true });
  const manual = h('input', { type: 'radio', name: 'addr-mode', id: 'c-addr-manual', value: 'manual' });
  const address = h('input', { id: 'c-address', disabled: true, placeholder: '10.0.0.10', autocomplete: 'off' });
  const check = h('div', { id: 'addr-check', class: 'check', hidden: true });
  const portsBox = h('div', { id: 'c-ports-box' });
  const error = h('p', { id: 'c-error', class: 'error', hidden: true });
  const submit = h('button', { id: 'c-submit', type: 'button', class: 'primary' }, '确认创建 Create');
  let picker = { value: () => [] };
  let lastCheck = null;
  let checkSeq = 0;

  const currentSubnet = () => net.subnet[subnet.value];
  const fillSubnets = () => {
    const list = net.subnets.filter((s) => s.vpc === vpc.value);
    subnet.replaceChildren(...options(list.map((s) => [s.id,
      `${s.name ? `${s.name} (${s.id})` : s.id} — ${[s.cidr_v4, s.cidr_v6].filter(Boolean).join(', ')}`])));
  };
  const fillVersions = () => {
    const s = currentSubnet();
    const versions = [];
    if (s?.cidr_v4) versions.push(['ipv4', `IPv4 (${s.cidr_v4})`]);
    if (s?.cidr_v6) versions.push(['ipv6', `IPv6 (${s.cidr_v6})`]);
    ipver.replaceChildren(...options(versions, ipver.value));
  };
  const fillPorts = async () => {
    const s = currentSubnet();
    if (!s) {
      portsBox.replaceChildren(h('p', { class: 'muted' }, '请先选择子网 Choose a subnet first'));
      return;
    }
    const [ports, lim] = await Promise.all([subnetPorts(s.id), limits(s.project)]);
    picker = portPicker('c-ports', ports, lim.ports_per_vip, lim.vips_per_port);
    portsBox.replaceChildren(picker.el);
  };

  const showCheck = (state, text) => {
    lastCheck = state;
    check.dataset.state = state;
    check.textContent = text;
    check.hidden = false;
  };
  const checkAddress = async () => {
    const seq = ++checkSeq;
    const a = address.value.trim();
    if (!manual.checked || !a) {
      check.hidden = true;
      lastCheck = null;
      return;
    }
    if (!looksLikeIp(a)) return showCheck('invalid', `${CHECK_TEXT.invalid}: ${a}`);
    if (isV6(a) !== (ipver.value === 'ipv6')) {
      return showCheck('out_of_range', `${CHECK_TEXT.out_of_range}: ${a} is not an ${ipver.value === 'ipv6' ? 'IPv6' : 'IPv4'} address`);
    }
    showCheck('checking', '…');
    try {
      const r = await api('GET', `/v1/subnets/${enc(subnet.value)}/addresses/${enc(a)}`);
      if (seq !== checkSeq) return;
      showCheck(r.state, r.message ? `${CHECK_TEXT[r.state]}: ${r.message}` : `${CHECK_TEXT[r.state]}: ${r.address}`);
    } catch (e) {
      if (seq !== checkSeq) return;
      showCheck('invalid', e instanceof ApiError ? e.describe() : String(e));
    }
  };
  let debounce;
  address.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(checkAddress, 250); });
  const setMode = () => {
    address.disabled = !manual.checked;
    checkAddress();
  };
  auto.addEventListener('change', setMode);
  manual.addEventListener('change', setMode);
  vpc.addEventListener('change', async () => { fillSubnets(); fillVersions(); checkAddress(); await fillPorts(); });
  subnet.addEventListener('change', async () => { fillVersions(); checkAddress(); await fillPorts(); });
  ipver.addEventListener('change', checkAddress);

  submit.addEventListener('click', async () => {
    error.hidden = true;
    const fail = (text) => { error.textContent = text; error.hidden = false; };
    if (!name.value.trim()) return fail('名称必填 A name is required');
    if (!subnet.value) return fail('请选择网络 Choose a VPC and a subnet');
    const req = { name: name.value.trim(), description: desc.value, network_type: 'intranet',
      subnet: subnet.value, ip_version: ipver.value, ports: picker.value() };
    if (manual.checked) {
      const a = address.value.trim();
      if (!a) return fail('请填写IP地址 Enter the address, or let it be allocated');
      await checkAddress();
      if (lastCheck !== 'free') return fail(check.textContent);
      req.address = a;
    }
    submit.disabled = true;
    try {
      const vip = await api('POST', '/v1/havips', req, { 'Idempotency-Key': key });
      flash(`已创建 Created ${vip.name} (${vip.id}) ${vip.address}`);
      go('#/list');
    } catch (e) {
      submit.disabled = false;
      fail(e instanceof ApiError ? e.describe() : String(e));
    }
  });

  const card = h('div', { class: 'card', id: 'wizard' },
    h('h2', {}, '新建高可用VIP Create a HAVIP'),
    h('div', { class: 'step' }, h('h3', {}, '1. 基本信息 Name'),
      h('label', {}, '名称 Name *', name), h('label', {}, '备注 Description', desc)),
    h('div', { class: 'step' }, h('h3', {}, '2. VIP类型 Type'),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'net-type', id: 'c-intranet', checked: true }), '内网 Intranet'),
      h('label', { class: 'inline', title: 'Internet access goes through an EIP bound to an intranet HAVIP' },
        h('input', { type: 'radio', name: 'net-type', id: 'c-internet', disabled: true }), '外网 Internet (via an EIP)')),
    h('div', { class: 'step' }, h('h3', {}, '3. 网络设置 Network'),
      h('label', {}, 'VPC *', vpc), h('label', {}, '子网 Subnet *', subnet),
      h('label', {}, 'IP 版本 IP version', ipver)),
    h('div', { class: 'step' }, h('h3', {}, '4. IP 地址 Address'),
      h('label', { class: 'inline' }, auto, '自动分配 Allocate'),
      h('label', { class: 'inline' }, manual, '手动指定 Give by hand'),
      h('label', {}, 'IP', address), check),
    h('div', { class: 'step' }, h('h3', {}, '5. 关联虚拟机 VMs (same VPC and subnet)'), portsBox),
    error,
    h('div', { class: 'actions left' }, submit,
      h('button', { id: 'c-cancel', type: 'button', onclick: () => go('#/list') }, '取消 Cancel')));
  view.replaceChildren(card);
  if (!net.vpcs.length) {
    card.prepend(h('p', { class: 'error' },
      '创建高可用VIP前需至少拥有一个VPC网络和子网 A HAVIP needs a VPC and a subnet: ask an operator to register one.'));
  }
  fillSubnets();
  fillVersions();
  await fillPorts();
  setTimeout(() => name.focus(), 0);
}
