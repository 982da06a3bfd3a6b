//! Address probes: an ARP probe (sender 0.0.0.0, RFC 5227) or a Duplicate
//! Address Detection NS (source ::, RFC 4862) asks whether anyone holds an
//! address before the sender takes it. For a VIP that is a claim to be:
//! only a bound port may probe for it. Another port's probe would make a
//! bound VM that probes first (Windows Failover Cluster, NetworkManager's
//! IPv4 conflict detection, any IPv6 address added with DAD) believe the
//! VIP in use. A probe is never learned from, nor answered (`responder.rs`).

use havip_common::{DropReason, NetworkAddr, Port};

use crate::{
    owner::{self, Claimant},
    vips,
};

/// A probe from `port` for `target`: rejected (and reported) when
/// `target` is a VIP the port is not bound to. A BPF function of its own:
/// its key is not on the stack of the paths that call it (IPv6's is near
/// the verifier's limit), and probes are rare.
#[inline(never)]
pub fn judge(
    target: &NetworkAddr,
    port: &Port,
    from: &Claimant,
    mac: [u8; 6],
) -> Result<(), DropReason> {
    match vips::get(target) {
        Some(vip) if !vip.is_bound(port.port_id) => Err(owner::reject(
            target,
            vip,
            from,
            mac,
            DropReason::ClaimNotBound,
        )),
        _ => Ok(()),
    }
}
