//! The VIP table: which ports may claim a HAVIP.

/// How many ports one VIP entry can hold in the datapath. The operator's
/// limit (default 3, see `DEFAULT_MAX_PORTS_PER_VIP`) may be raised up to this.
pub const MAX_BINDINGS: usize = 16;

/// Default limit on ports bound to one VIP.
pub const DEFAULT_MAX_PORTS_PER_VIP: usize = 3;
/// Default limit on VIPs bound to one port.
pub const DEFAULT_MAX_VIPS_PER_PORT: usize = 5;

/// A HAVIP, keyed by [`crate::NetworkAddr`].
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Vip {
    /// Stable VIP id (the controller's or the config file's), never 0.
    pub vip_id: u32,
    /// Where this host keeps the VIP's owner and counters: its index in
    /// `havip_owners` and `havip_vipstats`, chosen by the agent.
    pub slot: u32,
    /// How many entries of `ports` are valid.
    pub port_count: u32,
    /// Port ids bound to this VIP (the ports allowed to claim it).
    pub ports: [u32; MAX_BINDINGS],
    /// Split-brain damping: a claim by another port within this many
    /// milliseconds of the last owner change is deferred, not applied (the
    /// latest such claim wins when the hold-down ends). 0: every claim
    /// moves the owner at once.
    pub hold_down_ms: u32,
}

/// The hold-down a VIP gets when the operator names none: a real failover
/// (the old owner silent, often for seconds) is never inside it, and a
/// split brain moves the owner at most once a second.
pub const DEFAULT_HOLD_DOWN_MS: u32 = 1000;
/// The longest hold-down accepted: an hour (longer would freeze a VIP on
/// one side of a split brain rather than damp it).
pub const MAX_HOLD_DOWN_MS: u32 = 3_600_000;

/// A hold-down an operator asked for that is not one (negative, or longer
/// than [`MAX_HOLD_DOWN_MS`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HoldDownOutOfRange(pub i64);

impl core::fmt::Display for HoldDownOutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "hold_down_ms = {} must be between 0 (no damping) and {MAX_HOLD_DOWN_MS} (an hour)",
            self.0
        )
    }
}

/// The hold-down of `ms` milliseconds, if it is one.
pub fn hold_down_ms(ms: i64) -> Result<u32, HoldDownOutOfRange> {
    u32::try_from(ms)
        .ok()
        .filter(|ms| *ms <= MAX_HOLD_DOWN_MS)
        .ok_or(HoldDownOutOfRange(ms))
}

impl Vip {
    /// Whether `port_id` is bound to this VIP.
    #[inline(always)]
    pub fn is_bound(&self, port_id: u32) -> bool {
        let mut i = 0;
        while i < MAX_BINDINGS {
            if (i as u32) >= self.port_count {
                return false;
            }
            if self.ports[i] == port_id {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// `VipHint::state`: no VIP address falls in this bucket.
pub const HINT_EMPTY: u32 = 0;
/// `VipHint::state`: exactly one VIP falls here, and the hint holds it.
pub const HINT_ONE: u32 = 1;
/// `VipHint::state`: several VIPs fall here; ask `havip_vips`.
pub const HINT_SHARED: u32 = 2;

/// One bucket of the VIP filter (`havip_vip_filter`, an array indexed by
/// [`hint_bucket`]). It lets the datapath tell most addresses apart without
/// a hash lookup: an empty bucket means "not a VIP", and a bucket with one
/// VIP holds its address and slot, so only shared buckets cost a lookup in
/// `havip_vips`. The agent fills it from the same VIPs as `havip_vips`.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct VipHint {
    /// [`HINT_EMPTY`], [`HINT_ONE`] or [`HINT_SHARED`].
    pub state: u32,
    /// With [`HINT_ONE`]: the VIP's id and slot (as in its [`Vip`]).
    pub vip_id: u32,
    pub slot: u32,
    pub _pad: u32,
    /// With [`HINT_ONE`]: the VIP's address.
    pub addr: crate::NetworkAddr,
}

impl VipHint {
    /// A bucket holding `vip`, at `addr`, alone.
    pub fn one(addr: &crate::NetworkAddr, vip: &Vip) -> Self {
        Self {
            state: HINT_ONE,
            vip_id: vip.vip_id,
            slot: vip.slot,
            _pad: 0,
            addr: *addr,
        }
    }

    /// A bucket several VIPs share.
    pub fn shared() -> Self {
        Self {
            state: HINT_SHARED,
            ..Self::default()
        }
    }

    /// This bucket once `vip` at `addr` is in it too.
    pub fn with(self, addr: &crate::NetworkAddr, vip: &Vip) -> Self {
        if self.state == HINT_EMPTY {
            Self::one(addr, vip)
        } else {
            Self::shared()
        }
    }
}

/// Buckets in the VIP filter: a power of two. A host with more VIPs than a
/// quarter of this has more buckets shared; a shared bucket costs a lookup
/// in `havip_vips`, never a miss.
pub const HINT_BUCKETS: u32 = 16384;

/// The filter bucket of `addr`: a multiplicative (Fibonacci) hash of its
/// words. The datapath and the agent call this same function.
#[inline(always)]
pub fn hint_bucket(addr: &crate::NetworkAddr) -> u32 {
    let [network, _, a0, a1, a2, a3] = addr.words();
    let mut h = network ^ ((addr.family as u32) << 24);
    h = (h ^ a0).wrapping_mul(0x9E37_79B1);
    if addr.family != crate::addr::AF_INET {
        h = (h ^ a1).wrapping_mul(0x9E37_79B1);
        h = (h ^ a2).wrapping_mul(0x9E37_79B1);
        h = (h ^ a3).wrapping_mul(0x9E37_79B1);
    }
    // The top bits: a product's low bits see only the inputs' low bits.
    h >> (HINT_BUCKETS.leading_zeros() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetworkAddr;

    #[test]
    fn a_subnet_of_vips_spreads_over_the_buckets() {
        let mut used = [false; HINT_BUCKETS as usize];
        for i in 0..4096u32 {
            let [_, _, c, d] = i.to_be_bytes();
            let v4 = NetworkAddr::v4(7, [10, 1, c, d]);
            let v6 = [0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, c, d];
            used[hint_bucket(&v4) as usize] = true;
            used[hint_bucket(&NetworkAddr::v6(7, v6)) as usize] = true;
        }
        // 8192 addresses in 16384 buckets: a uniform hash fills about 6450.
        let filled = used.iter().filter(|u| **u).count();
        assert!(filled > 6000, "only {filled} buckets used");
    }

    #[test]
    fn the_network_is_part_of_the_bucket() {
        let a = NetworkAddr::v4(1, [10, 0, 6, 19]);
        let b = NetworkAddr::v4(2, [10, 0, 6, 19]);
        assert_ne!(hint_bucket(&a), hint_bucket(&b));
    }
}
