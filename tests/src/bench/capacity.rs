//! A host's capacity (issue 16), measured at three sizes up to the default
//! `--max-vips` (65,536):
//!
//! - the time the agent takes to apply N VIPs at its start (the VIP map,
//!   the owners, the filter), as its own log line says (`applied ... in`),
//!   target under 2 s for 65,536;
//! - the time to apply one change to one VIP among N (a reload by diff);
//! - the agent's resident memory with N VIPs (`VmRSS`), target under 50 MB
//!   for 65,536;
//! - the kernel memory of the VIP-sized maps (their `memlock`, as bpftool
//!   reports it).
//!
//! One hypervisor namespace with one VM port; the config file binds one
//! VIP to it and leaves the rest unbound, as a host carrying VIPs of its
//! subnets holds them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use havip_common::maps::{self, DEFAULT_MAX_VIPS};

use crate::agent::{Agent, AgentOptions};
use crate::bench::chart::Chart;
use crate::bench::{Context, Figure, Section, Target, Unit};
use crate::lab::{add_port_of, DirGuard};
use crate::netns::{unique_stem, Netns};
use crate::{cmd, wait};

/// Host sizes measured, the largest the default capacity.
pub const SIZES: [u32; 3] = [
    DEFAULT_MAX_VIPS / 16,
    DEFAULT_MAX_VIPS / 4,
    DEFAULT_MAX_VIPS,
];
/// Apply time of the largest size, µs.
const APPLY_TARGET_US: f64 = 2_000_000.0;
/// The agent's RSS with the largest size, MiB.
const RSS_TARGET_MIB: f64 = 50.0;

/// One round at one size.
struct Round {
    start_apply_us: f64,
    change_apply_us: f64,
    rss_mib: f64,
    maps_mib: f64,
}

pub fn run(ctx: &mut Context) -> Result<Section> {
    let rounds = ctx.options.rounds.clamp(1, 3);
    let mut per_size = Vec::new();
    for n in SIZES {
        let mut rs = Vec::new();
        for round in 0..rounds {
            eprintln!(
                "havip-bench: capacity: {n} VIPs, round {}/{rounds}",
                round + 1
            );
            rs.push(measure(n).with_context(|| format!("{n} VIPs"))?);
        }
        per_size.push((n, rs));
    }

    let mut figures = Vec::new();
    let (mut apply, mut change, mut rss, mut kernel) = (vec![], vec![], vec![], vec![]);
    for (n, rs) in &per_size {
        let largest = *n == DEFAULT_MAX_VIPS;
        let col = |f: fn(&Round) -> f64| rs.iter().map(f).collect::<Vec<_>>();
        let mut a = Figure::median(
            format!("{n} VIPs applied at the agent's start"),
            Unit::Microseconds,
            &col(|r| r.start_apply_us),
        );
        let mut m = Figure::median(
            format!("agent RSS with {n} VIPs"),
            Unit::Mebibytes,
            &col(|r| r.rss_mib),
        );
        if largest {
            a = a.with_target(Target::Below(APPLY_TARGET_US));
            m = m.with_target(Target::Below(RSS_TARGET_MIB));
        }
        let c = Figure::median(
            format!("one VIP changed among {n}, applied"),
            Unit::Microseconds,
            &col(|r| r.change_apply_us),
        );
        let k = Figure::median(
            format!("kernel memory of the VIP maps for {n} VIPs"),
            Unit::Mebibytes,
            &col(|r| r.maps_mib),
        );
        apply.push(a.clone());
        change.push(c.clone());
        rss.push(m.clone());
        kernel.push(k.clone());
        figures.extend([a, c, m, k]);
    }
    let charts = vec![
        Chart::bars(
            "VIPs applied at the agent's start, by host size",
            "time",
            Unit::Microseconds,
            &apply,
        ),
        Chart::bars(
            "one VIP changed, applied by diff, by host size",
            "time",
            Unit::Microseconds,
            &change,
        ),
        Chart::bars("agent RSS, by host size", "MiB", Unit::Mebibytes, &rss),
        Chart::bars(
            "kernel memory of the VIP maps, by host size",
            "MiB",
            Unit::Mebibytes,
            &kernel,
        ),
    ];
    Ok(Section {
        title: "A host's capacity: VIPs applied, and the memory they take".into(),
        method: vec![
            format!(
                "One hypervisor namespace with one VM port. For each size N ({}), {rounds} \
                 round(s): an agent started fresh with `--max-vips N` and a config of N VIPs (one \
                 bound to the port, the rest unbound); the apply time is the agent's own \
                 (`applied ... in`, from the config read to every map written); then one VIP's \
                 address is changed and the reload's apply time read the same way.",
                SIZES.map(|n| n.to_string()).join(", ")
            ),
            "RSS is the agent's `VmRSS` once it runs with N VIPs; the kernel memory is the \
             `bytes_memlock` bpftool reports for havip_vips, havip_owners and havip_vipstats \
             (the per-CPU counters grow with the CPUs: this machine's count)."
                .into(),
        ],
        figures,
        charts,
    })
}

