//! The agent as an operator lives with it: VM ports come and go, the config
//! file is edited (sometimes wrongly), SIGHUP is sent, the agent restarts.
//!
//! - a port whose interface appears after the agent started is attached
//!   when it appears, and forgotten when it goes away (netlink events);
//! - an edit that does not validate is refused, naming the problem, and the
//!   state in force stays; a valid edit is applied without a signal; SIGHUP
//!   reloads too;
//! - a restarted agent reuses the pinned maps and adopts the pinned links:
//!   the owner it learned is still there, on the same links;
//! - one agent per pin dir: a second one is refused, naming the first;
//! - an agent that exits leaves its programs attached; `havip-agent detach`
//!   takes them off;
//! - TC egress through netlink (kernels without TCX) stays attached across a
//!   restart and is replaced in place; with TCX, a new port's filter moves
//!   to a TCX link, and a port whose ingress qdisc leaves no room for a
//!   filter gets its TCX link at once.
//!
//! Needs root and the built agent.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::{run_dir_of, Agent, AgentOptions, Status};
use havip_tests::cleanup::{self, Resource};
use havip_tests::lab::add_port_of;
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
    add_port(&hv, "tap-a", "vm-a")?;

    let agent = Agent::start(&hv, &cfg, &dir.path, &["tap-a"])?;
    let status = agent.status()?;
    ensure!(
        has_port(&status, 11) && !has_port(&status, 12),
        "only port 11 exists yet: {status:?}"
    );

    // A VM port that appears later is attached as it appears.
    add_port(&hv, "tap-late", "vm-late")?;
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
    let addrs = ["10.0.6.9/24".to_string(), "10.0.6.19/24".to_string()];
    add_port_of(&hv, "tap-a", &vm, "02:00:00:00:00:11", &addrs)?;

    let first = Agent::start_with(
        &hv,
        &cfg,
        &dir.path,
        &["tap-a"],
        AgentOptions {
            unpin_on_exit: false,
            ..AgentOptions::default()
        },
    )?;
    // The VM announces the VIP, as keepalived would.
    rogue::arping_announce(&vm, VIP, 2, false)?;
    let owner = first.wait_owner(1, 11, WAIT)?;
    let links = first.links()?;
    let pins = first.stop_keeping_pins()?;

    let second = Agent::start_with(
        &hv,
        &cfg,
        &dir.path,
        &["tap-a"],
        AgentOptions {
            pin_dir: Some(pins.dir.clone()),
            unpin_on_exit: true,
            ..AgentOptions::default()
        },
    )?;
    let adopted = second.links()?;
    ensure!(
        adopted.len() == 2
            && links
                .iter()
                .all(|(pin, l)| adopted.get(pin).is_some_and(|a| a.id == l.id)),
        "links before the restart {links:?}, after {adopted:?}"
    );
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

/// A VM port: the veth `tap` (the hypervisor's side) and `vm`, both up.
fn add_port(hv: &Netns, tap: &str, vm: &str) -> Result<()> {
    hv.ip(&["link", "add", tap, "type", "veth", "peer", "name", vm])?;
    hv.ip(&["link", "set", tap, "up"])?;
    hv.ip(&["link", "set", vm, "up"])?;
    Ok(())
}

/// A hypervisor with port 11's interface, `tap-a`.
fn one_port() -> Result<(Netns, TempDir, PathBuf)> {
    let hv = Netns::new("hv")?;
    let dir = TempDir::new()?;
    let cfg = dir.path.join("havip.toml");
    std::fs::write(&cfg, config("10.0.6.19", ""))?;
    add_port(&hv, "tap-a", "vm-a")?;
    Ok((hv, dir, cfg))
}

