//! Across hypervisors, through the controller: VIPs created and bound with
//! the API, agents reading etcd, keepalived failing over between VMs on
//! different hosts, owners reported back and programmed remotely; and an
//! etcd outage under traffic.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use havip_tests::fabric::{port_id, Fabric, OPERATOR_TOKEN, PROJECT_TOKEN, SUBNET};
use havip_tests::keepalived::{self, Keepalived};
use havip_tests::lab::{Vm, CLIENT, ECHO_PORT, ROGUE, VIP4, VIP6, VM1, VM2};
use havip_tests::probe::{EchoServer, Prober};
use havip_tests::wait::{self, now_us};
use serde_json::Value;

const PROBE_EVERY: Duration = Duration::from_millis(10);

/// The echo services and the keepalived pair (vm1 master) on both VIPs.
struct Pair {
    master: Keepalived,
    _backup: Keepalived,
    _echo: [EchoServer; 2],
}

fn start_pair(f: &Fabric) -> Result<Pair> {
    let (vm1, vm2) = (f.vm("vm1"), f.vm("vm2"));
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let echo = [
        EchoServer::start(vm1, &vips, ECHO_PORT)?,
        EchoServer::start(vm2, &vips, ECHO_PORT)?,
    ];
    let (master, backup) = keepalived::start_pair(&f.dir, vm1, vm2)?;
    Ok(Pair {
        master,
        _backup: backup,
        _echo: echo,
    })
}

/// Waits until the API names `vm`'s port as the master of `vip`; returns
/// the wall-clock time (µs) it first did, polling every 2 ms.
fn wait_api_master(f: &Fabric, vip: &str, vm: &Vm, timeout: Duration) -> Result<i64> {
    let want = port_id(&vm.spec);
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        last = f.get_vip(vip)?;
        if last["master"]["port"] == want.as_str() {
            return Ok(now_us());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    anyhow::bail!("the API did not report {want} as master of {vip} in {timeout:?}; last: {last}")
}

/// Creates the two VIPs bound to vm1 and vm2 and waits until every bound
/// host programmed them (available).
fn create_vips(f: &Fabric) -> Result<[String; 2]> {
    let v4 = f.create_vip("web-v4", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    let v6 = f.create_vip("web-v6", IpAddr::V6(VIP6), &[&VM1, &VM2])?;
    for id in [&v4, &v6] {
        let vip = f.wait_status(id, "available", Duration::from_secs(20))?;
        ensure!(
            vip["pending_ports"].as_array().is_some_and(Vec::is_empty),
            "{id} available with pending ports: {vip}"
        );
    }
    Ok([v4, v6])
}

#[test]
fn failover_across_hypervisors_through_the_controller() -> Result<()> {
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2]), ("hv-c", &[CLIENT])])?;
    for h in ["hv-a", "hv-b", "hv-c"] {
        f.host_mut(h).start_agent()?;
    }
    let [v4, v6] = create_vips(&f)?;
    let mut pair = start_pair(&f)?;
    for id in [&v4, &v6] {
        wait_api_master(&f, id, f.vm("vm1"), Duration::from_secs(10))
            .context("after keepalived started")?;
    }

    // The client's host answers and delivers for the VIP with vm1's MAC,
    // which it learned from the controller (vm1 lives on hv-a).
    let vm1_port = f.host("hv-a").agent()?.status()?.port_on(VM1.tap)?;
    let vm2_port = f.host("hv-b").agent()?.status()?.port_on(VM2.tap)?;
    wait::until(
        Duration::from_secs(5),
        "hv-c to program vm1 as remote owner",
        || {
            let s = f.host("hv-c").agent()?.status()?;
            Ok(s.vip_at(&VIP4.to_string())?
                .owner
                .as_ref()
                .is_some_and(|o| o.port_id == vm1_port && o.ifindex == 0))
        },
    )?;

    let client = f.vm("client");
    let probers = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)]
        .map(|vip| Prober::start(client, SocketAddr::new(vip, ECHO_PORT), PROBE_EVERY));
    let probers = probers.into_iter().collect::<Result<Vec<_>>>()?;
    for p in &probers {
        p.wait_reply_from("vm1", now_us(), Duration::from_secs(5))
            .context("before the crash, vm1 does not answer")?;
    }

    let kill_us = now_us();
    pair.master.crash(f.vm("vm1"))?;
    let api_us = wait_api_master(&f, &v4, f.vm("vm2"), Duration::from_secs(15))?;
    for p in &probers {
        p.wait_reply_from("vm2", kill_us, Duration::from_secs(15))
            .context("after the crash, vm2 does not answer through the other hosts")?;
    }

    // The API followed the datapath within 100 ms of the owner change.
    let owner = f.host("hv-b").agent()?.wait_owner(
        f.host("hv-b")
            .agent()?
            .status()?
            .vip_at(&VIP4.to_string())?
            .vip_id,
        vm2_port,
        Duration::from_secs(5),
    )?;
    let lag_ms = (api_us / 1000 - owner.since_unix_ms) as f64;
    println!(
        "owner change on hv-b at +{} ms after the kill; the API reported it {lag_ms} ms later",
        owner.since_unix_ms - kill_us / 1000
    );
    ensure!(
        lag_ms < 100.0,
        "the API reported the new master {lag_ms} ms after the owner change in the datapath"
    );
    wait_api_master(&f, &v6, f.vm("vm2"), Duration::from_secs(5))?;

    // Every other host follows: vm2 is the remote owner on hv-a and hv-c.
    for h in ["hv-a", "hv-c"] {
        wait::until(
            Duration::from_secs(5),
            &format!("{h} to follow vm2"),
            || {
                let s = f.host(h).agent()?.status()?;
                Ok(s.vip_at(&VIP4.to_string())?
                    .owner
                    .as_ref()
                    .is_some_and(|o| o.port_id == vm2_port && o.ifindex == 0))
            },
        )?;
    }
    for p in probers {
        let log = p.stop();
        ensure!(
            log.answered_by("vm2") > 0,
            "no replies from vm2: {:?}",
            log.responders()
        );
    }
    check_failover_history(&f, &v4)?;
    Ok(())
}

