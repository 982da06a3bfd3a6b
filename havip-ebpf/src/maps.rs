//! Every map of the datapath, declared in one place.
//!
//! All maps are BTF-defined, so `bpftool map dump pinned
//! /sys/fs/bpf/havip/<name>` prints field names. The agent pins them by the
//! names in `havip_common::maps`, which these must match.

use aya_ebpf::{
    btf_maps::{DevMapHash, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    macros::btf_map,
};
use havip_common::{
    counters::{DROP_REASONS, STATS},
    maps::{EVENTS_BYTES, MAX_ADDRS, MAX_PORTS, MAX_VIPS},
    Event, NetworkAddr, Owner, Port, Vip, VipCounters,
};

/// ifindex -> the VM port behind that interface.
#[btf_map(name = "havip_ports")]
pub static PORTS: HashMap<u32, Port, { MAX_PORTS as usize }> = HashMap::new();

/// A port's fixed address -> its port id.
#[btf_map(name = "havip_addrs")]
pub static ADDRS: HashMap<NetworkAddr, u32, { MAX_ADDRS as usize }> = HashMap::new();

/// A VIP's address -> the VIP and its bound ports.
#[btf_map(name = "havip_vips")]
pub static VIPS: HashMap<NetworkAddr, Vip, { MAX_VIPS as usize }> = HashMap::new();

/// vip id -> current owner, learned here from the claims.
#[btf_map(name = "havip_owners")]
pub static OWNERS: HashMap<u32, Owner, { MAX_VIPS as usize }> = HashMap::new();

/// Owner changes and rejected claims, for the agent's log.
#[btf_map(name = "havip_events")]
pub static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Drops by reason (index: `DropReason`).
#[btf_map(name = "havip_drops")]
pub static DROPS: PerCpuArray<u64, DROP_REASONS> = PerCpuArray::new();

/// Other counters (index: `Stat`).
#[btf_map(name = "havip_stats")]
pub static STATS_MAP: PerCpuArray<u64, STATS> = PerCpuArray::new();

/// vip id -> that VIP's counters.
#[btf_map(name = "havip_vipstats")]
pub static VIP_STATS: PerCpuHashMap<u32, VipCounters, { MAX_VIPS as usize }> = PerCpuHashMap::new();

/// ifindex -> ifindex of the local ports frames for a VIP can be redirected
/// to (the owner's port).
#[btf_map(name = "havip_redirect")]
pub static REDIRECT: DevMapHash<{ MAX_PORTS as usize }> = DevMapHash::new();

/// One word of scratch per CPU, to keep a value the verifier would
/// otherwise track too closely (see `ipv6::icmpv6_offset`). Not pinned: it
/// holds nothing between runs.
#[btf_map(name = "havip_scratch")]
pub static SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();
