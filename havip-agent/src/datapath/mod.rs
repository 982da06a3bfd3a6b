//! The loaded datapath: the eBPF object, its pinned maps and the ports'
//! attachments (held by pinned links, see [`crate::attach`]), kept in line
//! with the desired state by diff.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    hash::Hash,
    path::{Path, PathBuf},
};

use aya::{
    maps::{
        xdp::{DevMapHash, XdpMapError},
        Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf,
    },
    programs::ProgramError,
    Ebpf, EbpfError, EbpfLoader, Pod,
};
use aya_log::EbpfLogger;
use havip_common::{
    maps::{self, IFINDEX_DIRECT, MAX_PORTS, TC_EGRESS_PROGRAM, XDP_PROGRAM},
    vip::HINT_BUCKETS,
    NetworkAddr, Owner, Port, Vip, VipCounters, VipHint, VirtualMac, BPF_F_LOCK,
};
use log::{debug, info, warn};

pub use crate::attach::{AttachMode, TcAttach};
use crate::{
    attach::{self, AttachError, PinDirLock, PortLinks},
    config::Config,
    desired::Desired,
    learned::LearnedMaps,
    migrate::{MigrateError, Migration},
    pins::{ensure_pin_dir, PinError},
    shortfall::Unprogrammed,
    slots::Slots,
    util::ifname_of,
};

mod handover;
mod holddown;
mod reconcile;

/// The message `run` prints when no object is embedded and none was given.
pub const NO_OBJECT: &str = "this havip-agent was built without the datapath object; \
                             build with `cargo xtask build` or pass --bpf-object PATH";

/// Errors of the datapath module.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{NO_OBJECT}")]
    NoObject,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the datapath object: {0}")]
    Load(#[source] Box<EbpfError>),
    #[error("the datapath object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {name}: {what}: {source}")]
    Program {
        name: &'static str,
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error("map {map}: {what}: {source}")]
    Map {
        map: &'static str,
        what: &'static str,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("vip {0} is not programmed on this host")]
    UnknownVip(u32),
    #[error("map {}: cannot insert ifindex {ifindex}: {source}", maps::REDIRECT)]
    Redirect {
        ifindex: u32,
        #[source]
        source: XdpMapError,
    },
}

impl From<EbpfError> for DatapathError {
    fn from(e: EbpfError) -> Self {
        Self::Load(Box::new(e))
    }
}

fn map_err(map: &'static str, what: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { map, what, source }
}

/// Where the eBPF object comes from.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    Embedded(&'static [u8]),
    File(PathBuf),
}

/// A port's programs: XDP on frames from the VM, TC egress on frames to
/// it (the programs every port shares), held by pinned links (see
/// [`attach`]).
struct Attachment {
    interface: String,
    port_id: u32,
    links: PortLinks,
    /// Its TC egress stays a netlink filter: the move to TCX failed
    /// (see [`Datapath::hand_over_egress`]).
    netlink_kept: bool,
}

/// Entries of one map an apply wrote (inserted or updated) and removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub written: usize,
    pub removed: usize,
}

/// What an apply changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub ports: Written,
    pub addrs: Written,
    pub vips: Written,
    pub owners_vacated: usize,
    pub owners_deleted: usize,
    pub attached: usize,
    pub detached: usize,
    pub attach_failures: usize,
}

impl ApplySummary {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for ApplySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ports +{}/-{}, addrs +{}/-{}, vips +{}/-{}, owners vacated {}, deleted {}, \
             xdp attached {}, detached {}",
            self.ports.written,
            self.ports.removed,
            self.addrs.written,
            self.addrs.removed,
            self.vips.written,
            self.vips.removed,
            self.owners_vacated,
            self.owners_deleted,
            self.attached,
            self.detached
        )?;
        if self.attach_failures > 0 {
            write!(f, ", {} attach failure(s)", self.attach_failures)?;
        }
        Ok(())
    }
}

