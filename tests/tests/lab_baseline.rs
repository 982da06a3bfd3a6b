//! The lab itself, without the agent: a plain Linux bridge. keepalived must
//! already fail over here, the prober must tell who answers, and the rogue
//! can take the VIP (nothing stops it yet). This is the baseline the e2e
//! tests compare against. Needs root; run with `--test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use havip_tests::keepalived::{self, Keepalived, Role};
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID};
use havip_tests::probe::{EchoServer, Prober};
use havip_tests::{failover, leftovers, rogue};

#[test]
fn plain_bridge_keepalived_failover_ipv4() -> Result<()> {
    plain_bridge_failover(IpAddr::V4(VIP4), VIP4_ID, "GARP")
}

#[test]
fn plain_bridge_keepalived_failover_ipv6() -> Result<()> {
    plain_bridge_failover(IpAddr::V6(VIP6), VIP6_ID, "unsolicited NA")
}

/// keepalived fails over on a plain bridge: vm1 answers on `vip`, crashes,
/// and vm2 takes over after announcing it (`claim`).
fn plain_bridge_failover(vip: IpAddr, vip_id: u32, claim: &str) -> Result<()> {
    {
        let lab = Lab::build()?;
        let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        let _echo1 = EchoServer::start(&lab.vm1, &vips, ECHO_PORT)?;
        let _echo2 = EchoServer::start(&lab.vm2, &vips, ECHO_PORT)?;
        let mut master = Keepalived::start(&lab, &lab.vm1, &lab.vm2, Role::Master)?;
        let _backup = Keepalived::start(&lab, &lab.vm2, &lab.vm1, Role::Backup)?;
        keepalived::wait_master(&lab.vm1, Duration::from_secs(10))?;

        let prober = Prober::start(
            &lab.client,
            SocketAddr::new(vip, ECHO_PORT),
            Duration::from_millis(10),
        )?;
        let f = failover::crash_master(&lab, &mut master, prober, vip, vip_id)?;
        println!("{}", f.timeline);
        ensure!(
            f.probes.answered_by("vm1") > 0,
            "vm1 never answered on {vip}"
        );
        ensure!(
            f.probes.replies_from_after("vm2", f.kill_us) > 10,
            "vm2 did not keep answering on {vip}"
        );
        ensure!(!f.claims.is_empty(), "no {claim} from vm2 seen on tap-vm2");
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// Without the agent, nothing stops a rogue VM: its GARP steals the VIP's
/// traffic. (With the agent, e2e_rogue shows it cannot.)
#[test]
fn plain_bridge_rogue_steals_the_vip() -> Result<()> {
    let lab = Lab::build()?;
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let _echo1 = EchoServer::start(&lab.vm1, &vips, ECHO_PORT)?;
    let _echo_rogue = EchoServer::start(&lab.rogue, &vips, ECHO_PORT)?;
    let _master = Keepalived::start(&lab, &lab.vm1, &lab.vm2, Role::Master)?;
    keepalived::wait_master(&lab.vm1, Duration::from_secs(10))?;
    let prober = Prober::start(
        &lab.client,
        SocketAddr::new(VIP4.into(), ECHO_PORT),
        Duration::from_millis(10),
    )?;
    prober.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
    // Past the client's ARP locktime (1 s), so a GARP would be taken.
    std::thread::sleep(Duration::from_millis(1500));
    let t = havip_tests::wait::now_us();
    rogue::configure_vips(&lab.rogue, VIP4, VIP6)?;
    let mut attack = rogue::Attack::default();
    rogue::garp_requests(&lab.rogue, VIP4, 3, &mut attack)?;
    let stolen = prober.wait_reply_from("rogue", t, Duration::from_secs(5));
    let log = prober.stop();
    println!("responders: {:?}", log.responders());
    ensure!(
        stolen.is_ok(),
        "on a plain bridge the rogue's GARP should steal the VIP (lab sanity)"
    );
    Ok(())
}