/// The failover shows in the history: `havipctl events` (operator: with
/// hosts) has vm1's port on hv-a moving to vm2's on hv-b, newest first,
/// after the first claim of vm1; the tenant's API answer names no host.
fn check_failover_history(f: &Fabric, vip: &str) -> Result<()> {
    let (p1, p2) = (port_id(&VM1), port_id(&VM2));
    let mut events = Value::Null;
    wait::until(
        Duration::from_secs(5),
        "the failover in the history",
        || {
            events = f.havipctl(OPERATOR_TOKEN, &["events", vip])?;
            Ok(events["events"][0]["to"]["port"] == p2.as_str())
        },
    )?;
    let newest = &events["events"][0];
    ensure!(
        newest["from"]["port"] == p1.as_str()
            && newest["from"]["host"] == "hv-a"
            && newest["from"]["vm"] == "vm1"
            && newest["to"]["host"] == "hv-b"
            && newest["to"]["vm"] == "vm2",
        "the failover event: {events}"
    );
    let first = events["events"]
        .as_array()
        .and_then(|a| a.last())
        .context("no events")?;
    ensure!(
        first["to"]["port"] == p1.as_str() && first["from"].is_null(),
        "the first claim: {events}"
    );
    let (status, body) = f.http(
        "GET",
        &format!("{}/v1/havips/{vip}/events", havip_tests::fabric::API_URL),
        Some(PROJECT_TOKEN),
        None,
    )?;
    ensure!(
        status == 200 && !body.contains("hv-"),
        "tenant's history: {status} {body}"
    );
    println!("failover history of {vip}: {events}");
    Ok(())
}