/// Things the daemon polls beside the datapath.
pub struct Pollables {
    /// The `havip_events` ring buffer: owner changes.
    pub events: RingBuf<MapData>,
    /// The `havip_rejects` ring buffer: rejected claims.
    pub rejects: RingBuf<MapData>,
    /// The aya-log reader, if the object logs through aya-log.
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
}

/// The programs, loaded once and shared by every port: they find their
/// port by the interface they run on (`havip_ifport`).
struct Programs {
    /// For XDP in generic mode (and TC egress).
    generic: Ebpf,
    /// For XDP in native mode, which completes checksums before a
    /// redirect (`COMPLETE_CHECKSUMS`); loaded unless every port is
    /// attached in generic mode.
    native: Option<Ebpf>,
}

impl Programs {
    fn for_mode(&mut self, mode: AttachMode) -> &mut Ebpf {
        match (&mut self.native, mode) {
            (Some(native), AttachMode::Native) => native,
            _ => &mut self.generic,
        }
    }
}

/// The loaded datapath.
pub struct Datapath {
    programs: Programs,
    pin_dir: PathBuf,
    mode: AttachMode,
    tc: TcAttach,
    /// One agent per pin dir, for as long as this lives.
    _lock: PinDirLock,
    ports: Array<MapData, Port>,
    /// ifindex -> its port's slot in `ports`.
    if_port: Array<MapData, u32>,
    if_port_hi: BpfHashMap<MapData, u32, u32>,
    addrs: BpfHashMap<MapData, NetworkAddr, u32>,
    vips: BpfHashMap<MapData, NetworkAddr, Vip>,
    vmacs: BpfHashMap<MapData, VirtualMac, u32>,
    owners: Array<MapData, Owner>,
    filter: Array<MapData, VipHint>,
    /// What `filter` holds now, bucket by bucket (read once at load).
    filter_now: Vec<VipHint>,
    vipstats: PerCpuArray<MapData, VipCounters>,
    /// The link-locals the datapath learned (see [`crate::learned`]).
    learned: LearnedMaps,
    /// ifindex -> the same ifindex, for each port the programs are attached
    /// to: where the datapath may redirect frames for a VIP's owner.
    redirect: DevMapHash<MapData>,
    /// ifindex -> our programs there.
    attached: BTreeMap<u32, Attachment>,
    /// Port id -> why its interface exists but has no programs (an attach
    /// that failed, no free slot): the port is not protected, and says so,
    /// until a reconcile attaches it.
    unprotected: BTreeMap<u32, String>,
    /// The VIPs and addresses that did not fit (or could not be written),
    /// and why: reported until a reconcile finds room for them.
    unprogrammed: Unprogrammed,
    /// vip id -> its slot in `havip_owners` and `havip_vipstats`.
    vip_slots: Slots,
    nr_cpus: usize,
    config: Config,
    desired: Desired,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(
        name,
        "the datapath object does not match this agent's havip-common \
         (build both from the same source)",
    ))
}

fn read_all<K, V>(
    map: &BpfHashMap<MapData, K, V>,
    name: &'static str,
) -> Result<HashMap<K, V>, DatapathError>
where
    K: Pod + Eq + Hash,
    V: Pod,
{
    map.iter()
        .collect::<Result<HashMap<K, V>, MapError>>()
        .map_err(map_err(name, "cannot read"))
}

fn remove_entry<K, V>(
    map: &mut BpfHashMap<MapData, K, V>,
    name: &'static str,
    key: &K,
) -> Result<(), DatapathError>
where
    K: Pod,
    V: Pod,
{
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(map_err(name, "cannot remove")(e)),
    }
}

