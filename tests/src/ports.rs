//! A hypervisor with many VM ports: `count` veth pairs in a namespace of
//! their own (`hp<i>` on the hypervisor's bridge, `vp<i>` the VM's side,
//! with the port's MAC), the agent's config file for them, and what tells
//! when the agent has every one of them reconciled: the XDP and TC egress
//! links pinned for the port, holding the programs of the agent that
//! started last.
//!
//! The links are read in this process (BPF_OBJ_GET and the link's info, two
//! syscalls a link), so they can be polled every few milliseconds however
//! many ports there are, while the agent attaches them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aya::programs::links::{FdLink, PinnedLink};

use crate::agent::{self, Agent, AgentOptions};
use crate::lab::{self, DirGuard, VmSpec};
use crate::netns::Netns;
use crate::restart::RestartKind;

/// Port ids start here (port `i` is `FIRST_PORT_ID + i`).
pub const FIRST_PORT_ID: u32 = 1000;
/// How long polling waits between two reads of the links.
const POLL: Duration = Duration::from_millis(50);

/// The number of ports: `$var` if set, else `default`.
pub fn count_from_env(var: &str, default: usize) -> Result<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{var}={v} is not a number of ports")),
        Err(_) => Ok(default),
    }
}

/// The links pinned for one port: (link id, program id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortLinks {
    pub xdp: Option<(u32, u32)>,
    pub tc: Option<(u32, u32)>,
}

/// How long the agent took until every port was reconciled.
#[derive(Clone, Copy, Debug)]
pub struct Reconciled {
    /// From the agent's start to the first port reconciled.
    pub first: Duration,
    /// From the agent's start to the last.
    pub all: Duration,
    /// From the agent's start until every port's TC egress was a TCX link
    /// of its program (new ports get a netlink filter first): `None` when
    /// TC egress is not TCX.
    pub tcx: Option<Duration>,
    pub ports: usize,
}

impl Reconciled {
    /// The time per port after the first.
    pub fn per_port(&self) -> Duration {
        (self.all - self.first) / (self.ports.max(2) as u32 - 1)
    }
}

/// The namespace, its ports and the config; removed on drop.
pub struct ManyPorts {
    pub count: usize,
    pub config: PathBuf,
    pub dir: PathBuf,
    /// Each port's hypervisor-side interface and its ifindex.
    pub ifindex: BTreeMap<String, u32>,
    // Dropped after the agent (which the caller holds): the namespace,
    // then the temp dir.
    pub hv: Netns,
    _dir_guard: DirGuard,
}

impl ManyPorts {
    /// Creates the namespace with `count` ports on its bridge (with `ip
    /// -batch`: one process for all) and writes the agent's config.
    pub fn build(count: usize) -> Result<Self> {
        crate::cmd::require_root()?;
        ensure!(
            (1..=60_000).contains(&count),
            "{count} ports: between 1 and 60000"
        );
        // No IPv6 there: 2,000 interfaces send no RS, DAD or MLD.
        let lab::Hypervisor {
            dir, dir_guard, hv, ..
        } = lab::Hypervisor::new("ports")?;
        let mut batch = String::new();
        for i in 0..count {
            let s = port_spec(i);
            let _ = writeln!(
                batch,
                "link add {} type veth peer name {}",
                host_side(i),
                vm_side(i)
            );
            let _ = writeln!(batch, "link set {} address {}", vm_side(i), s.mac_str());
            let _ = writeln!(batch, "link set {} master br0", host_side(i));
            let _ = writeln!(batch, "link set {} up", host_side(i));
            let _ = writeln!(batch, "link set {} up", vm_side(i));
        }
        let batch_file = dir.join("ports.batch");
        std::fs::write(&batch_file, batch)?;
        let path = batch_file.to_str().context("temp dir path")?;
        hv.ip(&["-batch", path])
            .with_context(|| format!("creating {count} veth pairs"))?;
        let ifindex = interfaces(&hv)?
            .into_iter()
            .filter(|(name, _)| name.starts_with("hp"))
            .collect::<BTreeMap<_, _>>();
        ensure!(
            ifindex.len() == count,
            "{} of {count} ports were created",
            ifindex.len()
        );
        let config = dir.join("havip-agent.toml");
        std::fs::write(&config, config_text(count))?;
        Ok(Self {
            count,
            config,
            dir,
            ifindex,
            hv,
            _dir_guard: dir_guard,
        })
    }

