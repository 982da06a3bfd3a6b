// The public HAVIP API, with the caller's bearer token (kept in this tab's
// sessionStorage). Errors are the API's `{"error":{"code","message"}}`.

const TOKEN_KEY = 'havip.console.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** What each stable error code means, for people. */
const MEANING = {
  invalid_argument: '请求有误 Invalid request',
  address_out_of_range: 'IP地址不在网段内 Address out of range',
  address_in_use: 'IP地址已被占用 Address in use',
  subnet_exhausted: '子网无可用地址 Subnet exhausted',
  quota_exceeded: '超出配额 Limit reached',
  port_in_other_subnet: '虚拟机不在同一VPC子网 VM in another subnet',
  wrong_state: '当前状态不允许此操作 Not allowed in this state',
  not_found: '资源不存在 Not found',
  unauthenticated: '令牌无效 Token not accepted',
  forbidden: '无权限 Not allowed for this token',
  conflict: '冲突，请重试 Conflict, try again',
  unavailable: '服务暂不可用 Store unavailable, try again',
  payload_too_large: '请求过大 Request too large',
  corrupt_record: '记录损坏，请联系运维 Corrupt record, ask an operator',
  internal: '内部错误 Internal error',
  network: '无法连接控制器 Controller unreachable',
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** "<meaning>: <the API's message> [code]" */
  describe() {
    const meaning = MEANING[this.code] || `HTTP ${this.status}`;
    return `${meaning}: ${this.message} [${this.code}]`;
  }
}

/** Called when the API refuses the token (the app signs out). */
let onUnauthenticated = () => {};
export function whenUnauthenticated(f) {
  onUnauthenticated = f;
}

async function send(method, path, body, extraHeaders = {}) {
  const headers = { Authorization: `Bearer ${token.get() || ''}`, ...extraHeaders };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', e.message);
  }
  if (!resp.ok) {
    const text = await resp.text();
    let err = {};
    try {
      err = JSON.parse(text).error || {};
    } catch (_) { /* not the API's JSON */ }
    const e = new ApiError(resp.status, err.code || `http_${resp.status}`,
      err.message || text || resp.statusText);
    if (e.code === 'unauthenticated') onUnauthenticated(e);
    throw e;
  }
  return resp;
}

/** A JSON call; `null` for 204. */
export async function api(method, path, body, headers) {
  const resp = await send(method, path, body, headers);
  if (resp.status === 204) return null;
  return resp.json();
}

/** A file (the export) as a Blob. */
export async function download(path) {
  const resp = await send('GET', path);
  return resp.blob();
}

/** `?a=1&b=2` of the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;

/** Every VPC and subnet the token sees, and the subnets by id. */
export async function networks() {
  const [vpcs, subnets] = await Promise.all([api('GET', '/v1/vpcs'), api('GET', '/v1/subnets')]);
  return { vpcs, subnets, subnet: Object.fromEntries(subnets.map((s) => [s.id, s])) };
}

/** The limits in effect for a project (ports per VIP, VIPs per port). */
export function limits(project) {
  return api('GET', `/v1/limits/projects/${enc(project)}`);
}

/** Ports of a subnet (the VMs a HAVIP of it can be bound to). */
export function subnetPorts(subnet) {
  return api('GET', `/v1/ports${query({ subnet })}`);
}

/** A random idempotency key (crypto.randomUUID needs a secure context). */
export function idempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return `console-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}
