//! `havip-agent status`: reads the pinned maps (whether or not the daemon
//! runs) and prints every VIP, its owner and counters, the ports, and the
//! global counters.
//!
//! # JSON shape (`status --json`), stable for scripts and tests
//!
//! ```json
//! {
//!   "pin_dir": "/sys/fs/bpf/havip",
//!   "vips": [{
//!     "vip_id": 1, "name": "web",            // name: only with --config
//!     "network": 1, "address": "10.0.6.19",
//!     "ports": [11, 12],                     // bound port ids
//!     "generation": 3,                       // owner generation, 0 if never owned
//!     "owner": null | {
//!       "port_id": 12, "port_name": "vm2",   // port_name: only with --config
//!       "ifindex": 5, "interface": "tap-vm2" | null,
//!       "mac": "02:00:00:00:00:12", "generation": 3,
//!       "since_unix_ms": 1700000000123, "last_claim_unix_ms": 1700000001123,
//!       "since_ktime_ns": 81234567890, "last_claim_ktime_ns": 82234567890
//!     },
//!     "hold_down_ms": 1000,                  // split-brain damping, 0: none
//!     "split_brain": null | {                // two bound ports claiming within it
//!       "ports": [12, 11],                   // the owner, then its rival
//!       "pending": 11 | null                 // whose claim waits for the hold-down's end
//!     },
//!     "counters": {
//!       "claims_accepted": 4, "owner_changes": 3, "claims_deferred": 0,
//!       "answered": 7, "delivered": 120,
//!       "drops": {"claim_not_bound": 2, ...}  // every reason, zeros included
//!     }
//!   }],
//!   "ports": [{"ifindex": 5, "interface": "tap-vm2" | null, "port_id": 12,
//!              "name": "vm2", "network": 1, "mac": "02:..", "port_security": true,
//!              "link_local": "fe80::...", "vlans": [10, 20],
//!              "link_locals": ["fe80::..."],       // registered for it
//!              "learned_link_local": "fe80::..." | null}],  // learned, held until reset
//!   "drops": {"truncated": 0, ...},         // every reason, summed over CPUs
//!   "stats": {"passed": 0, ...},            // every stat, summed over CPUs
//!   "protection": {
//!     "source": "agent" | "pinned links",   // the agent's state file, or the links alone
//!     "state_file": "/run/havip/protection.json",
//!     "agent_pid": 1234 | null, "agent_running": true,
//!     "written_unix_ms": 1700000000123 | null,
//!     "warning": null | "cannot read ...",
//!     "ports": [{"port_id": 12, "name": "vm2" | null, "interface": "tap-vm2",
//!                "state": "protected" | "failed" | "absent",
//!                "reason": null | "tap-vm2: ..."}],
//!     "vips_not_programmed": [{"id": 7, "name": "web" | null,
//!                              "address": "10.0.6.19", "reason": "no free VIP slot ..."}],
//!     "addrs_not_programmed": [{"id": 11, ...}],  // id: the port's
//!     "egress_handover": 0   // ports whose TC egress is still to move to TCX
//!     // with --etcd, also the ports and VIPs whose record does not read or
//!     // hold ("address": "?" when it cannot be told; a reason ending "its
//!     // last valid record stays in force" when the old one does)
//!   }
//! }
//! ```
//!
//! VIPs are sorted by id, ports by ifindex, `protection.ports` by port id.
//! Keys are never renamed; new keys may be added. `protection` comes from
//! the running agent (see [`crate::protection`]); without its state file,
//! a port in `havip_ports` is `protected` if its XDP link is pinned.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use havip_common::{
    addr::AF_INET6,
    counters::{DROP_REASONS, STATS},
    maps::{self, MAX_PORTS},
    DropReason, NetworkAddr, Owner, Port, Stat, Vip, VipCounters,
};
use serde::Serialize;

