//! Several hypervisors on one L2 fabric, with the controller and etcd: the
//! cross-hypervisor setup.
//!
//! ```text
//!  ctl netns: bridge "fabric" 10.99.0.1/24, etcd :2379, havip-controller :8780
//!     | up-hv-a             | up-hv-b             | up-hv-c
//!  hv-a: br0 10.99.0.11   hv-b: br0 10.99.0.12   hv-c: br0 10.99.0.13
//!     | tap-vm1             | tap-vm2             | tap-client
//!    vm1                   vm2                  client
//! ```
//!
//! Each hypervisor's bridge joins the fabric through its `uplink` veth, and
//! carries the hypervisor's own address (its agent reaches etcd over it).
//! The VMs, their specs and addresses are the lab's ([`crate::lab`]); the
//! controller knows them as ports `port-<role>` of subnet `subnet-a`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::Value;

use crate::agent::{Agent, AgentOptions, Pins};
use crate::cleanup::{self, Resource, Token};
use crate::lab::{self, Vm, VmSpec, CIDR4, CIDR6};
use crate::netns::{self, Netns};
use crate::{cmd, wait};

/// The controller's address on the fabric.
pub const CONTROL_IP: &str = "10.99.0.1";
pub const ETCD_URL: &str = "http://10.99.0.1:2379";
pub const API_URL: &str = "http://10.99.0.1:8780";
/// Where the controller serves its metrics (`--metrics-listen`).
pub const CONTROLLER_METRICS: &str = "10.99.0.1:9470";
const ETCD_PEER_URL: &str = "http://10.99.0.1:2380";
/// Tokens of the controller the fabric runs.
pub const OPERATOR_TOKEN: &str = "tok-operator-fabric";
pub const PROJECT_TOKEN: &str = "tok-project-fabric";
pub const PROJECT: &str = "proj-a";
pub const SUBNET: &str = "subnet-a";

/// The controller's id of a VM's port.
pub fn port_id(spec: &VmSpec) -> String {
    format!("port-{}", spec.role)
}

/// One hypervisor: its namespace, its VMs, its agent once started.
pub struct Host {
    pub name: String,
    /// Its address on the fabric (on br0).
    pub address: String,
    pub ns: Netns,
    pub vms: Vec<Vm>,
    pub agent: Option<Agent>,
    kept_pins: Vec<Pins>,
    dir: PathBuf,
}

impl Host {
    pub fn vm(&self, role: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.role() == role)
    }

    pub fn agent(&self) -> Result<&Agent> {
        self.agent
            .as_ref()
            .with_context(|| format!("no agent runs on {}", self.name))
    }

    /// Starts this host's agent on the fabric's etcd; returns once XDP is
    /// attached to every VM port of the host.
    pub fn start_agent(&mut self) -> Result<&Agent> {
        self.start_agent_with(AgentOptions::default())
    }

    /// [`Host::start_agent`] with options (e.g. the pins of a previous one).
    pub fn start_agent_with(&mut self, opts: AgentOptions) -> Result<&Agent> {
        let taps: Vec<&str> = self.vms.iter().map(|v| v.spec.tap).collect();
        let agent = Agent::start_etcd_with(&self.ns, ETCD_URL, &self.name, &self.dir, &taps, opts)?;
        Ok(self.agent.insert(agent))
    }

    /// Restarts the agent on the same pinned maps and links (learned owners
    /// stay; the new agent adopts the programs in force).
    pub fn restart_agent(&mut self) -> Result<&Agent> {
        let old = self.agent.take().context("no agent to restart")?;
        let pins = old.stop_keeping_pins()?;
        let opts = AgentOptions {
            pin_dir: Some(pins.dir.clone()),
            unpin_on_exit: false,
            ..AgentOptions::default()
        };
        // Kept until the host goes: releasing them removes the pin dir.
        self.kept_pins.push(pins);
        self.start_agent_with(opts)
    }
}

