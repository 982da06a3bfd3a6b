//! Upgrades that keep state. The pin dir records the datapath's ABI
//! version (`havip_abi`). An agent whose maps have other shapes than the
//! ones pinned (a newer or an older havip) does not ask the operator to
//! remove the pins, which would lose every learned owner; it:
//!
//! 1. [`Migration::prepare`]: checks that every pinned map it must change
//!    can be carried over (same kind of map and key; fields appended to or
//!    dropped from the end of a value; a size that holds what is there),
//!    and only then sets each aside, moved to `<pin_dir>/old/<name>`
//!    ([`aside`]), so the loader pins a new one of the new shape in its
//!    place. The programs in force keep running on the old maps.
//! 2. [`Migration::carry`], once the object is loaded: copies what the old
//!    maps hold into the new ones (ports, addresses, VIPs, the filter, the
//!    owners), each value cut or zero-extended to its new size.
//! 3. The agent swaps its programs into the ports' links.
//! 4. [`Migration::finish`]: takes the owners the old programs learned
//!    after the copy (a higher generation) and the link-locals they learned
//!    after it (where the new maps have none), adds the old counters to the
//!    new ones (the old programs counted until the swap, the new ones since),
//!    unpins the old maps and records the new ABI version.
//!
//! A migration cut short (a crash, a kill) leaves the old maps pinned;
//! the next agent carries them over again. A refused migration changes
//! nothing: the programs in force keep enforcing the last state.

use std::{
    io,
    mem::offset_of,
    path::{Path, PathBuf},
};

use aya::maps::MapInfo;
use havip_common::{
    maps::{self, ABI_VERSION},
    Owner,
};
use log::{info, warn};

/// `BPF_NOEXIST`: an update that adds a key, never replaces one.
const BPF_NOEXIST: u64 = 1;

use crate::{
    pins::{aside, map_specs, Shape, ASIDE_DIR},
    sys::{MapFd, F_LOCK},
};

/// Errors of a migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "pinned map {} cannot be carried over to this agent's datapath (ABI {ABI_VERSION}): \
         {why}; nothing was changed and the programs in force stay. Run the havip version \
         that pinned it, or `havip-agent detach --unpin` to start afresh (learned owners \
         are lost)",
        path.display()
    )]
    Incompatible { path: PathBuf, why: String },
    #[error("migrating {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a map's entries become when its shape changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Copied before the programs are swapped (written by the agent).
    Entries,
    /// Copied before the swap, and owners learned since taken after it.
    Owners,
    /// Copied before the swap, and entries learned since taken after it
    /// where the new map has none (the learned link-locals: the first
    /// learner holds an address).
    Learned,
    /// Added to the new counters after the swap.
    Counters,
    /// Nothing: events in flight, scratch, the ABI record.
    Nothing,
}

fn carry(name: &str) -> Carry {
    match name {
        maps::OWNERS => Carry::Owners,
        maps::LL_ADDRS | maps::LL_PORTS => Carry::Learned,
        maps::DROPS | maps::STATS | maps::VIP_STATS => Carry::Counters,
        maps::EVENTS | maps::REJECTS | maps::SEGMENT | maps::ABI => Carry::Nothing,
        _ => Carry::Entries,
    }
}

/// A pinned map set aside, and the one of the new shape it goes into.
struct Moved {
    name: &'static str,
    carry: Carry,
    old: MapFd,
    old_shape: Shape,
    new_shape: Shape,
    aside: PathBuf,
    path: PathBuf,
}

impl Moved {
    fn new_map(&self) -> Result<MapFd, MigrateError> {
        MapFd::open(&self.path).map_err(io_err(&self.path))
    }

    /// Keys present in the old map that fit the new one.
    fn keys(&self) -> Result<Vec<Vec<u8>>, MigrateError> {
        if self.old_shape.is_array() {
            let n = self.old_shape.max_entries.min(self.new_shape.max_entries);
            Ok((0..n).map(|i| i.to_ne_bytes().to_vec()).collect())
        } else {
            self.old
                .keys(self.old_shape.key_size as usize)
                .map_err(io_err(&self.aside))
        }
    }