#[test]
fn one_agent_per_pin_dir_and_only_detach_takes_the_programs_off() -> Result<()> {
    cmd::require_root()?;
    cmd::require_tools(&["bpftool"])?;
    let (hv, dir, cfg) = one_port()?;
    let kept = AgentOptions {
        unpin_on_exit: false,
        tc_attach: None,
        ..AgentOptions::default()
    };
    let mut agent = Agent::start_with(&hv, &cfg, &dir.path, &["tap-a"], kept)?;
    let pid = agent.pid().context("the agent is not running")?;

    // A second agent on the same pin dir is refused, naming it and the pid.
    let (status, text) = agent.run_another()?;
    let pin_dir = agent.pin_dir.display().to_string();
    ensure!(
        status.code() == Some(1) && text.contains(&pin_dir) && text.contains(&format!("pid {pid}")),
        "second agent: {status}, said: {text}"
    );
    ensure!(
        agent.exit_status().is_none() && agent.xdp_attached("tap-a")?,
        "the first agent was disturbed by the second"
    );
    // So is `detach` while the agent runs.
    let refused = agent.detach(false);
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains(&format!("pid {pid}"))),
        "detach while the agent runs: {refused:?}"
    );

    // SIGTERM: the agent exits 0 and its programs stay.
    let status = agent.signal_and_wait(libc::SIGTERM)?;
    ensure!(status.success(), "the agent exited with {status}");
    // `status` still has the agent's word, and says it does not run; without
    // its state file, what the pinned links say.
    let p = agent.status()?.protection;
    ensure!(
        p.source == "agent" && !p.agent_running && p.port(11)?.0 == "protected",
        "{p:?}"
    );
    let state_file = run_dir_of(&agent.pin_dir).join("protection.json");
    std::fs::remove_file(&state_file)?;
    let p = agent.status()?.protection;
    ensure!(
        p.source == "pinned links" && p.port(11)?.0 == "protected",
        "{p:?}"
    );
    let links = agent.links()?;
    let tcx = agent.tcx_egress_ids("tap-a")?;
    ensure!(
        agent.xdp_attached("tap-a")? && links.len() == 2 && tcx.len() == 1,
        "after SIGTERM: xdp {}, links {links:?}, tcx {tcx:?}",
        agent.xdp_attached("tap-a")?
    );

    // `detach` takes every program and link pin off; the maps stay.
    let out = agent.detach(false)?;
    ensure!(out.contains("1 port"), "detach said: {out}");
    ensure!(
        !agent.xdp_attached("tap-a")?
            && agent.tcx_egress_ids("tap-a")?.is_empty()
            && agent.links()?.is_empty()
            && !agent.pin_dir.join("links").exists(),
        "detach left programs or links: xdp {}, tcx {:?}, links {:?}",
        agent.xdp_attached("tap-a")?,
        agent.tcx_egress_ids("tap-a")?,
        agent.links()?
    );
    ensure!(
        agent.pin_dir.join("havip_owners").exists(),
        "detach removed the maps"
    );
    // Once more: nothing to do. With --unpin: the maps and the dir go.
    ensure!(agent.detach(false)?.contains("0 port"));
    agent.detach(true)?;
    ensure!(!agent.pin_dir.exists(), "detach --unpin left the pin dir");
    agent.stop()
}

/// `tc filter show` of our netlink filter: (the line, its program id).
fn netlink_filter(agent: &Agent) -> Result<(String, u32)> {
    let filters = agent.tc_egress_filters("tap-a")?;
    let [line] = filters.as_slice() else {
        anyhow::bail!("one TC egress filter expected on tap-a: {filters:?}");
    };
    ensure!(
        line.contains("pref 18518")
            && line.contains("handle 0x4856")
            && line.contains("havip_port_egress"),
        "not our filter (priority 18518, handle 0x4856): {line}"
    );
    let id = line
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("no program id in {line}"))?;
    Ok((line.clone(), id))
}

#[test]
fn tc_egress_through_netlink_stays_across_restarts_and_is_replaced_in_place() -> Result<()> {
    cmd::require_root()?;
    cmd::require_tools(&["bpftool", "tc"])?;
    let (hv, dir, cfg) = one_port()?;
    let netlink = AgentOptions {
        unpin_on_exit: false,
        tc_attach: Some("netlink".into()),
        ..AgentOptions::default()
    };
    let mut agent = Agent::start_with(&hv, &cfg, &dir.path, &["tap-a"], netlink)?;
    // The agent created the clsact qdisc; TC egress is a filter, not TCX.
    let qdiscs = hv.exec("tc", &["qdisc", "show", "dev", "tap-a"])?;
    ensure!(qdiscs.contains("clsact"), "no clsact qdisc: {qdiscs}");
    let (_, mut prog) = netlink_filter(&agent)?;
    ensure!(agent.tcx_egress_ids("tap-a")?.is_empty(), "TCX used");
    let links = agent.links()?;
    ensure!(
        links.len() == 1 && links.keys().all(|k| k.ends_with("/xdp-generic")),
        "only the XDP link is pinned: {links:?}"
    );

    for signal in [libc::SIGTERM, libc::SIGKILL] {
        agent.signal_and_wait(signal)?;
        let (_, still) = netlink_filter(&agent)?;
        ensure!(still == prog, "the filter changed while no agent ran");
        agent.start_again()?;
        // The one filter, at the same priority and handle, a new program.
        let (line, now) = netlink_filter(&agent)?;
        ensure!(now != prog, "the program was not replaced: {line}");
        ensure!(
            agent.links()?.values().map(|l| l.id).collect::<Vec<_>>()
                == links.values().map(|l| l.id).collect::<Vec<_>>(),
            "the XDP link changed"
        );
        prog = now;
    }

    // `detach` takes the filter off too.
    agent.signal_and_wait(libc::SIGTERM)?;
    agent.detach(true)?;
    let left = agent.tc_egress_filters("tap-a")?;
    ensure!(
        left.is_empty() && !agent.xdp_attached("tap-a")?,
        "left after detach: {left:?}"
    );
    agent.stop()
}

