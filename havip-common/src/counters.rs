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
    /// VRRP (IP protocol 112) from a port bound to no VIP: only the ports
    /// of a HAVIP may take part in its election.
    VrrpNotBound = 10,
    /// VRRP on its way to a port bound to no VIP: only the ports of a
    /// HAVIP hear its election (adverts carry priorities, and PASS
    /// authentication in clear).
    VrrpToUnbound = 11,
    /// A VRRP virtual MAC (00:00:5e:00:01:xx, 00:00:5e:00:02:xx) as source
    /// from a port that may not use it (bound to no VIP of that family, or
    /// not with that VRID).
    VirtualMacNotAllowed = 12,
    /// A tagged frame from a port in a VLAN the port does not allow (or
    /// with a second, stacked VLAN id: QinQ is not a VM's to send).
    VlanNotAllowed = 13,
    /// A Neighbor Solicitation or Advertisement with more options than
    /// the datapath walks (`MAX_ND_OPTIONS`): one it could not check whole.
    NdTooManyOptions = 14,
    /// An IPv6 link-local source another port of the network holds (learned
    /// by it first).
    LinkLocalTaken = 15,
}

/// The options the datapath walks in one Neighbor Solicitation or
/// Advertisement, every one checked; a message with more is dropped
/// ([`DropReason::NdTooManyOptions`]). Real messages carry one or two
/// (SEND's, five).
pub const MAX_ND_OPTIONS: usize = 8;

/// Number of [`DropReason`]s (one more than the highest code).
pub const DROP_REASONS: usize = 16;
/// The size of `havip_drops`: room for reasons to come.
pub const DROP_SLOTS: usize = 64;
/// The size of [`VipCounters::drops`]: room for VIP reasons to come.
pub const VIP_DROP_SLOTS: usize = 16;
/// The size of `havip_stats`: room for counters to come.
pub const STAT_SLOTS: usize = 64;
const _: () = assert!(DROP_REASONS <= DROP_SLOTS && DROP_REASONS <= VIP_DROP_SLOTS);
const _: () = assert!(STATS <= STAT_SLOTS);

impl DropReason {
    /// Every reason, in code order (not indexed by code: codes may have
    /// gaps; use [`DropReason::from_u32`]).
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
        Self::VrrpNotBound,
        Self::VrrpToUnbound,
        Self::VirtualMacNotAllowed,
        Self::VlanNotAllowed,
        Self::NdTooManyOptions,
        Self::LinkLocalTaken,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| *r as u32 == v)
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
            Self::VrrpNotBound => "vrrp_not_bound",
            Self::VrrpToUnbound => "vrrp_to_unbound",
            Self::VirtualMacNotAllowed => "virtual_mac_not_allowed",
            Self::VlanNotAllowed => "vlan_not_allowed",
            Self::NdTooManyOptions => "nd_too_many_options",
            Self::LinkLocalTaken => "link_local_taken",
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
    /// IPv6 link-locals a port used first, learned and held for it
    /// (`havip_lladdrs`).
    LinkLocalsLearned = 14,
}

/// Number of [`Stat`]s. Codes are stable, as for [`DropReason`].
pub const STATS: usize = 15;

impl Stat {
    /// Every counter, in code order (not indexed by code: see
    /// [`DropReason::ALL`]).
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
        Self::LinkLocalsLearned,
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
            Self::LinkLocalsLearned => "link_locals_learned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_order_within_the_slots_and_found_by_code() {
        for w in DropReason::ALL.windows(2) {
            assert!((w[0] as u32) < (w[1] as u32), "{w:?}");
        }
        for w in Stat::ALL.windows(2) {
            assert!((w[0] as u32) < (w[1] as u32), "{w:?}");
        }
        assert_eq!(
            DropReason::ALL.last().map(|r| *r as usize + 1),
            Some(DROP_REASONS)
        );
        assert_eq!(Stat::ALL.last().map(|s| *s as usize + 1), Some(STATS));
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_u32(r as u32), Some(r));
        }
        // No code is missing: each is its index.
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
        assert_eq!(DropReason::from_u32(10), Some(DropReason::VrrpNotBound));
        assert_eq!(DropReason::from_u32(DROP_REASONS as u32), None);
        assert_eq!(DropReason::from_u32(14), Some(DropReason::NdTooManyOptions));
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