impl Datapath {
    /// Locks `pin_dir` (one agent per pin dir), loads the object with every
    /// map pinned there (reusing maps already pinned, with the VIPs' slots
    /// and owners in them) and the programs every port shares (the
    /// verifier runs once, not once per port). Ports whose links are
    /// pinned there are adopted: the programs are swapped into their links,
    /// and each keeps its slot and its entry in `havip_ports`. The VIP maps
    /// hold `max_vips` VIPs; pinned ones of another size are carried over
    /// into maps of that size (refused if they hold more).
    pub fn load(
        object: &ObjectSource,
        pin_dir: &Path,
        (mode, tc): (AttachMode, TcAttach),
        max_vips: u32,
    ) -> Result<(Self, Pollables), DatapathError> {
        ensure_pin_dir(pin_dir)?;
        let lock = PinDirLock::acquire(pin_dir)?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Io {
            path: "/sys/devices/system/cpu/possible".into(),
            source: e,
        })?;
        // Maps of another version's shapes are set aside, to be carried
        // over into the ones this load pins.
        let migration = Migration::prepare(pin_dir, nr_cpus, max_vips)?;
        let mut ebpf = load_object(object, pin_dir, false, max_vips)?;
        // The new maps are pinned: what the old ones hold goes in before
        // anything reads them.
        migration.carry()?;
        // The logger owns the log map; it must outlive the program load.
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(aya_log::Error::MapNotFound) => {
                debug!("the datapath does not log through aya-log");
                None
            }
            Err(e) => {
                warn!("cannot read the datapath's aya-log records: {e}");
                None
            }
        };
        load_programs(&mut ebpf)?;
        // The native variant (checksum completion) too, when a port may be
        // attached natively.
        let native = if mode == AttachMode::Generic {
            None
        } else {
            let mut native = load_object(object, pin_dir, true, max_vips)?;
            load_programs(&mut native)?;
            Some(native)
        };
        let events = take(&mut ebpf, maps::EVENTS)?;
        let rejects = take(&mut ebpf, maps::REJECTS)?;
        let vips: BpfHashMap<MapData, NetworkAddr, Vip> = take(&mut ebpf, maps::VIPS)?;
        let vip_slots = Slots::recovered(
            max_vips,
            read_all(&vips, maps::VIPS)?
                .values()
                .map(|v| (v.vip_id, v.slot)),
        );
        let filter: Array<MapData, VipHint> = take(&mut ebpf, maps::VIP_FILTER)?;
        let filter_now = (0..HINT_BUCKETS)
            .map(|b| filter.get(&b, 0))
            .collect::<Result<_, _>>()
            .map_err(map_err(maps::VIP_FILTER, "cannot read"))?;
        let ports = take(&mut ebpf, maps::PORTS)?;
        let if_port = take(&mut ebpf, maps::IF_PORT)?;
        let if_port_hi = take(&mut ebpf, maps::IF_PORT_HI)?;
        let addrs = take(&mut ebpf, maps::ADDRS)?;
        let vmacs = take(&mut ebpf, maps::VMACS)?;
        let owners = take(&mut ebpf, maps::OWNERS)?;
        let vipstats = take(&mut ebpf, maps::VIP_STATS)?;
        let redirect = take(&mut ebpf, maps::REDIRECT)?;
        let mut map = |name| ebpf.take_map(name).ok_or(DatapathError::MissingMap(name));
        let (ll_addrs, ll_ports) = (map(maps::LL_ADDRS)?, map(maps::LL_PORTS)?);
        let learned = LearnedMaps::new(ll_addrs, ll_ports).map_err(map_err(
            maps::LL_ADDRS,
            "the datapath object does not match this agent's havip-common",
        ))?;
        let mut dp = Datapath {
            programs: Programs {
                generic: ebpf,
                native,
            },
            pin_dir: pin_dir.to_owned(),
            ports,
            if_port,
            if_port_hi,
            addrs,
            vips,
            vmacs,
            owners,
            filter,
            filter_now,
            vipstats,
            learned,
            redirect,
            mode,
            tc,
            _lock: lock,
            attached: BTreeMap::new(),
            unprotected: BTreeMap::new(),
            unprogrammed: Unprogrammed::default(),
            vip_slots,
            nr_cpus,
            config: Config::default(),
            desired: Desired::default(),
        };
        dp.adopt_pinned();
        migration.finish()?;
        // The slots no adopted port holds are in use by no program.
        let held: Vec<u32> = dp.attached.values().map(|a| a.links.slot).collect();
        for slot in (0..MAX_PORTS).filter(|s| !held.contains(s)) {
            dp.set_port(slot, &Port::default())?;
        }
        info!(
            "datapath loaded, maps pinned under {} ({} mode)",
            pin_dir.display(),
            mode
        );
        Ok((
            dp,
            Pollables {
                events,
                rejects,
                logger,
            },
        ))
    }

    /// Writes `port` at `slot` unless it is there already; whether it
    /// wrote.
    fn set_port(&mut self, slot: u32, port: &Port) -> Result<bool, DatapathError> {
        if self.ports.get(&slot, 0).ok().as_ref() == Some(port) {
            return Ok(false);
        }
        self.ports
            .set(slot, port, 0)
            .map_err(map_err(maps::PORTS, "cannot write"))?;
        Ok(true)
    }

    /// Adopts the ports whose links are pinned under the pin dir (see
    /// [`Datapath::load`]); removes the links of interfaces that are gone.
    fn adopt_pinned(&mut self) {
        let mut adopted_count = 0;
        for mut links in attach::pinned(&self.pin_dir) {
            let (ifx, slot) = (links.ifindex, links.slot);
            let interface = ifname_of(ifx).filter(|_| links.is_live());
            let Some(interface) = interface.filter(|_| slot < MAX_PORTS) else {
                info!(
                    "ifindex {ifx} (slot {slot}): its XDP link is attached no more \
                     (its interface is gone); removing its links"
                );
                links.detach();
                continue;
            };
            let port_id = self.ports.get(&slot, 0).map_or(0, |p| p.port_id);
            let mode = self.mode.for_interface(&interface);
            // The programs swapped in find the port by its interface.
            let adopted = self.set_if_port(ifx, slot).and_then(|()| {
                let ebpf = self.programs.for_mode(mode);
                Ok(links.adopt(ebpf, &interface, mode)?)
            });
            match adopted {
                Ok(()) => {
                    adopted_count += 1;
                    debug!(
                        "port {port_id}: adopted XDP ({} mode) and TC egress ({}) on {interface} \
                     (ifindex {ifx}, slot {slot}), new programs swapped in",
                        links.mode, links.egress
                    )
                }
                // The programs in force stay, and the port its slot, until
                // it is detached.
                Err(e) if links.is_live() => warn!(
                    "{interface} (ifindex {ifx}, slot {slot}): cannot adopt: {e}; \
                     its programs stay"
                ),
                Err(e) => {
                    warn!(
                        "{interface} (ifindex {ifx}, slot {slot}): cannot adopt: {e}; \
                         attaching it afresh"
                    );
                    links.detach();
                    continue;
                }
            }
            let a = Attachment {
                interface,
                port_id,
                links,
                netlink_kept: false,
            };
            self.attached.insert(ifx, a);
        }
        if adopted_count > 0 {
            info!(
                "adopted the links of {adopted_count} port(s) pinned under {}: \
                 this agent's programs swapped in",
                self.pin_dir.display()
            );
        }
    }

    /// Points the interface `ifindex` at the port in `slot`.
    fn set_if_port(&mut self, ifindex: u32, slot: u32) -> Result<(), DatapathError> {
        if ifindex < IFINDEX_DIRECT {
            self.if_port.set(ifindex, slot, 0)
        } else {
            self.if_port_hi.insert(ifindex, slot, 0)
        }
        .map_err(map_err(maps::IF_PORT, "cannot write"))
    }

    /// The interface `ifindex` has no port any more.
    fn clear_if_port(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        match if ifindex < IFINDEX_DIRECT {
            self.if_port.set(ifindex, 0, 0)
        } else {
            self.if_port_hi.remove(&ifindex)
        } {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(maps::IF_PORT, "cannot clear")(e)),
        }
    }

    /// Attaches the programs to the interface of the port at `slot`, held
    /// by pinned links.
    fn attach(
        &mut self,
        ifindex: u32,
        interface: &str,
        slot: u32,
    ) -> Result<PortLinks, DatapathError> {
        let mode = self.mode.for_interface(interface);
        self.set_if_port(ifindex, slot)?;
        Ok(PortLinks::attach(
            self.programs.for_mode(mode),
            &self.pin_dir,
            (ifindex, interface),
            slot,
            mode,
            self.tc,
        )?)
    }

    /// Detaches both programs of a port, removes its links and frees its
    /// slot.
    fn detach(&mut self, ifx: u32, a: Attachment) -> Result<(), DatapathError> {
        let slot = a.links.slot;
        a.links.detach();
        let label = self.config.port_label(a.port_id);
        info!("{label}: detached from {} (ifindex {ifx})", a.interface);
        self.clear_if_port(ifx)?;
        self.set_port(slot, &Port::default()).map(drop)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ports whose interface exists but that have no programs, and
    /// why: each is reported (log, acks) and retried until it is attached.
    pub fn unprotected_ports(&self) -> &BTreeMap<u32, String> {
        &self.unprotected
    }

    /// The ports whose programs are attached (by port id).
    pub fn protected_ports(&self) -> BTreeSet<u32> {
        self.attached.values().map(|a| a.port_id).collect()
    }

    /// The VIPs and fixed addresses of the desired state that are not in
    /// the maps (a full map, no free VIP slot), and why: each is reported
    /// (log, status, acks) until a reconcile finds room for it.
    pub fn unprogrammed(&self) -> &Unprogrammed {
        &self.unprogrammed
    }

    /// Whether everything of the desired state is in force: every port
    /// whose interface exists protected, every VIP and address programmed.
    pub fn all_in_force(&self) -> bool {
        self.unprotected.is_empty() && self.unprogrammed.is_empty()
    }

    /// The owner record of vip `vip_id` (vacant or not), if it has one.
    pub fn owner(&self, vip_id: u32) -> Option<Owner> {
        self.owner_at(self.vip_slots.get(vip_id)?, vip_id)
    }

    /// Records that port `port_id` with `mac` on another host owns vip
    /// `vip_id` (ifindex 0: frames for it get its MAC and go on to the
    /// bridge and the uplink). Bumps the generation; returns the record.
    pub fn set_remote_owner(
        &mut self,
        vip_id: u32,
        port_id: u32,
        mac: [u8; 6],
    ) -> Result<Owner, DatapathError> {
        let slot = self
            .vip_slots
            .get(vip_id)
            .ok_or(DatapathError::UnknownVip(vip_id))?;
        let now = crate::util::BpfClock::now().mono_now_ns();
        let generation = self.owner(vip_id).map_or(0, |o| o.generation) + 1;
        let owner = Owner {
            vip_id,
            port_id,
            ifindex: 0,
            mac,
            generation,
            since_ns: now,
            last_claim_ns: now,
            ..Owner::default()
        }
        .sealed();
        self.owners
            .set(slot, owner, BPF_F_LOCK)
            .map_err(map_err(maps::OWNERS, "cannot write"))?;
        Ok(owner)
    }

    /// Whether `ifindex`/`name` is one the datapath cares about: an
    /// interface of a configured port, or one it is attached to.
    pub fn interested_in(&self, ifindex: u32, name: Option<&str>) -> bool {
        self.attached.contains_key(&ifindex)
            || name.is_some_and(|n| self.desired.ports.contains_key(n))
    }

    /// Makes `config` the state in force: brings every map to its desired
    /// contents by diff and attaches/detaches the programs where ports'
    /// interfaces are. Deletes come before inserts, so a full map has room
    /// for what replaces what goes; what stays is updated in place, never
    /// missing; what does not fit is not programmed, and reported
    /// ([`Datapath::unprogrammed`]), and everything else is applied.
    pub fn apply(&mut self, config: &Config) -> Result<ApplySummary, DatapathError> {
        let desired = Desired::from_config(config);
        self.config = config.clone();
        self.desired = desired;
        self.reconcile()
    }

    /// The record at `slot` (vacant or not), if it is vip `vip_id`'s.
    fn owner_at(&self, slot: u32, vip_id: u32) -> Option<Owner> {
        self.owners
            .get(&slot, BPF_F_LOCK)
            .ok()
            .filter(|o| o.vip_id == vip_id)
    }

    /// Gives `slot` to vip `vip_id` (0: to nobody): no owner, counters zero.
    fn reset_vip_slot(&mut self, vip_id: u32, slot: u32) -> Result<(), DatapathError> {
        let empty = Owner {
            vip_id,
            ..Owner::default()
        };
        self.owners
            .set(slot, empty.sealed(), BPF_F_LOCK)
            .map_err(map_err(maps::OWNERS, "cannot reset"))?;
        let zero = PerCpuValues::try_from(vec![VipCounters::default(); self.nr_cpus]).map_err(
            |source| DatapathError::Io {
                path: "/sys/devices/system/cpu/possible".into(),
                source,
            },
        )?;
        self.vipstats
            .set(slot, zero, 0)
            .map_err(map_err(maps::VIP_STATS, "cannot reset"))
    }

    /// Brings the VIP filter to `desired` (the buckets that hold something;
    /// every other bucket is emptied).
    fn write_filter(&mut self, desired: &BTreeMap<u32, VipHint>) -> Result<(), DatapathError> {
        for bucket in 0..HINT_BUCKETS {
            let want = desired.get(&bucket).copied().unwrap_or_default();
            let now = &mut self.filter_now[bucket as usize];
            if *now != want {
                self.filter
                    .set(bucket, want, 0)
                    .map_err(map_err(maps::VIP_FILTER, "cannot write"))?;
                *now = want;
            }
        }
        Ok(())
    }

    /// Detaches the programs from every interface and removes their links
    /// (the maps stay pinned). Only for an agent asked to leave nothing
    /// attached (`--unpin-on-exit`): otherwise they stay in force.
    pub fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        for (ifx, a) in attached {
            if let Err(e) = self.detach(ifx, a) {
                warn!("ifindex {ifx}: {e}");
            }
        }
    }
}

