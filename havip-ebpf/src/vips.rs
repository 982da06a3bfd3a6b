//! Finding the VIP at an address. The filter (`havip_vip_filter`, an array
//! the verifier inlines) answers most addresses by itself: no VIP in the
//! address's bucket, or the one VIP there. Only a bucket several VIPs share
//! costs a lookup in `havip_vips`, and so do the claims, which need the
//! VIP's bindings.

use havip_common::{
    vip::{hint_bucket, HINT_EMPTY, HINT_ONE},
    NetworkAddr, Vip,
};

use crate::maps::{VIPS, VIP_FILTER};

/// A VIP as the forwarding paths need it: its id, and its slot in the
/// owner and counter arrays.
#[derive(Clone, Copy)]
pub struct VipRef {
    pub vip_id: u32,
    pub slot: u32,
}

impl VipRef {
    #[inline(always)]
    pub fn of(vip: &Vip) -> Self {
        Self {
            vip_id: vip.vip_id,
            slot: vip.slot,
        }
    }
}

/// The VIP at `addr`, if `addr` is one.
#[inline(always)]
pub fn find(addr: &NetworkAddr) -> Option<VipRef> {
    let hint = VIP_FILTER.get(hint_bucket(addr))?;
    match hint.state {
        HINT_EMPTY => None,
        HINT_ONE => (hint.addr == *addr).then_some(VipRef {
            vip_id: hint.vip_id,
            slot: hint.slot,
        }),
        _ => {
            // The key is copied here, in the rare case, so that the common
            // ones keep the address in registers.
            let key = *addr;
            // SAFETY: a map value, read at once.
            unsafe { VIPS.get(&key) }.map(VipRef::of)
        }
    }
}

/// The VIP at `addr` with its bindings, if `addr` is one.
#[inline(always)]
pub fn get(addr: &NetworkAddr) -> Option<&'static Vip> {
    if VIP_FILTER
        .get(hint_bucket(addr))
        .is_none_or(|hint| hint.state == HINT_EMPTY)
    {
        return None;
    }
    // SAFETY: a map value, valid for the rest of this program run (the
    // agent replaces a VIP with `insert`, never field by field).
    unsafe { VIPS.get(addr) }
}
