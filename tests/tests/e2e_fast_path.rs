//! The VIP fast path (issue 3), end to end with keepalived. The datapath
//! answers ARP and ND for the VIP itself, with the owner's MAC; takes every
//! frame for the VIP straight to the owner's port, whatever MAC the client
//! has cached; keeps those frames away from every other VM; and forgets an
//! owner whose port is unbound until a bound port claims the VIP again.
//!
//! - a client pinned to the old master's MAC reaches the new master after a
//!   failover (IPv4, IPv6);
//! - the client's ARP request / Neighbor Solicitation for the VIP is
//!   answered with the owner's MAC and reaches no VM (IPv4, IPv6);
//! - during a failover, the rogue VM receives none of the client's frames
//!   for the VIP (a plain bridge floods them while the master is down);
//! - unbinding the owner's port stops the VIP's traffic to it at once; the
//!   VIP has no owner until the other bound port claims it.
//!
//! Needs root, the built agent, keepalived, arping, ndisc6, tcpdump,
//! python3-scapy. Run with `--test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::{OwnerStatus, Status, VipStatus};
use havip_tests::capture::{Capture, Frame};
use havip_tests::failover::{self, Watch};
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, Vm, CLIENT, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1, VM2};
use havip_tests::probe::Prober;
use havip_tests::wait::{self, now_us};
use havip_tests::{neighbour, rogue};

const VIPS: [(IpAddr, u32); 2] = [(IpAddr::V4(VIP4), VIP4_ID), (IpAddr::V6(VIP6), VIP6_ID)];
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
const WAIT: Duration = Duration::from_secs(15);

/// The lab with the agent and the keepalived pair, vm1 the master and the
/// owner of both VIPs. `ha` is declared first, so it stops first.
struct Setup {
    ha: HaPair,
    lab: Lab,
}

impl Setup {
    fn start() -> Result<Self> {
        let mut lab = Lab::build()?;
        lab.start_agent()?;
        let ha = HaPair::start(&lab)?;
        // keepalived sometimes starts with both VMs master for a moment
        // (their timers expire together): vm2 announces the VIPs too, then
        // steps back, and vm1 announces them again 5 s later
        // (garp_master_delay). Wait until vm1 alone holds and owns both,
        // twice, half a second apart.
        let settled = || -> Result<bool> {
            let status = lab.agent()?.status()?;
            let vm2_holds = VIPS
                .iter()
                .map(|&(vip, _)| lab.vm2.has_address(vip))
                .collect::<Result<Vec<_>>>()?;
            Ok(!vm2_holds.contains(&true)
                && VIPS.iter().all(|&(_, id)| {
                    status
                        .owner(id)
                        .is_ok_and(|o| o.is_some_and(|o| o.port_id == VM1.port_id))
                }))
        };
        for _ in 0..2 {
            wait::until(
                WAIT,
                "vm1 alone to hold both VIPs (keepalived) and own them (agent)",
                settled,
            )
            .with_context(|| format!("owners: {:?}", lab.agent().and_then(|a| a.status())))?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(Self { ha, lab })
    }

    fn status(&self) -> Result<Status> {
        self.lab.agent()?.status()
    }

    fn probe(&self, vip: IpAddr) -> Result<Prober> {
        Prober::start(
            &self.lab.client,
            SocketAddr::new(vip, ECHO_PORT),
            PROBE_INTERVAL,
        )
    }

    /// Stops keepalived, then the agent (which must detach and unpin), and
    /// checks nothing is left behind.
    fn finish(self) -> Result<()> {
        let Self { ha, lab } = self;
        drop(ha);
        lab.tear_down()
    }
}

fn vip_name(vip: IpAddr) -> &'static str {
    if vip.is_ipv4() {
        "IPv4 VIP"
    } else {
        "IPv6 VIP"
    }
}

/// How much a VIP's counter (read by `counter`) rose between two status
/// reads.
fn rise(
    before: &Status,
    after: &Status,
    vip_id: u32,
    counter: impl Fn(&VipStatus) -> u64,
) -> Result<u64> {
    Ok(counter(after.vip(vip_id)?).saturating_sub(counter(before.vip(vip_id)?)))
}