use crate::{
    config::Config,
    damping::split_brain,
    learned::{LearnedError, LearnedMaps},
    pins::{self, map_specs, Shape},
    protection::{self, NotProgrammed, PortProtection, PortState, Protection},
    util::{format_age, format_mac, format_unix_ms, ifname_of, ip_of, BpfClock},
};

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no havip datapath is loaded at {}: the pin dir does not exist (is `havip-agent run` running with this --pin-dir?)", .0.display())]
    NotLoaded(PathBuf),
    #[error("no havip datapath is loaded at {}: map {name} is not pinned there", path.display())]
    MissingPin { path: PathBuf, name: &'static str },
    #[error("cannot read pinned map {}: {source}", path.display())]
    Map {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("pinned map {} does not match this agent's datapath: {detail}", path.display())]
    Mismatch { path: PathBuf, detail: String },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub pin_dir: String,
    /// The datapath ABI version the pins are of (`havip_abi`).
    pub abi: Option<u32>,
    pub vips: Vec<VipStatus>,
    pub ports: Vec<PortStatus>,
    pub drops: BTreeMap<&'static str, u64>,
    pub stats: BTreeMap<&'static str, u64>,
    pub protection: ProtectionStatus,
}

/// Which ports are protected and what is not programmed (see the module
/// docs).
#[derive(Debug, Serialize)]
pub struct ProtectionStatus {
    pub source: &'static str,
    pub state_file: String,
    pub agent_pid: Option<u32>,
    pub agent_running: bool,
    pub written_unix_ms: Option<u64>,
    pub warning: Option<String>,
    pub ports: Vec<PortProtection>,
    pub vips_not_programmed: Vec<NotProgrammed>,
    pub addrs_not_programmed: Vec<NotProgrammed>,
    /// Ports whose TC egress the agent is still moving from a netlink
    /// filter to a TCX link (they are protected meanwhile).
    pub egress_handover: usize,
}

/// Whether `pid` is a running havip-agent.
fn agent_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "havip-agent")
}

/// The agent's word from its state file, or what the pinned links say.
fn protection_status(
    pin_dir: &Path,
    in_ports_map: &[(u32, u32, u32, Option<String>)],
    config: Option<&Config>,
) -> ProtectionStatus {
    let path = protection::state_file(pin_dir);
    let read = Protection::read(&path);
    let warning = read
        .as_ref()
        .err()
        .map(|e| format!("cannot read {}: {e}", path.display()));
    match read {
        Ok(Some(p)) => ProtectionStatus {
            source: "agent",
            state_file: path.display().to_string(),
            agent_pid: Some(p.agent_pid),
            agent_running: agent_running(p.agent_pid),
            written_unix_ms: Some(p.written_unix_ms),
            warning,
            ports: p.ports,
            vips_not_programmed: p.vips_not_programmed,
            addrs_not_programmed: p.addrs_not_programmed,
            egress_handover: p.egress_handover,
        },
        _ => ProtectionStatus {
            source: "pinned links",
            state_file: path.display().to_string(),
            agent_pid: None,
            agent_running: false,
            written_unix_ms: None,
            warning,
            ports: Protection::from_pins(pin_dir, in_ports_map, config),
            vips_not_programmed: Vec::new(),
            addrs_not_programmed: Vec::new(),
            egress_handover: 0,
        },
    }
}

#[derive(Debug, Serialize)]
pub struct VipStatus {
    pub vip_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub network: u32,
    pub address: String,
    pub ports: Vec<u32>,
    pub generation: u64,
    pub owner: Option<OwnerStatus>,
    pub hold_down_ms: u32,
    pub split_brain: Option<SplitBrainStatus>,
    pub counters: CountersStatus,
}

