//! Drop reasons and counters. Every drop in the datapath names one of these
//! reasons and increments its per-CPU counter (and the VIP's, when the drop
//! concerns a VIP).

/// Why the datapath dropped a frame. The value is the index into the
/// `havip_drops` per-CPU array and into [`VipCounters::drops`]. Codes are
/// stable: a code is never reused, and a new reason takes the next one,
/// within the room the maps keep ([`DROP_SLOTS`], [`VIP_DROP_SLOTS`]), so
/// that adding a reason changes no pinned map's shape.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Frame ends inside a header the policy must read.
    Truncated = 0,
    /// A header is inconsistent (bad IHL, IP version, ARP sizes, option length).
    Malformed = 1,
    /// More VLAN tags or IPv6 extension headers than the datapath walks.
    HeaderChainTooLong = 2,
    /// Source MAC is not the port's MAC (port security).
    MacSpoof = 3,
    /// Source IP is not one of the port's addresses (port security).
    IpSpoof = 4,
    /// ARP sender MAC or IP is not the port's own (port security).
    ArpSpoof = 5,
    /// NA target or link-layer option is not the port's own (port security).
    NdSpoof = 6,
    /// ARP/NA/NS claiming a VIP from a port that is not bound to it.
    ClaimNotBound = 7,
    /// IP packet sourced from a VIP, sent by a port not bound to it.
    VipSourceNotBound = 8,
    /// A frame for a VIP on its way to a port that is not the VIP's owner
    /// and could not be sent to the owner (a flooded copy, or the port is
    /// not bound to the VIP).
    NotOwner = 9,
}

/// Number of [`DropReason`]s.
pub const DROP_REASONS: usize = 10;
/// The size of `havip_drops`: room for reasons to come.
pub const DROP_SLOTS: usize = 64;
/// The size of [`VipCounters::drops`]: room for VIP reasons to come.
pub const VIP_DROP_SLOTS: usize = 16;
/// The size of `havip_stats`: room for counters to come.
pub const STAT_SLOTS: usize = 64;
const _: () = assert!(DROP_REASONS <= DROP_SLOTS && DROP_REASONS <= VIP_DROP_SLOTS);
const _: () = assert!(STATS <= STAT_SLOTS);

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS] = [
        Self::Truncated,
        Self::Malformed,
        Self::HeaderChainTooLong,
        Self::MacSpoof,
        Self::IpSpoof,
        Self::ArpSpoof,
        Self::NdSpoof,
        Self::ClaimNotBound,
        Self::VipSourceNotBound,
        Self::NotOwner,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    /// Stable snake_case name, as printed by `havip-agent status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::HeaderChainTooLong => "header_chain_too_long",
            Self::MacSpoof => "mac_spoof",
            Self::IpSpoof => "ip_spoof",
            Self::ArpSpoof => "arp_spoof",
            Self::NdSpoof => "nd_spoof",
            Self::ClaimNotBound => "claim_not_bound",
            Self::VipSourceNotBound => "vip_source_not_bound",
            Self::NotOwner => "not_owner",
        }
    }
}

/// Non-drop counters, the index into the `havip_stats` per-CPU array.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Frames the policy let through.
    Passed = 0,
    /// Frames whose programs found no port in their slot (passed
    /// untouched): only while the agent attaches or detaches a port.
    UnknownPort = 1,
    /// Claims accepted from a bound port.
    ClaimsAccepted = 2,
    /// Owner changes learned.
    OwnerChanges = 3,
    /// Owner changes the datapath could not report because `havip_events`
    /// was full (the agent still finds them in `havip_owners`).
    EventsLost = 4,
    /// ARP requests for a VIP answered by the datapath.
    ArpAnswered = 5,
    /// Neighbor Solicitations for a VIP answered by the datapath.
    NdAnswered = 6,
    /// Frames for a VIP redirected straight to the owner's port.
    DeliveredToOwner = 7,
    /// Frames for a VIP sent on with the owner's MAC (owner not on this host).
    OwnerMacRewritten = 8,
    /// Frames for a VIP caught on the way out of a non-owner port and sent
    /// to the owner instead.
    EgressRedirected = 9,
    /// Frames for a local owner whose TCP/UDP checksum the datapath
    /// completed before redirecting them (native XDP: the VM had left it to
    /// the offload, which a redirect does not keep).
    ChecksumsCompleted = 10,
    /// Frames for a local owner left to the bridge, with the owner's MAC,
    /// because their checksum could not be completed here (segmentation
    /// offload frames larger than the port's MTU, segments over 4 KiB, IPv6
    /// with extension headers): the bridge keeps their offload metadata.
    OffloadViaBridge = 11,
    /// Rejected claims not reported because `havip_rejects` was full (a
    /// flood: the drops are counted all the same).
    RejectsLost = 12,
    /// Claims by a bound port deferred because another port's claim moved
    /// the VIP within its hold-down (split brain): applied when the
    /// hold-down ends if no later claim replaces them.
    ClaimsDeferred = 13,
}

/// Number of [`Stat`]s. Codes are stable, as for [`DropReason`].
pub const STATS: usize = 14;

impl Stat {
    pub const ALL: [Stat; STATS] = [
        Self::Passed,
        Self::UnknownPort,
        Self::ClaimsAccepted,
        Self::OwnerChanges,
        Self::EventsLost,
        Self::ArpAnswered,
        Self::NdAnswered,
        Self::DeliveredToOwner,
        Self::OwnerMacRewritten,
        Self::EgressRedirected,
        Self::ChecksumsCompleted,
        Self::OffloadViaBridge,
        Self::RejectsLost,
        Self::ClaimsDeferred,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::UnknownPort => "unknown_port",
            Self::ClaimsAccepted => "claims_accepted",
            Self::OwnerChanges => "owner_changes",
            Self::EventsLost => "events_lost",
            Self::ArpAnswered => "arp_answered",
            Self::NdAnswered => "nd_answered",
            Self::DeliveredToOwner => "delivered_to_owner",
            Self::OwnerMacRewritten => "owner_mac_rewritten",
            Self::EgressRedirected => "egress_redirected",
            Self::ChecksumsCompleted => "checksums_completed",
            Self::OffloadViaBridge => "offload_via_bridge",
            Self::RejectsLost => "rejects_lost",
            Self::ClaimsDeferred => "claims_deferred",
        }
    }
}

/// Per-VIP counters (a per-CPU hash keyed by `vip_id`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct VipCounters {
    pub claims_accepted: u64,
    pub owner_changes: u64,
    /// ARP requests and Neighbor Solicitations answered for this VIP.
    pub answered: u64,
    /// Frames delivered to the owner (redirected or MAC rewritten).
    pub delivered: u64,
    /// Indexed by [`DropReason`] (the rest is room to grow).
    pub drops: [u64; VIP_DROP_SLOTS],
    /// Claims deferred by the VIP's hold-down (see [`Stat::ClaimsDeferred`]).
    pub claims_deferred: u64,
    /// The counter the `next-abi` build appends (an upgrade test's).
    #[cfg(feature = "next-abi")]
    pub next_abi: u64,
}

impl core::ops::AddAssign for VipCounters {
    fn add_assign(&mut self, o: Self) {
        self.claims_accepted += o.claims_accepted;
        self.owner_changes += o.owner_changes;
        self.answered += o.answered;
        self.delivered += o.delivered;
        let mut i = 0;
        while i < VIP_DROP_SLOTS {
            self.drops[i] += o.drops[i];
            i += 1;
        }
        self.claims_deferred += o.claims_deferred;
        #[cfg(feature = "next-abi")]
        {
            self.next_abi += o.next_abi;
        }
    }
}