fn answers(v: &VipStatus) -> u64 {
    v.counters.answered
}

fn deliveries(v: &VipStatus) -> u64 {
    v.counters.delivered
}

fn drops(reason: &'static str) -> impl Fn(&VipStatus) -> u64 {
    move |v| v.drop_count(reason)
}

/// A client whose neighbour entry for the VIP is pinned to the old master's
/// MAC still reaches the new master after a failover: the datapath, not
/// the client, moves the traffic.
fn pinned_client_follows_the_failover(vip: IpAddr, vip_id: u32) -> Result<()> {
    let mut s = Setup::start()?;
    neighbour::pin(&s.lab.client, vip, &VM1.mac_str())?;
    let before = s.status()?;

    let prober = s.probe(vip)?;
    // Replies from vm2 after the kill: crash_master waits for the first one.
    let f = failover::crash_master(&s.lab, &mut s.ha.master, prober, vip, vip_id)?;
    println!("{}", f.timeline);
    let after = s.status()?;

    let owner = after
        .owner(vip_id)?
        .context("no owner after the failover")?;
    ensure!(
        owner.port_id == VM2.port_id,
        "{}: owner after the failover is {owner:?}, not vm2's port",
        vip_name(vip)
    );
    let from_vm2 = f.probes.replies_from_after(VM2.role, f.kill_us);
    ensure!(
        from_vm2 >= 20,
        "{}: only {from_vm2} replies from vm2 after the failover",
        vip_name(vip)
    );
    // The client never learned vm2's MAC: every probe left it addressed to
    // vm1, and vm2's kernel accepted it, so the datapath rewrote and moved
    // it.
    let entry = neighbour::show(&s.lab.client, vip)?;
    ensure!(
        entry.as_ref().and_then(|n| n.lladdr.as_deref()) == Some(VM1.mac_str().as_str())
            && entry.as_ref().is_some_and(|n| n.state == "PERMANENT"),
        "{}: the client's neighbour entry changed: {entry:?}",
        vip_name(vip)
    );
    let delivered = rise(&before, &after, vip_id, deliveries)?;
    ensure!(
        delivered >= from_vm2 as u64,
        "{}: {from_vm2} probes answered by vm2 but only {delivered} delivered to an owner",
        vip_name(vip)
    );
    println!(
        "{}: client pinned to {} (vm1); {from_vm2} replies from vm2 after the kill; delivered +{delivered}",
        vip_name(vip),
        VM1.mac_str()
    );
    s.finish()
}

#[test]
fn ipv4_client_pinned_to_the_old_master_reaches_the_new_master() -> Result<()> {
    pinned_client_follows_the_failover(IpAddr::V4(VIP4), VIP4_ID)
}

#[test]
fn ipv6_client_pinned_to_the_old_master_reaches_the_new_master() -> Result<()> {
    pinned_client_follows_the_failover(IpAddr::V6(VIP6), VIP6_ID)
}

/// Frames in `frames` sent by the client to resolve `vip` (ARP request or
/// Neighbor Solicitation).
fn client_resolutions<'a>(frames: &'a [Frame], vip: &str) -> Vec<&'a Frame> {
    let client = CLIENT.mac_str();
    frames
        .iter()
        .filter(|f| f.src_mac() == Some(client.as_str()) && f.is_resolution_for(vip))
        .collect()
}

