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
    /// Stable VIP id; keys the owner table and the per-VIP counters.
    pub vip_id: u32,
    /// How many entries of `ports` are valid.
    pub port_count: u32,
    /// Port ids bound to this VIP (the ports allowed to claim it).
    pub ports: [u32; MAX_BINDINGS],
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
