//! The pin dir: where bpffs is, the maps pinned there and the shape each
//! must have. The ports' links are pinned there too ([`crate::attach`]);
//! an upgrade that changes a map's shape migrates it
//! ([`crate::migrate`]).

use std::{
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};
use havip_common::{
    counters::{DROP_SLOTS, STAT_SLOTS},
    maps::{
        self, EVENTS_BYTES, IFINDEX_DIRECT, MAX_ADDRS, MAX_LEARNED_LINK_LOCALS, MAX_PORTS,
        MAX_VMACS, REJECTS_BYTES,
    },
    vip::HINT_BUCKETS,
    NetworkAddr, Owner, Port, Vip, VipCounters, VipHint, VirtualMac,
};
use log::{debug, info, warn};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};

use crate::attach;

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Errors of the pin dir.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot mount bpffs at {BPFFS}: {0}")]
    MountBpffs(#[source] nix::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pin dir {} is not on a bpf filesystem (mount -t bpf bpf {BPFFS})", .0.display())]
    NotBpffs(PathBuf),
}

/// The directory where an upgrade sets pinned maps aside while it moves
/// what they hold into new ones (bpffs names hold no dots, so no
/// `<name>.old`).
pub const ASIDE_DIR: &str = "old";

/// Where an upgrade sets the pinned map `name` aside: `<pin_dir>/old/<name>`.
pub fn aside(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(ASIDE_DIR).join(name)
}

/// One map, and the shape the agent expects it to have.
#[derive(Debug, Clone, Copy)]
pub struct MapSpec {
    pub name: &'static str,
    pub shape: Shape,
}

/// Every map of the datapath, with the shape the shared types imply, on a
/// host that holds `max_vips` VIPs (`run --max-vips`).
pub fn map_specs(max_vips: u32) -> [MapSpec; 18] {
    const fn spec<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> MapSpec {
        MapSpec {
            name,
            shape: Shape {
                map_type: Some(map_type),
                key_size: size_of::<K>() as u32,
                value_size: size_of::<V>() as u32,
                max_entries,
            },
        }
    }
    [
        spec::<u32, Port>(maps::PORTS, MapType::Array, MAX_PORTS),
        spec::<u32, u32>(maps::IF_PORT, MapType::Array, IFINDEX_DIRECT),
        spec::<u32, u32>(maps::IF_PORT_HI, MapType::Hash, MAX_PORTS),
        spec::<NetworkAddr, u32>(maps::ADDRS, MapType::Hash, MAX_ADDRS),
        spec::<NetworkAddr, Vip>(maps::VIPS, MapType::Hash, max_vips),
        spec::<u32, Owner>(maps::OWNERS, MapType::Array, max_vips),
        spec::<u32, VipHint>(maps::VIP_FILTER, MapType::Array, HINT_BUCKETS),
        spec::<(), ()>(maps::EVENTS, MapType::RingBuf, EVENTS_BYTES),
        spec::<(), ()>(maps::REJECTS, MapType::RingBuf, REJECTS_BYTES),
        spec::<u32, u64>(maps::DROPS, MapType::PerCpuArray, DROP_SLOTS as u32),
        spec::<u32, u64>(maps::STATS, MapType::PerCpuArray, STAT_SLOTS as u32),
        spec::<u32, VipCounters>(maps::VIP_STATS, MapType::PerCpuArray, max_vips),
        // Value: struct bpf_devmap_val { u32 ifindex; u32 prog fd/id; }.
        spec::<u32, u64>(maps::REDIRECT, MapType::DevMapHash, MAX_PORTS),
        spec::<u32, [u8; maps::SEGMENT_BUF]>(maps::SEGMENT, MapType::PerCpuArray, 1),
        spec::<u32, u32>(maps::ABI, MapType::Array, 1),
        spec::<VirtualMac, u32>(maps::VMACS, MapType::Hash, MAX_VMACS),
        spec::<NetworkAddr, u32>(maps::LL_ADDRS, MapType::Hash, MAX_LEARNED_LINK_LOCALS),
        spec::<u32, NetworkAddr>(maps::LL_PORTS, MapType::Hash, MAX_LEARNED_LINK_LOCALS),
    ]
}

