//! `havip-lab`: the HAVIP story in network namespaces, told step by step.
//!
//! Builds a hypervisor with four VM ports, starts the agent on it, runs
//! keepalived in two VMs as in the HA guide, lets a rogue VM try to take the
//! VIP, has a client probe the VIP, crashes the master and prints the
//! failover timeline as the client saw it. Everything it creates is removed
//! at the end, also on Ctrl-C.
//!
//! Usage: havip-lab [--no-agent] [--interval-ms N]
//!        havip-lab cleanup     (remove what a SIGKILLed run left)
//!        havip-lab config      (print the agent config the lab uses)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use havip_tests::failover::{self, Watch};
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1};
use havip_tests::probe::Prober;
use havip_tests::{cleanup, leftovers, rogue};

struct Opts {
    agent: bool,
    interval: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cleanup") => cleanup_stale(),
        Some("config") => {
            print!("{}", havip_tests::lab::agent_config("the havip lab"));
            Ok(())
        }
        Some("-h" | "--help") => {
            println!(
                "usage: havip-lab [--no-agent] [--interval-ms N]   run the story\n       havip-lab cleanup                           remove what a killed run left\n       havip-lab config                            print the agent config the lab uses"
            );
            Ok(())
        }
        _ => parse(&args).and_then(|o| story(&o)),
    };
    if let Err(e) = result {
        eprintln!("havip-lab: error: {e:#}");
        cleanup::release_all();
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        agent: true,
        interval: Duration::from_millis(10),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-agent" => o.agent = false,
            "--interval-ms" => {
                let ms: u64 = it.next().context("--interval-ms needs a value")?.parse()?;
                o.interval = Duration::from_millis(ms);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(o)
}

fn cleanup_stale() -> Result<()> {
    havip_tests::cmd::require_root()?;
    let removed = havip_tests::remove_stale();
    if removed.is_empty() {
        println!("nothing left over from earlier runs");
    }
    for r in removed {
        println!("removed {r}");
    }
    Ok(())
}

fn section(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn story(o: &Opts) -> Result<()> {
    havip_tests::cmd::require_lab_prerequisites()?;
    if o.agent {
        havip_tests::agent::agent_bin()?;
    }
    cleanup::install_signal_handler();
    let stale = havip_tests::remove_stale();
    if !stale.is_empty() {
        println!("removed leftovers of an earlier run: {}", stale.join(", "));
    }
    {
        let mut lab = step_build()?;
        if o.agent {
            step_agent(&mut lab)?;
        }
        let mut ha = step_keepalived(&lab)?;
        if o.agent {
            step_rogue(&lab)?;
        }
        step_failover(&lab, &mut ha, o)?;
        if o.agent {
            section(8, "Status after the failover");
            println!("{}", indent(&lab.agent()?.status_text()?));
        }
        section(9, "Cleaning up");
        drop(ha);
        lab.stop_agent()?;
        if o.agent {
            println!("   agent stopped: XDP detached, pins removed");
        }
    }
    let left = leftovers();
    if !left.is_empty() {
        bail!("left behind: {left:?}");
    }
    println!("   namespaces deleted; no namespace, link, pin or process left behind");
    Ok(())
}

fn step_build() -> Result<Lab> {
    section(
        1,
        "Building the lab: one hypervisor, four VMs (network namespaces)",
    );
    let lab = Lab::build()?;
    println!(
        "   hypervisor {}: bridge br0 with ports tap-vm1 tap-vm2 tap-client tap-rogue",
        lab.hv.name()
    );
    for vm in lab.vms() {
        let s = vm.spec;
        println!(
            "   {:<7} port {}  {}  {:<10} {:<11} ({})",
            s.role,
            s.port_id,
            s.mac_str(),
            s.ipv4,
            s.ipv6,
            vm.ns.name()
        );
    }
    println!(
        "   VIPs {VIP4} (vip {VIP4_ID}) and {VIP6} (vip {VIP6_ID}) are bound to vm1 and vm2 only"
    );
    Ok(lab)
}

fn step_agent(lab: &mut Lab) -> Result<()> {
    section(2, "Starting havip-agent on the hypervisor");
    let agent = lab.start_agent()?;
    if let Some(config) = &agent.config {
        println!("   config  {}", config.display());
    }
    println!("   pins    {}", agent.pin_dir.display());
    println!("   log     {}", agent.log.display());
    println!("   XDP attached on every VM port");
    Ok(())
}

fn step_keepalived(lab: &Lab) -> Result<HaPair> {
    section(
        3,
        "keepalived: vm1 MASTER (priority 110), vm2 BACKUP (100), nopreempt, unicast",
    );
    let ha = HaPair::start(lab)?;
    println!("   vm1 holds {VIP4} and {VIP6}");
    if let Ok(agent) = lab.agent() {
        agent.wait_owner(VIP4_ID, VM1.port_id, Duration::from_secs(10))?;
        agent.wait_owner(VIP6_ID, VM1.port_id, Duration::from_secs(10))?;
        println!("   the datapath learned the owner from vm1's GARP/NA:\n");
        println!("{}", indent(&agent.status_text()?));
    }
    Ok(ha)
}

fn step_rogue(lab: &Lab) -> Result<()> {
    section(
        4,
        "The rogue VM (port 14, not bound) tries to claim the VIPs",
    );
    let agent = lab.agent()?;
    let before = agent.status()?;
    rogue::configure_vips(&lab.rogue, VIP4, VIP6)?;
    let attack = rogue::full_attack(&lab.rogue, VIP4, VIP6, 3)?;
    for line in &attack.sent {
        println!("   sent {line}");
    }
    // The rogue gives up; the VIPs go from its NIC again.
    lab.rogue
        .ns
        .ip(&["addr", "del", &format!("{VIP4}/24"), "dev", "eth0"])?;
    lab.rogue
        .ns
        .ip(&["addr", "del", &format!("{VIP6}/64"), "dev", "eth0"])?;
    std::thread::sleep(Duration::from_millis(300));
    let after = agent.status()?;
    for vip_id in [VIP4_ID, VIP6_ID] {
        let (b, a) = (before.vip(vip_id)?, after.vip(vip_id)?);
        let owner = |s: &havip_tests::agent::VipStatus| {
            s.owner
                .as_ref()
                .map(|o| format!("port {} gen {}", o.port_id, o.generation))
                .unwrap_or("none".into())
        };
        println!(
            "   vip {vip_id} {:<11} claim_not_bound {} -> {}   owner {} -> {}",
            a.address,
            b.drop_count("claim_not_bound"),
            a.drop_count("claim_not_bound"),
            owner(b),
            owner(a)
        );
    }
    Ok(())
}

fn step_failover(lab: &Lab, ha: &mut HaPair, o: &Opts) -> Result<()> {
    section(
        5,
        &format!(
            "The client probes both VIPs every {} ms (UDP echo; replies name the VM)",
            o.interval.as_millis()
        ),
    );
    let mut watches = Vec::new();
    for (vip, vip_id) in [(IpAddr::V4(VIP4), VIP4_ID), (IpAddr::V6(VIP6), VIP6_ID)] {
        let prober = Prober::start(&lab.client, SocketAddr::new(vip, ECHO_PORT), o.interval)?;
        let r = prober.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
        println!("   {vip}: answered by {}", r.from);
        watches.push(Watch {
            prober,
            vip,
            vip_id,
        });
    }
    std::thread::sleep(Duration::from_secs(1));

    section(6, "The master crashes (vm1: keepalived SIGKILL, eth0 down)");
    let results = failover::crash_master_watching(lab, &mut ha.master, watches)?;
    println!("   vm2 took over; the client is answered by vm2 again");

    section(7, "Failover timeline");
    for f in &results {
        println!("{}", indent(&f.timeline.to_string()));
    }
    Ok(())
}
