//! What a restart lets through: in the lab with the keepalived pair, a
//! client probing VIP4 at 1 kHz through the fast path and the rogue
//! flooding ([`crate::flood`]), the agent is restarted each way of
//! [`RESTART_KINDS`]; in the window from the signal to half a second after
//! the new agent is ready, the probes that got no answer and the rogue
//! frames that passed (reached the client, or moved an owner) are counted.
//! A window of the same shape with no restart is measured in each round
//! too, for the floor the machine's noise sets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};

use crate::agent::{AgentOptions, Status};
use crate::bench::Options;
use crate::flood::{self, Flood, Rejections, RogueWatch};
use crate::ha::HaPair;
use crate::lab::{Lab, CLIENT, ECHO_PORT, ROGUE, VIP4, VIP4_ID, VIP6_ID, VM1};
use crate::probe::{ProbeLog, Prober};
use crate::restart::RESTART_KINDS;
use crate::wait::now_us;

/// The client's probe interval: 1 kHz.
pub const PROBE_EVERY: Duration = Duration::from_millis(1);
/// The window goes on this long after the new agent is ready.
pub const SETTLE: Duration = Duration::from_millis(500);
/// The window with no restart.
const QUIET: Duration = Duration::from_secs(1);
/// How long the rogue floods before any datapath runs.
pub const UNGUARDED: Duration = Duration::from_millis(300);
/// And at this rate (frames per second).
pub const UNGUARDED_RATE: u32 = 2000;
/// Replies later than this after their probe count as lost.
const IN_FLIGHT_US: i64 = 100_000;

/// The windows of one kind of restart (or of none), one per round.
#[derive(Default)]
pub struct Windows {
    pub probes_lost: Vec<f64>,
    pub rogue_passed: Vec<f64>,
    /// From the signal to the new agent ready, µs.
    pub restart_us: Vec<f64>,
}

/// What the restarts let through.
pub struct Measured {
    /// In the order of [`RESTART_KINDS`].
    pub kinds: Vec<Windows>,
    pub quiet: Windows,
    pub rejections: Vec<Rejections>,
    pub probes: usize,
    /// The rogue frames the client saw in [`UNGUARDED`] with no datapath:
    /// the proof that the watch sees them when they pass.
    pub unguarded: usize,
}

/// One window: its bounds and what moved the owners in it.
struct Window {
    kind: Option<usize>,
    from_us: i64,
    to_us: i64,
    ready_us: i64,
    owner_changes: u64,
}

fn owner_changes(s: &Status) -> Result<u64> {
    Ok(s.vip(VIP4_ID)?.counters.owner_changes + s.vip(VIP6_ID)?.counters.owner_changes)
}

pub fn measure(opts: &Options) -> Result<Measured> {
    let mut lab = Lab::build()?;
    let kinds = flood::rogue_frames(&ROGUE, &VM1, &CLIENT);
    let watch = RogueWatch::start(&lab.client, &kinds)?;
    let unguarded = rogue_frames_with_no_datapath(&lab, &watch, &kinds)?;
    lab.start_agent_with(AgentOptions {
        unpin_on_exit: false,
        ..AgentOptions::default()
    })?;
    let _ha = HaPair::start(&lab)?;
    lab.agent()?
        .wait_owner(VIP4_ID, VM1.port_id, Duration::from_secs(10))?;
    let probe = Prober::start(
        &lab.client,
        SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
        PROBE_EVERY,
    )?;
    probe.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
    let first = lab.agent()?.status()?;
    let mut flood = Flood::start(&lab.rogue, kinds, opts.flood_rate)?;
    std::thread::sleep(Duration::from_millis(300));

    let mut windows = Vec::new();
    for round in 0..opts.restart_rounds {
        eprintln!(
            "havip-bench: restarts: round {} of {}",
            round + 1,
            opts.restart_rounds
        );
        let kinds = std::iter::once(None).chain((0..RESTART_KINDS.len()).map(Some));
        for kind in kinds {
            let before = owner_changes(&lab.agent()?.status()?)?;
            let from_us = now_us();
            match kind {
                Some(k) => RESTART_KINDS[k].restart(lab.agent_mut()?)?,
                None => std::thread::sleep(QUIET),
            }
            let ready_us = now_us();
            std::thread::sleep(SETTLE);
            let to_us = now_us();
            let after = lab.agent()?.status()?;
            let owner = after.owner(VIP4_ID)?.map(|o| o.port_id);
            ensure!(
                owner == Some(VM1.port_id),
                "port {owner:?} owns the VIP after the window, not vm1"
            );
            windows.push(Window {
                kind,
                from_us,
                to_us,
                ready_us,
                owner_changes: owner_changes(&after)? - before,
            });
        }
    }
    flood.stop();
    let last = lab.agent()?.status()?;
    let log = probe.stop();
    let mut out = Measured {
        kinds: RESTART_KINDS.iter().map(|_| Windows::default()).collect(),
        quiet: Windows::default(),
        rejections: flood.rejections(&first, &last),
        probes: log.sent(),
        unguarded,
    };
    for w in &windows {
        let into = match w.kind {
            Some(k) => &mut out.kinds[k],
            None => &mut out.quiet,
        };
        into.probes_lost
            .push(lost_between(&log, w.from_us, w.to_us) as f64);
        let passed = watch.passed_between(w.from_us, w.to_us) as u64 + w.owner_changes;
        into.rogue_passed.push(passed as f64);
        if w.kind.is_some() {
            into.restart_us.push((w.ready_us - w.from_us) as f64);
        }
    }
    Ok(out)
}

/// The rogue floods for [`UNGUARDED`] before the agent starts: how many of
/// its frames the watch saw at the client (it must see some).
fn rogue_frames_with_no_datapath(
    lab: &Lab,
    watch: &RogueWatch,
    kinds: &[flood::RogueFrame],
) -> Result<usize> {
    let mut flood = Flood::start(&lab.rogue, kinds.to_vec(), UNGUARDED_RATE)?;
    std::thread::sleep(UNGUARDED);
    flood.stop();
    std::thread::sleep(Duration::from_millis(100));
    let seen = watch.passed().len();
    ensure!(
        seen > 0,
        "with no datapath the client saw none of the rogue's {} frames: the watch is blind",
        flood.sent().iter().sum::<u64>()
    );
    Ok(seen)
}

/// Probes sent from `from_us` to `to_us` that got no answer in time.
fn lost_between(log: &ProbeLog, from_us: i64, to_us: i64) -> usize {
    log.probes
        .iter()
        .filter(|p| p.sent_us >= from_us && p.sent_us <= to_us)
        .filter(|p| {
            p.reply
                .as_ref()
                .is_none_or(|r| r.at_us - p.sent_us > IN_FLIGHT_US)
        })
        .count()
}