    /// The hypervisor-side interfaces, in port order.
    pub fn taps(&self) -> Vec<String> {
        (0..self.count).map(host_side).collect()
    }

    /// Starts the agent on a fresh pin dir (programs kept attached when it
    /// exits); returns it once every port is reconciled, and how long that
    /// took from its start.
    pub fn start_agent(&self) -> Result<(Agent, Reconciled)> {
        let pin_dir = agent::new_pin_dir();
        let opts = AgentOptions {
            pin_dir: Some(pin_dir.clone()),
            unpin_on_exit: false,
            ready_timeout: Some(self.attach_timeout()),
            ..AgentOptions::default()
        };
        let watch = self.watch(&pin_dir, BTreeSet::new(), None);
        let taps = self.taps();
        let taps: Vec<&str> = taps.iter().map(String::as_str).collect();
        let agent = Agent::start_with(&self.hv, &self.config, &self.dir, &taps, opts)?;
        let reconciled = self.finish(watch, &agent)?;
        Ok((agent, reconciled))
    }

    /// Restarts `agent` the `kind` way; how long the new agent took, from
    /// its start, until every port held its programs.
    pub fn restart_agent(&self, agent: &mut Agent, kind: &RestartKind) -> Result<Reconciled> {
        let before = pinned_links(&agent.pin_dir)?;
        let old: BTreeSet<u32> = before
            .values()
            .flat_map(|l| [l.xdp, l.tc])
            .flatten()
            .map(|(_, prog)| prog)
            .collect();
        let running = (agent.log.clone(), running_lines(&agent.log));
        let watch = self.watch(&agent.pin_dir, old, Some(running));
        kind.restart(agent).with_context(|| kind.name)?;
        self.finish(watch, agent)
    }

    /// How long the agent may take for every port: 30 s, and 300 ms a port.
    pub fn attach_timeout(&self) -> Duration {
        Duration::from_secs(30) + Duration::from_millis(300) * self.count as u32
    }

    /// Polls `pin_dir` on a thread until every port's links hold programs
    /// not in `old`: when the first port and the last one got there. A
    /// port with no TC egress link pinned has a netlink filter, attached
    /// before its XDP link. With `running` (the agent's log, and how many
    /// `running` lines it had), also done once every port has its links
    /// and the log says the new agent runs: an agent may keep a program
    /// that is its own already. Then, unless TC egress is through netlink
    /// (`HAVIP_TC_ATTACH`, or a kernel without TCX), until every port's
    /// egress is a TCX link.
    fn watch(
        &self,
        pin_dir: &Path,
        old: BTreeSet<u32>,
        running: Option<(PathBuf, usize)>,
    ) -> JoinHandle<Result<(Instant, Instant, Option<Instant>)>> {
        let ports: Vec<u32> = self.ifindex.values().copied().collect();
        let pin_dir = pin_dir.to_owned();
        let deadline = Instant::now() + self.attach_timeout() + Duration::from_secs(30);
        let want_tcx = tcx_expected();
        std::thread::spawn(move || {
            let mut first = None;
            let mut all = None;
            loop {
                let links = pinned_links(&pin_dir).unwrap_or_default();
                let new = |l: Option<(u32, u32)>| l.is_some_and(|(_, prog)| !old.contains(&prog));
                let done = ports
                    .iter()
                    .filter(|i| {
                        links
                            .get(i)
                            .is_some_and(|l| new(l.xdp) && (l.tc.is_none() || new(l.tc)))
                    })
                    .count();
                let kept = running.as_ref().is_some_and(|(log, before)| {
                    let linked = ports
                        .iter()
                        .all(|i| links.get(i).is_some_and(|l| l.xdp.is_some()));
                    linked && running_lines(log) > *before
                });
                let on_tcx = ports.iter().all(|i| {
                    links
                        .get(i)
                        .is_some_and(|l| new(l.tc) || (kept && l.tc.is_some()))
                });
                let now = Instant::now();
                if done > 0 {
                    first.get_or_insert(now);
                }
                if done == ports.len() || kept {
                    all.get_or_insert(now);
                }
                if let Some(all) = all {
                    if !want_tcx {
                        return Ok((first.unwrap_or(now), all, None));
                    }
                    if on_tcx {
                        return Ok((first.unwrap_or(now), all, Some(now)));
                    }
                }
                if now > deadline {
                    bail!(
                        "{done} of {} ports reconciled in time{}",
                        ports.len(),
                        if all.is_some() {
                            ", not all on TCX"
                        } else {
                            ""
                        }
                    );
                }
                std::thread::sleep(POLL);
            }
        })
    }