/// The client asks for the VIP's MAC (arping / ndisc6, then its own kernel
/// after a flush): the datapath answers with the owner's MAC, once per
/// question, and the question reaches none of the VMs.
fn resolution_is_answered_in_the_datapath(vip: IpAddr, vip_id: u32) -> Result<()> {
    let s = Setup::start()?;
    let lab = &s.lab;
    let owner: OwnerStatus = s.status()?.owner(vip_id)?.cloned().context("no owner")?;
    let vip_s = vip.to_string();

    let filter = "arp or icmp6";
    let others: [&Vm; 3] = [&lab.vm1, &lab.vm2, &lab.rogue];
    let in_vms = others
        .iter()
        .map(|vm| Capture::start(&vm.ns, "eth0", Some("in"), filter))
        .collect::<Result<Vec<_>>>()?;
    let at_client = Capture::start(&lab.client.ns, "eth0", None, filter)?;
    let before = s.status()?;

    // Asked directly, from an empty cache.
    neighbour::flush(&lab.client)?;
    let resolved = neighbour::resolve(&lab.client, vip, 3)?;
    // Asked by the client's kernel, to send to the VIP.
    neighbour::flush(&lab.client)?;
    let prober = s.probe(vip)?;
    prober.wait_reply_from(VM1.role, 0, WAIT)?;
    drop(prober.stop());
    let entry = neighbour::show(&lab.client, vip)?;

    let client_frames = at_client.stop();
    let vm_frames: Vec<Vec<Frame>> = in_vms.into_iter().map(Capture::stop).collect();
    let after = s.status()?;

    let asked = client_resolutions(&client_frames, &vip_s).len();
    let told: Vec<&Frame> = client_frames
        .iter()
        .filter(|f| f.is_arp_reply_for(&vip_s) || f.is_na_for(&vip_s))
        .collect();
    let told_by: Vec<&str> = told.iter().filter_map(|f| f.src_mac()).collect();
    println!(
        "{}: the client asked {asked} times, got {} answers (from {told_by:?}); \
         {} was told {resolved:?}; the client's entry: {entry:?}",
        vip_name(vip),
        told.len(),
        if vip.is_ipv4() { "arping" } else { "ndisc6" },
    );

    ensure!(
        !resolved.is_empty() && resolved.iter().all(|m| *m == owner.mac),
        "{}: the client was told {resolved:?} for {vip_s}, expected only the owner's {}",
        vip_name(vip),
        owner.mac
    );
    ensure!(
        entry.as_ref().and_then(|n| n.lladdr.as_deref()) == Some(owner.mac.as_str()),
        "{}: the client's kernel resolved {vip_s} to {entry:?}, not the owner's {}",
        vip_name(vip),
        owner.mac
    );
    // One answer per question: a VM answering too would make two.
    ensure!(
        asked >= 2 && told.len() == asked,
        "{}: the client asked {asked} times and got {} answers",
        vip_name(vip),
        told.len()
    );
    for (vm, frames) in others.iter().zip(&vm_frames) {
        let reached = client_resolutions(frames, &vip_s);
        ensure!(
            reached.is_empty(),
            "{}: the client's questions for {vip_s} reached {}: {reached:#?}",
            vip_name(vip),
            vm.role()
        );
    }
    let answered = rise(&before, &after, vip_id, answers)?;
    ensure!(
        answered >= asked as u64,
        "{}: status counts {answered} answered for {asked} questions",
        vip_name(vip)
    );
    s.finish()
}

#[test]
fn ipv4_arp_request_for_the_vip_is_answered_without_reaching_the_vms() -> Result<()> {
    resolution_is_answered_in_the_datapath(IpAddr::V4(VIP4), VIP4_ID)
}

#[test]
fn ipv6_neighbor_solicitation_for_the_vip_is_answered_without_reaching_the_vms() -> Result<()> {
    resolution_is_answered_in_the_datapath(IpAddr::V6(VIP6), VIP6_ID)
}

/// The counters of `ip -s link show dev` in the hypervisor: (tx packets,
/// tx dropped).
fn tx_counters(lab: &Lab, dev: &str) -> Result<(u64, u64)> {
    let out = lab.hv.ip(&["-s", "link", "show", "dev", dev])?;
    // "    TX:  bytes packets errors dropped carrier collsns"
    // "         1234     12      0       0       0       0"
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with("TX:") {
            let nums: Vec<u64> = lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [_, packets, _, dropped, ..] = nums[..] {
                return Ok((packets, dropped));
            }
        }
    }
    anyhow::bail!("no TX counters in `ip -s link show dev {dev}`: {out}")
}

