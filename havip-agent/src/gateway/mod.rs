//! `havip-agent gateway`: the agent in its gateway role, on a host
//! between the internet and the VIPs' network (see
//! `havip_common::gateway` for what the datapath does there).
//!
//! `run` loads the datapath object, pins the gateway's maps and its two
//! XDP links under the pin dir, writes the config into the maps, and
//! keeps them in line with the config file (read again on SIGHUP). An
//! agent that starts where links are pinned swaps its programs into them,
//! so a restart or an upgrade never stops the translation; on SIGTERM the
//! links stay (`detach` takes them off). Owner changes the datapath
//! learns are logged.
//!
//! With `--etcd URL --gateway NAME` the EIPs and their VIPs' owners come
//! from etcd instead of the file, followed by a watch ([`follow`]); the
//! file then gives the interfaces and the network only.

pub mod config;
pub mod follow;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, Xdp,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use chrono::{DateTime, Utc};
use havip_common::{
    gateway::{
        GatewayConf, GatewayCounter, GatewayOwner, EIP_NETWORK, LEARNED_FROM_AGENT,
        LEARNED_FROM_ARP, LEARNED_FROM_NA,
    },
    maps::{self, GATEWAY_MAPS, GATEWAY_SIZED, GW_IN_PROGRAM, GW_OUT_PROGRAM},
    NetworkAddr,
};
use log::{debug, info, warn};
use std::net::IpAddr;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::{
    attach::{self, AttachMode},
    pins, util,
};
pub use config::{Association, GatewayConfig, GatewayConfigError};

