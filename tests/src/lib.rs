//! Shared helpers for the privileged tests and the lab.
//!
//! The lab is a hypervisor and four VMs, each a network namespace (see
//! [`lab`]). Guards remove what they create on drop, and a SIGINT/SIGTERM
//! handler removes whatever is left ([`cleanup`]), so a run leaves no
//! namespace, link, pin or process behind.
//!
//! - [`cmd`]: running commands; root and tool checks (missing → error).
//! - [`netns`]: namespaces, commands and threads inside them.
//! - [`lab`]: the topology and the agent config for it.
//! - [`fabric`]: several hypervisors on one L2 fabric, with etcd and the
//!   controller, their agents reading etcd.
//! - [`agent`]: `havip-agent run`, the links it pins, `detach`;
//!   [`status`]: `havip-agent status --json`, parsed.
//! - [`keepalived`]: keepalived configured as in the HA guide.
//! - [`probe`]: UDP echo servers and the client's prober.
//! - [`capture`]: tcpdump with wall-clock timestamps.
//! - [`neighbour`]: a VM's neighbour table; arping / ndisc6 resolution.
//! - [`rogue`]: claims from a VM that is not bound to the VIP.
//! - [`flood`]: a rogue VM flooding every frame the datapath must reject,
//!   and a watch counting those that get through.
//! - [`ports`]: a hypervisor with a thousand ports, and when the agent has
//!   reconciled them all.
//! - [`restart`]: the ways the agent is restarted, as a table.
//! - [`etcd_watch`]: the owner records as etcd delivers them.
//! - [`cross_host`]: keepalived failing over between two hypervisors,
//!   watched on the wire and in etcd.
//! - [`ha`]: the keepalived pair with an echo service on the VIPs.
//! - [`failover`], [`timeline`]: crash the master, tell what happened.
//! - [`prometheus`]: a real Prometheus server scraping the agents and the
//!   controller, queried through its HTTP API.
//! - [`browser`]: headless chromium through chromedriver (WebDriver), in
//!   a namespace, for the console test.
//! - [`eip_gateway`]: the EIP gateway and an internet namespace behind
//!   it, probes from there to an EIP.
//! - [`bench`]: `havip-bench`, the datapath's benchmarks and their report.
//!
//! Environment:
//! - `HAVIP_AGENT_BIN`: the agent (default `target/release/havip-agent`);
//! - `HAVIP_EBPF_OBJECT`: passed to the agent as `--bpf-object` when set
//!   (but with `HAVIP_AGENT_EMBEDDED_OBJECT` set: the agent's own, as the
//!   package check runs the installed agent);
//! - `HAVIP_XDP_MODE`: `generic` (default: what the agent's default, `auto`,
//!   picks for the lab's veths) or `native` (the VMs keep their offloads:
//!   the datapath completes checksums);
//! - `HAVIP_TC_ATTACH`: passed to the agent as `--tc-attach` (`netlink`:
//!   TC egress as on kernels without TCX, on the clsact qdisc);
//! - `HAVIP_AGENT_READY_SECS`: how long the agent may take to attach (30);
//! - `HAVIP_PYTHON`: a python3 with scapy (default: /usr/bin/python3).
//!
//! The agent runs in the hypervisor namespace via setns(2) only, not
//! `ip netns exec`: the latter remounts /sys in a private mount namespace,
//! which hides the host's bpffs, so pins would land in a private bpffs that
//! `status` and the cleanup cannot see.

pub mod agent;
pub mod bench;
pub mod browser;
pub mod capture;
pub mod cleanup;
pub mod cmd;
pub mod cross_host;
pub mod eip_gateway;
pub mod etcd_watch;
pub mod fabric;
pub mod failover;
pub mod flood;
pub mod ha;
pub mod keepalived;
pub mod lab;
pub mod neighbour;
pub mod netns;
pub mod ports;
pub mod probe;
pub mod prometheus;
pub mod restart;
pub mod rogue;
pub mod status;
pub mod timeline;
pub mod vrrp;
pub mod wait;
pub mod wsfc;

use std::path::PathBuf;

/// What a finished lab left behind in this process: namespaces, pin dirs,
/// live child processes. Empty when cleanup worked.
pub fn leftovers() -> Vec<String> {
    let mut left: Vec<String> = netns::own_namespaces()
        .into_iter()
        .map(|n| format!("netns {n}"))
        .collect();
    left.extend(
        agent::own_pin_dirs()
            .into_iter()
            .map(|p| format!("pin dir {}", p.display())),
    );
    left.extend(
        child_processes()
            .into_iter()
            .map(|(pid, comm)| format!("process {pid} ({comm})")),
    );
    left
}

/// Child processes of this process (that are not yet reaped zombies).
fn child_processes() -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat"))).ok()?;
            // pid (comm) state ppid ...
            let close = stat.rfind(')')?;
            let comm = stat[stat.find('(')? + 1..close].to_owned();
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next()?;
            let ppid: u32 = rest.next()?.parse().ok()?;
            (ppid == me && state != "Z").then_some((pid, comm))
        })
        .collect()
}

/// Removes what crashed earlier runs (SIGKILLed, so no cleanup ran) left:
/// pin dirs (their programs detached and their links and maps unpinned by
/// `havip-agent detach --unpin`, or removed by hand where it cannot run) and
/// namespaces whose creating process is gone. Returns what it removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let bin = agent::agent_bin().ok();
    for dir in agent::stale_pin_dirs() {
        let detached = bin.as_ref().is_some_and(|bin| {
            let mut c = std::process::Command::new(bin);
            c.arg("detach").arg("--pin-dir").arg(&dir).arg("--unpin");
            cmd::output(&mut c).is_ok()
        });
        if (detached && !dir.exists()) || std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(format!("pin dir {} (programs detached)", dir.display()));
        }
    }
    for ns in netns::stale_namespaces() {
        if cmd::run("ip", &["netns", "del", &ns]).is_ok() {
            removed.push(format!("netns {ns}"));
        }
    }
    removed
}
