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
    gateway::{GatewayConf, GatewayOwner, GATEWAY_COUNTER_SLOTS},
    maps::{
        DEFAULT_MAX_EIPS, DEFAULT_MAX_VIPS, EVENTS_BYTES, IFINDEX_DIRECT, MAX_ADDRS,
        MAX_LEARNED_LINK_LOCALS, MAX_PORTS, MAX_VMACS, REJECTS_BYTES, SEGMENT_BUF,
    },
    vip::HINT_BUCKETS,
    Event, NetworkAddr, Owner, Port, Vip, VipCounters, VipHint, VirtualMac,
};

/// 1 when the XDP program runs in the driver (native mode): a frame it
/// redirects leaves its socket buffer, and the offload metadata with it,
/// behind, so the datapath completes the checksums the VM left to the
/// offload (`checksum.rs`). 0 in generic mode, where a redirected frame
/// keeps its metadata. Set by the agent at load time (read-only data: the
/// verifier treats it as a constant).
#[unsafe(no_mangle)]
static COMPLETE_CHECKSUMS: u32 = 0;

/// Whether this instance completes checksums before a redirect (a
/// constant to the verifier, which prunes the other branch).
#[inline(always)]
pub fn completes_checksums() -> bool {
    // SAFETY: a plain read of a constant the loader wrote.
    unsafe { core::ptr::read_volatile(&COMPLETE_CHECKSUMS) != 0 }
}

/// The port on the interface `ifindex`, if the agent has put one there.
/// One program serves every port: it finds its port by the interface it
/// runs on, through two inlined array lookups (a hash lookup for the rare
/// ifindex past `IFINDEX_DIRECT`). The entry must name the interface too,
/// so an index left behind by a port that is gone finds nothing.
#[inline(always)]
pub fn port_on(ifindex: u32) -> Option<&'static Port> {
    let slot = if ifindex < IFINDEX_DIRECT {
        IF_PORT.get(ifindex)
    } else {
        // SAFETY: the agent writes a slot whole (a u32); we copy it out.
        unsafe { IF_PORT_HI.get(&ifindex) }
    }?;
    PORTS
        .get(*slot)
        .filter(|p| p.port_id != 0 && p.ifindex == ifindex)
}

/// Port slot -> a VM port on this host.
#[btf_map(name = "havip_ports")]
pub static PORTS: Array<Port, { MAX_PORTS as usize }> = Array::new();

/// ifindex (below `IFINDEX_DIRECT`) -> the slot of the port on that
/// interface in `PORTS`.
#[btf_map(name = "havip_ifport")]
pub static IF_PORT: Array<u32, { IFINDEX_DIRECT as usize }> = Array::new();

/// ifindex (from `IFINDEX_DIRECT` on) -> the slot of its port in `PORTS`.
#[btf_map(name = "havip_ifport_hi")]
pub static IF_PORT_HI: HashMap<u32, u32, { MAX_PORTS as usize }> = HashMap::new();

/// A port's fixed address -> its port id.
#[btf_map(name = "havip_addrs")]
pub static ADDRS: HashMap<NetworkAddr, u32, { MAX_ADDRS as usize }> = HashMap::new();

/// An IPv6 link-local a port used first -> that port's id: learned here,
/// inserted only if absent, so the first port holds it (`link_local.rs`).
#[btf_map(name = "havip_lladdrs")]
pub static LL_ADDRS: HashMap<NetworkAddr, u32, { MAX_LEARNED_LINK_LOCALS as usize }> =
    HashMap::new();

/// Port id -> the one link-local it learned (taken first: a port learns at
/// most one).
#[btf_map(name = "havip_llports")]
pub static LL_PORTS: HashMap<u32, NetworkAddr, { MAX_LEARNED_LINK_LOCALS as usize }> =
    HashMap::new();

/// A VIP's address -> the VIP and its bound ports.
#[btf_map(name = "havip_vips")]
pub static VIPS: HashMap<NetworkAddr, Vip, { DEFAULT_MAX_VIPS as usize }> = HashMap::new();

/// VIP slot -> current owner, learned here from the claims.
#[btf_map(name = "havip_owners")]
pub static OWNERS: Array<Owner, { DEFAULT_MAX_VIPS as usize }> = Array::new();

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
pub static VIP_STATS: PerCpuArray<VipCounters, { DEFAULT_MAX_VIPS as usize }> = PerCpuArray::new();

/// A port and a VRRP virtual MAC it may send from (VRID 0: any of that
/// family) -> 1.
#[btf_map(name = "havip_vmacs")]
pub static VMACS: HashMap<VirtualMac, u32, { MAX_VMACS as usize }> = HashMap::new();

/// ifindex -> ifindex of the local ports frames for a VIP can be redirected
/// to (the owner's port).
#[btf_map(name = "havip_redirect")]
pub static REDIRECT: DevMapHash<{ MAX_PORTS as usize }> = DevMapHash::new();

/// A TCP/UDP segment being summed (`checksum.rs`), one buffer per CPU,
/// shared by every port's programs.
#[btf_map(name = "havip_segment")]
pub static SEGMENT: PerCpuArray<[u8; SEGMENT_BUF], 1> = PerCpuArray::new();

/// The EIP gateway's configuration (`gateway.rs`; one entry).
#[btf_map(name = "havip_gw_conf")]
pub static GW_CONF: Array<GatewayConf, 1> = Array::new();

/// EIP (network 0) -> the VIP it is associated with.
#[btf_map(name = "havip_gw_eips")]
pub static GW_EIPS: HashMap<NetworkAddr, NetworkAddr, { DEFAULT_MAX_EIPS as usize }> =
    HashMap::new();

/// VIP -> its EIP.
#[btf_map(name = "havip_gw_eip_of")]
pub static GW_EIP_OF: HashMap<NetworkAddr, NetworkAddr, { DEFAULT_MAX_EIPS as usize }> =
    HashMap::new();

/// VIP -> its owner as the gateway knows it (learned there, or written by
/// the agent).
#[btf_map(name = "havip_gw_owners")]
pub static GW_OWNERS: HashMap<NetworkAddr, GatewayOwner, { DEFAULT_MAX_EIPS as usize }> =
    HashMap::new();

/// The gateway's counters (index: `GatewayCounter`).
#[btf_map(name = "havip_gw_stats")]
pub static GW_STATS: PerCpuArray<u64, GATEWAY_COUNTER_SLOTS> = PerCpuArray::new();

/// The ABI version of these maps (written by the agent, read by no
/// program; see `havip_common::maps::ABI`).
#[btf_map(name = "havip_abi")]
pub static ABI: Array<u32, 1> = Array::new();

/// One word of scratch per CPU, to keep a value the verifier would
/// otherwise track too closely (see `ipv6::icmpv6_offset`). Not pinned: it
/// holds nothing between runs.
#[btf_map(name = "havip_scratch")]
pub static SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();
