//! The agent as an operator lives with it: VM ports come and go, the config
//! file is edited (sometimes wrongly), SIGHUP is sent, the agent restarts.
//!
//! - a port whose interface appears after the agent started is attached
//!   when it appears, and forgotten when it goes away (netlink events);
//! - an edit that does not validate is refused, naming the problem, and the
//!   state in force stays; a valid edit is applied without a signal; SIGHUP
//!   reloads too;
//! - a restarted agent reuses the pinned maps: the owner it learned is
//!   still there.
//!
//! Needs root and the built agent.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::{Agent, AgentOptions, Status};
use havip_tests::cleanup::{self, Resource};
use havip_tests::netns::{unique_stem, Netns};
use havip_tests::{cmd, rogue, wait};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 19);
const WAIT: Duration = Duration::from_secs(10);

/// The config: one network, port 11 on `tap-a`, port 12 on `tap-late`,
/// VIP 1 bound to both, plus `extra` (more `[[vips]]`).
fn config(vip_address: &str, extra: &str) -> String {
    format!(
        r#"[[networks]]
id = 1
cidrs = ["10.0.6.0/24"]

[[ports]]
id = 11
interface = "tap-a"
network = 1
mac = "02:00:00:00:00:11"
ips = ["10.0.6.9"]

[[ports]]
id = 12
interface = "tap-late"
network = 1
mac = "02:00:00:00:00:12"
ips = ["10.0.6.10"]

[[vips]]
id = 1
network = 1
address = "{vip_address}"
ports = [11, 12]
{extra}"#
    )
}

/// A temp dir for the config and the agent's log, removed at the end.
struct TempDir {
    path: PathBuf,
    _token: cleanup::Token,
}

impl TempDir {
    fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(unique_stem());
        std::fs::create_dir_all(&path)?;
        let token = cleanup::register(Resource::Dir(path.clone()));
        Ok(Self {
            path,
            _token: token,
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        cleanup::release(self._token);
    }
}

/// Writes the file the way editors do: a new file renamed over the old.
fn edit(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).context("replace the config")
}

fn has_port(status: &Status, port_id: u32) -> bool {
    status.ports.iter().any(|p| p.port_id == port_id)
}

#[test]
fn agent_follows_interfaces_and_config_edits() -> Result<()> {
    cmd::require_root()?;
    let hv = Netns::new("hv")?;
    let dir = TempDir::new()?;
    let cfg = dir.path.join("havip.toml");
    std::fs::write(&cfg, config("10.0.6.19", ""))?;
    hv.ip(&[
        "link", "add", "tap-a", "type", "veth", "peer", "name", "vm-a",
    ])?;
    hv.ip(&["link", "set", "tap-a", "up"])?;
    hv.ip(&["link", "set", "vm-a", "up"])?;

    let agent = Agent::start(&hv, &cfg, &dir.path, &["tap-a"])?;
    let status = agent.status()?;
    ensure!(
        has_port(&status, 11) && !has_port(&status, 12),
        "only port 11 exists yet: {status:?}"
    );

    // A VM port that appears later is attached as it appears.
    hv.ip(&[
        "link", "add", "tap-late", "type", "veth", "peer", "name", "vm-late",
    ])?;
    hv.ip(&["link", "set", "tap-late", "up"])?;
    wait::until(WAIT, "XDP on tap-late and port 12 in the datapath", || {
        Ok(agent.xdp_attached("tap-late")? && has_port(&agent.status()?, 12))
    })?;

    // ...and forgotten when it goes away.
    hv.ip(&["link", "del", "tap-late"])?;
    wait::until(WAIT, "port 12 to leave the datapath", || {
        Ok(!has_port(&agent.status()?, 12))
    })?;

    // An edit that does not validate: refused with the reason, state kept.
    edit(&cfg, &config("10.0.9.19", ""))?;
    wait::until(WAIT, "the agent to refuse the invalid file", || {
        Ok(agent.log_text().contains("outside network 1"))
    })?;
    let status = agent.status()?;
    ensure!(
        status.vips.len() == 1 && status.vip(1)?.address == VIP.to_string(),
        "the state in force changed after an invalid edit: {status:?}"
    );
    ensure!(
        agent.exit_status().is_none(),
        "the agent exited on an invalid file"
    );

    // A valid edit is applied on its own: a second VIP.
    let second = "\n[[vips]]\nid = 2\nnetwork = 1\naddress = \"10.0.6.20\"\nports = [11]\n";
    edit(&cfg, &config("10.0.6.19", second))?;
    wait::until(WAIT, "VIP 2 in the datapath", || {
        Ok(agent
            .status()?
            .vips
            .iter()
            .any(|v| v.vip_id == 2 && v.address == "10.0.6.20"))
    })?;

    // SIGHUP reloads too: the file is written in place (no rename), then
    // the signal is sent.
    std::fs::write(&cfg, config("10.0.6.19", ""))?;
    let pid = agent.pid().context("the agent is not running")?;
    cmd::run("kill", &["-HUP", &pid.to_string()])?;
    wait::until(WAIT, "VIP 2 to be removed after the reload", || {
        Ok(!agent.status()?.vips.iter().any(|v| v.vip_id == 2))
    })?;

    agent.stop()
}

#[test]
fn learned_owners_survive_an_agent_restart() -> Result<()> {
    cmd::require_root()?;
    cmd::require_tools(&["arping"])?;
    let hv = Netns::new("hv")?;
    let vm = Netns::new("vm")?;
    let dir = TempDir::new()?;
    let cfg = dir.path.join("havip.toml");
    std::fs::write(&cfg, config("10.0.6.19", ""))?;
    hv.ip(&[
        "link",
        "add",
        "tap-a",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        vm.name(),
    ])?;
    hv.ip(&["link", "set", "tap-a", "up"])?;
    vm.ip(&["link", "set", "eth0", "address", "02:00:00:00:00:11"])?;
    vm.ip(&["addr", "add", "10.0.6.9/24", "dev", "eth0"])?;
    vm.ip(&["addr", "add", "10.0.6.19/24", "dev", "eth0"])?;
    vm.ip(&["link", "set", "eth0", "up"])?;

    let first = Agent::start_with(
        &hv,
        &cfg,
        &dir.path,
        &["tap-a"],
        AgentOptions {
            pin_dir: None,
            unpin_on_exit: false,
        },
    )?;
    // The VM announces the VIP, as keepalived would.
    rogue::arping_announce(&vm, VIP, 2, false)?;
    let owner = first.wait_owner(1, 11, WAIT)?;
    let pins = first.stop_keeping_pins()?;

    let second = Agent::start_with(
        &hv,
        &cfg,
        &dir.path,
        &["tap-a"],
        AgentOptions {
            pin_dir: Some(pins.dir.clone()),
            unpin_on_exit: true,
        },
    )?;
    let after = second.status()?;
    let kept = after
        .owner(1)?
        .context("the restarted agent lost the owner")?;
    ensure!(
        kept.port_id == 11 && kept.generation == owner.generation && kept.mac == owner.mac,
        "owner before the restart {owner:?}, after {kept:?}"
    );
    second.stop()?;
    ensure!(!pins.dir.exists(), "the second agent did not unpin");
    Ok(())
}