/// Loads (but does not verify) the object, with every map pinned under
/// `pin_dir`, the VIP maps sized for `max_vips` and `COMPLETE_CHECKSUMS`
/// set to whether its XDP program runs in native mode.
fn load_object(
    object: &ObjectSource,
    pin_dir: &Path,
    native: bool,
    max_vips: u32,
) -> Result<Ebpf, DatapathError> {
    let paths: Vec<(&'static str, PathBuf)> =
        maps::ALL.iter().map(|n| (*n, pin_dir.join(n))).collect();
    let complete_checksums = u32::from(native);
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.override_global(maps::COMPLETE_CHECKSUMS, &complete_checksums, true);
    // The EIP gateway's maps are a gateway's (`crate::gateway`), not pinned
    // here: at their least.
    for name in maps::GATEWAY_SIZED {
        loader.map_max_entries(name, 1);
    }
    for name in maps::VIP_SIZED {
        loader.map_max_entries(name, max_vips);
    }
    Ok(match object {
        ObjectSource::Embedded(bytes) => loader.load(bytes)?,
        ObjectSource::File(path) => loader.load_file(path)?,
    })
}

/// Loads both programs of an instance into the kernel (the verifier runs).
fn load_programs(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    attach::egress_program(ebpf)?
        .load()
        .map_err(|source| DatapathError::Program {
            name: TC_EGRESS_PROGRAM,
            what: "load".into(),
            source,
        })?;
    attach::xdp_program(ebpf)?
        .load()
        .map_err(|source| DatapathError::Program {
            name: XDP_PROGRAM,
            what: "load".into(),
            source,
        })
}
