//! Names, sizes and the pin location of every map. The eBPF side declares
//! the maps (havip-ebpf/src/maps.rs) with these names; the agent opens and
//! pins them by these names.

/// Where the agent pins the maps by default.
pub const PIN_DIR: &str = "/sys/fs/bpf/havip";

/// Port slot (u32, an array index) -> [`crate::Port`].
pub const PORTS: &str = "havip_ports";
/// ifindex (u32, an array index below [`IFINDEX_DIRECT`]) -> the slot (u32)
/// of the port on that interface in [`PORTS`]: how the one program that
/// serves every port finds the port it runs for.
pub const IF_PORT: &str = "havip_ifport";
/// ifindex (u32, from [`IFINDEX_DIRECT`] on) -> its port's slot (u32).
pub const IF_PORT_HI: &str = "havip_ifport_hi";
/// The ifindexes [`IF_PORT`] holds directly; larger ones (a host that has
/// made and removed that many interfaces) are in [`IF_PORT_HI`].
pub const IFINDEX_DIRECT: u32 = 65536;
/// [`crate::NetworkAddr`] -> port id (u32): the ports' fixed addresses.
pub const ADDRS: &str = "havip_addrs";
/// [`crate::NetworkAddr`] (an IPv6 link-local) -> the port id (u32) that
/// used it first and holds it (the datapath learns it, `BPF_NOEXIST`: the
/// first port to use an address holds it until the agent resets it).
pub const LL_ADDRS: &str = "havip_lladdrs";
/// Port id (u32) -> the [`crate::NetworkAddr`] of the one link-local it
/// learned: the datapath takes this entry (`BPF_NOEXIST`) before
/// [`LL_ADDRS`]', so a port holds at most one learned link-local.
pub const LL_PORTS: &str = "havip_llports";
/// [`crate::NetworkAddr`] -> [`crate::Vip`].
pub const VIPS: &str = "havip_vips";
/// VIP slot (u32, an array index; [`crate::Vip::slot`]) ->
/// [`crate::Owner`]; written by the datapath.
pub const OWNERS: &str = "havip_owners";
/// [`crate::vip::hint_bucket`] (an array index) -> [`crate::VipHint`].
pub const VIP_FILTER: &str = "havip_vip_filter";
/// Ring buffer of [`crate::Event`]: owner changes only, so that no flood
/// of rejected claims can crowd out the report of a failover.
pub const EVENTS: &str = "havip_events";
/// Ring buffer of [`crate::Event`]: rejected claims, for the agent's log.
pub const REJECTS: &str = "havip_rejects";
/// Per-CPU array of u64 indexed by [`crate::DropReason`]
/// ([`crate::counters::DROP_SLOTS`] entries).
pub const DROPS: &str = "havip_drops";
/// Per-CPU array of u64 indexed by [`crate::Stat`]
/// ([`crate::counters::STAT_SLOTS`] entries).
pub const STATS: &str = "havip_stats";
/// Per-CPU array, VIP slot -> [`crate::VipCounters`].
pub const VIP_STATS: &str = "havip_vipstats";

/// [`crate::VirtualMac`] -> 1: the VRRP virtual MACs each port may send
/// from (its VIPs' VRIDs; VRID 0 stands for any VRID of that family).
pub const VMACS: &str = "havip_vmacs";
/// Entries of [`VMACS`]: a VRID per bound VIP of every port.
pub const MAX_VMACS: u32 = 8192;

/// ifindex (u32) -> ifindex: the local ports frames for a VIP can be
/// redirected to (a `DEVMAP_HASH`).
pub const REDIRECT: &str = "havip_redirect";

/// Per-CPU array of one [`SEGMENT_BUF`]-byte buffer: where the datapath
/// copies a TCP/UDP segment to sum it (native mode). Pinned so that every
/// port's programs share one buffer per CPU; it holds nothing between
/// frames.
pub const SEGMENT: &str = "havip_segment";
/// The longest TCP/UDP segment whose checksum the datapath completes: more
/// than a native XDP buffer holds (a page, less the headroom and the
/// socket buffer's tail), so every frame outside a socket buffer fits.
pub const MAX_SEGMENT: usize = 4096;
/// The segment buffer: the longest segment and a word of zero padding.
pub const SEGMENT_BUF: usize = MAX_SEGMENT + 4;

