//! Split brain is damped, never frozen: the agent's half.
//!
//! The datapath takes the first owner change after a quiet hold-down on the
//! next packet, as always. A claim by another bound port within a VIP's
//! hold-down of the last change is deferred: the owner record keeps the
//! claimant as its *rival* with `pending = 1` (`havip-ebpf`'s
//! `owner::learn`), and the owner stays. The next claim after the hold-down
//! is the latest claim and the datapath applies it itself; when nobody
//! claims again, the agent applies the pending claim when the hold-down
//! ends ([`Damper::settle`]). The pending claim lives in the pinned owner
//! record, so it survives agent restarts and is applied as soon as an
//! agent runs (a new agent looks at every VIP when it starts).
//!
//! A VIP is in `split_brain` while its owner record names a rival that
//! claimed within the hold-down (or whose claim is pending): the condition
//! clears once only one port has claimed for a hold-down.

use std::collections::BTreeMap;

use havip_common::Owner;
use log::info;

use crate::{datapath::Datapath, util::BpfClock};

/// A split brain: two bound ports claiming one VIP within its hold-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrain {
    /// The owner, then the rival.
    pub ports: [u32; 2],
    /// Whether the rival's claim is the latest, to be applied when the
    /// hold-down ends.
    pub pending: bool,
}

/// The split brain `o` records at `now_ns`, if any.
pub fn split_brain(o: &Owner, hold_down_ns: u64, now_ns: u64) -> Option<SplitBrain> {
    let rival = o.rival_port_id;
    let recent = o.pending == 1 || now_ns.saturating_sub(o.rival_claim_ns) < hold_down_ns;
    (!o.is_vacant() && rival != 0 && rival != o.port_id && recent).then_some(SplitBrain {
        ports: [o.port_id, rival],
        pending: o.pending == 1,
    })
}

/// What a VIP's owner record needs from the agent at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The hold-down is over and the rival's claim is the latest: the
    /// record becomes this one (the rival the owner).
    Apply(Owner),
    /// Look again at this `bpf_ktime_get_ns()` time: the hold-down ends,
    /// or the split brain clears if nobody claims again.
    At(u64),
    /// Nothing pending, no split brain.
    Quiet,
}

/// What `o` needs at `now_ns`.
pub fn settle(o: &Owner, hold_down_ns: u64, now_ns: u64) -> Settle {
    if o.is_vacant() {
        return Settle::Quiet;
    }
    let ends = o.since_ns.saturating_add(hold_down_ns);
    if o.pending == 1 && o.rival_port_id != 0 {
        if now_ns >= ends {
            return Settle::Apply(applied(o, now_ns));
        }
        return Settle::At(ends);
    }
    match split_brain(o, hold_down_ns, now_ns) {
        Some(_) => Settle::At(o.rival_claim_ns.saturating_add(hold_down_ns)),
        None => Settle::Quiet,
    }
}

/// `o` with its pending claim applied at `now_ns`: the rival owns the VIP
/// (a new generation, since now), and the owner it took over from is the
/// rival, as when the datapath applies a change.
pub fn applied(o: &Owner, now_ns: u64) -> Owner {
    Owner {
        vip_id: o.vip_id,
        port_id: o.rival_port_id,
        ifindex: o.rival_ifindex,
        mac: o.rival_mac,
        generation: o.generation + 1,
        since_ns: now_ns,
        last_claim_ns: o.rival_claim_ns,
        rival_port_id: o.port_id,
        rival_ifindex: o.ifindex,
        rival_mac: o.mac,
        rival_claim_ns: o.last_claim_ns,
        pending: 0,
        ..Owner::default()
    }
    .sealed()
}

/// How soon the damper looks again at a record it could not settle.
const RETRY_NS: u64 = 10_000_000;

/// What [`Damper::settle`] did to one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Its pending claim was applied: the new owner record.
    Applied(Owner),
    /// A split brain began (or its ports changed).
    Began(SplitBrain),
    /// Its split brain is over.
    Cleared,
}

/// The VIPs the agent watches for a pending claim or a split brain: those
/// the datapath told of ([`crate::events`]), and any a sweep finds.
#[derive(Debug, Default)]
pub struct Damper {
    /// vip id -> when to look again (ktime ns) and the split brain last seen.
    watched: BTreeMap<u32, (u64, Option<SplitBrain>)>,
}

impl Damper {
    /// Watches vip `vip_id` from now (a deferred claim was reported).
    pub fn watch(&mut self, vip_id: u32) {
        self.watched.entry(vip_id).or_insert((0, None)).0 = 0;
    }

    /// Watches every VIP of `dp` whose record needs it (at start, and now
    /// and then for the reports a full ring lost).
    pub fn sweep(&mut self, dp: &Datapath) {
        let now = BpfClock::now().mono_now_ns();
        for vip_id in dp.vip_ids() {
            if let Some((o, hold_down_ns)) = dp.damped_owner(vip_id) {
                if settle(&o, hold_down_ns, now) != Settle::Quiet {
                    self.watch(vip_id);
                }
            }
        }
    }

