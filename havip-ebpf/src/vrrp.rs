//! VRRP (IP protocol 112, RFC 9568): the election among a HAVIP's ports.
//! Only a port bound to a VIP may send it (ingress, `ipv4.rs` and
//! `ipv6.rs`) and hear it (`egress.rs`), whether multicast (224.0.0.18,
//! ff02::12) or unicast to a peer: a VM bound to no VIP can neither read
//! the adverts (their priorities, a PASS password in clear) nor preempt
//! the pair with its own.

use havip_common::{DropReason, Port};

/// IP protocol / next header of VRRP.
pub const IPPROTO_VRRP: u8 = 112;

/// VRRP from `port`: only if it is bound to a VIP.
#[inline(always)]
pub fn judge_sent(port: &Port) -> Result<(), DropReason> {
    if port.bound() {
        Ok(())
    } else {
        Err(DropReason::VrrpNotBound)
    }
}

/// VRRP to `port`: only if it is bound to a VIP.
#[inline(always)]
pub fn judge_received(port: &Port) -> Result<(), DropReason> {
    if port.bound() {
        Ok(())
    } else {
        Err(DropReason::VrrpToUnbound)
    }
}
