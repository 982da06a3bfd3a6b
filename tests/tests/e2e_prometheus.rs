//! The operator's view of a failover: a real Prometheus server (Debian's
//! `prometheus`) scrapes two hypervisors' agents (`--metrics-listen`) and
//! the controller every second; keepalived's master VM crashes; Prometheus's
//! query API then shows the owner-change counter moved and the owner info
//! naming the backup's port, VM and host, and the controller's request and
//! VIP metrics.
//!
//! Needs root, the built agent and controller (target/release), etcd,
//! keepalived and prometheus (`cargo xtask setup` installs them). Run with
//! `--test-threads=1`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::AgentOptions;
use havip_tests::fabric::{port_id, Fabric, CONTROLLER_METRICS, CONTROL_IP};
use havip_tests::keepalived;
use havip_tests::lab::{VIP4, VM1, VM2};
use havip_tests::leftovers;
use havip_tests::prometheus::{Prometheus, Sample};

/// The agents' metrics port (on each hypervisor's fabric address).
const AGENT_METRICS_PORT: u16 = 9469;
const WAIT: Duration = Duration::from_secs(20);

fn sum(samples: &[Sample]) -> f64 {
    samples.iter().map(|s| s.value).sum()
}

#[test]
fn a_failover_shows_in_prometheus() -> Result<()> {
    havip_tests::cmd::require_tools(&["prometheus"])?;
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2])])?;
    let mut agents = Vec::new();
    for h in ["hv-a", "hv-b"] {
        let addr = format!("{}:{AGENT_METRICS_PORT}", f.host(h).address);
        f.host_mut(h).start_agent_with(AgentOptions {
            metrics_listen: Some(addr.clone()),
            ..AgentOptions::default()
        })?;
        agents.push(addr);
    }
    let prometheus = Prometheus::start(
        &f.ctl,
        &format!("{CONTROL_IP}:9090"),
        &f.dir,
        &[
            ("havip-agent", agents),
            ("havip-controller", vec![CONTROLLER_METRICS.to_owned()]),
        ],
    )?;

    let vip = f.create_vip("web-v4", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    f.wait_status(&vip, "available", WAIT)?;
    let (mut master, _backup) = keepalived::start_pair(&f.dir, f.vm("vm1"), f.vm("vm2"))?;

    // vm1 is the master: both agents' owner info names its port, VM and host.
    let (port1, port2) = (port_id(&VM1), port_id(&VM2));
    let owner_is = |port: &str| format!(r#"havip_vip_owner_info{{vip="{vip}",port="{port}"}}"#);
    let before = prometheus.wait_for(&owner_is(&port1), WAIT, |s| s.len() == 2)?;
    for s in &before {
        ensure!(
            s.label("vm") == "vm1"
                && s.label("host") == "hv-a"
                && s.label("address") == VIP4.to_string(),
            "owner info before the crash: {s:?}"
        );
    }
    let changes = format!(r#"havip_vip_owner_changes_total{{vip="{vip}"}}"#);
    let changes_before = sum(&prometheus.wait_for(&changes, WAIT, |s| sum(s) >= 1.0)?);

    master.crash(f.vm("vm1"))?;

    // The counter moved, and both agents now name vm2's port on hv-b.
    let after = prometheus.wait_for(&owner_is(&port2), WAIT, |s| s.len() == 2)?;
    for s in &after {
        ensure!(
            s.label("vm") == "vm2" && s.label("host") == "hv-b",
            "owner info after the crash: {s:?}"
        );
    }
    let on_hv_b = after
        .iter()
        .find(|s| s.label("interface") == VM2.tap)
        .context("no agent names vm2's tap as the owner's interface (hv-b learned it)")?;
    ensure!(on_hv_b.label("mac") == VM2.mac_str(), "{on_hv_b:?}");
    let changes_after = sum(&prometheus.wait_for(&changes, WAIT, |s| sum(s) > changes_before)?);
    ensure!(
        prometheus.query(&owner_is(&port1))?.is_empty(),
        "vm1 is still named as an owner"
    );
    let moved = prometheus.query(&format!(
        r#"increase(havip_vip_owner_changes_total{{vip="{vip}"}}[1m]) > 0"#
    ))?;
    ensure!(
        !moved.is_empty(),
        "no increase of the owner changes over the last minute"
    );
    println!("owner changes (all hosts): {changes_before} -> {changes_after}");

    // The controller: the API calls of this test, and the VIP by status.
    let created = prometheus.wait_for(
        r#"havip_controller_http_requests_total{method="POST",route="/v1/havips",status="201"}"#,
        WAIT,
        |s| sum(s) >= 1.0,
    )?;
    println!(
        "controller: POST /v1/havips answered 201 {} time(s)",
        sum(&created)
    );
    prometheus.wait_for(r#"havip_controller_vips{status="available"}"#, WAIT, |s| {
        sum(s) == 1.0
    })?;
    prometheus.wait_for(
        r#"havip_controller_http_request_duration_seconds_count{route="/v1/havips/{id}"}"#,
        WAIT,
        |s| sum(s) >= 1.0,
    )?;
    for (job, url, health) in prometheus.targets()? {
        ensure!(health == "up", "{job} target {url} is {health}");
    }
    for s in prometheus.query("max_over_time(scrape_duration_seconds[1m])")? {
        println!(
            "scrape of {} ({}): at most {:.1} ms",
            s.label("instance"),
            s.label("job"),
            s.value * 1e3
        );
    }
    for s in prometheus.query("scrape_samples_scraped")? {
        println!("{}: {} samples", s.label("instance"), s.value);
    }

    drop(master);
    drop(_backup);
    drop(prometheus);
    drop(f);
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
