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

/// The VLANs a port may send tagged frames into, held in its entry: at
/// most this many (ids 1 to [`MAX_VLAN_ID`]).
pub const MAX_VLANS: usize = 8;
/// The highest VLAN id (4095 is reserved by 802.1Q; 0 marks a priority
/// tag, which counts as untagged).
pub const MAX_VLAN_ID: u16 = 4094;

/// Link-locals an operator may register for one port, besides its own
/// (they go in `havip_addrs`, with its fixed addresses).
pub const MAX_LINK_LOCALS: usize = 8;

/// Why a port's VLAN list is refused (by the agent's config and the
/// controller alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanProblem {
    /// More than [`MAX_VLANS`] VLANs.
    TooMany(usize),
    /// Not a VLAN id a port may be allowed: 0 (a priority tag, always
    /// allowed), 4095 (reserved) or more.
    NotAnId(i64),
    /// Listed twice.
    Twice(u16),
}

impl core::fmt::Display for VlanProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooMany(n) => write!(
                f,
                "{n} VLANs in vlans, at most {MAX_VLANS} are allowed per port"
            ),
            Self::NotAnId(0) => write!(
                f,
                "vlan 0 in vlans is the priority tag, which counts as untagged and is \
                 always allowed: leave it out"
            ),
            Self::NotAnId(v) => {
                write!(f, "vlan {v} in vlans is not a VLAN id (1 to {MAX_VLAN_ID})")
            }
            Self::Twice(v) => write!(f, "vlan {v} is listed twice in vlans"),
        }
    }
}

/// Checks a port's allowed VLANs: at most [`MAX_VLANS`], each an id from 1
/// to [`MAX_VLAN_ID`], none twice. Returns them as ids, or the first
/// problem.
pub fn check_vlans(vlans: &[i64]) -> Result<[u16; MAX_VLANS], VlanProblem> {
    if vlans.len() > MAX_VLANS {
        return Err(VlanProblem::TooMany(vlans.len()));
    }
    let mut ids = [0u16; MAX_VLANS];
    for (i, v) in vlans.iter().enumerate() {
        if !(1..=MAX_VLAN_ID as i64).contains(v) {
            return Err(VlanProblem::NotAnId(*v));
        }
        let id = *v as u16;
        if ids[..i].contains(&id) {
            return Err(VlanProblem::Twice(id));
        }
        ids[i] = id;
    }
    Ok(ids)
}

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
    /// The VLAN ids (1 to [`MAX_VLAN_ID`]) the port may tag frames with,
    /// the first `vlan_count` of them; untagged and priority-tagged frames
    /// need none.
    pub vlans: [u16; MAX_VLANS],
    pub vlan_count: u8,
    pub _pad3: [u8; 3],
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

    /// Whether the port may send a frame tagged with VLAN `vlan` (0: an
    /// untagged or priority-tagged frame, always allowed).
    #[inline(always)]
    pub fn allows_vlan(&self, vlan: u16) -> bool {
        vlan == 0
            || self
                .vlans
                .iter()
                .take(self.vlan_count as usize)
                .any(|v| *v == vlan)
    }

    /// Sets the allowed VLANs (at most [`MAX_VLANS`]: the rest are left
    /// out; the config and the controller refuse more).
    pub fn set_vlans(&mut self, vlans: &[u16]) {
        for (slot, v) in self.vlans.iter_mut().zip(vlans) {
            *slot = *v;
        }
        self.vlan_count = vlans.len().min(MAX_VLANS) as u8;
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

    #[test]
    fn vlan_lists_are_checked() {
        assert_eq!(
            check_vlans(&[10, 4094]).map(|v| v[..2] == [10, 4094]),
            Ok(true)
        );
        assert_eq!(check_vlans(&[1; 9]), Err(VlanProblem::TooMany(9)));
        for bad in [0, 4095, 4096, -1] {
            assert_eq!(check_vlans(&[bad]), Err(VlanProblem::NotAnId(bad)));
        }
        assert_eq!(check_vlans(&[7, 7]), Err(VlanProblem::Twice(7)));
    }

    #[test]
    fn untagged_and_listed_vlans_are_allowed() {
        let mut p = Port::default();
        assert!(p.allows_vlan(0) && !p.allows_vlan(10));
        p.set_vlans(&[10, 4094]);
        assert!(p.allows_vlan(10) && p.allows_vlan(4094) && !p.allows_vlan(11));
        // A slot past the count is not a VLAN the port has.
        p.set_vlans(&[20]);
        assert!(p.allows_vlan(20) && !p.allows_vlan(4094));
    }
}
