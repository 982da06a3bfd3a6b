//! The failover story's core step, shared by the lab and the e2e tests:
//! the master VM crashes while the client probes the VIP; watch the backup
//! announce the VIP, the agent move the owner, and the replies come back.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::agent::OwnerStatus;
use crate::capture::{Capture, Frame};
use crate::keepalived::Keepalived;
use crate::lab::{Lab, ECHO_PORT};
use crate::probe::{ProbeLog, Prober};
use crate::timeline::Timeline;
use crate::wait::now_us;

/// What happened around the crash.
pub struct Failover {
    pub timeline: Timeline,
    pub probes: ProbeLog,
    /// Claims for the VIP the new master sent, as seen on its hypervisor
    /// port (tap-vm2, frames coming from the VM).
    pub claims: Vec<Frame>,
    pub owner_before: Option<OwnerStatus>,
    pub owner_after: Option<OwnerStatus>,
    pub kill_us: i64,
    /// When the crash was complete: keepalived killed and vm1's NIC down
    /// (on a slow machine, an emulated guest, some 100 ms after `kill_us`).
    pub down_us: i64,
    /// Client frames to the VIP that reached the rogue VM (unknown-unicast
    /// flooding by the bridge while the old master's port is down).
    pub leaked_to_rogue: usize,
}

impl Failover {
    /// Time without replies around the crash, in ms, and probes lost.
    pub fn gap(&self) -> (f64, usize) {
        self.probes.longest_gap()
    }
}

/// Traffic to watch through the crash: a running prober and its VIP.
pub struct Watch {
    pub prober: Prober,
    pub vip: IpAddr,
    pub vip_id: u32,
}

/// Crashes vm1 (keepalived master) while the probers run, waits until vm2
/// answers each of them (and, with the agent, owns each VIP in the map),
/// and builds one timeline per VIP. vm1 must hold the VIPs when called.
pub fn crash_master_watching(
    lab: &Lab,
    master: &mut Keepalived,
    watches: Vec<Watch>,
) -> Result<Vec<Failover>> {
    let capture = Capture::start(&lab.hv, lab.vm2.spec.tap, Some("in"), "arp or icmp6")?;
    // What reaches the bystander VM: once vm1's port goes down the bridge
    // forgets vm1's MAC and floods the client's frames to every port.
    let rogue_capture = Capture::start(
        &lab.rogue.ns,
        "eth0",
        Some("in"),
        &format!("udp port {ECHO_PORT}"),
    )?;
    let agent = lab.agent().ok();
    let mut owners_before = Vec::new();
    for w in &watches {
        owners_before.push(match agent {
            Some(a) => a.status()?.owner(w.vip_id)?.cloned(),
            None => None,
        });
        w.prober
            .wait_reply_from(lab.vm1.role(), now_us(), Duration::from_secs(5))
            .with_context(|| format!("before the crash, vm1 does not answer on {}", w.vip))?;
    }

    let kill_us = now_us();
    master.crash(&lab.vm1)?;
    let down_us = now_us();
    let mut first_new = Vec::new();
    for w in &watches {
        first_new.push(
            w.prober
                .wait_reply_from(lab.vm2.role(), kill_us, Duration::from_secs(30))
                .with_context(|| {
                    format!("after the master crashed, vm2 never answered on {}", w.vip)
                })?,
        );
    }
    let mut owners_after = Vec::new();
    for w in &watches {
        owners_after.push(match agent {
            Some(a) => {
                Some(a.wait_owner(w.vip_id, lab.vm2.spec.port_id, Duration::from_secs(10))?)
            }
            None => None,
        });
    }
    // Keep probing a little: replies must keep coming from vm2.
    std::thread::sleep(Duration::from_millis(500));
    let frames = capture.stop();
    let flooded = rogue_capture.stop();

    let mut out = Vec::new();
    for (((w, owner_before), owner_after), first_new) in watches
        .into_iter()
        .zip(owners_before)
        .zip(owners_after)
        .zip(first_new)
    {
        let vip_s = w.vip.to_string();
        let probes = w.prober.stop();
        let claims: Vec<Frame> = frames
            .iter()
            .filter(|f| f.at_us >= kill_us && f.is_claim_for(&vip_s))
            .cloned()
            .collect();
        let mut t = Timeline::new(
            format!("failover of {vip_s}, as the client saw it"),
            kill_us,
        );
        t.mark(
            Some(kill_us),
            "master killed: vm1's keepalived SIGKILLed, its eth0 down",
        );
        t.mark(
            probes.last_reply_from(lab.vm1.role()).map(|r| r.at_us),
            "last reply through the old master (vm1)",
        );
        let claim_kind = if w.vip.is_ipv4() {
            "GARP"
        } else {
            "unsolicited NA"
        };
        t.mark(
            claims.first().map(|f| f.at_us),
            format!(
                "first {claim_kind} from the new master (vm2) seen on the hypervisor (tap-vm2)"
            ),
        );
        if agent.is_some() {
            let what = match (&owner_before, &owner_after) {
                (Some(b), Some(a)) => format!(
                    "owner changed in havip_owners: port {} -> port {}, generation {} -> {}",
                    b.port_id, a.port_id, b.generation, a.generation
                ),
                (None, Some(a)) => format!(
                    "owner set in havip_owners: port {}, generation {}",
                    a.port_id, a.generation
                ),
                _ => "owner changed in havip_owners".into(),
            };
            t.mark(owner_after.as_ref().map(|o| o.since_unix_ms * 1000), what);
        }
        t.mark(
            Some(first_new.at_us),
            "first reply through the new master (vm2)",
        );
        let (gap_ms, lost) = probes.longest_gap();
        t.note(format!(
            "client: {} probes sent, {} answered (vm1 {}, vm2 {}); longest gap {gap_ms:.0} ms, {lost} probes lost in it",
            probes.sent(),
            probes.answered(),
            probes.answered_by(lab.vm1.role()),
            probes.answered_by(lab.vm2.role()),
        ));
        t.note(format!(
            "{claim_kind}s for {vip_s} from vm2 seen on tap-vm2 after the kill: {}",
            claims.len()
        ));
        let to_vip = format!(" > {}.{ECHO_PORT}:", w.vip);
        let leaked = flooded.iter().filter(|f| f.line.contains(&to_vip)).count();
        t.note(format!(
            "client frames to {vip_s} that reached the rogue VM (bridge flooding): {leaked}"
        ));
        out.push(Failover {
            timeline: t,
            probes,
            claims,
            owner_before,
            owner_after,
            kill_us,
            down_us,
            leaked_to_rogue: leaked,
        });
    }
    Ok(out)
}

/// [`crash_master_watching`] for one prober.
pub fn crash_master(
    lab: &Lab,
    master: &mut Keepalived,
    prober: Prober,
    vip: IpAddr,
    vip_id: u32,
) -> Result<Failover> {
    let mut v = crash_master_watching(
        lab,
        master,
        vec![Watch {
            prober,
            vip,
            vip_id,
        }],
    )?;
    Ok(v.remove(0))
}