/// The VIPs the maps pinned under `pin_dir` hold room for (the size of
/// its `havip_vips`), if it has them.
pub fn pinned_max_vips(pin_dir: &Path) -> Option<u32> {
    MapInfo::from_pin(pin_dir.join(maps::VIPS))
        .ok()
        .map(|info| info.max_entries())
}

/// The shape of a map: as the kernel has a pinned one, or as the agent
/// expects it ([`map_specs`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// `None`: a type this aya does not know.
    pub map_type: Option<MapType>,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl Shape {
    pub fn of(info: &MapInfo) -> Self {
        Self {
            map_type: info.map_type().ok(),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        }
    }

    /// What differs between this shape (a pinned map's) and `want`, if
    /// anything.
    pub fn mismatch(&self, want: &Shape) -> Option<String> {
        let mut diffs = Vec::new();
        if self.map_type != want.map_type {
            diffs.push(format!(
                "type {:?}, expected {}",
                self.map_type,
                want.kind()
            ));
        }
        for (what, got, want) in [
            ("key size", self.key_size, want.key_size),
            ("value size", self.value_size, want.value_size),
            ("max entries", self.max_entries, want.max_entries),
        ] {
            if got != want {
                diffs.push(format!("{what} {got}, expected {want}"));
            }
        }
        (!diffs.is_empty()).then(|| diffs.join(", "))
    }

    /// The map type's name (`unknown` for one this aya does not know).
    pub fn kind(&self) -> String {
        self.map_type
            .map_or_else(|| "unknown".into(), |t| format!("{t:?}"))
    }

    pub fn is_array(&self) -> bool {
        matches!(self.map_type, Some(MapType::Array | MapType::PerCpuArray))
    }

    pub fn per_cpu(&self) -> bool {
        matches!(
            self.map_type,
            Some(MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash)
        )
    }

    /// Bytes a value takes in a lookup or an update: for a per-CPU map, the
    /// value rounded up to 8 bytes, once per possible CPU.
    pub fn stride(&self) -> usize {
        if self.per_cpu() {
            (self.value_size as usize).div_ceil(8) * 8
        } else {
            self.value_size as usize
        }
    }

    pub fn buffer(&self, cpus: usize) -> Vec<u8> {
        vec![0; self.stride() * if self.per_cpu() { cpus } else { 1 }]
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (key {} B, value {} B, {} entries)",
            self.kind(),
            self.key_size,
            self.value_size,
            self.max_entries
        )
    }
}

/// Whether `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes sure bpffs is mounted at [`BPFFS`] (when `pin_dir` is below it) and
/// creates `pin_dir`.
pub fn ensure_pin_dir(pin_dir: &Path) -> Result<(), PinError> {
    let root = Path::new(BPFFS);
    if pin_dir.starts_with(root) && !is_bpffs(root) {
        mount(
            Some("bpf"),
            root,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(PinError::MountBpffs)?;
        info!("mounted bpffs at {BPFFS}");
    }
    std::fs::create_dir_all(pin_dir).map_err(|source| PinError::Io {
        path: pin_dir.to_owned(),
        source,
    })?;
    if !is_bpffs(pin_dir) {
        return Err(PinError::NotBpffs(pin_dir.to_owned()));
    }
    Ok(())
}

/// Takes every pinned program off its interface, removes the link pins,
/// the pinned maps and `pin_dir` itself (if nothing else is in it).
pub fn unpin(pin_dir: &Path) {
    attach::detach(pin_dir);
    for name in maps::ALL {
        // A map an interrupted upgrade set aside too.
        for path in [pin_dir.join(name), aside(pin_dir, name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => debug!("unpinned {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("cannot unpin {}: {e}", path.display()),
            }
        }
    }
    let _ = std::fs::remove_dir(pin_dir.join(ASIDE_DIR));
    match std::fs::remove_dir(pin_dir) {
        Ok(()) => info!("removed pin dir {}", pin_dir.display()),
        Err(e) => warn!("cannot remove pin dir {}: {e}", pin_dir.display()),
    }
}
