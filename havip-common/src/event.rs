//! Events the datapath reports to the agent through the ring buffer.

use crate::NetworkAddr;

#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An accepted claim moved the VIP to a new owner.
    OwnerChanged = 1,
    /// A claim (or a packet sourced from the VIP) came from an unbound port.
    ClaimRejected = 2,
    /// A bound port's claim was deferred by the VIP's hold-down and the
    /// port had not claimed within it before (a split brain begins, or a
    /// new port joins it): the agent watches the VIP until it settles.
    ClaimDeferred = 3,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::OwnerChanged),
            2 => Some(Self::ClaimRejected),
            3 => Some(Self::ClaimDeferred),
            _ => None,
        }
    }
}

/// One ring-buffer record.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// An [`EventKind`].
    pub kind: u32,
    /// A [`crate::DropReason`] for rejections, 0 otherwise.
    pub reason: u32,
    pub vip_id: u32,
    /// The port that sent the claim.
    pub port_id: u32,
    pub ifindex: u32,
    pub _pad: u32,
    /// The MAC that was claimed (or attempted).
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
    /// New generation for `OwnerChanged`, the owner's for `ClaimDeferred`,
    /// 0 otherwise.
    pub generation: u64,
    /// `bpf_ktime_get_ns()` of the claim.
    pub ts_ns: u64,
    /// The VIP.
    pub vip: NetworkAddr,
}