    fn flags(&self) -> u64 {
        if self.carry == Carry::Owners {
            F_LOCK
        } else {
            0
        }
    }

    /// The old value at `key`, converted to the new shape.
    fn old_value(&self, key: &[u8], cpus: usize) -> Result<Option<Vec<u8>>, MigrateError> {
        let mut old = self.old_shape.buffer(cpus);
        if !self
            .old
            .lookup(key, &mut old, self.flags())
            .map_err(io_err(&self.aside))?
        {
            return Ok(None);
        }
        Ok(Some(convert(&old, &self.old_shape, &self.new_shape, cpus)))
    }

    /// Step 2: every entry of the old map into the new one.
    fn copy(&self, cpus: usize) -> Result<usize, MigrateError> {
        let new = self.new_map()?;
        let mut copied = 0;
        for key in self.keys()? {
            if let Some(value) = self.old_value(&key, cpus)? {
                new.update(&key, &value, self.flags())
                    .map_err(io_err(&self.path))?;
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// Step 4, owners: the records the old programs wrote after the copy.
    fn take_later_owners(&self, cpus: usize) -> Result<usize, MigrateError> {
        let new = self.new_map()?;
        let at = offset_of!(Owner, generation);
        let generation = |v: &[u8]| {
            v.get(at..at + 8)
                .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        };
        let mut taken = 0;
        for key in self.keys()? {
            let Some(old) = self.old_value(&key, cpus)? else {
                continue;
            };
            let mut now = self.new_shape.buffer(cpus);
            let found = new
                .lookup(&key, &mut now, F_LOCK)
                .map_err(io_err(&self.path))?;
            if !found || generation(&old) > generation(&now) {
                new.update(&key, &old, F_LOCK).map_err(io_err(&self.path))?;
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Step 4, learned entries: the ones the old programs learned after
    /// the copy, where the new programs learned nothing of that key.
    fn take_later_learned(&self, cpus: usize) -> Result<usize, MigrateError> {
        let new = self.new_map()?;
        let mut taken = 0;
        for key in self.keys()? {
            let Some(old) = self.old_value(&key, cpus)? else {
                continue;
            };
            match new.update(&key, &old, BPF_NOEXIST) {
                Ok(()) => taken += 1,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&self.path)(e)),
            }
        }
        Ok(taken)
    }

    /// Step 4, counters: the old counts added to the new ones.
    fn add_counters(&self, cpus: usize) -> Result<(), MigrateError> {
        let new = self.new_map()?;
        for key in self.keys()? {
            let Some(old) = self.old_value(&key, cpus)? else {
                continue;
            };
            let mut now = self.new_shape.buffer(cpus);
            new.lookup(&key, &mut now, 0).map_err(io_err(&self.path))?;
            for (n, o) in now.chunks_exact_mut(8).zip(old.chunks_exact(8)) {
                let sum = u64::from_ne_bytes((&*n).try_into().expect("8 bytes"))
                    .wrapping_add(u64::from_ne_bytes(o.try_into().expect("8 bytes")));
                n.copy_from_slice(&sum.to_ne_bytes());
            }
            new.update(&key, &now, 0).map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

/// A value (for each CPU, in a per-CPU map) cut or zero-extended from the
/// old value size to the new one.
fn convert(old: &[u8], from: &Shape, to: &Shape, cpus: usize) -> Vec<u8> {
    let chunks = if from.per_cpu() { cpus } else { 1 };
    let keep = from.value_size.min(to.value_size) as usize;
    let mut new = to.buffer(cpus);
    for c in 0..chunks {
        let (o, n) = (c * from.stride(), c * to.stride());
        new[n..n + keep].copy_from_slice(&old[o..o + keep]);
    }
    new
}

/// Why a pinned map of shape `old` cannot become one of shape `new`, if it
/// cannot: another kind of map or key, or entries the new size cannot hold.
fn refusal(old: &Shape, new: &Shape, count_beyond: impl FnOnce() -> usize) -> Option<String> {
    if old.map_type != new.map_type {
        return Some(format!(
            "it is a {} map, this datapath's is a {} map",
            old.kind(),
            new.kind()
        ));
    }
    if old.key_size != new.key_size {
        return Some(format!(
            "its keys are {} bytes, this datapath's {}",
            old.key_size, new.key_size
        ));
    }
    if old.max_entries > new.max_entries {
        let lost = count_beyond();
        if lost > 0 {
            return Some(format!(
                "it holds {lost} entr(ies) beyond the {} this datapath's has room for \
                 (for the VIP maps: a --max-vips below what this host holds)",
                new.max_entries
            ));
        }
    }
    None
}

/// The ABI version of the pins under `pin_dir`: `None` for a pin dir with
/// no maps, 1 for pins from before the version was recorded.
pub fn pinned_abi(pin_dir: &Path) -> Option<u32> {
    let path = pin_dir.join(maps::ABI);
    if let Ok(map) = MapFd::open(&path) {
        let mut v = [0u8; 4];
        if map.lookup(&0u32.to_ne_bytes(), &mut v, 0).unwrap_or(false) && v != [0; 4] {
            return Some(u32::from_ne_bytes(v));
        }
    }
    maps::ALL
        .iter()
        .any(|n| pin_dir.join(n).exists() || aside(pin_dir, n).exists())
        .then_some(1)
}

/// A migration in progress (nothing to do when no map changes shape).
pub struct Migration {
    pin_dir: PathBuf,
    from: Option<u32>,
    moved: Vec<Moved>,
    cpus: usize,
}

impl Migration {
    /// Step 1: finds the pinned maps whose shape is not this datapath's,
    /// checks that each can be carried over, then sets them aside. Maps an
    /// interrupted migration set aside are taken up again.
    pub fn prepare(pin_dir: &Path, cpus: usize, max_vips: u32) -> Result<Self, MigrateError> {
        let from = pinned_abi(pin_dir);
        let mut found = Vec::new();
        for spec in map_specs(max_vips) {
            let path = pin_dir.join(spec.name);
            let aside = aside(pin_dir, spec.name);
            let new_shape = spec.shape;
            let (source, resumed) = if aside.exists() {
                (aside.clone(), true)
            } else if path.exists() {
                (path.clone(), false)
            } else {
                continue;
            };
            let info = MapInfo::from_pin(&source).map_err(|e| MigrateError::Io {
                path: source.clone(),
                source: io::Error::other(e),
            })?;
            let old_shape = Shape::of(&info);
            if !resumed && old_shape == new_shape {
                continue;
            }
            let moved = Moved {
                name: spec.name,
                carry: carry(spec.name),
                old: MapFd::open(&source).map_err(io_err(&source))?,
                old_shape,
                new_shape,
                aside,
                path,
            };
            // What is not carried over may change in any way.
            if moved.carry != Carry::Nothing {
                let beyond = || count_beyond(&moved, cpus);
                if let Some(why) = refusal(&old_shape, &new_shape, beyond) {
                    return Err(MigrateError::Incompatible { path: source, why });
                }
            }
            found.push((moved, resumed));
        }
        // Every map can be carried over: only now is anything changed.
        if found.iter().any(|(_, resumed)| !resumed) {
            let dir = pin_dir.join(ASIDE_DIR);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let mut moved = Vec::new();
        for (m, resumed) in found {
            if resumed {
                // A new map the interrupted migration may have pinned, of
                // this shape or not: made again from the old one.
                if m.path.exists() {
                    std::fs::remove_file(&m.path).map_err(io_err(&m.path))?;
                }
            } else {
                std::fs::rename(&m.path, &m.aside).map_err(io_err(&m.path))?;
            }
            info!(
                "{}: {} -> {}: set aside as {} to be carried over",
                m.name,
                m.old_shape,
                m.new_shape,
                m.aside.display()
            );
            moved.push(m);
        }
        match from {
            Some(v) if v > ABI_VERSION => warn!(
                "the pins under {} are of datapath ABI {v}, newer than this agent's \
                 {ABI_VERSION}: rolling back (what the newer version added to its maps is dropped)",
                pin_dir.display()
            ),
            Some(v) if v != ABI_VERSION || !moved.is_empty() => info!(
                "the pins under {} are of datapath ABI {v}: upgrading them to {ABI_VERSION} \
                 ({} map(s) change shape)",
                pin_dir.display(),
                moved.len()
            ),
            _ => {}
        }
        Ok(Self {
            pin_dir: pin_dir.to_owned(),
            from,
            moved,
            cpus,
        })
    }

    /// Step 2, once the object is loaded (the new maps pinned): copies the
    /// entries the agent wrote, and the owners, into the new maps.
    pub fn carry(&self) -> Result<(), MigrateError> {
        for m in &self.moved {
            if matches!(m.carry, Carry::Entries | Carry::Owners | Carry::Learned) {
                let n = m.copy(self.cpus)?;
                info!("{}: carried {n} entr(ies) over", m.name);
            }
        }
        Ok(())
    }

    /// Step 4, once the programs are swapped: owners learned meanwhile,
    /// the counters, then the old maps unpinned and the version recorded.
    pub fn finish(self) -> Result<(), MigrateError> {
        for m in &self.moved {
            match m.carry {
                Carry::Owners => {
                    let n = m.take_later_owners(self.cpus)?;
                    if n > 0 {
                        info!(
                            "{}: {n} owner(s) learned during the swap carried over",
                            m.name
                        );
                    }
                }
                Carry::Learned => {
                    let n = m.take_later_learned(self.cpus)?;
                    if n > 0 {
                        info!(
                            "{}: {n} entr(ies) learned during the swap carried over",
                            m.name
                        );
                    }
                }
                Carry::Counters => m.add_counters(self.cpus)?,
                Carry::Entries | Carry::Nothing => {}
            }
        }
        for m in &self.moved {
            std::fs::remove_file(&m.aside).map_err(io_err(&m.aside))?;
        }
        if !self.moved.is_empty() {
            let dir = self.pin_dir.join(ASIDE_DIR);
            std::fs::remove_dir(&dir).map_err(io_err(&dir))?;
        }
        let path = self.pin_dir.join(maps::ABI);
        MapFd::open(&path)
            .and_then(|abi| abi.update(&0u32.to_ne_bytes(), &ABI_VERSION.to_ne_bytes(), 0))
            .map_err(io_err(&path))?;
        if let Some(from) = self
            .from
            .filter(|v| *v != ABI_VERSION || !self.moved.is_empty())
        {
            info!(
                "datapath ABI {from} -> {ABI_VERSION}: {} map(s) migrated, their owners and \
                 counters kept",
                self.moved.len()
            );
        }
        Ok(())
    }
}

/// How many entries of `m`'s old map lie beyond its new size.
fn count_beyond(m: &Moved, cpus: usize) -> usize {
    let (old, new) = (&m.old_shape, &m.new_shape);
    if old.is_array() {
        (new.max_entries..old.max_entries)
            .filter(|i| {
                let mut v = old.buffer(cpus);
                m.old
                    .lookup(&i.to_ne_bytes(), &mut v, m.flags())
                    .unwrap_or(false)
                    && v.iter().any(|b| *b != 0)
            })
            .count()
    } else {
        let n = m.old.keys(old.key_size as usize).map_or(0, |k| k.len());
        n.saturating_sub(new.max_entries as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use aya::maps::MapType;

    use super::*;

    fn shape(map_type: MapType, value_size: u32, max_entries: u32) -> Shape {
        Shape {
            map_type: Some(map_type),
            key_size: 4,
            value_size,
            max_entries,
        }
    }

    #[test]
    fn values_are_cut_or_zero_extended_per_cpu() {
        let (from, to) = (
            shape(MapType::PerCpuArray, 12, 4),
            shape(MapType::PerCpuArray, 20, 4),
        );
        // Two CPUs, each value 12 bytes padded to 16.
        let old: Vec<u8> = (1..=32).collect();
        let new = convert(&old, &from, &to, 2);
        assert_eq!(new.len(), 48);
        assert_eq!(&new[..12], &old[..12]);
        assert_eq!(&new[12..24], &[0; 12]);
        assert_eq!(&new[24..36], &old[16..28]);
        // And back: the appended bytes are dropped.
        let back = convert(&new, &to, &from, 2);
        assert_eq!(&back[..12], &old[..12]);
        assert_eq!(&back[16..28], &old[16..28]);
        let (a, b) = (shape(MapType::Array, 8, 4), shape(MapType::Array, 4, 4));
        assert_eq!(
            convert(&[1, 2, 3, 4, 5, 6, 7, 8], &a, &b, 2),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn an_owner_of_abi_2_is_kept_with_no_claim_pending() {
        // ABI 2's record is the first 56 bytes of this one's.
        let o = Owner {
            vip_id: 7,
            port_id: 12,
            ifindex: 5,
            mac: [2, 0, 0, 0, 0, 0x12],
            generation: 3,
            since_ns: 10,
            last_claim_ns: 20,
            ..Owner::default()
        }
        .sealed();
        // SAFETY: the bytes of a Pod value.
        let bytes = unsafe {
            std::slice::from_raw_parts((&o as *const Owner).cast::<u8>(), size_of::<Owner>())
        };
        let new_size = size_of::<Owner>() as u32;
        let carried = convert(
            &bytes[..56],
            &shape(MapType::Array, 56, 4),
            &shape(MapType::Array, new_size, 4),
            2,
        );
        // SAFETY: `carried` holds one whole `Owner`; the read is unaligned.
        let back = unsafe { std::ptr::read_unaligned(carried.as_ptr().cast::<Owner>()) };
        assert_eq!(back, o);
        assert!(back.is_whole());
        assert_eq!((back.pending, back.rival_port_id), (0, 0));
    }

    #[test]
    fn only_a_map_of_the_same_kind_and_key_that_fits_is_carried_over() {
        let array = |max| shape(MapType::Array, 8, max);
        let cases: [(Shape, Shape, usize, Option<&str>); 6] = [
            (array(4), array(8), 0, None),
            (array(8), array(4), 0, None),
            (array(8), array(4), 3, Some("3 entr(ies) beyond the 4")),
            (array(4), shape(MapType::Hash, 8, 4), 0, Some("Array map")),
            (
                array(4),
                Shape {
                    key_size: 8,
                    ..array(4)
                },
                0,
                Some("keys are 4 bytes"),
            ),
            (
                shape(MapType::Array, 8, 4),
                shape(MapType::Array, 64, 4),
                0,
                None,
            ),
        ];
        for (old, new, beyond, want) in cases {
            let got = refusal(&old, &new, || beyond);
            match want {
                None => assert_eq!(got, None, "{old:?} -> {new:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{old:?} -> {new:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn every_map_has_a_rule_and_the_agent_written_ones_are_copied() {
        for spec in map_specs(maps::DEFAULT_MAX_VIPS) {
            let c = carry(spec.name);
            match spec.name {
                maps::PORTS
                | maps::ADDRS
                | maps::VIPS
                | maps::VIP_FILTER
                | maps::IF_PORT
                | maps::IF_PORT_HI
                | maps::REDIRECT
                | maps::VMACS => assert_eq!(c, Carry::Entries),
                maps::LL_ADDRS | maps::LL_PORTS => assert_eq!(c, Carry::Learned),
                _ => assert_ne!(c, Carry::Entries, "{}", spec.name),
            }
        }
    }
}