#[test]
fn an_etcd_outage_keeps_forwarding_and_failover_and_the_agents_catch_up() -> Result<()> {
    // The HA pair and the client on one host; a bystander host (the rogue
    // VM: a port in the subnet, not bound).
    let mut f = Fabric::build(&[("hv-a", &[VM1, VM2, CLIENT]), ("hv-b", &[ROGUE])])?;
    for h in ["hv-a", "hv-b"] {
        f.host_mut(h).start_agent()?;
    }
    let [v4, _v6] = create_vips(&f)?;
    let mut pair = start_pair(&f)?;
    wait_api_master(&f, &v4, f.vm("vm1"), Duration::from_secs(10))?;
    let client = f.vm("client");
    let prober = Prober::start(
        client,
        SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
        PROBE_EVERY,
    )?;
    prober.wait_reply_from("vm1", now_us(), Duration::from_secs(5))?;

    f.stop_etcd();
    let outage_us = now_us();
    prober
        .wait_reply_from("vm1", outage_us + 500_000, Duration::from_secs(5))
        .context("forwarding stopped with etcd")?;
    pair.master.crash(f.vm("vm1"))?;
    prober
        .wait_reply_from("vm2", outage_us, Duration::from_secs(15))
        .context("failover on the host stopped working with etcd down")?;
    let vm2_port = f.host("hv-a").agent()?.status()?.port_on(VM2.tap)?;
    let vip_id = f
        .host("hv-a")
        .agent()?
        .status()?
        .vip_at(&VIP4.to_string())?
        .vip_id;
    f.host("hv-a")
        .agent()?
        .wait_owner(vip_id, vm2_port, Duration::from_secs(5))?;

    // The agent restarts while etcd is still down: it serves the state it
    // kept from etcd (and the owners pinned in the maps).
    f.host_mut("hv-a").restart_agent()?;
    let log = f.host("hv-a").agent()?.log_text();
    ensure!(
        log.contains("serving the state kept in"),
        "the restarted agent did not start from its kept state:\n{log}"
    );
    prober
        .wait_reply_from("vm2", now_us(), Duration::from_secs(5))
        .context("forwarding stopped after the agent restarted with etcd down")?;

    // etcd back: the owner learned during the outage reaches the API and
    // the bystander host.
    f.start_etcd()?;
    wait_api_master(&f, &v4, f.vm("vm2"), Duration::from_secs(20))
        .context("the agents did not catch up after etcd came back")?;
    wait::until(Duration::from_secs(10), "hv-b to follow vm2", || {
        let s = f.host("hv-b").agent()?.status()?;
        Ok(s.vip_at(&VIP4.to_string())?
            .owner
            .as_ref()
            .is_some_and(|o| o.port_id == vm2_port && o.ifindex == 0))
    })?;
    let log = prober.stop();
    ensure!(log.answered_by("vm2") > 0, "no replies from vm2");
    Ok(())
}

#[test]
fn a_vip_the_datapath_cannot_hold_becomes_failed_with_the_reason() -> Result<()> {
    let mut f = Fabric::build(&[("hv-a", &[VM1])])?;
    f.host_mut("hv-a").start_agent()?;
    // 16 more ports on hv-a (their VMs need not run: the maps hold the
    // binding either way).
    let extra: Vec<String> = (1..=16).map(|i| format!("port-x{i}")).collect();
    for (i, port) in extra.iter().enumerate() {
        f.havipctl(
            OPERATOR_TOKEN,
            &[
                "register",
                "port",
                port,
                "--vm",
                &format!("vm-x{i}"),
                "--subnet",
                SUBNET,
                "--mac",
                &format!("02:00:00:00:01:{:02x}", i + 1),
                "--ip",
                &format!("10.0.6.{}", 100 + i),
                "--host",
                "hv-a",
                "--interface",
                &format!("tap-x{i}"),
            ],
        )?;
    }
    let vip = f.create_vip("wide", IpAddr::V4(VIP4), &[&VM1])?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;
    // The controller refuses a limit above what the datapath holds (16
    // ports per VIP), and a 17th port.
    let refused = f.havipctl(
        OPERATOR_TOKEN,
        &["limits", "set-vip", &vip, "--ports-per-vip", "20"],
    );
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("at most 16 ports per VIP")),
        "ports_per_vip 20 accepted: {refused:?}"
    );
    f.havipctl(
        OPERATOR_TOKEN,
        &["limits", "set-vip", &vip, "--ports-per-vip", "16"],
    )?;
    let mut bind: Vec<&str> = vec!["bind", &vip];
    bind.extend(extra[..15].iter().map(String::as_str));
    f.havipctl(PROJECT_TOKEN, &bind)?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;
    let refused = f.havipctl(PROJECT_TOKEN, &["bind", &vip, &extra[15]]);
    ensure!(refused.is_err(), "a 17th port was bound: {refused:?}");

    // A record written past the controller with 17 ports: the agent acks
    // it failed with the reason.
    let key = format!("/havip/v1/vips/{vip}");
    let mut record: Value =
        serde_json::from_slice(&f.etcd_get(&key)?.with_context(|| format!("no {key}"))?)?;
    let generation = record["generation"].as_u64().unwrap_or_default() + 1;
    record["generation"] = generation.into();
    record["status"] = "creating".into();
    record["ports"]
        .as_array_mut()
        .context("no ports in the record")?
        .push(serde_json::json!({"port": extra[15], "vm": "vm-x15", "host": "hv-a"}));
    f.etcd_put(&key, record.to_string().as_bytes())?;
    let failed = f.wait_status(&vip, "failed", Duration::from_secs(20))?;
    let reason = failed["status_reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("17 bound ports")
            && reason.contains("at most 16")
            && !reason.contains("hv-a"),
        "the reason does not say why, or names the host to the tenant: {failed}"
    );
    // The datapath keeps what it had: the 16 ports.
    let status = f.host("hv-a").agent()?.status()?;
    ensure!(
        status.vip_at(&VIP4.to_string())?.ports.len() == 16,
        "the datapath changed the VIP it could not program: {:?}",
        status.vip_at(&VIP4.to_string())?
    );

    // Back within what the datapath holds: available again.
    f.havipctl(PROJECT_TOKEN, &["unbind", &vip, &extra[15]])?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;
    wait::until(
        Duration::from_secs(5),
        "hv-a to hold 16 ports for the VIP",
        || {
            let s = f.host("hv-a").agent()?.status()?;
            Ok(s.vip_at(&VIP4.to_string())?.ports.len() == 16)
        },
    )?;
    Ok(())
}