/// The pin dir of a gateway (apart from a hypervisor's).
pub const GATEWAY_PIN_DIR: &str = "/sys/fs/bpf/havip-gw";
/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;
/// How often learned owners are looked at, to log their changes.
const OWNER_LOG: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    #[error(transparent)]
    Pin(#[from] pins::PinError),
    #[error(transparent)]
    Attach(#[from] attach::AttachError),
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    #[error("cannot read the MAC of {interface}: {why}")]
    Mac { interface: String, why: String },
    #[error("cannot load the datapath object: {0}")]
    Load(#[from] EbpfError),
    #[error("no datapath object: this agent was built without one; give --bpf-object")]
    NoObject,
    #[error("{name}: {what}: {source}")]
    Program {
        name: &'static str,
        what: String,
        source: ProgramError,
    },
    #[error("{path}: {what}")]
    Link { path: PathBuf, what: String },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("map {0} is not in the datapath object (an object older than the gateway?)")]
    MissingMap(&'static str),
    #[error("{0}: with --etcd the EIPs come from etcd: remove its [[eip]] entries")]
    EipsInFile(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How `run` starts.
pub struct RunOptions {
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    pub mode: AttachMode,
    pub bpf_object: Option<PathBuf>,
    /// Follow the EIPs of this gateway in etcd (`None`: the file's).
    pub etcd: Option<follow::FollowOptions>,
}

/// The config in force: the file's interfaces, and the EIPs of etcd when
/// the gateway follows it.
fn in_force(file: &GatewayConfig, served: Option<&follow::Served>) -> GatewayConfig {
    let mut c = file.clone();
    if let Some(s) = served {
        let room = c.max_eips as usize;
        if s.associations.len() + s.held.len() > room {
            warn!(
                "gateway: {} EIPs in etcd, the maps hold {room} (max_eips): the rest are not served",
                s.associations.len() + s.held.len()
            );
        }
        c.associations = s.associations.iter().take(room).copied().collect();
        c.held = s
            .held
            .iter()
            .take(room.saturating_sub(c.associations.len()))
            .copied()
            .collect();
    }
    c
}

/// The etcd side of a running gateway: what was read last, the owner
/// records taken up, and when the wire last taught each VIP's owner.
#[derive(Default)]
struct Followed {
    served: Option<follow::Served>,
    /// VIP -> the `since` of the owner record last written into the map.
    taken_up: HashMap<IpAddr, DateTime<Utc>>,
    /// VIP -> when the gateway saw the datapath learn its owner on the wire.
    wire: HashMap<IpAddr, DateTime<Utc>>,
}

impl Followed {
    /// Writes the owners of etcd's records that are new since the last
    /// read into the map, unless the wire taught another owner later.
    fn apply_owners(&mut self, ebpf: &mut Ebpf, network: u32) -> Result<(), GatewayError> {
        let Some(served) = &self.served else {
            return Ok(());
        };
        let mut owners = hash::<GatewayOwner>(ebpf, maps::GW_OWNERS)?;
        for (vip, (mac, since)) in &served.owners {
            let new_record = self.taken_up.insert(*vip, *since) != Some(*since);
            let key = util::network_addr(network, *vip);
            let current = owners.get(&key, 0).ok();
            if current.is_some_and(|o| o.mac == *mac) {
                continue;
            }
            // A record already taken up does not undo what the wire taught
            // since; none in the map (a VIP associated again) takes it.
            if current.is_some() && !new_record {
                continue;
            }
            if current.is_some() && self.wire.get(vip).is_some_and(|w| w > since) {
                debug!("gateway: VIP {vip}: the owner learned on the wire is newer than etcd's ({since})");
                continue;
            }
            let owner = GatewayOwner {
                mac: *mac,
                learned: LEARNED_FROM_AGENT,
                _pad: 0,
            };
            owners
                .insert(key, owner, 0)
                .map_err(map_err(maps::GW_OWNERS))?;
            info!(
                "gateway: VIP {vip} is owned by {} (from etcd, since {since})",
                util::format_mac(mac)
            );
        }
        Ok(())
    }
}

async fn next_served(rx: &mut Option<mpsc::Receiver<follow::Served>>) -> Option<follow::Served> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(opts: RunOptions) -> Result<(), GatewayError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut file = GatewayConfig::load(&opts.config)?;
    if opts.etcd.is_some() && !file.associations.is_empty() {
        return Err(GatewayError::EipsInFile(opts.config.clone()));
    }
    let mut followed = Followed::default();
    let mut rx = opts.etcd.clone().map(|f| {
        let (tx, rx) = mpsc::channel(4);
        info!(
            "gateway: following the EIPs of gateway {} in etcd",
            f.gateway
        );
        tokio::spawn(follow::follow(f, tx));
        rx
    });
    let mut config = in_force(&file, None);
    pins::ensure_pin_dir(&opts.pin_dir)?;
    let mut ebpf = load(&opts, config.max_eips)?;
    let mode = match opts.mode {
        AttachMode::Native => AttachMode::Native,
        _ => AttachMode::Generic,
    };
    for (program, interface, pin) in [
        (GW_OUT_PROGRAM, &config.internal, "xdp-internal"),
        (GW_IN_PROGRAM, &config.external, "xdp-external"),
    ] {
        attach(&mut ebpf, program, interface, mode, &opts.pin_dir.join(pin))?;
    }
    apply(&mut ebpf, &config)?;
    info!(
        "gateway: {} EIP(s), {} -> {} (network {}), XDP in {mode} mode",
        config.associations.len(),
        config.external,
        config.internal,
        config.network
    );

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(OWNER_LOG);
    let mut known = HashMap::new();
    let mut first_tick = true;
    loop {
        tokio::select! {
            _ = hup.recv() => match GatewayConfig::load(&opts.config) {
                Ok(next) if next.internal != config.internal || next.external != config.external => {
                    warn!("gateway: {}: the interfaces changed: restart the gateway for that; kept the running config", opts.config.display());
                }
                Ok(next) if rx.is_some() && !next.associations.is_empty() => {
                    warn!("gateway: {}; kept the running config", GatewayError::EipsInFile(opts.config.clone()));
                }
                Ok(next) => {
                    let want = in_force(&next, followed.served.as_ref());
                    match apply(&mut ebpf, &want) {
                        Ok(()) => {
                            info!("gateway: reloaded {}: {} EIP(s)", opts.config.display(), want.associations.len());
                            (file, config) = (next, want);
                        }
                        Err(e) => warn!("gateway: cannot apply {}: {e}", opts.config.display()),
                    }
                }
                Err(e) => warn!("gateway: {e}; kept the running config"),
            },
            Some(served) = next_served(&mut rx) => {
                let want = in_force(&file, Some(&served));
                followed.served = Some(served);
                match apply(&mut ebpf, &want) {
                    Ok(()) => {
                        if want.associations != config.associations || want.held != config.held {
                            info!("gateway: from etcd: {} EIP(s) associated, {} held", want.associations.len(), want.held.len());
                        }
                        config = want;
                        if let Err(e) = followed.apply_owners(&mut ebpf, config.network) {
                            warn!("gateway: cannot write the owners from etcd: {e}");
                        }
                    }
                    Err(e) => warn!("gateway: cannot apply the EIPs from etcd: {e}"),
                }
            },
            _ = ticker.tick() => {
                // The owners in the maps at start were learned at some
                // time unknown: only changes seen since are dated.
                let wire = (!first_tick).then_some(&mut followed.wire);
                log_owner_changes(&mut ebpf, &config, &mut known, wire);
                first_tick = false;
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!(
        "gateway: stopping; the translation stays in force (pinned under {})",
        opts.pin_dir.display()
    );
    Ok(())
}

/// Takes the gateway's programs off its interfaces and, with `unpin`,
/// removes its pinned maps. Returns how many links it removed.
pub fn detach(pin_dir: &Path, unpin: bool) -> usize {
    let mut n = 0;
    for pin in ["xdp-internal", "xdp-external"] {
        let path = pin_dir.join(pin);
        if path.exists() {
            attach::unpin_link(&path);
            n += 1;
        }
    }
    if unpin {
        for name in GATEWAY_MAPS {
            let _ = std::fs::remove_file(pin_dir.join(name));
        }
        let _ = std::fs::remove_dir(pin_dir);
    }
    n
}

fn load(opts: &RunOptions, max_eips: u32) -> Result<Ebpf, GatewayError> {
    let mut loader = EbpfLoader::new();
    let paths: Vec<(&str, PathBuf)> = GATEWAY_MAPS
        .iter()
        .map(|n| (*n, opts.pin_dir.join(n)))
        .collect();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    for name in GATEWAY_SIZED {
        loader.map_max_entries(name, max_eips);
    }
    // A gateway has no ports: the hypervisor's maps at their least.
    for name in maps::ALL {
        if ![
            maps::EVENTS,
            maps::REJECTS,
            maps::DROPS,
            maps::STATS,
            maps::SEGMENT,
            maps::ABI,
        ]
        .contains(&name)
        {
            loader.map_max_entries(name, 1);
        }
    }
    Ok(match &opts.bpf_object {
        Some(path) => loader.load_file(path)?,
        None => loader.load(crate::daemon::EMBEDDED_OBJECT.ok_or(GatewayError::NoObject)?)?,
    })
}

/// Attaches `program` to `interface`: into the link pinned at `pin` when
/// there is one (the program swapped, no gap), else by a new link, pinned.
fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    interface: &str,
    mode: AttachMode,
    pin: &Path,
) -> Result<(), GatewayError> {
    let ifindex =
        util::ifindex_of(interface).ok_or_else(|| GatewayError::NoInterface(interface.into()))?;
    let prog_err = |what: String| move |source| GatewayError::Program { name, what, source };
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(GatewayError::MissingMap(name))?
        .try_into()
        .map_err(prog_err("not an XDP program".into()))?;
    if prog.fd().is_err() {
        prog.load().map_err(prog_err("load".into()))?;
    }
    if let Ok(pinned) = PinnedLink::from_pin(pin) {
        match XdpLink::try_from(FdLink::from(pinned)) {
            Ok(link) => {
                let id = prog.attach_to_link(link).map_err(prog_err(format!(
                    "cannot replace the program in {}",
                    pin.display()
                )))?;
                drop(prog.take_link(id).map_err(prog_err("XDP link".into()))?);
                info!("gateway: {interface}: {name} swapped into its pinned link");
                return Ok(());
            }
            Err(e) => {
                warn!(
                    "gateway: {}: not an XDP link ({e}): attaching anew",
                    pin.display()
                );
            }
        }
    }
    let id = prog
        .attach_to_if_index(ifindex, mode.xdp())
        .map_err(prog_err(format!(
            "cannot attach to {interface} ({mode} mode)"
        )))?;
    let link = prog.take_link(id).map_err(prog_err("XDP link".into()))?;
    let fd = FdLink::try_from(link).map_err(|e| GatewayError::Link {
        path: pin.to_owned(),
        what: format!("XDP attached without a bpf_link: {e}"),
    })?;
    // Over whatever was pinned there before.
    Ok(attach::pin(fd, pin)?)
}

/// Writes `config` into the maps: the host's interfaces, every EIP and its
/// VIP (those no longer configured removed), and the configured owners of
/// VIPs that have none yet.
pub fn apply(ebpf: &mut Ebpf, config: &GatewayConfig) -> Result<(), GatewayError> {
    let conf = GatewayConf {
        internal_ifindex: util::ifindex_of(&config.internal)
            .ok_or_else(|| GatewayError::NoInterface(config.internal.clone()))?,
        internal_mac: mac_of(&config.internal)?,
        _pad: [0; 2],
        network: config.network,
        external_ifindex: util::ifindex_of(&config.external)
            .ok_or_else(|| GatewayError::NoInterface(config.external.clone()))?,
    };
    let want: HashMap<NetworkAddr, NetworkAddr> = config
        .associations
        .iter()
        .map(|a| {
            (
                util::network_addr(EIP_NETWORK, a.eip),
                util::network_addr(config.network, a.vip),
            )
        })
        .collect();
    let vips: Vec<NetworkAddr> = want.values().copied().collect();
    // A held EIP points at itself in the EIPs' own network, where no
    // owner ever is: its packets are dropped (no_owner), counted.
    let mut want = want;
    for eip in &config.held {
        let key = util::network_addr(EIP_NETWORK, *eip);
        want.entry(key).or_insert(key);
    }
    let stale_eips: Vec<NetworkAddr> = hash::<NetworkAddr>(ebpf, maps::GW_EIPS)?
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains_key(k))
        .collect();
    let stale_vips: Vec<NetworkAddr> = hash::<NetworkAddr>(ebpf, maps::GW_EIP_OF)?
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !vips.contains(k))
        .collect();

    // The VIP side first, so that an EIP found inbound has all it needs;
    // on removal the EIP goes first.
    let mut eip_of = hash::<NetworkAddr>(ebpf, maps::GW_EIP_OF)?;
    for (eip, vip) in want.iter().filter(|(e, v)| e != v) {
        eip_of
            .insert(vip, eip, 0)
            .map_err(map_err(maps::GW_EIP_OF))?;
    }
    let mut owners = hash::<GatewayOwner>(ebpf, maps::GW_OWNERS)?;
    for a in &config.associations {
        if let Some(mac) = a.owner {
            let owner = GatewayOwner {
                mac,
                learned: LEARNED_FROM_AGENT,
                _pad: 0,
            };
            // BPF_NOEXIST: an owner learned since is newer than the config.
            let _ = owners.insert(
                util::network_addr(config.network, a.vip),
                owner,
                BPF_NOEXIST,
            );
        }
    }
    let mut eips = hash::<NetworkAddr>(ebpf, maps::GW_EIPS)?;
    for (eip, vip) in &want {
        eips.insert(eip, vip, 0).map_err(map_err(maps::GW_EIPS))?;
    }
    for eip in &stale_eips {
        let _ = eips.remove(eip);
    }
    let mut eip_of = hash::<NetworkAddr>(ebpf, maps::GW_EIP_OF)?;
    for vip in &stale_vips {
        let _ = eip_of.remove(vip);
    }
    let mut owners = hash::<GatewayOwner>(ebpf, maps::GW_OWNERS)?;
    for vip in &stale_vips {
        let _ = owners.remove(vip);
    }
    let mut conf_map: Array<&mut MapData, GatewayConf> = Array::try_from(
        ebpf.map_mut(maps::GW_CONF)
            .ok_or(GatewayError::MissingMap(maps::GW_CONF))?,
    )
    .map_err(map_err(maps::GW_CONF))?;
    conf_map.set(0, conf, 0).map_err(map_err(maps::GW_CONF))
}

/// Logs every owner that changed since `known` was taken.
fn log_owner_changes(
    ebpf: &mut Ebpf,
    config: &GatewayConfig,
    known: &mut HashMap<NetworkAddr, [u8; 6]>,
    mut wire: Option<&mut HashMap<IpAddr, DateTime<Utc>>>,
) {
    let Ok(owners) = hash::<GatewayOwner>(ebpf, maps::GW_OWNERS) else {
        return;
    };
    for (vip, owner) in owners.iter().filter_map(Result::ok) {
        if known.get(&vip) == Some(&owner.mac) {
            continue;
        }
        let eip = config
            .associations
            .iter()
            .find(|a| util::network_addr(config.network, a.vip) == vip)
            .map(|a| a.eip.to_string())
            .unwrap_or_else(|| "-".into());
        info!(
            "gateway: EIP {eip}: VIP {} is owned by {} now (learned from {})",
            util::ip_of(&vip),
            util::format_mac(&owner.mac),
            learned_name(owner.learned)
        );
        if let Some(wire) = wire
            .as_mut()
            .filter(|_| owner.learned != LEARNED_FROM_AGENT)
        {
            wire.insert(util::ip_of(&vip), Utc::now());
        }
        known.insert(vip, owner.mac);
    }
}

pub fn learned_name(learned: u8) -> &'static str {
    match learned {
        LEARNED_FROM_AGENT => "the agent",
        LEARNED_FROM_ARP => "ARP",
        LEARNED_FROM_NA => "a Neighbor Advertisement",
        _ => "?",
    }
}

/// What `havip-agent gateway status` prints: every EIP with its VIP and
/// owner, and the counters.
pub fn status(pin_dir: &Path) -> Result<String, GatewayError> {
    use std::fmt::Write as _;
    let open = |name: &'static str| -> Result<Map, GatewayError> {
        let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
        Map::from_map_data(data).map_err(map_err(name))
    };
    let eips: BpfHashMap<MapData, NetworkAddr, NetworkAddr> =
        BpfHashMap::try_from(open(maps::GW_EIPS)?).map_err(map_err(maps::GW_EIPS))?;
    let owners: BpfHashMap<MapData, NetworkAddr, GatewayOwner> =
        BpfHashMap::try_from(open(maps::GW_OWNERS)?).map_err(map_err(maps::GW_OWNERS))?;
    let stats: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(open(maps::GW_STATS)?).map_err(map_err(maps::GW_STATS))?;
    let mut out = String::new();
    let mut rows: Vec<(NetworkAddr, NetworkAddr)> = eips.iter().filter_map(Result::ok).collect();
    rows.sort_by_key(|(e, _)| util::ip_of(e));
    let _ = writeln!(out, "EIPs: {}", rows.len());
    for (eip, vip) in rows {
        let owner = match owners.get(&vip, 0) {
            Ok(o) => format!(
                "owner {} (learned from {})",
                util::format_mac(&o.mac),
                learned_name(o.learned)
            ),
            Err(_) => "no owner yet".into(),
        };
        let _ = writeln!(
            out,
            "  {} -> {}: {owner}",
            util::ip_of(&eip),
            util::ip_of(&vip)
        );
    }
    let _ = writeln!(out, "counters:");
    for c in GatewayCounter::ALL {
        let total: u64 = stats
            .get(&(c as u32), 0)
            .map(|v| v.iter().sum())
            .map_err(map_err(maps::GW_STATS))?;
        let kind = if c.is_drop() { "drop " } else { "" };
        let _ = writeln!(out, "  {kind}{} {total}", c.name());
    }
    Ok(out)
}

fn hash<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<BpfHashMap<&'a mut MapData, NetworkAddr, V>, GatewayError> {
    BpfHashMap::try_from(ebpf.map_mut(name).ok_or(GatewayError::MissingMap(name))?)
        .map_err(map_err(name))
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> GatewayError {
    move |source| GatewayError::Map { name, source }
}

/// The MAC of `interface` in this network namespace (from getifaddrs:
/// sysfs shows the namespace it was mounted in, which need not be ours).
fn mac_of(interface: &str) -> Result<[u8; 6], GatewayError> {
    let err = |why: String| GatewayError::Mac {
        interface: interface.into(),
        why,
    };
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| err(e.to_string()))?;
    for ifaddr in addrs {
        if ifaddr.interface_name != interface {
            continue;
        }
        if let Some(mac) = ifaddr
            .address
            .as_ref()
            .and_then(|a| a.as_link_addr())
            .and_then(|l| l.addr())
        {
            return Ok(mac);
        }
    }
    Err(err("it has no link-layer address".into()))
}
