//! A bad etcd record fails only what it concerns. Next to good records, an
//! operator (or a bug) leaves in etcd: a VIP record of the wrong types, one
//! that is not JSON at all, a VIP outside its subnet, and this host's record
//! of a port with the wrong types. Each is logged and acknowledged `failed`
//! with the reason (a VIP's at the generation it carries, a port's on the
//! VIPs bound to it); what was in force stays; the good records are
//! programmed all the same; fixing a record programs it.
//!
//! Needs root, etcd, the built agent and controller.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::Protection;
use havip_tests::fabric::{port_id, Fabric};
use havip_tests::lab::{VIP4, VM1, VM2};
use havip_tests::wait;
use serde_json::{json, Value};

const HOST: &str = "hv-a";
const WAIT: Duration = Duration::from_secs(20);

fn vip_key(id: &str) -> String {
    format!("/havip/v1/vips/{id}")
}

/// The record at `key`, as JSON.
fn record(f: &Fabric, key: &str) -> Result<Value> {
    let bytes = f
        .etcd_get(key)?
        .with_context(|| format!("no {key} in etcd"))?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn put(f: &Fabric, key: &str, value: &Value) -> Result<()> {
    f.etcd_put(key, value.to_string().as_bytes())
}

/// Waits until this host's ack of `vip` is for `generation` with `result`;
/// the ack.
fn wait_ack(f: &Fabric, vip: &str, generation: u64, result: &str) -> Result<Value> {
    let key = format!("/havip/v1/reports/{HOST}/acks/{vip}");
    let mut last = Value::Null;
    let r = wait::until(
        WAIT,
        &format!("{vip} acked {result} at generation {generation}"),
        || {
            last = f
                .etcd_get(&key)?
                .map(|b| serde_json::from_slice(&b))
                .transpose()?
                .unwrap_or(Value::Null);
            Ok(last["generation"] == generation && last["result"] == result)
        },
    );
    r.with_context(|| format!("last ack: {last}"))?;
    Ok(last)
}

/// Waits until the agent's `status` shows a protection for which `done`
/// holds.
fn wait_protection(
    f: &Fabric,
    what: &str,
    mut done: impl FnMut(&Protection) -> Result<bool>,
) -> Result<()> {
    let mut last = Protection::default();
    let r = wait::until(WAIT, what, || {
        last = f.host(HOST).agent()?.status()?.protection;
        done(&last)
    });
    r.with_context(|| format!("last seen: {last:?}"))
}

/// The agent's datapath still has the VIP at `address` bound to `ports`.
fn still_in_force(f: &Fabric, address: &str, ports: &[u32]) -> Result<()> {
    let s = f.host(HOST).agent()?.status()?;
    let v = s.vip_at(address)?;
    ensure!(
        v.ports == ports,
        "{address} bound to {:?}, was {ports:?}",
        v.ports
    );
    for port in ports {
        let (state, why) = s.protection.port(*port)?;
        ensure!(state == "protected", "port {port} {state}: {why}");
    }
    Ok(())
}

#[test]
fn a_bad_etcd_record_fails_only_what_it_concerns_and_fixing_it_programs_it() -> Result<()> {
    let mut f = Fabric::build(&[(HOST, &[VM1, VM2])])?;
    f.host_mut(HOST).start_agent()?;
    let web = f.create_vip("web", IpAddr::V4(VIP4), &[&VM1, &VM2])?;
    f.wait_status(&web, "available", WAIT)?;
    let status = f.host(HOST).agent()?.status()?;
    let (vm1, vm2) = (status.port_on(VM1.tap)?, status.port_on(VM2.tap)?);
    let web_address = VIP4.to_string();
    let good_web = record(&f, &vip_key(&web))?;
    let g = good_web["generation"].as_u64().context("a generation")?;

    // 1. The VIP's record with the wrong types (an address that is a
    //    number), at a new generation: acked failed at that generation, and
    //    what was in force stays.
    let mut wrong = good_web.clone();
    wrong["address"] = json!(42);
    wrong["generation"] = json!(g + 1);
    put(&f, &vip_key(&web), &wrong)?;
    let ack = wait_ack(&f, &web, g + 1, "failed")?;
    let reason = ack["reason"].as_str().unwrap_or_default();
    println!("wrong types: {reason}");
    ensure!(
        reason.contains(&vip_key(&web)) && reason.contains("is not valid"),
        "the ack does not say why: {ack}"
    );
    still_in_force(&f, &web_address, &[vm1, vm2])?;

    // 2. A record that is not JSON at all: logged, nothing else changes.
    let garbage = vip_key("havip-garbage");
    f.etcd_put(&garbage, b"{\"id\": \"havip-garbage\", ")?;
    let agent_log = || f.host(HOST).agent().map(|a| a.log_text());
    wait::until(WAIT, "the agent to log the record that is not JSON", || {
        Ok(agent_log()?.contains(&format!("{garbage}: not a valid record")))
    })?;

    // 3. A VIP outside its subnet, bound to vm1 here: acked failed, not
    //    programmed.
    let outside = "havip-outside";
    let mut bad_vip = good_web.clone();
    bad_vip["id"] = json!(outside);
    bad_vip["name"] = json!(outside);
    bad_vip["address"] = json!("10.9.9.9");
    bad_vip["generation"] = json!(1);
    bad_vip["ports"] = json!([{"port": port_id(&VM1), "vm": "vm1", "host": HOST}]);
    // Written by hand: no datapath id of the controller's (not web's).
    bad_vip
        .as_object_mut()
        .context("a record")?
        .remove("datapath_id");
    put(&f, &vip_key(outside), &bad_vip)?;
    let ack = wait_ack(&f, outside, 1, "failed")?;
    ensure!(
        ack["reason"]
            .as_str()
            .is_some_and(|r| r.contains("10.9.9.9 is outside subnet")),
        "{ack}"
    );
    // `status` names it too, and the VIP whose record is bad, kept in force.
    wait_protection(&f, "status to name the bad VIP records", |p| {
        let reasons: Vec<&str> = p
            .vips_not_programmed
            .iter()
            .map(|n| n.reason.as_str())
            .collect();
        // The record that is not JSON cannot tell its subnet: named too.
        Ok(reasons.len() == 3
            && reasons.iter().any(|r| r.contains("outside subnet"))
            && reasons.iter().any(|r| r.contains(&garbage))
            && reasons
                .iter()
                .any(|r| r.contains("is not valid") && r.contains("stays in force")))
    })?;

    // 4. This host's record of vm2's port, with the wrong types: the port
    //    stays protected as it was, and the VIPs bound to it are failed.
    let port_key = format!("/havip/v1/hosts/{HOST}/ports/{}", port_id(&VM2));
    let good_port = record(&f, &port_key)?;
    let mut wrong_port = good_port.clone();
    wrong_port["fixed_ips"] = json!("not a list");
    put(&f, &port_key, &wrong_port)?;
    wait::until(WAIT, "the agent to log the port record", || {
        Ok(agent_log()?.contains(&format!("{port_key}: not a valid record")))
    })?;
    still_in_force(&f, &web_address, &[vm1, vm2])?;
    wait_protection(&f, "status to name the port's record", |p| {
        let (state, why) = p.port(vm2)?;
        Ok(state == "protected" && why.contains(&port_key) && why.contains("stays in force"))
    })?;

    // The good records beside them are programmed: a new VIP through the
    // API, bound to vm1, becomes available.
    let db = f.create_vip("db", "10.0.6.29".parse()?, &[&VM1])?;
    f.wait_status(&db, "available", WAIT)
        .context("a good VIP next to bad records")?;
    still_in_force(&f, "10.0.6.29", &[vm1])?;
    ensure!(
        f.host(HOST).agent()?.exit_status().is_none(),
        "the agent exited"
    );

    // Fixing the records programs them. The VIP first: it is failed still,
    // for the port record bound to it.
    let mut fixed = good_web.clone();
    fixed["generation"] = json!(g + 2);
    put(&f, &vip_key(&web), &fixed)?;
    let ack = wait_ack(&f, &web, g + 2, "failed")?;
    ensure!(
        ack["reason"].as_str().is_some_and(|r| r.contains(&format!(
            "port {} is not programmed on its host: its record {port_key} is not valid",
            port_id(&VM2)
        ))),
        "{ack}"
    );
    put(&f, &port_key, &good_port)?;
    wait_ack(&f, &web, g + 2, "programmed")?;
    let mut fixed = bad_vip.clone();
    fixed["address"] = json!("10.0.6.41");
    fixed["generation"] = json!(2);
    put(&f, &vip_key(outside), &fixed)?;
    wait_ack(&f, outside, 2, "programmed")?;
    still_in_force(&f, "10.0.6.41", &[vm1])?;
    still_in_force(&f, &web_address, &[vm1, vm2])?;
    wait_protection(&f, "status to name only the record that is not JSON", |p| {
        Ok(p.vips_not_programmed.len() == 1 && p.port(vm2)?.1.is_empty())
    })
}
