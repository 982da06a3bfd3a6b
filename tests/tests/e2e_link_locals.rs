//! Guests whose IPv6 link-locals are not the EUI-64 of their MAC: vm1 and
//! vm2 use stable-privacy addresses (NetworkManager's default on RHEL and
//! Fedora), the client a random interface id (as Windows does). None of
//! these is in the agent's config, yet neighbour discovery works between
//! them and the IPv6 VIP survives a failover: each port learns the
//! link-local it uses first, and holds it.
//!
//! Then the attacks and the operator's side: the rogue sending from vm2's
//! learned link-local is dropped (`link_local_taken`); a learned link-local
//! is kept across an agent restart, forgotten by `havip-agent
//! reset-link-local`, and when its port leaves the config.
//!
//! Needs root, the built agent, keepalived, tcpdump, python3-scapy.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aya::maps::{HashMap, Map, MapData};
use havip_common::{maps, NetworkAddr};
use havip_tests::agent::{Agent, AgentOptions};
use havip_tests::failover;
use havip_tests::ha::HaPair;
use havip_tests::lab::{
    agent_config_of, Lab, LinkLocalMode, Vm, ECHO_PORT, ROGUE, VIP6, VIP6_ID, VM1, VM2,
};
use havip_tests::probe::Prober;
use havip_tests::restart::RESTART_KINDS;
use havip_tests::{leftovers, rogue, wait};

/// `from` pings `to`'s link-local on eth0: neighbour discovery first (an
/// NS from `from`'s link-local, an NA from `to`'s), then the echo.
fn ping_link_local(from: &Vm, to: Ipv6Addr) -> Result<()> {
    from.ns
        .exec(
            "ping",
            &[
                "-6",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                &format!("{to}%eth0"),
            ],
        )
        .with_context(|| format!("{} pinging {to}", from.role()))
        .map(drop)
}

/// Waits until the datapath holds `ll` for port `port_id`.
fn wait_learned(agent: &Agent, port_id: u32, ll: Ipv6Addr) -> Result<()> {
    let want = ll.to_string();
    wait::until(
        Duration::from_secs(5),
        &format!("port {port_id} to hold the link-local {ll}"),
        || Ok(agent.status()?.learned_link_local(port_id)? == Some(want.as_str())),
    )
}

/// Port id -> the link-local it learned, straight from the pinned
/// `havip_llports` (a port gone from the config is in no status).
fn pinned_learned(pin_dir: &Path) -> Result<Vec<(u32, Ipv6Addr)>> {
    let data = MapData::from_pin(pin_dir.join(maps::LL_PORTS))?;
    let map: HashMap<_, u32, NetworkAddr> = HashMap::try_from(Map::HashMap(data))?;
    map.iter()
        .map(|e| e.map(|(port, a)| (port, Ipv6Addr::from(a.addr))))
        .collect::<Result<_, _>>()
        .context("read havip_llports")
}

