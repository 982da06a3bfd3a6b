//! Moving TC egress from netlink filters to TCX links, in the background.
//!
//! A new port gets its TC egress as a netlink filter: fast, and in force
//! at once (see [`crate::attach`]). With TCX wanted, the daemon then calls
//! [`Datapath::hand_over_egress`] between its other work, a slice at a
//! time, until every port's egress is a pinned TCX link. The port is
//! protected throughout: the link is attached before the filter goes.

use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Attachment, Datapath};
use crate::attach::Egress;

/// Whether `a`'s TC egress is a netlink filter still to be moved to TCX.
fn to_move(a: &Attachment) -> bool {
    a.links.egress == Egress::Netlink && !a.netlink_kept
}

impl Datapath {
    /// How many ports' TC egress is a netlink filter still to be moved to
    /// TCX (0 when TCX is not wanted or the kernel has none).
    pub fn egress_handover_pending(&self) -> usize {
        if !self.tc.tcx() {
            return 0;
        }
        self.attached.values().filter(|a| to_move(a)).count()
    }

    /// Moves ports' TC egress to TCX links for about `budget` (at least
    /// one port); how many it moved. A port whose move fails keeps its
    /// filter, and is not tried again while this agent runs.
    pub fn hand_over_egress(&mut self, budget: Duration) -> usize {
        if !self.tc.tcx() {
            return 0;
        }
        let started = Instant::now();
        let mut moved = 0;
        let pending: Vec<u32> = self
            .attached
            .iter()
            .filter(|(_, a)| to_move(a))
            .map(|(ifx, _)| *ifx)
            .collect();
        for ifx in pending {
            if started.elapsed() >= budget && moved > 0 {
                break;
            }
            let a = self.attached.get_mut(&ifx).expect("listed above");
            let ebpf = self.programs.for_mode(a.links.mode);
            match a.links.hand_over(ebpf, &a.interface) {
                Ok(true) => moved += 1,
                Ok(false) => {
                    info!(
                        "{}: TC egress stays a netlink filter (no TCX there)",
                        a.interface
                    );
                    a.netlink_kept = true;
                }
                Err(e) => {
                    warn!(
                        "{}: cannot move TC egress to TCX: {e}; it stays a netlink filter",
                        a.interface
                    );
                    a.netlink_kept = true;
                }
            }
        }
        if moved > 0 && self.egress_handover_pending() == 0 {
            info!("TC egress: every port that can have a TCX link has it now");
        }
        moved
    }
}
