//! The port table: one entry per VM port this host attaches to.

/// Port security is enforced on this port (the default).
pub const PORT_SECURITY: u32 = 1;
/// The port is bound to a VIP (of its network): it may take part in VRRP
/// and hear it.
pub const PORT_BOUND: u32 = 2;

/// Fixed addresses of each family a port entry holds itself, so the
/// datapath checks a source without a map lookup. A port with more has all
/// of them in `havip_addrs` as well, and the datapath looks there.
pub const INLINE_ADDRS: usize = 2;

/// A VM port, at its slot in `havip_ports` (`havip_ifport` gives the slot
/// of its interface, so the programs find it without a hash lookup).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Port {
    /// Stable port id (the controller's, or the config file's); 0 marks a
    /// free slot.
    pub port_id: u32,
    /// Ifindex of the port's hypervisor-side interface.
    pub ifindex: u32,
    /// Network id the port lives in.
    pub network: u32,
    /// The only source MAC the VM may use when port security is on.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// [`PORT_SECURITY`], [`PORT_BOUND`].
    pub flags: u32,
    /// The port's IPv6 link-local address, allowed as a source.
    pub link_local: [u8; 16],
    /// How many fixed IPv4 / IPv6 addresses the port has (the first
    /// [`INLINE_ADDRS`] of each are in `ipv4` / `ipv6`).
    pub ipv4_count: u8,
    pub ipv6_count: u8,
    pub _pad2: [u8; 2],
    pub ipv4: [[u8; 4]; INLINE_ADDRS],
    pub ipv6: [[u8; 16]; INLINE_ADDRS],
}

// `mac` and `ipv4` are 4-aligned: see `Port::mac_words`.
const _: () = assert!(
    core::mem::align_of::<Port>() == 4
        && core::mem::offset_of!(Port, mac) % 4 == 0
        && core::mem::offset_of!(Port, ipv4) % 4 == 0
);

impl Port {
    #[inline(always)]
    pub fn security(&self) -> bool {
        self.flags & PORT_SECURITY != 0
    }

    /// Whether the port is bound to a VIP ([`PORT_BOUND`]).
    #[inline(always)]
    pub fn bound(&self) -> bool {
        self.flags & PORT_BOUND != 0
    }

    /// The MAC as a 4-byte and a 2-byte native-order word: how the
    /// datapath compares it (the BPF backend would compare the byte array
    /// byte by byte).
    #[inline(always)]
    pub fn mac_words(&self) -> (u32, u16) {
        // SAFETY: `mac` is 4-aligned (asserted above).
        unsafe { mac_words(&self.mac) }
    }

    /// The inline IPv4 addresses as native-order words (see
    /// [`Port::mac_words`]).
    #[inline(always)]
    pub fn ipv4_words(&self) -> [u32; INLINE_ADDRS] {
        // SAFETY: `ipv4` is 4-aligned (asserted above): aligned reads.
        unsafe { core::ptr::read(self.ipv4.as_ptr() as *const [u32; INLINE_ADDRS]) }
    }

    /// Adds a fixed IPv4 address (kept inline while there is room).
    pub fn add_ipv4(&mut self, addr: [u8; 4]) {
        if let Some(slot) = self.ipv4.get_mut(self.ipv4_count as usize) {
            *slot = addr;
        }
        self.ipv4_count = self.ipv4_count.saturating_add(1);
    }

    /// Adds a fixed IPv6 address (kept inline while there is room).
    pub fn add_ipv6(&mut self, addr: [u8; 16]) {
        if let Some(slot) = self.ipv6.get_mut(self.ipv6_count as usize) {
            *slot = addr;
        }
        self.ipv6_count = self.ipv6_count.saturating_add(1);
    }
}

/// A MAC as a native-order word and half-word: two loads where the BPF
/// backend would load and compare it byte by byte.
///
/// # Safety
/// `mac` must be 4-aligned (a field whose offset is asserted to be).
#[inline(always)]
pub unsafe fn mac_words(mac: &[u8; 6]) -> (u32, u16) {
    let p = mac.as_ptr();
    // SAFETY: 4-aligned, as the caller promises: aligned reads.
    unsafe {
        (
            core::ptr::read(p as *const u32),
            core::ptr::read(p.add(4) as *const u16),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_beyond_the_inline_slots_are_counted_not_kept() {
        let mut p = Port::default();
        for last in 1..=3 {
            p.add_ipv4([10, 0, 6, last]);
        }
        assert_eq!(p.ipv4_count, 3);
        assert_eq!(p.ipv4, [[10, 0, 6, 1], [10, 0, 6, 2]]);
        p.add_ipv6([0xfd; 16]);
        assert_eq!((p.ipv6_count, p.ipv6[0]), (1, [0xfd; 16]));
    }
}