/// A split brain (see [`crate::damping`]).
#[derive(Debug, Serialize)]
pub struct SplitBrainStatus {
    /// The owner, then the rival.
    pub ports: Vec<u32>,
    /// The port whose claim waits for the end of the hold-down.
    pub pending: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct OwnerStatus {
    pub port_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    pub ifindex: u32,
    pub interface: Option<String>,
    pub mac: String,
    pub generation: u64,
    pub since_unix_ms: u64,
    pub last_claim_unix_ms: u64,
    /// The raw `bpf_ktime_get_ns()` values (CLOCK_MONOTONIC), exact across
    /// calls where the wall-clock conversion may differ by a millisecond.
    pub since_ktime_ns: u64,
    pub last_claim_ktime_ns: u64,
    #[serde(skip)]
    pub since_age: Duration,
    #[serde(skip)]
    pub last_claim_age: Duration,
}

#[derive(Debug, Serialize, Default)]
pub struct CountersStatus {
    pub claims_accepted: u64,
    pub owner_changes: u64,
    /// Claims deferred by the hold-down.
    pub claims_deferred: u64,
    /// ARP requests and Neighbor Solicitations answered for the VIP.
    pub answered: u64,
    /// Frames delivered to the owner (redirected or MAC rewritten).
    pub delivered: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct PortStatus {
    pub ifindex: u32,
    pub interface: Option<String>,
    pub port_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub network: u32,
    pub mac: String,
    pub port_security: bool,
    pub link_local: String,
    /// The VLANs it may tag frames with.
    pub vlans: Vec<u16>,
    /// The link-locals registered for it (in `havip_addrs`).
    pub link_locals: Vec<String>,
    /// The link-local the datapath learned for it (`havip_llports`).
    pub learned_link_local: Option<String>,
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map, StatusError> {
    let path = pin_dir.join(name);
    if !path.exists() {
        return Err(StatusError::MissingPin {
            path: pin_dir.to_owned(),
            name,
        });
    }
    let err = |source| StatusError::Map {
        path: path.clone(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(err)?;
    // The VIP-sized maps are as large as the agent that pinned them was
    // told (`--max-vips`): their size is read, not expected.
    let max_vips = pins::pinned_max_vips(pin_dir).unwrap_or(maps::DEFAULT_MAX_VIPS);
    let spec = map_specs(max_vips)
        .into_iter()
        .find(|s| s.name == name)
        .expect("every map has a spec");
    if let Some(detail) = Shape::of(&data.info().map_err(err)?).mismatch(&spec.shape) {
        return Err(StatusError::Mismatch { path, detail });
    }
    Map::from_map_data(data).map_err(err)
}

fn map_err(pin_dir: &Path, name: &str) -> impl Fn(MapError) -> StatusError {
    let path = pin_dir.join(name);
    move |source| StatusError::Map {
        path: path.clone(),
        source,
    }
}

fn sum_array(pin_dir: &Path, name: &'static str, n: usize) -> Result<Vec<u64>, StatusError> {
    let arr: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(open(pin_dir, name)?).map_err(map_err(pin_dir, name))?;
    (0..n as u32)
        .map(|i| {
            arr.get(&i, 0)
                .map(|v| v.iter().sum())
                .map_err(map_err(pin_dir, name))
        })
        .collect()
}

/// Reads the pinned maps under `pin_dir`. `config` adds names.
pub fn read(pin_dir: &Path, config: Option<&Config>) -> Result<Report, StatusError> {
    if !pin_dir.is_dir() {
        return Err(StatusError::NotLoaded(pin_dir.to_owned()));
    }
    let clock = BpfClock::now();
    let vips: BpfHashMap<MapData, NetworkAddr, Vip> =
        BpfHashMap::try_from(open(pin_dir, maps::VIPS)?).map_err(map_err(pin_dir, maps::VIPS))?;
    let owners: Array<MapData, Owner> =
        Array::try_from(open(pin_dir, maps::OWNERS)?).map_err(map_err(pin_dir, maps::OWNERS))?;
    let ports: Array<MapData, Port> =
        Array::try_from(open(pin_dir, maps::PORTS)?).map_err(map_err(pin_dir, maps::PORTS))?;
    let vipstats: PerCpuArray<MapData, VipCounters> =
        PerCpuArray::try_from(open(pin_dir, maps::VIP_STATS)?)
            .map_err(map_err(pin_dir, maps::VIP_STATS))?;
    // Pins of an ABI from before learned link-locals have none.
    let learned = if pin_dir.join(maps::LL_PORTS).exists() {
        LearnedMaps::open(pin_dir)
            .map_err(|LearnedError::Map { path, source }| StatusError::Map { path, source })?
            .all()
            .map_err(map_err(pin_dir, maps::LL_PORTS))?
    } else {
        BTreeMap::new()
    };

    // Port id -> its link-locals in the address map (its own included).
    let addrs: BpfHashMap<MapData, NetworkAddr, u32> =
        BpfHashMap::try_from(open(pin_dir, maps::ADDRS)?).map_err(map_err(pin_dir, maps::ADDRS))?;
    let mut link_locals: BTreeMap<u32, Vec<Ipv6Addr>> = BTreeMap::new();
    for entry in addrs.iter() {
        let (addr, port_id) = entry.map_err(map_err(pin_dir, maps::ADDRS))?;
        let a = Ipv6Addr::from(addr.addr);
        if addr.family == AF_INET6 && a.is_unicast_link_local() {
            link_locals.entry(port_id).or_default().push(a);
        }
    }
    link_locals.values_mut().for_each(|v| v.sort());

    let port_name = |id: u32| {
        config
            .and_then(|c| c.ports.get(&id))
            .and_then(|p| p.name.clone())
    };

    let mut out_vips = Vec::new();
    for entry in vips.iter() {
        let (addr, vip) = entry.map_err(map_err(pin_dir, maps::VIPS))?;
        // The slot's record, if it is this VIP's.
        let owner = owners
            .get(&vip.slot, havip_common::BPF_F_LOCK)
            .map_err(map_err(pin_dir, maps::OWNERS))?;
        let owner = (owner.vip_id == vip.vip_id).then_some(owner);
        let mut counters = VipCounters::default();
        for c in vipstats
            .get(&vip.slot, 0)
            .map_err(map_err(pin_dir, maps::VIP_STATS))?
            .iter()
        {
            counters += *c;
        }
        let n = (vip.port_count as usize).min(vip.ports.len());
        out_vips.push(VipStatus {
            vip_id: vip.vip_id,
            name: config
                .and_then(|c| c.vips.get(&vip.vip_id))
                .and_then(|v| v.name.clone()),
            network: addr.network,
            address: ip_of(&addr).to_string(),
            ports: vip.ports[..n].to_vec(),
            generation: owner.map_or(0, |o| o.generation),
            owner: owner.filter(|o| !o.is_vacant()).map(|o| OwnerStatus {
                port_id: o.port_id,
                port_name: port_name(o.port_id),
                ifindex: o.ifindex,
                interface: ifname_of(o.ifindex),
                mac: format_mac(&o.mac),
                generation: o.generation,
                since_unix_ms: clock.unix_ms(o.since_ns),
                last_claim_unix_ms: clock.unix_ms(o.last_claim_ns),
                since_ktime_ns: o.since_ns,
                last_claim_ktime_ns: o.last_claim_ns,
                since_age: clock.age(o.since_ns),
                last_claim_age: clock.age(o.last_claim_ns),
            }),
            hold_down_ms: vip.hold_down_ms,
            split_brain: owner
                .and_then(|o| {
                    let hold_down_ns = u64::from(vip.hold_down_ms) * 1_000_000;
                    split_brain(&o, hold_down_ns, clock.mono_now_ns())
                })
                .map(|c| SplitBrainStatus {
                    ports: c.ports.to_vec(),
                    pending: c.pending.then_some(c.ports[1]),
                }),
            counters: CountersStatus {
                claims_accepted: counters.claims_accepted,
                owner_changes: counters.owner_changes,
                claims_deferred: counters.claims_deferred,
                answered: counters.answered,
                delivered: counters.delivered,
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), counters.drops[*r as usize]))
                    .collect(),
            },
        });
    }
    out_vips.sort_by_key(|v| v.vip_id);

    let mut out_ports = Vec::new();
    let mut in_ports_map = Vec::new();
    for slot in 0..MAX_PORTS {
        let p = ports.get(&slot, 0).map_err(map_err(pin_dir, maps::PORTS))?;
        if p.port_id == 0 {
            continue;
        }
        let ifindex = p.ifindex;
        let interface = ifname_of(ifindex);
        in_ports_map.push((slot, p.port_id, ifindex, interface.clone()));
        out_ports.push(PortStatus {
            ifindex,
            interface,
            port_id: p.port_id,
            name: port_name(p.port_id),
            network: p.network,
            mac: format_mac(&p.mac),
            port_security: p.security(),
            link_local: Ipv6Addr::from(p.link_local).to_string(),
            vlans: p.vlans[..(p.vlan_count as usize).min(p.vlans.len())].to_vec(),
            link_locals: link_locals
                .get(&p.port_id)
                .into_iter()
                .flatten()
                .filter(|a| a.octets() != p.link_local)
                .map(Ipv6Addr::to_string)
                .collect(),
            learned_link_local: learned
                .get(&p.port_id)
                .map(|a| Ipv6Addr::from(a.addr).to_string()),
        });
    }
    out_ports.sort_by_key(|p| p.ifindex);

    let drops = sum_array(pin_dir, maps::DROPS, DROP_REASONS)?;
    let stats = sum_array(pin_dir, maps::STATS, STATS)?;
    Ok(Report {
        pin_dir: pin_dir.display().to_string(),
        abi: crate::migrate::pinned_abi(pin_dir),
        vips: out_vips,
        ports: out_ports,
        drops: DropReason::ALL
            .iter()
            .map(|r| (r.name(), drops[*r as usize]))
            .collect(),
        stats: Stat::ALL
            .iter()
            .map(|s| (s.name(), stats[*s as usize]))
            .collect(),
        protection: protection_status(pin_dir, &in_ports_map, config),
    })
}

fn with_name(kind: &str, id: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{kind} {id} ({n})"),
        None => format!("{kind} {id}"),
    }
}

impl Report {
    /// The report as JSON (see the module docs for the shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("status serializes")
    }

