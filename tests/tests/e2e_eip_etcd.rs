//! The EIP through the controller, as an operator and a tenant use it: a
//! pool of public addresses, an EIP allocated and associated with the
//! HAVIP with `havipctl`, and the gateway following etcd (`gateway run
//! --etcd --gateway`): the internet's traffic to the EIP reaches the
//! keepalived master on one hypervisor, then the backup on another after
//! the master crashes; disassociated, the EIP's traffic stops at the
//! gateway (dropped, counted); associated again, it resumes.
//!
//! The gateway's internal side is a port of the fabric's bridge, so it
//! shares the hypervisors' L2 (and reaches etcd there).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use havip_tests::eip_gateway::{Eips, Gateway, Probes};
use havip_tests::fabric::{port_id, Fabric, ETCD_URL, OPERATOR_TOKEN, PROJECT_TOKEN};
use havip_tests::keepalived;
use havip_tests::lab::{ECHO_PORT, VIP4, VM1, VM2};
use havip_tests::probe::EchoServer;
use havip_tests::wait;

const EIP: &str = "198.51.100.19";

/// Waits until `havipctl eip show` names `port` as the master.
fn wait_eip_master(f: &Fabric, eip: &str, port: &str, timeout: Duration) -> Result<()> {
    wait::until(timeout, &format!("the EIP's master to be {port}"), || {
        let shown = f.havipctl(PROJECT_TOKEN, &["eip", "show", eip])?;
        Ok(shown["association"]["master"]["port"] == port)
    })
}

#[test]
fn eip_follows_the_association_and_the_master_through_etcd() -> Result<()> {
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2])])?;
    for h in ["hv-a", "hv-b"] {
        f.host_mut(h).start_agent()?;
    }
    let vip = f.create_vip("web", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;

    // The operator's pool, the tenant's EIP (not associated yet).
    f.havipctl(
        OPERATOR_TOKEN,
        &[
            "eip-pool",
            "create",
            "pub",
            "--gateway",
            "gw-1",
            "--range",
            "198.51.100.16/28",
        ],
    )?;
    let eip = f.havipctl(
        PROJECT_TOKEN,
        &["eip", "allocate", "--pool", "pub", "--address", EIP],
    )?;
    let eip = eip["id"].as_str().context("no EIP id")?.to_string();

    let (vm1, vm2) = (f.vm("vm1"), f.vm("vm2"));
    let gw = Gateway::start(
        (&f.ctl, "fabric"),
        (&f.stem, &f.dir),
        &[vm1, vm2],
        Eips::Etcd {
            url: ETCD_URL.into(),
            name: "gw-1".into(),
            reach: "10.99.0.99/24".into(),
        },
    )?;
    let vips = [IpAddr::V4(VIP4)];
    let _echo = [
        EchoServer::start(vm1, &vips, ECHO_PORT)?,
        EchoServer::start(vm2, &vips, ECHO_PORT)?,
    ];
    let (mut master, _backup) = keepalived::start_pair(&f.dir, vm1, vm2)?;
    let held = format!("{EIP} -> {EIP}");
    gw.wait(|s| s.contains(&held), Duration::from_secs(10))
        .with_context(|| format!("the gateway does not hold the EIP:\n{}", gw.log_text()))?;

    // Allocated, not associated: the gateway drops its traffic, counted.
    let eip_ip: IpAddr = EIP.parse()?;
    let probes = Probes::start(&gw.inet, eip_ip)?;
    let dropped = gw.counter("no_owner")?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        probes.replies_from_since("vm", t) == 0,
        "a reply through an EIP not associated"
    );
    ensure!(gw.counter("no_owner")? > dropped, "no counted drop");

    // Associated with havipctl: the master answers through the EIP, and
    // the EIP's view shows that master.
    let t = Instant::now();
    f.havipctl(PROJECT_TOKEN, &["eip", "associate", &eip, &vip])?;
    probes
        .wait_reply_from("vm1", t, Duration::from_secs(10))
        .with_context(|| format!("{}\n{}", gw.status().unwrap_or_default(), gw.log_text()))?;
    println!(
        "associated: replies from vm1 {:?} after the call",
        t.elapsed()
    );
    wait_eip_master(&f, &eip, &port_id(&VM1), Duration::from_secs(5))?;

    // The master crashes: the backup on the other hypervisor answers.
    let crash = Instant::now();
    master.crash(vm1)?;
    let resumed = probes.wait_reply_from("vm2", crash, Duration::from_secs(15))?;
    println!(
        "failover: replies from vm2 {:?} after the crash",
        resumed - crash
    );
    wait_eip_master(&f, &eip, &port_id(&VM2), Duration::from_secs(5))?;

    // Disassociated: the traffic stops at the gateway, counted.
    f.havipctl(PROJECT_TOKEN, &["eip", "disassociate", &eip])?;
    gw.wait(|s| s.contains(&held), Duration::from_secs(5))?;
    let dropped = gw.counter("no_owner")?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        probes.replies_from_since("vm", t) == 0,
        "replies through a disassociated EIP"
    );
    ensure!(gw.counter("no_owner")? > dropped, "no counted drop");
    let shown = f.havipctl(PROJECT_TOKEN, &["eip", "show", &eip])?;
    ensure!(shown["association"].is_null(), "{shown}");

    // Associated again: it resumes, to the current master.
    let t = Instant::now();
    f.havipctl(PROJECT_TOKEN, &["eip", "associate", &eip, &vip])?;
    probes.wait_reply_from("vm2", t, Duration::from_secs(10))?;
    println!(
        "associated again: replies from vm2 {:?} after the call",
        t.elapsed()
    );
    drop(probes);
    drop(gw);
    Ok(())
}