    fn finish(
        &self,
        watch: JoinHandle<Result<(Instant, Instant, Option<Instant>)>>,
        agent: &Agent,
    ) -> Result<Reconciled> {
        let (first, all, tcx) = watch
            .join()
            .map_err(|_| anyhow::anyhow!("the links watch panicked"))??;
        let started = agent.started_at().context("the agent never started")?;
        Ok(Reconciled {
            first: first.saturating_duration_since(started),
            all: all.saturating_duration_since(started),
            tcx: tcx.map(|t| t.saturating_duration_since(started)),
            ports: self.count,
        })
    }

    /// Every port has its programs in force: the XDP program on its
    /// interface is its pinned link's, and so is a TC egress program (TCX,
    /// with no netlink filter left beside it; with TC through netlink no
    /// link is pinned for it, and a filter on the clsact qdisc stands for
    /// it); `status` lists it on its interface
    /// and says it is protected. The problems, if any (at most 5 named).
    pub fn problems(&self, agent: &Agent) -> Result<Vec<String>> {
        let links = pinned_links(&agent.pin_dir)?;
        let xdp = agent::xdp_programs(self.hv.name())?;
        let status = agent.status()?;
        let mut problems = Vec::new();
        for (i, tap) in self.taps().iter().enumerate() {
            let l = self
                .ifindex
                .get(tap)
                .and_then(|ifx| links.get(ifx))
                .copied()
                .unwrap_or_default();
            let on_port = xdp.get(tap).copied().flatten();
            match l.xdp {
                Some((_, prog)) if on_port == Some(prog) => {}
                _ => problems.push(format!("{tap}: XDP {on_port:?}, pinned {:?}", l.xdp)),
            }
            match l.tc {
                Some((_, prog)) => {
                    let tcx = agent.tcx_egress_ids(tap)?;
                    if !tcx.contains(&prog) {
                        problems.push(format!("{tap}: TCX egress {tcx:?}, pinned {prog}"));
                    }
                    // Moved to TCX: the netlink filter went.
                    let filters = agent.tc_egress_filters(tap)?;
                    if !filters.is_empty() {
                        problems.push(format!("{tap}: a TCX link and a filter {filters:?}"));
                    }
                }
                // TC egress through netlink: a filter on the clsact qdisc.
                None if agent.tc_egress_filters(tap)?.is_empty() => {
                    problems.push(format!("{tap}: no TC egress link and no netlink filter"))
                }
                None => {}
            }
            let id = FIRST_PORT_ID + i as u32;
            match status.protection.port(id) {
                Ok(("protected", _)) => {}
                Ok((state, reason)) => problems.push(format!("{tap}: {state} {reason}")),
                Err(e) => problems.push(format!("{tap}: {e:#}")),
            }
            if !status
                .ports
                .iter()
                .any(|p| p.port_id == id && p.interface.as_deref() == Some(tap))
            {
                problems.push(format!("{tap}: port {id} not in status"));
            }
        }
        let n = problems.len();
        if n > 5 {
            problems.truncate(5);
            problems.push(format!("and {} more", n - 5));
        }
        Ok(problems)
    }
}

/// How many times the agent's log says it runs.
fn running_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(agent::RUNNING)
        .count()
}

/// The hypervisor-side interface of port `i`.
pub fn host_side(i: usize) -> String {
    format!("hp{i}")
}

/// The VM-side interface of port `i` (in the same namespace).
pub fn vm_side(i: usize) -> String {
    format!("vp{i}")
}

