//! The controller and the agents on etcd (issue 4): API create+bind
//! operations per second, the time from an API bind (and unbind) to the
//! agent's datapath map holding it, and the time from a claim on one host
//! to the remote owner being programmed on another.
//!
//! All on one fabric ([`crate::fabric`]): etcd and the controller in the
//! control namespace, hv-a with vm1 and hv-b with vm2, each with its agent
//! reading etcd. Map contents are read from the agents' pinned maps, polled
//! every 100 µs from this process.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use aya::maps::{HashMap as BpfHashMap, MapData};
use havip_common::{maps, NetworkAddr, Vip};
use serde_json::{json, Value};

use crate::bench::frames;
use crate::bench::owners::{pinned, OwnerRecord};
use crate::bench::wire::{PacketSocket, SocketOptions};
use crate::bench::{Context, Figure, Section, Target, Unit};
use crate::fabric::{
    self, port_id, Fabric, API_URL, OPERATOR_TOKEN, PROJECT, PROJECT_TOKEN, SUBNET,
};
use crate::lab::{VIP4, VM1, VM2};
use crate::netns::Netns;

/// VIPs created per round, by this many API clients at once.
const CREATES_PER_ROUND: usize = 60;
const API_CLIENTS: usize = 4;
/// Binds (and unbinds) measured, and owner switches.
const BINDS: usize = 100;
const SWITCHES: usize = 100;
const POLL: Duration = Duration::from_micros(100);

pub fn run(ctx: &mut Context) -> Result<Section> {
    let rounds = ctx.options.rounds.max(3);
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2])])?;
    for h in ["hv-a", "hv-b"] {
        f.host_mut(h).start_agent()?;
    }
    // Enough room on vm1's port for every VIP of a round.
    let (status, body) = f.http(
        "PUT",
        &format!("{API_URL}/v1/ports/{}/limits", port_id(&VM1)),
        Some(OPERATOR_TOKEN),
        Some(&json!({ "vips_per_port": CREATES_PER_ROUND + 10 }).to_string()),
    )?;
    ensure!(
        status == 200,
        "raising vm1's port limit: HTTP {status}: {body}"
    );
    // And in the subnet and the project (quotas of 50 and 100 by default).
    let (status, body) = f.http(
        "PUT",
        &format!("{API_URL}/v1/limits/projects/{PROJECT}"),
        Some(OPERATOR_TOKEN),
        Some(&json!({ "vips_per_subnet": CREATES_PER_ROUND + 10, "vips_per_project": CREATES_PER_ROUND + 10 }).to_string()),
    )?;
    ensure!(
        status == 200,
        "raising the project's HAVIP quotas: HTTP {status}: {body}"
    );

    let mut ops = Vec::new();
    for round in 0..rounds {
        ops.push(create_round(&f, round)?);
    }
    let (binds, unbinds) = bind_latencies(&f)?;
    let switches = claim_to_remote_owner(&f)?;

    let figures = vec![
        Figure::median("API create+bind, operations per second", Unit::Count, &ops),
        Figure::percentile(
            "API bind -> agent map, p50",
            Unit::Microseconds,
            &binds,
            50.0,
        ),
        Figure::percentile(
            "API bind -> agent map, p99",
            Unit::Microseconds,
            &binds,
            99.0,
        ),
        Figure::percentile(
            "API unbind -> agent map, p50",
            Unit::Microseconds,
            &unbinds,
            50.0,
        ),
        Figure::percentile(
            "API unbind -> agent map, p99",
            Unit::Microseconds,
            &unbinds,
            99.0,
        ),
        Figure::percentile(
            "claim on hv-b -> remote owner on hv-a, p50",
            Unit::Microseconds,
            &switches,
            50.0,
        ),
        Figure::percentile(
            "claim on hv-b -> remote owner on hv-a, p99",
            Unit::Microseconds,
            &switches,
            99.0,
        )
        .with_target(Target::Below(50_000.0)),
    ];
    let charts = vec![crate::bench::chart::Chart::Distribution {
        title: "Controller and agents: latencies".into(),
        axis: "latency".into(),
        unit: Unit::Microseconds,
        series: vec![
            ("API bind -> agent map".into(), binds),
            ("API unbind -> agent map".into(), unbinds),
            ("claim -> remote owner".into(), switches),
        ],
        limit: Some(50_000.0),
    }];
    Ok(Section {
        title: "Controller and agents on etcd".into(),
        method: vec![
            "One etcd (Debian's etcd-server) and one havip-controller in a control namespace; hypervisors hv-a (vm1) and hv-b (vm2) on an L2 fabric, each with `havip-agent run --etcd --host`.".into(),
            format!("Create+bind: {API_CLIENTS} API clients create {CREATES_PER_ROUND} HAVIPs per round (allocated address, vm1's port bound in the same request, over HTTP from the control namespace); operations per second of each round, median over {rounds} rounds. Each round's VIPs are deleted before the next (not timed)."),
            format!("Bind -> map: {BINDS} times, bind vm1's port to a HAVIP through the API, then poll hv-a's pinned `havip_vips` map every 100 µs until it lists the port; the same for the unbind. From the start of the API request."),
            format!("Claim -> remote owner: {SWITCHES} gratuitous ARPs, alternately from vm2 (hv-b) and vm1 (hv-a); from the claim's time in the claiming host's `havip_owners` record to the other host's `havip_owners` holding the new owner as remote (ifindex 0)."),
        ],
        figures,
        charts,
    })
}

