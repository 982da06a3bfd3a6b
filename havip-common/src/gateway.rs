//! The EIP gateway: public addresses (EIPs) translated 1:1 to the VIPs
//! they are associated with, at a gateway host between the internet and
//! the VIPs' network.
//!
//! Two XDP programs of the datapath object serve it:
//! - `havip_gw_in`, on the external interface: a packet for an EIP gets
//!   the VIP as destination and goes to the VIP's current owner, on the
//!   internal interface, with the owner's MAC;
//! - `havip_gw_out`, on the internal interface: a packet from a VIP with
//!   an EIP gets the EIP as source and goes out by the route to its
//!   destination; an announcement of a VIP (gratuitous ARP, ARP reply,
//!   unsolicited Neighbor Advertisement) teaches the gateway its owner's
//!   MAC, as the owners the agent writes from etcd do.
//!
//! Keys are `NetworkAddr`s: EIPs in network 0, VIPs in the network the
//! internal interface serves ([`GatewayConf::network`]).

/// What the gateway's programs need to know of the host, written by the
/// agent once its interfaces are known (`havip_gw_conf`, one entry).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayConf {
    /// The internal interface: where translated inbound packets go.
    pub internal_ifindex: u32,
    /// Its MAC, the source of what the gateway sends there.
    pub internal_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The network id of the VIPs behind the internal interface.
    pub network: u32,
    /// The external interface (where `havip_gw_in` runs).
    pub external_ifindex: u32,
}

/// The owner of a VIP as the gateway knows it (`havip_gw_owners`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayOwner {
    /// The MAC inbound packets for the VIP are sent to.
    pub mac: [u8; 6],
    /// How it was learned: one of the `LEARNED_*` values.
    pub learned: u8,
    pub _pad: u8,
}

/// [`GatewayOwner::learned`]: written by the agent (from etcd or its
/// config).
pub const LEARNED_FROM_AGENT: u8 = 1;
/// [`GatewayOwner::learned`]: from a gratuitous ARP or an ARP reply seen on
/// the internal interface.
pub const LEARNED_FROM_ARP: u8 = 2;
/// [`GatewayOwner::learned`]: from an unsolicited Neighbor Advertisement.
pub const LEARNED_FROM_NA: u8 = 3;

/// The gateway's counters, the index into `havip_gw_stats` (per CPU).
/// Codes are stable, as for [`crate::DropReason`]; the drops have
/// reasons of their own, apart from the ports' (a gateway has no ports).
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GatewayCounter {
    /// Packets for an EIP translated and sent to the VIP's owner.
    TranslatedIn = 0,
    /// Packets from a VIP translated to its EIP and sent out.
    TranslatedOut = 1,
    /// Translated packets handed to the kernel to route (no neighbour yet
    /// for the next hop, or larger than the interface's MTU).
    ToKernel = 2,
    /// Owner changes learned from announcements on the internal side.
    OwnersLearned = 3,
    /// Drop: a packet for an EIP whose VIP has no known owner yet.
    NoOwner = 4,
    /// Drop: a packet from the internal side with an EIP as its source (a
    /// VM may never send from an EIP: only the gateway does).
    EipSpoofed = 5,
    /// Drop: a packet for or from an EIP cut short of its headers.
    Truncated = 6,
    /// Drop: a packet for or from an EIP whose headers are invalid.
    Malformed = 7,
    /// Packets for or from an EIP whose TTL or hop limit ran out: left to
    /// the kernel untranslated (it answers with Time Exceeded).
    TtlExceeded = 8,
}

/// Number of [`GatewayCounter`]s.
pub const GATEWAY_COUNTERS: usize = 9;
/// Slots of `havip_gw_stats`: room for counters to come.
pub const GATEWAY_COUNTER_SLOTS: usize = 32;
const _: () = assert!(GATEWAY_COUNTERS <= GATEWAY_COUNTER_SLOTS);

impl GatewayCounter {
    /// Every counter, in code order.
    pub const ALL: [GatewayCounter; GATEWAY_COUNTERS] = [
        Self::TranslatedIn,
        Self::TranslatedOut,
        Self::ToKernel,
        Self::OwnersLearned,
        Self::NoOwner,
        Self::EipSpoofed,
        Self::Truncated,
        Self::Malformed,
        Self::TtlExceeded,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TranslatedIn => "translated_in",
            Self::TranslatedOut => "translated_out",
            Self::ToKernel => "to_kernel",
            Self::OwnersLearned => "owners_learned",
            Self::NoOwner => "no_owner",
            Self::EipSpoofed => "eip_spoofed",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::TtlExceeded => "ttl_exceeded",
        }
    }

    /// Whether the counter counts dropped packets.
    pub fn is_drop(self) -> bool {
        matches!(
            self,
            Self::NoOwner | Self::EipSpoofed | Self::Truncated | Self::Malformed
        )
    }
}

/// The network id of EIP keys.
pub const EIP_NETWORK: u32 = 0;