#[test]
fn guests_with_their_own_link_locals_keep_an_ipv6_vip() -> Result<()> {
    {
        let mut lab = Lab::build()?;
        let secret = |n| LinkLocalMode::StablePrivacy {
            secret: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x5ec, n),
        };
        let ll1 = lab.vm1.use_link_local(secret(1))?;
        let ll2 = lab.vm2.use_link_local(secret(2))?;
        let llc = lab.client.use_link_local(LinkLocalMode::Random)?;
        println!("link-locals: vm1 {ll1}, vm2 {ll2}, client {llc}");
        // Pins kept on exit: the agent is restarted below.
        lab.start_agent_with(AgentOptions {
            unpin_on_exit: false,
            ..AgentOptions::default()
        })?;
        let client_id = lab.client.spec.port_id;
        let before = lab.agent()?.status()?;

        // The client and vm1 find each other by their own link-locals.
        ping_link_local(&lab.client, ll1)?;
        let agent = lab.agent()?;
        wait_learned(agent, VM1.port_id, ll1)?;
        wait_learned(agent, client_id, llc)?;
        let after_ping = agent.status()?;
        for reason in ["ip_spoof", "link_local_taken", "nd_spoof"] {
            ensure!(
                after_ping.drop_count(reason) == before.drop_count(reason),
                "{reason} rose while the guests talked: {} -> {}",
                before.drop_count(reason),
                after_ping.drop_count(reason)
            );
        }
        let learned = |s: &havip_tests::status::Status| {
            s.stats.get("link_locals_learned").copied().unwrap_or(0)
        };
        ensure!(
            learned(&after_ping) >= 2,
            "link_locals_learned: {}",
            learned(&after_ping)
        );
        let text = agent.status_text()?;
        ensure!(
            text.contains(&format!("learned {ll1}")),
            "status does not show vm1's learned link-local:\n{text}"
        );

        // keepalived announces the IPv6 VIP from vm1's stable-privacy
        // link-local; vm1 crashes and vm2 takes the VIP over.
        let mut ha = HaPair::start(&lab)?;
        agent.wait_owner(VIP6_ID, VM1.port_id, Duration::from_secs(10))?;
        let prober = Prober::start(
            &lab.client,
            SocketAddr::new(IpAddr::V6(VIP6), ECHO_PORT),
            Duration::from_millis(10),
        )?;
        prober.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
        let f = failover::crash_master(&lab, &mut ha.master, prober, IpAddr::V6(VIP6), VIP6_ID)?;
        println!("{}", f.timeline);
        let owner = f.owner_after.clone().context("no owner after the crash")?;
        ensure!(
            owner.port_id == VM2.port_id,
            "owner after the crash: {owner:?}"
        );
        let served = f.probes.replies_from_after("vm2", f.kill_us);
        ensure!(
            served >= 20,
            "only {served} replies from vm2 after the failover"
        );
        wait_learned(agent, VM2.port_id, ll2)?;

        // The rogue sends from vm2's link-local: taken, and vm2 keeps it.
        let taken = agent.status()?.drop_count("link_local_taken");
        let mut attack = rogue::Attack::default();
        rogue::from_link_local(&lab.rogue, ll2, 5, &mut attack)?;
        wait::until(Duration::from_secs(5), "link_local_taken to rise", || {
            Ok(agent.status()?.drop_count("link_local_taken") >= taken + 5)
        })?;
        let s = agent.status()?;
        ensure!(
            s.learned_link_local(VM2.port_id)? == Some(ll2.to_string().as_str())
                && s.learned_link_local(ROGUE.port_id)?.is_none(),
            "the rogue took vm2's link-local: {:?}",
            s.ports
        );

        // An agent restart keeps what was learned.
        let restart = RESTART_KINDS
            .iter()
            .find(|k| k.signal == libc::SIGTERM && k.agent.is_none())
            .context("a plain SIGTERM restart")?;
        restart.restart(lab.agent_mut()?)?;
        let agent = lab.agent()?;
        let s = agent.status()?;
        for (port, ll) in [(VM2.port_id, ll2), (client_id, llc)] {
            ensure!(
                s.learned_link_local(port)? == Some(ll.to_string().as_str()),
                "port {port} lost its link-local {ll} in the restart ({})",
                restart.name
            );
        }

        // The operator resets the client's: forgotten, and learned again
        // when the client next talks.
        let out = agent.reset_link_local(client_id)?;
        ensure!(
            out.contains(&llc.to_string()),
            "reset-link-local said: {out}"
        );
        ensure!(
            !pinned_learned(&agent.pin_dir)?
                .iter()
                .any(|(p, _)| *p == client_id),
            "port {client_id} still holds a link-local after the reset"
        );
        ping_link_local(&lab.client, ll2)?;
        wait_learned(agent, client_id, llc)?;

        // The client's port leaves the config: its link-local goes with it.
        let without_client = [VM1, VM2, ROGUE];
        agent.edit_config(&agent_config_of(
            "the lab without the client",
            &without_client,
            &[VM1.port_id, VM2.port_id],
        ))?;
        wait::until(
            Duration::from_secs(10),
            "the client's learned link-local to go with its port",
            || {
                let held = pinned_learned(&agent.pin_dir)?;
                Ok(
                    !held.iter().any(|(p, _)| *p == client_id)
                        && held.contains(&(VM2.port_id, ll2)),
                )
            },
        )?;
        // And back, so that every port is protected again when the lab
        // stops.
        agent.edit_config(&lab.agent_config())?;
        wait::until(Duration::from_secs(10), "the client's port back", || {
            Ok(agent.status()?.learned_link_local(client_id).is_ok())
        })?;
        drop(ha);
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