/// The fabric: the control namespace and the hypervisors.
pub struct Fabric {
    pub stem: String,
    etcd: Option<Token>,
    controller: Option<Token>,
    // Drop order: hosts (agents, VMs, hypervisors), then the control
    // namespace, then the temp dir.
    pub hosts: Vec<Host>,
    pub ctl: Netns,
    pub dir: PathBuf,
    _dir_guard: lab::DirGuard,
}

impl Fabric {
    /// Builds the fabric with `placement` (hypervisor name, its VMs), starts
    /// etcd and the controller, and registers the VPC, the subnet and every
    /// VM's port. Agents are started by the caller.
    pub fn build(placement: &[(&str, &[VmSpec])]) -> Result<Self> {
        cmd::require_lab_prerequisites()?;
        cmd::require_tools(&["etcd"])?;
        let stem = netns::unique_stem();
        let dir = std::env::temp_dir().join(&stem);
        let dir_guard = lab::DirGuard::create(&dir)?;

        let ctl = Netns::new(&format!("{stem}-ctl"))?;
        ctl.disable_ipv6()?;
        ctl.ip(&["link", "set", "lo", "up"])?;
        lab::add_bridge(&ctl, "fabric")?;
        ctl.ip(&["addr", "add", &format!("{CONTROL_IP}/24"), "dev", "fabric"])?;

        let mut hosts = Vec::new();
        for (i, (name, vms)) in placement.iter().enumerate() {
            let ns = Netns::new(&format!("{stem}-{name}"))?;
            ns.disable_ipv6()?;
            ns.ip(&["link", "set", "lo", "up"])?;
            lab::add_bridge(&ns, "br0")?;
            let up = format!("up-{name}");
            ctl.ip(&[
                "link",
                "add",
                &up,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                ns.name(),
            ])?;
            ctl.ip(&["link", "set", &up, "master", "fabric"])?;
            ctl.ip(&["link", "set", &up, "up"])?;
            ns.ip(&["link", "set", "uplink", "master", "br0"])?;
            ns.ip(&["link", "set", "uplink", "up"])?;
            let address = format!("10.99.0.{}", 11 + i);
            ns.ip(&["addr", "add", &format!("{address}/24"), "dev", "br0"])?;
            let vms = vms
                .iter()
                .map(|spec| lab::add_vm(&ns, &stem, *spec))
                .collect::<Result<Vec<_>>>()?;
            let host_dir = dir.join(name);
            std::fs::create_dir_all(&host_dir)?;
            hosts.push(Host {
                name: name.to_string(),
                address,
                ns,
                vms,
                agent: None,
                kept_pins: Vec::new(),
                dir: host_dir,
            });
        }
        let mut fabric = Self {
            stem,
            etcd: None,
            controller: None,
            hosts,
            ctl,
            dir,
            _dir_guard: dir_guard,
        };
        fabric.start_etcd()?;
        fabric.start_controller()?;
        fabric.register()?;
        Ok(fabric)
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this fabric"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this fabric"))
    }

    /// The VM `role`, wherever it runs.
    pub fn vm(&self, role: &str) -> &Vm {
        self.hosts
            .iter()
            .find_map(|h| h.vm(role))
            .unwrap_or_else(|| panic!("no VM {role} in this fabric"))
    }

    fn spawn(&self, name: &str, program: &Path, args: &[&str], log: &Path) -> Result<Token> {
        let log_file = std::fs::File::create(log)?;
        let mut c = netns::command_in(self.ctl.name(), program)?;
        c.args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = c.spawn().with_context(|| format!("start {name}"))?;
        Ok(cleanup::register(Resource::Process {
            name: name.into(),
            child,
            group: false,
            grace: Duration::from_secs(5),
        }))
    }

    /// Starts etcd in the control namespace (its data survives a stop).
    pub fn start_etcd(&mut self) -> Result<()> {
        let etcd = cmd::which("etcd").context("etcd is not installed")?;
        let data = self.dir.join("etcd-data");
        let token = self.spawn(
            "etcd",
            &etcd,
            &[
                "--name",
                "fabric",
                "--data-dir",
                data.to_str().context("temp dir path")?,
                "--listen-client-urls",
                ETCD_URL,
                "--advertise-client-urls",
                ETCD_URL,
                "--listen-peer-urls",
                ETCD_PEER_URL,
                "--initial-advertise-peer-urls",
                ETCD_PEER_URL,
                "--initial-cluster",
                &format!("fabric={ETCD_PEER_URL}"),
            ],
            &self.dir.join("etcd.log"),
        )?;
        self.etcd = Some(token);
        wait::until(Duration::from_secs(20), "etcd to be healthy", || {
            Ok(self
                .http("GET", &format!("{ETCD_URL}/health"), None, None)
                .is_ok_and(|(_, body)| body.contains("true")))
        })
        .with_context(|| self.log_tail("etcd.log"))
    }

    /// Stops etcd (SIGTERM), as an outage.
    pub fn stop_etcd(&mut self) {
        if let Some(t) = self.etcd.take() {
            cleanup::release(t);
        }
    }

    fn start_controller(&mut self) -> Result<()> {
        let config = self.dir.join("controller.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{CONTROL_IP}:8780\"\netcd = [\"{ETCD_URL}\"]\n\n\
                 [[tokens]]\ntoken = \"{OPERATOR_TOKEN}\"\noperator = true\n\n\
                 [[tokens]]\ntoken = \"{PROJECT_TOKEN}\"\nproject = \"{PROJECT}\"\n"
            ),
        )?;
        let bin = controller_bin("havip-controller")?;
        let token = self.spawn(
            "havip-controller",
            &bin,
            &[
                "--config",
                config.to_str().context("temp dir path")?,
                "--metrics-listen",
                CONTROLLER_METRICS,
            ],
            &self.dir.join("controller.log"),
        )?;
        self.controller = Some(token);
        wait::until(Duration::from_secs(20), "the controller to serve", || {
            Ok(self
                .http("GET", &format!("{API_URL}/healthz"), None, None)
                .is_ok_and(|(status, _)| status == 200))
        })
        .with_context(|| self.log_tail("controller.log"))
    }

    /// Registers the VPC, the subnet and every VM's port (the operator's,
    /// normally orchestration's, part).
    fn register(&self) -> Result<()> {
        self.havipctl(
            OPERATOR_TOKEN,
            &["register", "vpc", "vpc-1", "--project", PROJECT],
        )?;
        self.havipctl(
            OPERATOR_TOKEN,
            &[
                "register",
                "subnet",
                SUBNET,
                "--vpc",
                "vpc-1",
                "--cidr-v4",
                CIDR4,
                "--cidr-v6",
                CIDR6,
            ],
        )?;
        for host in &self.hosts {
            for vm in &host.vms {
                let s = vm.spec;
                self.havipctl(
                    OPERATOR_TOKEN,
                    &[
                        "register",
                        "port",
                        &port_id(&s),
                        "--vm",
                        s.role,
                        "--subnet",
                        SUBNET,
                        "--mac",
                        &s.mac_str(),
                        "--ip",
                        &s.ipv4.to_string(),
                        "--ip",
                        &s.ipv6.to_string(),
                        "--host",
                        &host.name,
                        "--interface",
                        s.tap,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// `havipctl --json <args>` against the fabric's controller; the JSON.
    pub fn havipctl(&self, token: &str, args: &[&str]) -> Result<Value> {
        let bin = controller_bin("havipctl")?;
        let out = cmd::output(
            netns::command_in(self.ctl.name(), &bin)?
                .args(["--url", API_URL, "--token", token, "--json"])
                .args(args),
        )
        .with_context(|| format!("havipctl {}", args.join(" ")))?;
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out).with_context(|| format!("havipctl output: {out}"))
    }

    /// Creates a HAVIP at `address` bound to the ports of `vms`; its id.
    pub fn create_vip(&self, name: &str, address: IpAddr, vms: &[&VmSpec]) -> Result<String> {
        let address = address.to_string();
        let mut args = vec![
            "create",
            "--name",
            name,
            "--subnet",
            SUBNET,
            "--address",
            &address,
        ];
        let ports: Vec<String> = vms.iter().map(|s| port_id(s)).collect();
        for p in &ports {
            args.extend(["--port", p]);
        }
        let vip = self.havipctl(PROJECT_TOKEN, &args)?;
        vip["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no id in {vip}"))
    }

    /// `GET /v1/havips/<id>` with a plain HTTP request from the control
    /// namespace (no process spawn, so it can be polled tightly).
    pub fn get_vip(&self, id: &str) -> Result<Value> {
        let (status, body) = self.http(
            "GET",
            &format!("{API_URL}/v1/havips/{id}"),
            Some(PROJECT_TOKEN),
            None,
        )?;
        if status != 200 {
            bail!("GET havip {id}: HTTP {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Writes `value` at `key` in etcd, as is (through etcd's JSON gateway,
    /// so records the controller would never write can be put there).
    pub fn etcd_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({"key": b64.encode(key), "value": b64.encode(value)});
        self.etcd_call("put", &body).map(drop)
    }

    /// The value at `key` in etcd, if any.
    pub fn etcd_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let reply = self.etcd_call("range", &serde_json::json!({"key": b64.encode(key)}))?;
        reply["kvs"][0]["value"]
            .as_str()
            .map(|v| b64.decode(v).context("etcd's base64"))
            .transpose()
    }

    /// `POST /v3/kv/<call>` to etcd's JSON gateway; its reply.
    fn etcd_call(&self, call: &str, body: &Value) -> Result<Value> {
        let url = format!("{ETCD_URL}/v3/kv/{call}");
        let (status, reply) = self.http("POST", &url, None, Some(&body.to_string()))?;
        if status != 200 {
            bail!("etcd {call} {body}: HTTP {status}: {reply}");
        }
        Ok(serde_json::from_str(&reply)?)
    }

    /// Waits until the API shows `id` in `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Result<Value> {
        let mut last = Value::Null;
        let r = wait::until(timeout, &format!("{id} to be {status}"), || {
            last = self.get_vip(id)?;
            Ok(last["status"] == status)
        });
        r.with_context(|| format!("last seen: {last}"))?;
        Ok(last)
    }

    /// One HTTP/1.0 request from inside the control namespace.
    pub fn http(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let (method, url) = (method.to_owned(), url.to_owned());
        let (token, body) = (token.map(str::to_owned), body.map(str::to_owned));
        let handle = self.ctl.spawn_thread("http", move || {
            http(&method, &url, token.as_deref(), body.as_deref())
        })?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("http thread panicked"))??
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {name} (tail) ---\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Agents first, while their interfaces exist; then the controller
        // and etcd; then the fields (namespaces, temp dir).
        for h in &mut self.hosts {
            if let Some(a) = h.agent.take() {
                if let Err(e) = a.stop() {
                    eprintln!("havip-tests: stopping the agent of {}: {e:#}", h.name);
                }
            }
        }
        if let Some(t) = self.controller.take() {
            cleanup::release(t);
        }
        self.stop_etcd();
    }
}

/// One HTTP/1.0 request (in the calling thread's network namespace):
/// the status and the body.
pub fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http URLs only")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut request = format!("{method} /{path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match body {
        Some(b) => request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => request.push_str("\r\n"),
    }
    let addr = host
        .parse()
        .with_context(|| format!("{host} is not ip:port"))?;
    let response = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })()
    .with_context(|| format!("{method} {url}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `havip-controller` or `havipctl`: `HAVIP_CONTROLLER_BIN_DIR`, or the
/// workspace's `target/release`.
pub fn controller_bin(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("HAVIP_CONTROLLER_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{name} not found at {}: build it (`cargo xtask build`) or point HAVIP_CONTROLLER_BIN_DIR at its directory",
            path.display()
        );
    }
    Ok(path)
}
