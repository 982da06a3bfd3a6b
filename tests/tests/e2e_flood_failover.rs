//! A rogue VM floods while its neighbour takes over a VIP across
//! hypervisors. vm1 (keepalived master, on hv-a) crashes; vm2 on hv-b,
//! beside the rogue, takes over while the rogue floods claims of the VIPs,
//! UDP from the VIP and spoofed frames:
//!
//! - hv-b's agent reports the new owner to etcd at once, and hv-a follows
//!   (vm2 its remote owner), so the client on hv-a reaches vm2;
//! - every frame of the flood is dropped and counted under its reason, and
//!   none reaches the client;
//! - the client loses no probe beyond the failover itself.
//!
//! Needs root, the built agent and controller, etcd, keepalived, tcpdump.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::cross_host::{CrossHost, Departure};
use havip_tests::flood::{self, Flood, RogueWatch};
use havip_tests::lab::{CLIENT, ECHO_PORT, ROGUE, VIP4, VM2};
use havip_tests::leftovers;
use havip_tests::probe::{ProbeLog, Prober};
use havip_tests::wait::now_us;

/// Frames per second the rogue sends, all kinds together.
const FLOOD_RATE: u32 = 20_000;
/// Etcd must hold the new owner this soon after its GARP, flood or not.
const REPORT_WITHIN_MS: f64 = 200.0;

/// Probes lost outside the failover: sent before the crash (less one
/// round trip's margin) or after the first probe vm2 answered, except the
/// last 50 ms (in flight when the prober stopped).
fn lost_beyond_failover(log: &ProbeLog, crash_us: i64) -> Vec<u64> {
    let first_vm2 = log
        .probes
        .iter()
        .find(|p| p.reply.as_ref().is_some_and(|r| r.from == "vm2"))
        .map(|p| p.sent_us)
        .unwrap_or(i64::MAX);
    let end = log.probes.last().map(|p| p.sent_us).unwrap_or(0) - 50_000;
    log.probes
        .iter()
        .filter(|p| p.reply.is_none() && p.sent_us <= end)
        .filter(|p| p.sent_us < crash_us - 20_000 || p.sent_us > first_vm2)
        .map(|p| p.seq)
        .collect()
}

#[test]
fn a_rogue_flood_during_a_cross_host_failover_delays_no_report_and_loses_no_probe() -> Result<()> {
    {
        let mut x = CrossHost::build()?;
        let kinds = flood::rogue_frames(&ROGUE, &VM2, &CLIENT);
        let watch = RogueWatch::start(x.vm("client"), &kinds)?;
        watch.ensure_sees_passing(x.vm("rogue"), &CLIENT, 3)?;
        let seen_before = watch.passed().len();
        let prober = Prober::start(
            x.vm("client"),
            SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
            Duration::from_millis(1),
        )?;
        prober.wait_reply_from("vm1", now_us(), Duration::from_secs(5))?;
        let hv_b = x.fabric.host("hv-b").agent()?;
        let before = hv_b.status()?;
        let mut flood = Flood::start(x.vm("rogue"), kinds, FLOOD_RATE)?;
        std::thread::sleep(Duration::from_secs(1));

        println!("vm1 crashes while the rogue floods hv-b at {FLOOD_RATE} frames/s");
        let h = x.hand_over(Departure::Crash)?;
        let delay_ms = h.report_delay_us() / 1000.0;
        println!(
            "   vm2's GARP on tap-vm2 at +{:.0} ms; etcd named vm2 the owner {delay_ms:.1} ms later",
            (h.garp_us - h.at_us) as f64 / 1000.0
        );
        ensure!(
            delay_ms < REPORT_WITHIN_MS,
            "the owner change reached etcd {delay_ms:.1} ms after the GARP, under the flood"
        );
        let followed = x.wait_followed(Duration::from_secs(5))?;
        println!(
            "   hv-a follows: vm2 its remote owner {:.0} ms after etcd had it",
            (followed - h.etcd.at_us) as f64 / 1000.0
        );
        prober
            .wait_reply_from("vm2", h.at_us, Duration::from_secs(15))
            .context("the client on hv-a never reached vm2")?;
        std::thread::sleep(Duration::from_secs(1));
        flood.stop();
        let after = x.fabric.host("hv-b").agent()?.status()?;
        let log = prober.stop();

        // Every frame of the flood dropped and counted, under its reason.
        for r in flood.rejections(&before, &after) {
            println!("   {}: {} sent, {} counted", r.reason, r.sent, r.counted);
            ensure!(r.all_counted(), "not every frame counted: {r:?}");
        }
        let passed = &watch.passed()[seen_before..];
        ensure!(
            passed.is_empty(),
            "{} rogue frames reached the client, first: {:?}",
            passed.len(),
            passed.first()
        );
        let (gap, lost) = log.longest_gap();
        let beyond = lost_beyond_failover(&log, h.at_us);
        println!(
            "client: {} probes, longest gap {gap:.0} ms ({lost} lost in it), {} lost beyond the failover",
            log.sent(),
            beyond.len()
        );
        ensure!(
            beyond.is_empty(),
            "probes lost beyond the failover: {beyond:?}"
        );
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