/// Port `i` as the agent's config has it (for building its frames; its
/// `role` and `tap` are generic).
pub fn port_spec(i: usize) -> VmSpec {
    let n = i as u32 + 1;
    VmSpec {
        role: "port",
        tap: "hp",
        port_id: FIRST_PORT_ID + i as u32,
        mac: [0x02, 0, 0, 0x01, (n >> 8) as u8, n as u8],
        ipv4: Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8),
        ipv6: Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, n as u16),
    }
}

/// The agent's config: network 10.1.0.0/16, port `i` on `hp<i>`, and a VIP
/// bound to the first two ports.
fn config_text(count: usize) -> String {
    let mut c = format!(
        "# Written by havip-tests: {count} ports\n\n[[networks]]\nid = 1\nname = \"ports\"\ncidrs = [\"10.1.0.0/16\"]\n\n"
    );
    for i in 0..count {
        let s = port_spec(i);
        let _ = writeln!(
            c,
            "[[ports]]\nid = {}\ninterface = \"{}\"\nnetwork = 1\nmac = \"{}\"\nips = [\"{}\"]\n",
            s.port_id,
            host_side(i),
            s.mac_str(),
            s.ipv4
        );
    }
    let bound: Vec<String> = (0..count.min(2))
        .map(|i| (FIRST_PORT_ID + i as u32).to_string())
        .collect();
    let _ = writeln!(
        c,
        "[[vips]]\nid = 1\nname = \"vip\"\nnetwork = 1\naddress = \"10.1.255.19\"\nports = [{}]",
        bound.join(", ")
    );
    c
}

/// Every interface of `ns` and its ifindex (`ip -o link show`).
fn interfaces(ns: &Netns) -> Result<Vec<(String, u32)>> {
    Ok(ns
        .ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let index = words.next()?.trim_end_matches(':').parse().ok()?;
            let name = words.next()?.trim_end_matches(':').split('@').next()?;
            Some((name.to_owned(), index))
        })
        .collect())
}

/// The links pinned under `pin_dir/links/`, by ifindex.
pub fn pinned_links(pin_dir: &Path) -> Result<BTreeMap<u32, PortLinks>> {
    let root = pin_dir.join("links");
    let mut out = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for dir in dirs.filter_map(|e| e.ok()) {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some(ifindex) = name
            .strip_prefix("if")
            .and_then(|r| r.split('-').next())
            .and_then(|i| i.parse::<u32>().ok())
        else {
            continue;
        };
        let mut links = PortLinks::default();
        for pin in std::fs::read_dir(dir.path())?.filter_map(|e| e.ok()) {
            let file = pin.file_name().to_string_lossy().into_owned();
            let Some(info) = link_info(&pin.path()) else {
                continue;
            };
            if file.starts_with("xdp-") {
                links.xdp = Some(info);
            } else if file == "tc-egress" || file == "tc-moving" {
                // tc-moving: a TCX link whose port's filter the agent is
                // deleting (see havip-agent's attach.rs).
                links.tc = Some(info);
            }
        }
        out.insert(ifindex, links);
    }
    Ok(out)
}

/// A pinned link's (id, program id); `None` if it is gone (unpinned
/// meanwhile) or not a link.
fn link_info(pin: &Path) -> Option<(u32, u32)> {
    let link = FdLink::from(PinnedLink::from_pin(pin).ok()?);
    let info = link.info().ok()?;
    Some((info.id(), info.program_id()))
}

/// Whether the agent's TC egress ends up on TCX links: a kernel with TCX
/// (6.6 and later) and no `HAVIP_TC_ATTACH=netlink`.
pub fn tcx_expected() -> bool {
    let netlink = std::env::var("HAVIP_TC_ATTACH").is_ok_and(|v| v == "netlink");
    !netlink
        && aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_get_distinct_macs_and_addresses_in_the_network() {
        let (a, b) = (port_spec(0), port_spec(999));
        assert_eq!(a.mac_str(), "02:00:00:01:00:01");
        assert_eq!(b.mac_str(), "02:00:00:01:03:e8");
        assert_eq!(a.ipv4, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(b.ipv4, Ipv4Addr::new(10, 1, 3, 232));
        let text = config_text(3);
        assert_eq!(text.matches("[[ports]]").count(), 3);
        assert!(text.contains("ports = [1000, 1001]"), "{text}");
    }
}