    /// The report for people.
    pub fn to_text(&self, config: Option<&Config>) -> String {
        let port_label = |id: u32| {
            with_name(
                "port",
                id,
                config
                    .and_then(|c| c.ports.get(&id))
                    .and_then(|p| p.name.as_deref()),
            )
        };
        let mut s = String::new();
        let _ = match self.abi {
            Some(abi) => writeln!(s, "havip datapath (ABI {abi}) pinned at {}", self.pin_dir),
            None => writeln!(s, "havip datapath pinned at {}", self.pin_dir),
        };
        let _ = writeln!(s, "\nvips ({}):", self.vips.len());
        if self.vips.is_empty() {
            let _ = writeln!(s, "  none");
        }
        for v in &self.vips {
            let _ = writeln!(
                s,
                "  {} {} in network {}",
                with_name("vip", v.vip_id, v.name.as_deref()),
                v.address,
                v.network
            );
            let bound: Vec<String> = v.ports.iter().map(|p| port_label(*p)).collect();
            let _ = writeln!(
                s,
                "    bound:   {}",
                if bound.is_empty() {
                    "no ports".to_string()
                } else {
                    bound.join(", ")
                }
            );
            match &v.owner {
                None => {
                    let _ = writeln!(s, "    owner:   none (generation {})", v.generation);
                }
                Some(o) => {
                    let on = match &o.interface {
                        Some(i) => format!("{i} (ifindex {})", o.ifindex),
                        None => format!("ifindex {}", o.ifindex),
                    };
                    let _ = writeln!(
                        s,
                        "    owner:   {} on {on}, mac {}, generation {}",
                        port_label(o.port_id),
                        o.mac,
                        o.generation
                    );
                    let _ = writeln!(
                        s,
                        "             since {} ({}), last claim {} ({})",
                        format_unix_ms(o.since_unix_ms),
                        format_age(o.since_age),
                        format_unix_ms(o.last_claim_unix_ms),
                        format_age(o.last_claim_age)
                    );
                }
            }
            if let Some(b) = &v.split_brain {
                let ports: Vec<String> = b.ports.iter().map(|p| port_label(*p)).collect();
                let _ = writeln!(
                    s,
                    "    split brain: {} claim it; the owner changes at most once per {} ms hold-down{}",
                    ports.join(" and "),
                    v.hold_down_ms,
                    b.pending
                        .map(|p| format!(", {}'s claim waits for its end", port_label(p)))
                        .unwrap_or_default()
                );
            }
            let c = &v.counters;
            let drops: Vec<String> = DropReason::ALL
                .iter()
                .filter_map(|r| {
                    let n = c.drops.get(r.name()).copied().unwrap_or(0);
                    (n > 0).then(|| format!("{} {n}", r.name()))
                })
                .collect();
            let _ = writeln!(
                s,
                "    counts:  {} claim(s) accepted, {} owner change(s), {} deferred, {} answered, {} delivered; drops: {}",
                c.claims_accepted,
                c.owner_changes,
                c.claims_deferred,
                c.answered,
                c.delivered,
                if drops.is_empty() {
                    "none".to_string()
                } else {
                    drops.join(", ")
                }
            );
        }
        let _ = writeln!(s, "\nports ({}):", self.ports.len());
        if self.ports.is_empty() {
            let _ = writeln!(s, "  none");
        }
        for p in &self.ports {
            let _ = writeln!(
                s,
                "  {} on {} (ifindex {}): network {}, mac {}, port security {}",
                with_name("port", p.port_id, p.name.as_deref()),
                p.interface.as_deref().unwrap_or("?"),
                p.ifindex,
                p.network,
                p.mac,
                if p.port_security { "on" } else { "off" }
            );
            let _ = write!(s, "    link-local {}", p.link_local);
            if !p.link_locals.is_empty() {
                let _ = write!(s, ", registered {}", p.link_locals.join(", "));
            }
            match &p.learned_link_local {
                Some(a) => {
                    let _ = write!(s, ", learned {a}");
                }
                None => {
                    let _ = write!(s, ", none learned");
                }
            }
            if !p.vlans.is_empty() {
                let vlans: Vec<String> = p.vlans.iter().map(u16::to_string).collect();
                let _ = write!(s, "; vlans {}", vlans.join(", "));
            }
            let _ = writeln!(s);
        }
        self.protection.write_text(&mut s);
        let _ = writeln!(s, "\ndrops (all CPUs):");
        for r in DropReason::ALL {
            let _ = writeln!(s, "  {:<22} {}", r.name(), self.drops[r.name()]);
        }
        let _ = writeln!(s, "\nstats (all CPUs):");
        for st in Stat::ALL {
            let _ = writeln!(s, "  {:<22} {}", st.name(), self.stats[st.name()]);
        }
        s
    }
}