/// VIP `id`'s address (1..=N) in 10.0.0.0/8, clear of the port's.
fn vip_addr(id: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a10_0000 + id)
}

/// Port 11 on `tap-a` and VIPs `1..=n`, VIP 1 bound to it; `moved`: VIP
/// 2's address is another one.
fn config(n: u32, moved: bool) -> String {
    let mut c = String::from(
        "[[networks]]\nid = 1\ncidrs = [\"10.0.0.0/8\"]\n\n\
         [[ports]]\nid = 11\ninterface = \"tap-a\"\nnetwork = 1\n\
         mac = \"02:00:00:00:00:11\"\nips = [\"10.0.0.9\"]\n",
    );
    for id in 1..=n {
        let addr = if moved && id == 2 {
            vip_addr(n + 1)
        } else {
            vip_addr(id)
        };
        let ports = if id == 1 { "[11]" } else { "[]" };
        let _ = write!(
            c,
            "\n[[vips]]\nid = {id}\nnetwork = 1\naddress = \"{addr}\"\nports = {ports}\n"
        );
    }
    c
}

fn measure(n: u32) -> Result<Round> {
    let hv = Netns::new("cap-hv")?;
    let vm = Netns::new("cap-vm")?;
    let dir = std::env::temp_dir().join(unique_stem());
    let _dir = DirGuard::create(&dir)?;
    add_port_of(
        &hv,
        "tap-a",
        &vm,
        "02:00:00:00:00:11",
        &["10.0.0.9/8".into()],
    )?;
    let cfg = dir.join("havip.toml");
    std::fs::write(&cfg, config(n, false))?;
    let agent = Agent::start_with(
        &hv,
        &cfg,
        &dir,
        &["tap-a"],
        AgentOptions {
            max_vips: Some(n),
            ready_timeout: Some(Duration::from_secs(120)),
            ..AgentOptions::default()
        },
    )?;
    let start_apply_us = nth_apply_us(&agent, 1, Duration::from_secs(60))?;
    let rss_mib = rss_mib(agent.pid().context("the agent runs")?)?;
    let maps_mib = maps::VIP_SIZED
        .iter()
        .map(|name| memlock(&agent.pin_dir.join(name)))
        .sum::<Result<f64>>()?
        / (1024.0 * 1024.0);
    agent.edit_config(&config(n, true))?;
    let change_apply_us = nth_apply_us(&agent, 2, Duration::from_secs(60))?;
    agent.stop()?;
    Ok(Round {
        start_apply_us,
        change_apply_us,
        rss_mib,
        maps_mib,
    })
}

/// The apply time of the agent's `nth` `applied ... in X ms` log line,
/// waiting for it up to `timeout`, in µs.
fn nth_apply_us(agent: &Agent, nth: usize, timeout: Duration) -> Result<f64> {
    let mut found = None;
    wait::until(timeout, &format!("the agent's apply #{nth}"), || {
        found = applied_ms(&agent.log_text()).into_iter().nth(nth - 1);
        Ok(found.is_some())
    })
    .with_context(|| agent.log_tail(20))?;
    Ok(found.expect("set by the wait") * 1000.0)
}

/// The times of the log's `applied <path> in <ms> ms:` lines, in order.
fn applied_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("applied ")?..];
            let ms = rest.split(" in ").nth(1)?.split(" ms").next()?;
            ms.parse().ok()
        })
        .collect()
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kb / 1024.0)
}

/// `bytes_memlock` of the map pinned at `path`, from bpftool.
fn memlock(path: &Path) -> Result<f64> {
    let path = path.to_str().context("a pin path in UTF-8")?;
    let out = cmd::output(
        std::process::Command::new("bpftool").args(["-j", "map", "show", "pinned", path]),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    match v["bytes_memlock"].as_f64() {
        Some(b) => Ok(b),
        None => bail!("bpftool gave no bytes_memlock for {path}: {out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_lines_are_read_in_order() {
        let log = "[t INFO havip_agent::daemon] applied /x/havip.toml in 812.4 ms: 3 VIPs\n\
                   [t INFO havip_agent::daemon] running\n\
                   [t INFO havip_agent::daemon] applied /x/havip.toml in 0.7 ms: 1 VIP";
        assert_eq!(applied_ms(log), vec![812.4, 0.7]);
    }
}