/// Who each host's datapath and the API say owns VIP4: (port, remote?)
/// per host, and the API's master port.
fn owners_everywhere(f: &Fabric, hosts: &[&str], vip: &str) -> Result<(Vec<(u32, bool)>, String)> {
    let mut seen = Vec::new();
    for h in hosts {
        let s = f.host(h).agent()?.status()?;
        let o = s.vip_at(&VIP4.to_string())?.owner.clone();
        let o = o.with_context(|| format!("{h} has no owner"))?;
        seen.push((o.port_id, o.ifindex == 0));
    }
    let api = f.get_vip(vip)?["master"]["port"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((seen, api))
}

#[test]
fn two_hosts_racing_for_a_vip_converge_on_one_owner() -> Result<()> {
    let hosts = ["hv-a", "hv-b", "hv-c"];
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2]), ("hv-c", &[CLIENT])])?;
    for h in hosts {
        f.host_mut(h).start_agent()?;
    }
    let vip = f.create_vip("contested", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;
    let vm1_port = f.host("hv-a").agent()?.status()?.port_on(VM1.tap)?;
    let vm2_port = f.host("hv-b").agent()?.status()?.port_on(VM2.tap)?;
    let port_of = |port: u32| {
        if port == vm1_port {
            port_id(&VM1)
        } else {
            port_id(&VM2)
        }
    };

    let mut winners = Vec::new();
    for round in 0..10 {
        // Both VMs announce the VIP at the same moment, three times each
        // (GARP requests, or unsolicited replies on odd rounds).
        let vip_s = VIP4.to_string();
        let announcers: Vec<_> = ["vm1", "vm2"]
            .into_iter()
            .map(|role| {
                let mut c = f.vm(role).ns.cmd("arping");
                c.args([
                    "-q", "-U", "-i", "eth0", "-S", &vip_s, "-c", "3", "-W", "0.02",
                ]);
                if round % 2 == 1 {
                    c.arg("-P");
                }
                c.arg(&vip_s);
                std::thread::spawn(move || c.output())
            })
            .collect();
        for a in announcers {
            a.join()
                .map_err(|_| anyhow::anyhow!("announcer panicked"))??;
        }
        // Every host and the API agree on one owner: local on its host,
        // remote on the others.
        let mut last = None;
        let agreed = wait::until(
            Duration::from_secs(5),
            "the hosts and the API to agree",
            || {
                let (seen, api) = owners_everywhere(&f, &hosts, &vip)?;
                let port = seen[0].0;
                let owner_host = if port == vm1_port { 0 } else { 1 };
                let ok = (port == vm1_port || port == vm2_port)
                    && seen.iter().all(|(p, _)| *p == port)
                    && seen
                        .iter()
                        .enumerate()
                        .all(|(i, (_, remote))| *remote == (i != owner_host))
                    && api == port_of(port);
                last = Some((seen, api));
                Ok(ok)
            },
        );
        agreed.with_context(|| format!("round {round}: last seen {last:?}"))?;
        winners.push(last.expect("set by the wait").1);
    }
    println!("winners: {winners:?}");
    Ok(())
}