/// TC egress starts as a netlink filter on the clsact qdisc and moves to a
/// pinned TCX link, the filter then deleted; a port whose `ingress` qdisc
/// holds clsact's place (libvirt's inbound QoS sets one) gets its TCX link
/// at once, the qdisc left alone. Without TCX (an older kernel, or
/// `HAVIP_TC_ATTACH=netlink`) the filter stays, and that port is failed,
/// saying why.
#[test]
fn tc_egress_moves_from_its_filter_to_tcx_and_an_ingress_qdisc_does_not_stop_it() -> Result<()> {
    cmd::require_root()?;
    cmd::require_tools(&["bpftool", "tc"])?;
    let (hv, dir, cfg) = one_port()?;
    add_port(&hv, "tap-late", "vm-late")?;
    hv.exec("tc", &["qdisc", "add", "dev", "tap-late", "ingress"])?;
    let tcx = havip_tests::ports::tcx_expected();
    let taps: &[&str] = if tcx {
        &["tap-a", "tap-late"]
    } else {
        &["tap-a"]
    };
    let agent = Agent::start(&hv, &cfg, &dir.path, taps)?;
    let links = agent.links()?;
    if !tcx {
        netlink_filter(&agent)?;
        wait::until(WAIT, "port 12 failed", || {
            Ok(agent.status()?.protection.port(12)?.0 == "failed")
        })?;
        let p = agent.status()?.protection;
        let (_, why) = p.port(12)?;
        ensure!(why.contains("tap-late"), "port 12 failed: {why}");
        return agent.stop();
    }
    for tap in ["tap-a", "tap-late"] {
        let ids = agent.tcx_egress_ids(tap)?;
        let filters = agent.tc_egress_filters(tap)?;
        ensure!(
            ids.len() == 1 && filters.is_empty(),
            "{tap}: TCX {ids:?}, filters {filters:?}, links {links:?}"
        );
    }
    ensure!(
        links.keys().filter(|k| k.ends_with("/tc-egress")).count() == 2,
        "a TCX link pinned per port: {links:?}"
    );
    let qdiscs = hv.exec("tc", &["qdisc", "show", "dev", "tap-late"])?;
    ensure!(
        qdiscs.contains("ingress"),
        "the ingress qdisc went: {qdiscs}"
    );
    let log = agent.log_text();
    ensure!(
        log.contains(
            "TC egress on tap-late through netlink: its ingress place holds an `ingress` qdisc"
        ) && log.contains("attaching TC egress by TCX"),
        "{}",
        agent.log_tail(20)
    );
    let p = agent.status()?.protection;
    ensure!(
        p.egress_handover == 0 && p.port(11)?.0 == "protected" && p.port(12)?.0 == "protected",
        "{p:?}"
    );
    agent.stop()
}

#[test]
fn a_port_that_cannot_be_attached_is_reported_and_retried_until_it_is_protected() -> Result<()> {
    use havip_tests::bench::raw_xdp::{ConstantXdp, XDP_PASS};
    cmd::require_root()?;
    let (hv, dir, cfg) = one_port()?;
    add_port(&hv, "tap-late", "vm-late")?;
    // Another tool's XDP program holds tap-late: the agent cannot attach.
    let foreign = ConstantXdp::load("foreign", XDP_PASS)?;
    let held = foreign.attach_in_mode(&hv, "tap-late", aya::programs::XdpMode::Skb)?;

    let agent = Agent::start(&hv, &cfg, &dir.path, &["tap-a"])?;
    let foreign_id = agent.xdp_prog_id("tap-late")?;
    ensure!(foreign_id.is_some(), "the foreign program is on tap-late");
    wait::until(WAIT, "the agent to report port 12 as not protected", || {
        Ok(agent.log_text().contains("not protected"))
    })?;
    let status = agent.status()?;
    ensure!(
        has_port(&status, 11) && !has_port(&status, 12),
        "port 11 protected, port 12 not: {status:?}"
    );
    // `status` says so, with the reason, from the agent's state file.
    wait::until(WAIT, "status to show port 12 failed", || {
        let p = agent.status()?.protection;
        Ok(p.source == "agent" && p.port(12)?.0 == "failed")
    })?;
    let p = agent.status()?.protection;
    let (state, why) = p.port(12)?;
    ensure!(
        p.agent_running && p.port(11)?.0 == "protected" && why.contains("tap-late"),
        "port 12 {state}: {why}; {p:?}"
    );
    let text = agent.status_text()?;
    ensure!(
        text.contains("port 12 on tap-late: failed: tap-late")
            && text.contains("port 11 on tap-a: protected"),
        "status text:\n{text}"
    );
    ensure!(
        agent.xdp_prog_id("tap-late")? == foreign_id,
        "the agent left the foreign program alone"
    );
    ensure!(
        agent.exit_status().is_none(),
        "one port failing stops nothing"
    );

    // The other program goes: a retry attaches havip's, with no event.
    drop(held);
    wait::until(
        Duration::from_secs(20),
        "port 12 protected by a retry",
        || {
            let id = agent.xdp_prog_id("tap-late")?;
            Ok(id.is_some() && id != foreign_id && has_port(&agent.status()?, 12))
        },
    )?;
    ensure!(
        agent.log_text().contains("retried what was not in force"),
        "{}",
        agent.log_tail(20)
    );
    wait::until(WAIT, "status to show port 12 protected", || {
        Ok(agent.status()?.protection.port(12)?.0 == "protected")
    })?;
    agent.stop()
}