/// One round of creates: the operations per second.
fn create_round(f: &Fabric, round: usize) -> Result<f64> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..API_CLIENTS {
        let names: Vec<String> = (c..CREATES_PER_ROUND)
            .step_by(API_CLIENTS)
            .map(|k| format!("bench-{round}-{k}"))
            .collect();
        clients.push(
            f.ctl
                .spawn_thread("api-client", move || -> Result<Vec<String>> {
                    let mut ids = Vec::new();
                    for name in names {
                        let body =
                            json!({ "name": name, "subnet": SUBNET, "ports": [port_id(&VM1)] });
                        let (status, reply) = fabric::http(
                            "POST",
                            &format!("{API_URL}/v1/havips"),
                            Some(PROJECT_TOKEN),
                            Some(&body.to_string()),
                        )?;
                        ensure!(
                            status == 201 || status == 200,
                            "create {name}: HTTP {status}: {reply}"
                        );
                        let v: Value = serde_json::from_str(&reply)?;
                        ids.push(v["id"].as_str().context("no id")?.to_owned());
                    }
                    Ok(ids)
                })?,
        );
    }
    let mut ids = Vec::new();
    for c in clients {
        ids.extend(
            c.join()
                .map_err(|_| anyhow::anyhow!("API client panicked"))???,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Clean up: wait until every VIP is available (hv-a acked), delete.
    for id in &ids {
        f.wait_status(id, "available", Duration::from_secs(60))?;
    }
    let (status, reply) = f.http(
        "POST",
        &format!("{API_URL}/v1/havips/batch-delete"),
        Some(PROJECT_TOKEN),
        Some(&json!({ "ids": ids }).to_string()),
    )?;
    ensure!(status == 200, "batch delete: HTTP {status}: {reply}");
    Ok(CREATES_PER_ROUND as f64 / elapsed)
}

/// Polls `check` every [`POLL`] for up to 10 s; the time it first held.
fn poll_until(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if check()? {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within 10 s");
        }
        std::thread::sleep(POLL);
    }
}

/// The vip id hv-a's datapath knows `address` by.
fn vip_id_at(f: &Fabric, host: &str, address: IpAddr) -> Result<u32> {
    let status = f.host(host).agent()?.status()?;
    Ok(status.vip_at(&address.to_string())?.vip_id)
}

