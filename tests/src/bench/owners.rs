//! A VIP's owner record in one host's pinned `havip_owners`, read (and, to
//! stage a quiet hold-down, aged) from the benchmark's process.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData};
use havip_common::{maps, NetworkAddr, Owner, Vip, BPF_F_LOCK};

/// A pinned hash map of `pin_dir`.
pub fn pinned<V: aya::Pod, K: aya::Pod>(
    pin_dir: &Path,
    name: &str,
) -> Result<BpfHashMap<MapData, K, V>> {
    let data =
        MapData::from_pin(pin_dir.join(name)).with_context(|| format!("open pinned {name}"))?;
    Ok(BpfHashMap::try_from(Map::HashMap(data))?)
}

/// A VIP's record in one host's `havip_owners`: at the slot that host's
/// `havip_vips` entry for the VIP names (each host picks its own slots).
pub struct OwnerRecord {
    owners: Array<MapData, Owner>,
    slot: u32,
    vip_id: u32,
    /// The VIP's hold-down on that host, in ns.
    hold_down_ns: u64,
}

impl OwnerRecord {
    pub fn open(pin_dir: &Path, vip_id: u32) -> Result<Self> {
        let vips: BpfHashMap<MapData, NetworkAddr, Vip> = pinned(pin_dir, maps::VIPS)?;
        let vip = vips
            .iter()
            .filter_map(Result::ok)
            .find(|(_, vip)| vip.vip_id == vip_id)
            .map(|(_, vip)| vip)
            .with_context(|| format!("vip {vip_id} is not in {}", pin_dir.display()))?;
        let data = MapData::from_pin(pin_dir.join(maps::OWNERS))
            .with_context(|| format!("open pinned {}", maps::OWNERS))?;
        Ok(Self {
            owners: Array::try_from(Map::Array(data))?,
            slot: vip.slot,
            vip_id,
            hold_down_ns: u64::from(vip.hold_down_ms) * 1_000_000,
        })
    }

    /// The record, if the slot holds one for the VIP.
    pub fn get(&self) -> Option<Owner> {
        self.owners
            .get(&self.slot, BPF_F_LOCK)
            .ok()
            .filter(|o| o.vip_id == self.vip_id)
    }

    /// Ages the record as if its owner had held the VIP, alone, for a
    /// whole hold-down: the next claim by another port is a failover, not
    /// a split brain the hold-down defers. A benchmark that switches the
    /// owner every few milliseconds stages what a real failover finds.
    pub fn quiet(&mut self) -> Result<()> {
        let Some(mut o) = self.get() else {
            return Ok(());
        };
        let aged = super::wire::mono_ns().saturating_sub(self.hold_down_ns + 1_000_000);
        o.since_ns = o.since_ns.min(aged);
        o.last_claim_ns = o.last_claim_ns.min(aged);
        o.rival_claim_ns = o.rival_claim_ns.min(aged);
        o.pending = 0;
        self.owners
            .set(self.slot, o, BPF_F_LOCK)
            .with_context(|| format!("age the owner of vip {}", self.vip_id))
    }
}