/// Every map the agent pins, in one list.
pub const ALL: [&str; 18] = [
    PORTS, IF_PORT, IF_PORT_HI, ADDRS, VIPS, OWNERS, VIP_FILTER, EVENTS, REJECTS, DROPS, STATS,
    VIP_STATS, REDIRECT, SEGMENT, ABI, VMACS, LL_ADDRS, LL_PORTS,
];

/// Array of one u32: the [`ABI_VERSION`] of the datapath whose maps are
/// pinned beside it (written by the agent; no program reads it). Pins
/// without it are version 1's. Its shape never changes.
pub const ABI: &str = "havip_abi";

/// The datapath's ABI: the shapes of its maps and what their entries mean.
/// It goes up with every change to either; an agent that finds the pins of
/// another version moves what they hold into maps of its own shapes
/// (havip-agent's `migrate`), so an upgrade keeps the learned owners and
/// the counters. A change may append fields to a value (zero is what an
/// older version meant) or change a map's size; anything else needs a
/// conversion of its own there.
pub const ABI_VERSION: u32 = if cfg!(feature = "next-abi") { 4 } else { 3 };

/// Name of the global (1 or 0) that tells the programs whether their
/// XDP program runs in the driver (native), where a redirected frame leaves
/// its socket-buffer metadata behind and the datapath completes checksums
/// the VM left to the offload.
pub const COMPLETE_CHECKSUMS: &str = "COMPLETE_CHECKSUMS";

/// Port slots (and redirect targets) on one host.
pub const MAX_PORTS: u32 = 1024;
pub const MAX_ADDRS: u32 = 8192;
/// Learned link-locals on one host: one per port.
pub const MAX_LEARNED_LINK_LOCALS: u32 = MAX_PORTS;
/// VIPs (and VIP slots) one host holds unless its agent is told otherwise
/// (`havip-agent run --max-vips`): the size the object declares
/// [`VIP_SIZED`] with, which the agent sets to its own number at load. The
/// `next-abi` build (an upgrade test's) doubles it.
pub const DEFAULT_MAX_VIPS: u32 = if cfg!(feature = "next-abi") {
    131_072
} else {
    65_536
};
/// The most VIPs `--max-vips` may ask for.
pub const MAX_MAX_VIPS: u32 = 1 << 20;
/// The maps a host sizes by its number of VIPs (`--max-vips`).
pub const VIP_SIZED: [&str; 3] = [VIPS, OWNERS, VIP_STATS];
pub const EVENTS_BYTES: u32 = 256 * 1024;
pub const REJECTS_BYTES: u32 = 64 * 1024;

/// Name of the XDP program in the object file: frames a VM sends.
pub const XDP_PROGRAM: &str = "havip_port_ingress";
/// Name of the TC egress program: frames on their way to a VM.
pub const TC_EGRESS_PROGRAM: &str = "havip_port_egress";

/// The EIP gateway's maps (`crate::gateway`). A hypervisor's agent does not
/// pin them and creates them with one entry each (they are in the object
/// every agent loads); the gateway's agent pins them under its own pin
/// directory and sizes [`GW_EIPS`], [`GW_EIP_OF`] and [`GW_OWNERS`] by its
/// config's `max_eips`.
///
/// Array of one [`crate::gateway::GatewayConf`].
pub const GW_CONF: &str = "havip_gw_conf";
/// EIP ([`crate::NetworkAddr`] in network 0) -> its VIP.
pub const GW_EIPS: &str = "havip_gw_eips";
/// VIP -> its EIP.
pub const GW_EIP_OF: &str = "havip_gw_eip_of";
/// VIP -> [`crate::gateway::GatewayOwner`].
pub const GW_OWNERS: &str = "havip_gw_owners";
/// Per-CPU u64 counters, indexed by [`crate::gateway::GatewayCounter`].
pub const GW_STATS: &str = "havip_gw_stats";
/// The gateway's maps, in one list.
pub const GATEWAY_MAPS: [&str; 5] = [GW_CONF, GW_EIPS, GW_EIP_OF, GW_OWNERS, GW_STATS];
/// The maps a gateway sizes by its EIPs.
pub const GATEWAY_SIZED: [&str; 3] = [GW_EIPS, GW_EIP_OF, GW_OWNERS];
/// Entries of the sized gateway maps in the object (a gateway's agent sets
/// its own number).
pub const DEFAULT_MAX_EIPS: u32 = 4096;
/// The XDP program on a gateway's external interface.
pub const GW_IN_PROGRAM: &str = "havip_gw_in";
/// The XDP program on a gateway's internal interface.
pub const GW_OUT_PROGRAM: &str = "havip_gw_out";