/// Bind and unbind latencies (µs), API request to hv-a's map.
fn bind_latencies(f: &Fabric) -> Result<(Vec<f64>, Vec<f64>)> {
    let address = IpAddr::V4(Ipv4Addr::new(10, 0, 6, 77));
    let vip = f.create_vip("bench-bind", address, &[])?;
    let agent = f.host("hv-a").agent()?;
    let vips: BpfHashMap<MapData, NetworkAddr, Vip> = pinned(&agent.pin_dir, maps::VIPS)?;
    let port = agent.status()?.port_on(VM1.tap)?;
    let mut vip_id = None;
    crate::wait::until(Duration::from_secs(10), "the VIP to reach hv-a", || {
        vip_id = vip_id_at(f, "hv-a", address).ok();
        Ok(vip_id.is_some())
    })?;
    let vip_id = vip_id.expect("set by the wait");
    // Whether vm1's port is bound to the VIP in hv-a's map.
    let bound = || -> Result<bool> {
        for entry in vips.iter() {
            let (_, v) = entry?;
            if v.vip_id == vip_id {
                return Ok(v.is_bound(port));
            }
        }
        Ok(false)
    };
    let (mut binds, mut unbinds) = (Vec::new(), Vec::new());
    let ports_url = format!("{API_URL}/v1/havips/{vip}/ports");
    for _ in 0..BINDS {
        let t0 = Instant::now();
        let (status, reply) = f.http(
            "POST",
            &ports_url,
            Some(PROJECT_TOKEN),
            Some(&json!({ "ports": [port_id(&VM1)] }).to_string()),
        )?;
        ensure!(status == 200, "bind: HTTP {status}: {reply}");
        let t1 = poll_until("the bind to reach hv-a's map", &bound)?;
        binds.push((t1 - t0).as_secs_f64() * 1e6);

        let t0 = Instant::now();
        let (status, reply) = f.http(
            "DELETE",
            &format!("{ports_url}/{}", port_id(&VM1)),
            Some(PROJECT_TOKEN),
            None,
        )?;
        ensure!(
            status == 200 || status == 204,
            "unbind: HTTP {status}: {reply}"
        );
        let t1 = poll_until("the unbind to reach hv-a's map", || Ok(!bound()?))?;
        unbinds.push((t1 - t0).as_secs_f64() * 1e6);
    }
    Ok((binds, unbinds))
}

/// Claim -> remote owner latencies (µs), alternating vm2 and vm1.
fn claim_to_remote_owner(f: &Fabric) -> Result<Vec<f64>> {
    let vip = f.create_vip("bench-switch", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    f.wait_status(&vip, "available", Duration::from_secs(20))?;
    let (a, b) = (f.host("hv-a").agent()?, f.host("hv-b").agent()?);
    let vip_id = vip_id_at(f, "hv-a", IpAddr::V4(VIP4))?;
    let owners_a = OwnerRecord::open(&a.pin_dir, vip_id)?;
    let owners_b = OwnerRecord::open(&b.pin_dir, vip_id)?;
    let port1 = a.status()?.port_on(VM1.tap)?;
    let port2 = b.status()?.port_on(VM2.tap)?;
    let socket = |ns: &Netns| PacketSocket::open(ns, "eth0", SocketOptions::default());
    let (vm1, vm2) = (socket(&f.vm("vm1").ns)?, socket(&f.vm("vm2").ns)?);
    let (garp1, garp2) = (frames::garp(&VM1, VIP4), frames::garp(&VM2, VIP4));

    let mut samples = Vec::new();
    // One more switch than measured: the first only makes vm1 the owner.
    for i in 0..=SWITCHES {
        let to_vm2 = i % 2 == 1;
        let (sock, garp, port, claimer, other) = if to_vm2 {
            (&vm2, &garp2, port2, &owners_b, &owners_a)
        } else {
            (&vm1, &garp1, port1, &owners_a, &owners_b)
        };
        sock.send(garp)?;
        let seen_ns = {
            poll_until("the remote owner", || {
                Ok(other
                    .get()
                    .is_some_and(|o| o.port_id == port && o.ifindex == 0))
            })?;
            super::wire::mono_ns()
        };
        let claim = claimer
            .get()
            .context("the claiming host has no record of the VIP")?;
        ensure!(
            claim.port_id == port && claim.ifindex != 0,
            "the claiming host does not hold the claim: {claim:?}"
        );
        if i > 0 {
            samples.push(seen_ns.saturating_sub(claim.since_ns) as f64 / 1000.0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(samples)
}
