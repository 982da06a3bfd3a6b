//! A Windows Failover Cluster moves its cluster IP from vm1 to vm2, scripted
//! as Windows does it (`tests/src/wsfc.rs`): ARP probes and announcements,
//! DAD and an unsolicited NA, from nodes with random link-locals. With the agent, vm2 takes the address and the
//! client follows it, also while the rogue VM probes for the address the
//! whole time (which, with no agent, makes vm2 find a conflict and keep the
//! address offline: the test shows that first).
//!
//! Needs root, the built agent, python3-scapy. Run with `--test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use havip_tests::lab::{Lab, LinkLocalMode, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1, VM2};
use havip_tests::probe::{EchoServer, Prober};
use havip_tests::wsfc::{self, ProbeFlood};

const WAIT: Duration = Duration::from_secs(10);

fn cluster_ip_moves(rogue_probes: bool) -> Result<()> {
    let mut lab = Lab::build()?;
    // Windows gives each interface a random link-local, not the EUI-64 of
    // its MAC that the ports have in the agent's config.
    for vm in [&lab.vm1, &lab.vm2] {
        vm.use_link_local(LinkLocalMode::Random)?;
    }
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let _echo = [
        EchoServer::start(&lab.vm1, &vips, ECHO_PORT)?,
        EchoServer::start(&lab.vm2, &vips, ECHO_PORT)?,
    ];
    if rogue_probes {
        // The attack is real: with no agent, the rogue's probes keep the
        // cluster IP off vm2.
        let flood = ProbeFlood::start(&lab.rogue, VIP4, VIP6)?;
        let online = wsfc::bring_online(&lab.vm2, VIP4, VIP6)?;
        drop(flood);
        wsfc::take_offline(&lab.vm2, VIP4, VIP6)?;
        println!("no agent, the rogue probing: vm2 {online:?}");
        ensure!(
            online.ipv4_conflict.is_some() && online.ipv6_dad_failed,
            "without the agent the rogue's probes should have kept the address off vm2: {online:?}"
        );
    }
    lab.start_agent()?;
    let online = wsfc::bring_online(&lab.vm1, VIP4, VIP6)?;
    ensure!(
        online.both(),
        "vm1 could not bring the cluster IP online: {online:?}"
    );
    let agent = lab.agent()?;
    agent.wait_owner(VIP4_ID, VM1.port_id, WAIT)?;
    agent.wait_owner(VIP6_ID, VM1.port_id, WAIT)?;
    let probers = [
        Prober::start(
            &lab.client,
            SocketAddr::new(vips[0], ECHO_PORT),
            Duration::from_millis(20),
        )?,
        Prober::start(
            &lab.client,
            SocketAddr::new(vips[1], ECHO_PORT),
            Duration::from_millis(20),
        )?,
    ];
    for p in &probers {
        p.wait_reply_from("vm1", 0, WAIT)?;
    }

    // The move: the group goes offline on vm1 and comes online on vm2.
    let flood = rogue_probes
        .then(|| ProbeFlood::start(&lab.rogue, VIP4, VIP6))
        .transpose()?;
    let rejected_before = agent.status()?.drop_count("claim_not_bound");
    wsfc::take_offline(&lab.vm1, VIP4, VIP6)?;
    let moved_at = havip_tests::wait::now_us();
    let online = wsfc::bring_online(&lab.vm2, VIP4, VIP6)?;
    drop(flood);
    ensure!(
        online.both(),
        "vm2 could not bring the cluster IP online: {online:?}"
    );
    agent.wait_owner(VIP4_ID, VM2.port_id, WAIT)?;
    agent.wait_owner(VIP6_ID, VM2.port_id, WAIT)?;
    for p in &probers {
        p.wait_reply_from("vm2", moved_at, WAIT)?;
    }
    let rejected = agent.status()?.drop_count("claim_not_bound") - rejected_before;
    println!(
        "the cluster IP moved to vm2{}",
        if rogue_probes {
            format!(", the rogue's probes dropped ({rejected} claim_not_bound)")
        } else {
            String::new()
        }
    );
    if rogue_probes {
        ensure!(
            rejected > 10,
            "only {rejected} of the rogue's probes were counted"
        );
    }
    drop(probers);
    lab.tear_down()
}

#[test]
fn a_windows_cluster_ip_moves_to_another_node() -> Result<()> {
    cluster_ip_moves(false)
}

#[test]
fn a_windows_cluster_ip_moves_while_a_rogue_vm_probes_for_it() -> Result<()> {
    cluster_ip_moves(true)
}
