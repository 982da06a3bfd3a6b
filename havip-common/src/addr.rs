//! The key of every table that is looked up by IP address.

/// Address family tag in [`NetworkAddr::family`].
pub const AF_INET: u8 = 4;
/// Address family tag in [`NetworkAddr::family`].
pub const AF_INET6: u8 = 6;

/// An IP address inside one network (a VPC subnet).
///
/// Key of the VIP table and of the fixed-address table. IPv4 addresses
/// occupy the first four bytes of `addr` (network byte order) and the rest is
/// zero, so one key type serves both families.
#[repr(C)]
#[derive(Copy, Clone, Debug, Eq, Default)]
pub struct NetworkAddr {
    /// Network id, as configured for the port the packet came from.
    pub network: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    pub _pad: [u8; 3],
    /// The address in network byte order.
    pub addr: [u8; 16],
}

// Six words, no implicit padding: see `NetworkAddr::words`.
const _: () =
    assert!(core::mem::size_of::<NetworkAddr>() == 24 && core::mem::align_of::<NetworkAddr>() == 4);

impl NetworkAddr {
    /// The key as six native-order words (network, family, then the
    /// address): how the datapath compares and hashes it, as the BPF
    /// backend would compare the byte array byte by byte.
    #[inline(always)]
    pub fn words(&self) -> [u32; 6] {
        // SAFETY: `repr(C)`, 24 bytes, 4-aligned, every byte a field
        // (asserted above): it reads as six aligned words.
        unsafe { core::ptr::read(self as *const Self as *const [u32; 6]) }
    }

    #[inline(always)]
    pub fn v4(network: u32, addr: [u8; 4]) -> Self {
        let mut a = [0u8; 16];
        a[0] = addr[0];
        a[1] = addr[1];
        a[2] = addr[2];
        a[3] = addr[3];
        Self {
            network,
            family: AF_INET,
            _pad: [0; 3],
            addr: a,
        }
    }

    #[inline(always)]
    pub fn v6(network: u32, addr: [u8; 16]) -> Self {
        Self {
            network,
            family: AF_INET6,
            _pad: [0; 3],
            addr,
        }
    }
}

impl core::hash::Hash for NetworkAddr {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.words().hash(state)
    }
}

impl PartialEq for NetworkAddr {
    /// Field by field, word by word.
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.words(), other.words());
        a.iter()
            .zip(b.iter())
            .fold(0, |diff, (x, y)| diff | (x ^ y))
            == 0
    }
}
