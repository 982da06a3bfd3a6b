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
    pub _pad: [u8; 2],
    /// Held by every writer: the datapath's claims take it
    /// (`bpf_spin_lock`), the agent writes and reads with `BPF_F_LOCK`, so
    /// no two writers mix their records. The fast path reads without it and
    /// acts only on a record whose [`Owner::seal`] matches.
    pub lock: bpf_spin_lock,
    /// A hash of who owns the VIP (vip id, port id, ifindex, MAC,
    /// generation), written with them: a record read while a writer writes
    /// it has fields of two owners, and its seal does not match.
    pub seal: u32,
    pub _pad2: u32,
    /// Incremented on every change of owner; never reset.
    pub generation: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when this owner took over.
    pub since_ns: u64,
    /// `bpf_ktime_get_ns()` of the latest accepted claim by this owner.
    pub last_claim_ns: u64,
    /// The other bound port that claimed the VIP within its hold-down
    /// ([`crate::Vip::hold_down_ms`]): the one whose claim was deferred, or
    /// the owner this one took over from. 0: none. Not sealed: the fast
    /// path never reads it.
    pub rival_port_id: u32,
    pub rival_ifindex: u32,
    pub rival_mac: [u8; 6],
    pub _pad3: [u8; 2],
    /// 1 when the rival's claim is the latest (a deferred claim, to be
    /// applied when the hold-down ends: by the next claim, or by the
    /// agent); 0 when the owner has claimed since, or there is no rival.
    pub pending: u32,
    pub _pad4: u32,
    /// `bpf_ktime_get_ns()` of the rival's latest claim.
    pub rival_claim_ns: u64,
}

/// The kernel's `struct bpf_spin_lock`: the verifier and `BPF_F_LOCK`
/// find the lock in a map value by this name in its BTF.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct bpf_spin_lock {
    pub val: u32,
}

/// `BPF_F_LOCK`: map lookups and updates of [`Owner`] records from user
/// space copy them under the record's lock.
pub const BPF_F_LOCK: u64 = 4;

const _: () = assert!(
    core::mem::size_of::<Owner>() == 88
        && core::mem::offset_of!(Owner, rival_mac) % 4 == 0
        && core::mem::offset_of!(Owner, lock) % 4 == 0
        && core::mem::offset_of!(Owner, mac) % 4 == 0
);

impl Owner {
    /// The seal of this record's owner fields (see [`Owner::seal`]): a
    /// few multiply-xor rounds, cheap enough for every frame.
    #[inline(always)]
    pub fn compute_seal(&self) -> u32 {
        let (mac_hi, mac_lo) = self.mac_words();
        let mut h: u32 = 0x9e37_79b9;
        for word in [
            self.vip_id,
            self.port_id,
            self.ifindex,
            mac_hi,
            mac_lo as u32,
            self.generation as u32,
            (self.generation >> 32) as u32,
        ] {
            h = (h ^ word).wrapping_mul(0x0100_0193);
            h ^= h >> 15;
        }
        h | 1 // never 0: an all-zero record is vacant, not sealed
    }

    /// Writes the seal of the fields as they are now.
    #[inline(always)]
    pub fn sealed(mut self) -> Self {
        self.seal = self.compute_seal();
        self
    }

    /// Whether the record is one writer's whole record.
    #[inline(always)]
    pub fn is_whole(&self) -> bool {
        self.seal == self.compute_seal()
    }

    /// The MAC as a word and a half-word (see [`crate::Port::mac_words`]).
    #[inline(always)]
    pub fn mac_words(&self) -> (u32, u16) {
        // SAFETY: `mac` is 4-aligned (asserted above).
        unsafe { crate::port::mac_words(&self.mac) }
    }

    #[inline(always)]
    pub fn is_vacant(&self) -> bool {
        self.port_id == 0
    }

    /// The rival's MAC as a word and a half-word.
    #[inline(always)]
    pub fn rival_mac_words(&self) -> (u32, u16) {
        // SAFETY: `rival_mac` is 4-aligned (asserted above).
        unsafe { crate::port::mac_words(&self.rival_mac) }
    }

    /// Whether this is a record of vip `vip_id` with an owner.
    #[inline(always)]
    pub fn owns(&self, vip_id: u32) -> bool {
        self.vip_id == vip_id && !self.is_vacant()
    }
}
