//! Every map of the datapath, declared in one place.
//!
//! All maps are BTF-defined, so `bpftool map dump pinned
//! /sys/fs/bpf/havip/<name>` prints field names. The agent pins them by the
//! names in `havip_common::maps`, which these must match.

use aya_ebpf::{
    btf_maps::{Array, DevMapHash, HashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use havip_common::{
    counters::{DROP_SLOTS, STAT_SLOTS},
    maps::{EVENTS_BYTES, MAX_ADDRS, MAX_PORTS, MAX_VIPS, REJECTS_BYTES, SEGMENT_BUF},
    vip::HINT_BUCKETS,
    Event, NetworkAddr, Owner, Port, Vip, VipCounters, VipHint,
};

/// The slot of the port these programs were loaded for, in `PORTS`. Set by
/// the agent at load time (read-only data: the verifier treats it as a
/// constant, so the port's lookup is an inlined array access).
#[unsafe(no_mangle)]
static PORT_SLOT: u32 = 0;

/// 1 when the XDP program runs in the driver (native mode): a frame it
/// redirects leaves its socket buffer, and the offload metadata with it,
/// behind, so the datapath completes the checksums the VM left to the
/// offload (`checksum.rs`). 0 in generic mode, where a redirected frame
/// keeps its metadata. Set by the agent at load time, like `PORT_SLOT`.
#[unsafe(no_mangle)]
static COMPLETE_CHECKSUMS: u32 = 0;

/// Whether this instance completes checksums before a redirect (a
/// constant to the verifier, which prunes the other branch).
#[inline(always)]
pub fn completes_checksums() -> bool {
    // SAFETY: a plain read of a constant the loader wrote.
    unsafe { core::ptr::read_volatile(&COMPLETE_CHECKSUMS) != 0 }
}

/// The port these programs serve, if its slot holds one.
#[inline(always)]
pub fn this_port() -> Option<&'static Port> {
    // SAFETY: a plain read of a constant the loader wrote.
    let slot = unsafe { core::ptr::read_volatile(&PORT_SLOT) };
    PORTS.get(slot).filter(|p| p.port_id != 0)
}

/// Port slot -> the VM port the programs loaded with that slot serve.
#[btf_map(name = "havip_ports")]
pub static PORTS: Array<Port, { MAX_PORTS as usize }> = Array::new();

/// A port's fixed address -> its port id.
#[btf_map(name = "havip_addrs")]
pub static ADDRS: HashMap<NetworkAddr, u32, { MAX_ADDRS as usize }> = HashMap::new();

/// A VIP's address -> the VIP and its bound ports.
#[btf_map(name = "havip_vips")]
pub static VIPS: HashMap<NetworkAddr, Vip, { MAX_VIPS as usize }> = HashMap::new();

/// VIP slot -> current owner, learned here from the claims.
#[btf_map(name = "havip_owners")]
pub static OWNERS: Array<Owner, { MAX_VIPS as usize }> = Array::new();

/// Bucket of a VIP address -> what is there: nothing, one VIP (its address
/// and slot), or several (see `havip_common::VipHint`).
#[btf_map(name = "havip_vip_filter")]
pub static VIP_FILTER: Array<VipHint, { HINT_BUCKETS as usize }> = Array::new();

/// Owner changes, for the agent to report (and log). Nothing else goes
/// here: a flood of rejected claims cannot crowd a failover out.
#[btf_map(name = "havip_events")]
pub static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Rejected claims, for the agent's log.
#[btf_map(name = "havip_rejects")]
pub static REJECTS: RingBuf<Event, { REJECTS_BYTES as usize }> = RingBuf::new();

/// Drops by reason (index: `DropReason`).
#[btf_map(name = "havip_drops")]
pub static DROPS: PerCpuArray<u64, DROP_SLOTS> = PerCpuArray::new();

/// Other counters (index: `Stat`).
#[btf_map(name = "havip_stats")]
pub static STATS_MAP: PerCpuArray<u64, STAT_SLOTS> = PerCpuArray::new();

/// VIP slot -> that VIP's counters.
#[btf_map(name = "havip_vipstats")]
pub static VIP_STATS: PerCpuArray<VipCounters, { MAX_VIPS as usize }> = PerCpuArray::new();

/// ifindex -> ifindex of the local ports frames for a VIP can be redirected
/// to (the owner's port).
#[btf_map(name = "havip_redirect")]
pub static REDIRECT: DevMapHash<{ MAX_PORTS as usize }> = DevMapHash::new();

/// A TCP/UDP segment being summed (`checksum.rs`), one buffer per CPU,
/// shared by every port's programs.
#[btf_map(name = "havip_segment")]
pub static SEGMENT: PerCpuArray<[u8; SEGMENT_BUF], 1> = PerCpuArray::new();

/// One word of scratch per CPU, to keep a value the verifier would
/// otherwise track too closely (see `ipv6::icmpv6_offset`). Not pinned: it
/// holds nothing between runs.
#[btf_map(name = "havip_scratch")]
pub static SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();