impl ProtectionStatus {
    /// The protection of each port, and what is not programmed.
    fn write_text(&self, s: &mut String) {
        let from = match (self.source, self.agent_pid) {
            ("agent", Some(pid)) => format!(
                "as the agent (pid {pid}, {}) wrote it in {} at {}",
                if self.agent_running {
                    "running"
                } else {
                    "not running"
                },
                self.state_file,
                format_unix_ms(self.written_unix_ms.unwrap_or(0))
            ),
            _ => format!(
                "from the pinned links: no agent state in {}",
                self.state_file
            ),
        };
        let _ = writeln!(s, "\nprotection ({from}):");
        if let Some(w) = &self.warning {
            let _ = writeln!(s, "  warning: {w}");
        }
        if self.ports.is_empty() {
            let _ = writeln!(s, "  no ports");
        }
        for p in &self.ports {
            let port = with_name("port", p.port_id, p.name.as_deref());
            let state = match (&p.state, &p.reason) {
                (PortState::Protected, _) | (_, None) => p.state.name().to_string(),
                (state, Some(why)) => format!("{}: {why}", state.name()),
            };
            let _ = writeln!(s, "  {port} on {}: {state}", p.interface);
        }
        if self.egress_handover > 0 {
            let _ = writeln!(
                s,
                "  TC egress of {} port(s) still a netlink filter, moving to TCX links",
                self.egress_handover
            );
        }
        for (kind, what, list) in [
            ("vip", "vips", &self.vips_not_programmed),
            ("port", "port addresses", &self.addrs_not_programmed),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(s, "  {what} not programmed ({}):", list.len());
            for n in list {
                let label = with_name(kind, n.id, n.name.as_deref());
                let _ = writeln!(s, "    {label} {}: {}", n.address, n.reason);
            }
        }
    }
}