/// While the master is down, before the backup claims the VIP, the client
/// keeps sending to the old master's MAC. A plain bridge floods those
/// frames to every port once it forgets that MAC (~340 reach the rogue in
/// the 3.5 s); with the fast path none reaches the rogue.
///
/// Where they go instead: vm1 still owns the VIP until vm2's claim, so the
/// client's XDP redirects them to vm1's port (counted as delivered), whose
/// veth drops them (its peer is down: tap-vm1's tx dropped counter). They
/// never reach the bridge, so TC egress has nothing to drop (not_owner
/// stays 0); it would catch them if they did.
#[test]
fn during_a_failover_the_rogue_receives_none_of_the_clients_frames() -> Result<()> {
    let mut s = Setup::start()?;
    let before = s.status()?;
    let tap_vm1_before = tx_counters(&s.lab, VM1.tap)?;
    let watches = VIPS
        .iter()
        .map(|&(vip, vip_id)| {
            Ok(Watch {
                prober: s.probe(vip)?,
                vip,
                vip_id,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let failovers = failover::crash_master_watching(&s.lab, &mut s.ha.master, watches)?;
    let after = s.status()?;
    let tap_vm1_after = tx_counters(&s.lab, VM1.tap)?;

    for (f, (vip, vip_id)) in failovers.iter().zip(VIPS) {
        println!("{}", f.timeline);
        // The frames that could have leaked: sent after the kill, before
        // vm2 answered.
        let vm2_back = f
            .probes
            .first_reply_from(VM2.role, f.kill_us)
            .context("vm2 never answered")?
            .at_us;
        let in_the_gap = f
            .probes
            .probes
            .iter()
            .filter(|p| p.sent_us >= f.kill_us && p.sent_us < vm2_back)
            .count();
        let delivered = rise(&before, &after, vip_id, deliveries)?;
        let not_owner = rise(&before, &after, vip_id, drops("not_owner"))?;
        println!(
            "{}: {in_the_gap} probes sent while the master was down; rogue received {}; \
             delivered +{delivered}, not_owner +{not_owner}",
            vip_name(vip),
            f.leaked_to_rogue
        );
        ensure!(
            in_the_gap >= 100,
            "{}: only {in_the_gap} probes were sent while the master was down: nothing to leak",
            vip_name(vip)
        );
        ensure!(
            f.leaked_to_rogue == 0,
            "{}: {} of the client's frames for the VIP reached the rogue VM",
            vip_name(vip),
            f.leaked_to_rogue
        );
        // Every probe of the client went to an owner: to vm1's port while
        // it still owned the VIP (a dead port), to vm2's after its claim.
        ensure!(
            delivered + not_owner >= f.probes.sent() as u64 * 9 / 10,
            "{}: {} probes sent, but only {delivered} delivered and {not_owner} dropped as not_owner",
            vip_name(vip),
            f.probes.sent()
        );
    }
    println!(
        "tap-vm1 (the dead master's port): tx packets +{}, tx dropped +{}",
        tap_vm1_after.0 - tap_vm1_before.0,
        tap_vm1_after.1 - tap_vm1_before.1
    );
    s.finish()
}

/// With vm1 owning the VIPs, the operator unbinds vm1's port (edits the
/// agent config). The agent vacates the VIPs: the client's frames stop
/// reaching vm1 at once (dropped as not_owner on their way to it), vm1's
/// claims no longer count, and the VIPs have no owner until vm2, the one
/// bound port left, claims them (keepalived in vm1 stops, vm2 takes over).
#[test]
fn unbinding_the_owners_port_vacates_the_vip_until_the_next_claim() -> Result<()> {
    // Frames in flight when the agent's status first shows the change.
    const IN_FLIGHT: i64 = 50_000;
    let mut s = Setup::start()?;
    let probers = VIPS
        .iter()
        .map(|&(vip, _)| s.probe(vip))
        .collect::<Result<Vec<_>>>()?;
    for p in &probers {
        p.wait_reply_from(VM1.role, 0, WAIT)?;
    }
    let vm1_sees = Capture::start(
        &s.lab.vm1.ns,
        "eth0",
        Some("in"),
        &format!("udp port {ECHO_PORT}"),
    )?;
    wait::until(WAIT, "vm1 to receive the client's probes", || {
        Ok(vm1_sees.frames().len() >= 20)
    })?;
    let before = s.status()?;

    // Unbind port 11: the VIPs are bound to vm2's port only.
    let edit_us = now_us();
    s.lab.bind_vips(&[VM2.port_id])?;
    wait::until(
        WAIT,
        "the agent to unbind port 11 and vacate both VIPs",
        || {
            let st = s.status()?;
            Ok(VIPS.iter().all(|&(_, id)| {
                st.vip(id)
                    .is_ok_and(|v| v.ports == [VM2.port_id] && v.owner.is_none())
            }))
        },
    )?;
    let unbound_us = now_us();
    println!(
        "the agent applied the edit within {:.0} ms",
        (unbound_us - edit_us) as f64 / 1000.0
    );

    // vm1 (still keepalived's master) announces the IPv4 VIP again: its
    // port is no longer bound, so this is no claim.
    rogue::arping_announce(&s.lab.vm1.ns, VIP4, 2, false)?;
    std::thread::sleep(Duration::from_secs(1));
    let vacant = s.status()?;
    for (vip, vip_id) in VIPS {
        let v = vacant.vip(vip_id)?;
        ensure!(
            v.owner.is_none(),
            "{}: owned again before any bound port claimed it: {:?}",
            vip_name(vip),
            v.owner
        );
        ensure!(
            v.generation == before.vip(vip_id)?.generation,
            "{}: generation moved while vacant: {} -> {}",
            vip_name(vip),
            before.vip(vip_id)?.generation,
            v.generation
        );
        let dropped = rise(&before, &vacant, vip_id, drops("not_owner"))?;
        ensure!(
            dropped >= 20,
            "{}: the client's frames were not dropped as not_owner while the VIP was vacant (+{dropped})",
            vip_name(vip)
        );
    }
    let refused = rise(&before, &vacant, VIP4_ID, drops("claim_not_bound"))?;
    ensure!(
        refused >= 2,
        "vm1's GARPs after the unbinding were not refused as claim_not_bound (+{refused})"
    );

    // The next claim: keepalived in vm1 stops (it tells vm2), vm2 becomes
    // master and announces both VIPs from the one bound port left.
    let handover_us = now_us();
    s.ha.master.stop();
    for (vip, vip_id) in VIPS {
        let owner = s.lab.agent()?.wait_owner(vip_id, VM2.port_id, WAIT)?;
        ensure!(
            owner.generation > before.vip(vip_id)?.generation,
            "{}: vm2's claim did not start a new generation: {owner:?}",
            vip_name(vip)
        );
    }
    for p in &probers {
        p.wait_reply_from(VM2.role, handover_us, WAIT)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let reached_vm1 = vm1_sees.stop();
    let logs: Vec<_> = probers.into_iter().map(Prober::stop).collect();

    for ((vip, _), log) in VIPS.iter().zip(&logs) {
        let to_vip = format!(" > {vip}.{ECHO_PORT}:");
        let frames: Vec<&Frame> = reached_vm1
            .iter()
            .filter(|f| f.line.contains(&to_vip))
            .collect();
        let before_edit = frames.iter().filter(|f| f.at_us < edit_us).count();
        let late: Vec<&&Frame> = frames
            .iter()
            .filter(|f| f.at_us > unbound_us + IN_FLIGHT)
            .collect();
        let last = frames.last().map(|f| f.at_us);
        println!(
            "{}: frames to the VIP reaching vm1: {before_edit} before the edit, last at {} ms from the edit; \
             {} replies from vm1, {} from vm2",
            vip_name(*vip),
            last.map_or("never".into(), |t| format!("{:+.1}", (t - edit_us) as f64 / 1000.0)),
            log.answered_by(VM1.role),
            log.replies_from_after(VM2.role, handover_us)
        );
        ensure!(
            before_edit > 0,
            "{}: the capture in vm1 saw no traffic even before the edit",
            vip_name(*vip)
        );
        ensure!(
            late.is_empty(),
            "{}: {} frames for the VIP reached vm1 after its port was unbound: {late:#?}",
            vip_name(*vip),
            late.len()
        );
        let late_replies = log
            .probes
            .iter()
            .filter_map(|p| p.reply.as_ref())
            .filter(|r| r.from == VM1.role && r.at_us > unbound_us + IN_FLIGHT)
            .count();
        ensure!(
            late_replies == 0,
            "{}: vm1 answered {late_replies} probes after its port was unbound",
            vip_name(*vip)
        );
    }
    s.finish()
}