    /// The earliest time (ktime ns) a watched VIP needs a look, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.watched.values().map(|(at, _)| *at).min()
    }

    /// Looks at every watched VIP that is due: applies the pending claims
    /// whose hold-down is over, logs each split brain as it begins and
    /// clears, and stops watching the VIPs that are quiet.
    pub fn settle(&mut self, dp: &mut Datapath) -> Vec<(u32, Settled)> {
        let now = BpfClock::now().mono_now_ns();
        let due: Vec<u32> = self
            .watched
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for vip_id in due {
            let seen = self.watched.get(&vip_id).and_then(|(_, s)| *s);
            let Some((mut o, hold_down_ns)) = dp.damped_owner(vip_id) else {
                self.watched.remove(&vip_id);
                continue;
            };
            let mut next = settle(&o, hold_down_ns, now);
            if let Settle::Apply(new) = next {
                if dp.replace_owner(vip_id, &o, &new) {
                    info!(
                        "vip {vip_id}: owner port {} on ifindex {}, generation {}: its claim, \
                         deferred by the {} ms hold-down, applied at its end",
                        new.port_id,
                        new.ifindex,
                        new.generation,
                        hold_down_ns / 1_000_000
                    );
                    out.push((vip_id, Settled::Applied(new)));
                    o = new;
                }
                // Else a claim changed the record meanwhile: look again.
                next = settle(&o, hold_down_ns, now);
            }
            let condition = split_brain(&o, hold_down_ns, now);
            match (seen, condition) {
                (None, Some(c)) => {
                    info!(
                        "vip {vip_id}: split brain: ports {} and {} both claim it; claims within \
                         the {} ms hold-down of an owner change are deferred",
                        c.ports[0],
                        c.ports[1],
                        hold_down_ns / 1_000_000
                    );
                    out.push((vip_id, Settled::Began(c)));
                }
                (Some(_), None) => {
                    info!(
                        "vip {vip_id}: split brain over: only port {} claimed it for {} ms",
                        o.port_id,
                        hold_down_ns / 1_000_000
                    );
                    out.push((vip_id, Settled::Cleared));
                }
                _ => {}
            }
            match next {
                Settle::Quiet => {
                    self.watched.remove(&vip_id);
                }
                Settle::At(at) => {
                    self.watched.insert(vip_id, (at, condition));
                }
                // A claim came in between (or the write failed): soon again.
                Settle::Apply(_) => {
                    self.watched.insert(vip_id, (now + RETRY_NS, condition));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn owner(port: u32, since_ms: u64) -> Owner {
        Owner {
            vip_id: 1,
            port_id: port,
            ifindex: port + 100,
            mac: [2, 0, 0, 0, 0, port as u8],
            generation: 4,
            since_ns: since_ms * MS,
            last_claim_ns: since_ms * MS,
            ..Owner::default()
        }
        .sealed()
    }

    fn with_rival(mut o: Owner, port: u32, at_ms: u64, pending: bool) -> Owner {
        o.rival_port_id = port;
        o.rival_ifindex = port + 100;
        o.rival_mac = [2, 0, 0, 0, 0, port as u8];
        o.rival_claim_ns = at_ms * MS;
        o.pending = u32::from(pending);
        o
    }

    #[test]
    fn a_pending_claim_waits_for_the_end_of_the_hold_down_then_wins() {
        let o = with_rival(owner(11, 1000), 12, 1300, true);
        assert_eq!(settle(&o, 1000 * MS, 1500 * MS), Settle::At(2000 * MS));
        let Settle::Apply(new) = settle(&o, 1000 * MS, 2000 * MS) else {
            panic!("not applied at the end of the hold-down");
        };
        assert_eq!((new.port_id, new.ifindex, new.mac), (12, 112, o.rival_mac));
        assert_eq!((new.generation, new.since_ns), (5, 2000 * MS));
        assert_eq!(new.last_claim_ns, 1300 * MS);
        assert!(new.is_whole());
        // The owner it took over from is the rival now, not pending.
        assert_eq!((new.rival_port_id, new.pending), (11, 0));
        assert_eq!(new.rival_claim_ns, 1000 * MS);
    }

    #[test]
    fn the_condition_clears_after_a_hold_down_with_one_claimant() {
        // The owner claimed since the rival: nothing pending.
        let o = with_rival(owner(11, 1000), 12, 1300, false);
        let hold = 1000 * MS;
        assert_eq!(
            split_brain(&o, hold, 1500 * MS),
            Some(SplitBrain {
                ports: [11, 12],
                pending: false
            })
        );
        assert_eq!(settle(&o, hold, 1500 * MS), Settle::At(2300 * MS));
        assert_eq!(split_brain(&o, hold, 2300 * MS), None);
        assert_eq!(settle(&o, hold, 2300 * MS), Settle::Quiet);
    }

    #[test]
    fn quiet_records_need_nothing() {
        let hold = 1000 * MS;
        assert_eq!(settle(&owner(11, 1000), hold, 1100 * MS), Settle::Quiet);
        assert_eq!(settle(&Owner::default(), hold, 1100 * MS), Settle::Quiet);
        // A failover: the old owner is the rival, silent for long.
        let failover = with_rival(owner(12, 50_000), 11, 1000, false);
        assert_eq!(split_brain(&failover, hold, 50_100 * MS), None);
        assert_eq!(settle(&failover, hold, 50_100 * MS), Settle::Quiet);
    }
}
