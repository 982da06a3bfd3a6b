//! The owner table: who currently holds each VIP, learned by the datapath.

/// Owner record of a VIP, at the VIP's slot in `havip_owners`. Written by
/// the datapath on each accepted claim; the agent only clears it
/// (`port_id == 0`) when the owning port is unbound or goes away, keeping
/// the generation.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Owner {
    /// The VIP this record is for: a slot's record counts only for the VIP
    /// that holds the slot now.
    pub vip_id: u32,
    /// Owning port id; 0 means the VIP has no owner.
    pub port_id: u32,
    /// Ifindex of the owning port's interface on this host; 0 for a port
    /// on another host.
    pub ifindex: u32,
    /// The MAC the owner announced (ARP sender / NA target link-layer).
    pub mac: [u8; 6],
    pub _pad: [u8; 6],
    /// Incremented on every change of owner; never reset.
    pub generation: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when this owner took over.
    pub since_ns: u64,
    /// `bpf_ktime_get_ns()` of the latest accepted claim by this owner.
    pub last_claim_ns: u64,
}

impl Owner {
    #[inline(always)]
    pub fn is_vacant(&self) -> bool {
        self.port_id == 0
    }

    /// Whether this is a record of vip `vip_id` with an owner.
    #[inline(always)]
    pub fn owns(&self, vip_id: u32) -> bool {
        self.vip_id == vip_id && !self.is_vacant()
    }
}
