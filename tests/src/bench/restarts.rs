//! Protection that never lapses (issue 12), measured:
//!
//! - what each kind of restart lets through ([`restart_window`]): probes
//!   lost and rogue frames passed, target 0 and 0;
//! - the time from the agent's start to every one of `--ports` ports
//!   reconciled, on a fresh start and on each kind of restart (adopting
//!   the pinned links), target under 2 s ([`crate::ports`]);
//! - how soon etcd hears of a new owner while a rogue floods
//!   ([`owner_report`]), target p99 under 50 ms.

use anyhow::{ensure, Context as _, Result};

use crate::bench::chart::Chart;
use crate::bench::restart_window::{self, Windows, PROBE_EVERY, SETTLE};
use crate::bench::{owner_report, Context, Figure, Options, Section, Target, Unit};
use crate::flood::Rejections;
use crate::ports::{ManyPorts, Reconciled};
use crate::restart::RESTART_KINDS;

/// Every port reconciled within this many µs of the agent's start.
const RECONCILE_TARGET_US: f64 = 2_000_000.0;
/// p99 of GARP -> owner record in etcd, µs.
const REPORT_P99_TARGET_US: f64 = 50_000.0;

pub fn run(ctx: &mut Context) -> Result<Section> {
    let opts = ctx.options.clone();
    eprintln!(
        "havip-bench: restarts: {} rounds of {} kinds of restart under a {} frames/s flood",
        opts.restart_rounds,
        RESTART_KINDS.len(),
        opts.flood_rate
    );
    let windows = restart_window::measure(&opts).context("restart windows")?;
    eprintln!(
        "havip-bench: restarts: {} ports, {} rounds",
        opts.ports, opts.restart_rounds
    );
    let reconcile = reconcile(&opts).context("reconciling many ports")?;
    eprintln!(
        "havip-bench: restarts: {} failovers under a flood",
        opts.failovers
    );
    let reports = owner_report::measure(&opts).context("owner reports")?;

    let mut figures = Vec::new();
    let mut passed_total = 0.0;
    for (kind, w) in RESTART_KINDS.iter().zip(&windows.kinds) {
        figures.extend(window_figures(kind.name, w, true));
        passed_total += w.rogue_passed.iter().sum::<f64>();
        figures.push(Figure::median(
            format!("{}: signal to the new agent ready", kind.name),
            Unit::Microseconds,
            &w.restart_us,
        ));
    }
    figures.extend(window_figures(
        "no restart (1 s window)",
        &windows.quiet,
        false,
    ));
    figures.push(Figure {
        name: "rogue frames passed, every restart of every round".into(),
        value: passed_total,
        spread: (passed_total, passed_total),
        samples: windows.kinds.iter().map(|w| w.rogue_passed.len()).sum(),
        unit: Unit::Count,
        target: Some(Target::AtMost(0.0)),
    });
    for r in &reconcile {
        figures.push(
            Figure::median(
                format!("{} ports reconciled after {}", opts.ports, r.what),
                Unit::Microseconds,
                &r.all_us,
            )
            .with_target(Target::Below(RECONCILE_TARGET_US)),
        );
        figures.push(Figure::median(
            format!("time per port after {}", r.what),
            Unit::Microseconds,
            &r.per_port_us,
        ));
        if !r.tcx_us.is_empty() {
            figures.push(Figure::median(
                format!(
                    "{} ports' TC egress on TCX links after {}",
                    opts.ports, r.what
                ),
                Unit::Microseconds,
                &r.tcx_us,
            ));
        }
    }
    let hosts = [
        ("on the flooded host", &reports.flooded_us, true),
        ("on the quiet host", &reports.quiet_us, false),
    ];
    for (host, samples, targeted) in hosts {
        figures.push(Figure::percentile(
            format!("GARP -> owner in etcd, new owner {host}, p50"),
            Unit::Microseconds,
            samples,
            50.0,
        ));
        let p99 = Figure::percentile(
            format!("GARP -> owner in etcd, new owner {host}, p99"),
            Unit::Microseconds,
            samples,
            99.0,
        );
        figures.push(match targeted {
            true => p99.with_target(Target::Below(REPORT_P99_TARGET_US)),
            false => p99,
        });
    }

    Ok(Section {
        title:
            "Restarts: protection through agent restarts, many ports, owner reports under a flood"
                .into(),
        method: method(&opts, &windows, &reports.rejections),
        figures,
        charts: vec![Chart::Distribution {
            title: "GARP -> owner record in etcd, under a rogue flood (cumulative)".into(),
            axis: "delay (etcd watch delivery - tcpdump timestamp of the GARP)".into(),
            unit: Unit::Microseconds,
            series: vec![
                ("new owner beside the rogue".into(), reports.flooded_us),
                ("new owner on the other host".into(), reports.quiet_us),
            ],
            limit: Some(REPORT_P99_TARGET_US),
        }],
    })
}

/// Probes lost and rogue frames passed in the windows of one kind.
fn window_figures(name: &str, w: &Windows, targets: bool) -> Vec<Figure> {
    let target = |f: Figure| match targets {
        true => f.with_target(Target::AtMost(0.0)),
        false => f,
    };
    vec![
        target(Figure::median(
            format!("{name}: probes lost"),
            Unit::Count,
            &w.probes_lost,
        )),
        target(Figure::median(
            format!("{name}: rogue frames passed"),
            Unit::Count,
            &w.rogue_passed,
        )),
    ]
}

/// How long one way of starting the agent took to reconcile every port,
/// per round.
struct ReconcileTimes {
    /// "a fresh start", or a kind of restart.
    what: String,
    all_us: Vec<f64>,
    per_port_us: Vec<f64>,
    /// Until every port's TC egress was a TCX link (when it is TCX).
    tcx_us: Vec<f64>,
}

impl ReconcileTimes {
    fn push(&mut self, r: &Reconciled) {
        self.all_us.push(r.all.as_secs_f64() * 1e6);
        self.per_port_us.push(r.per_port().as_secs_f64() * 1e6);
        if let Some(tcx) = r.tcx {
            self.tcx_us.push(tcx.as_secs_f64() * 1e6);
        }
        eprintln!(
            "havip-bench: restarts: {} ports reconciled {:.1} s after {}",
            r.ports,
            r.all.as_secs_f64(),
            self.what
        );
    }
}

/// The fresh start and each kind of restart, with `--ports` ports.
fn reconcile(opts: &Options) -> Result<Vec<ReconcileTimes>> {
    let many = ManyPorts::build(opts.ports)?;
    let mut out: Vec<ReconcileTimes> = std::iter::once("a fresh start")
        .chain(RESTART_KINDS.iter().map(|k| k.name))
        .map(|what| ReconcileTimes {
            what: what.to_string(),
            all_us: Vec::new(),
            per_port_us: Vec::new(),
            tcx_us: Vec::new(),
        })
        .collect();
    for _ in 0..opts.restart_rounds {
        let (mut agent, fresh) = many.start_agent()?;
        out[0].push(&fresh);
        for (k, kind) in RESTART_KINDS.iter().enumerate() {
            out[k + 1].push(&many.restart_agent(&mut agent, kind)?);
        }
        let problems = many.problems(&agent)?;
        ensure!(
            problems.is_empty(),
            "ports not reconciled: {}",
            problems.join("; ")
        );
        agent.stop()?;
    }
    Ok(out)
}

fn method(
    opts: &Options,
    windows: &restart_window::Measured,
    report_rejections: &[Rejections],
) -> Vec<String> {
    let counted = |r: &[Rejections]| {
        r.iter()
            .map(|r| format!("{} {} sent, {} counted", r.reason, r.sent, r.counted))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let kinds: Vec<String> = RESTART_KINDS
        .iter()
        .map(|k| format!("{} ({})", k.name, k.about))
        .collect();
    vec![
        format!(
            "Restart windows: the lab (generic XDP) with keepalived's master in vm1; the client \
             probes {VIP4}:{ECHO} every {} ms through the fast path ({} probes in all) \
             while the rogue floods {} frames/s: GARPs, ARP replies and NAs claiming the VIPs, \
             UDP from VIP4, from vm1's MAC and from an address not its own, all built by the \
             bench. Each of {} rounds restarts the agent each way: {}. A window runs from the \
             signal to {} ms after the new agent is ready (XDP on every port, `running` in its \
             log); a probe sent in it is lost if no answer came within 100 ms; a rogue frame \
             passed if one byte for byte equal to the flood's (or carrying its marker) reached \
             the client's eth0 (an AF_PACKET socket there), or if an owner changed in the window \
             (the VIPs' owner_changes counters). Each round also has a 1 s window with no \
             restart, for the machine's floor. Figures: the median over the rounds; spread: the \
             fewest and the most in one window. The flood over the whole run: {}. Before the \
             agent first started, the same frames for {} ms at {} frames/s with no \
             datapath put {} through to the client: what the watch sees when they pass.",
            PROBE_EVERY.as_millis(),
            windows.probes,
            opts.flood_rate,
            opts.restart_rounds,
            kinds.join("; "),
            SETTLE.as_millis(),
            counted(&windows.rejections),
            restart_window::UNGUARDED.as_millis(),
            restart_window::UNGUARDED_RATE,
            windows.unguarded,
            VIP4 = crate::lab::VIP4,
            ECHO = crate::lab::ECHO_PORT,
        ),
        format!(
            "Many ports: {} veth pairs in a namespace of their own, each hypervisor side on one \
             bridge, and an agent config with a port on each. From the agent process's start \
             to the moment every port's pinned XDP link (and TCX egress link, where one is \
             pinned; a port without has a netlink filter, attached before XDP) holds a program \
             of this agent (read from the pins every 50 ms: the figure's resolution); on a \
             restart the links stay and only their programs change. With TCX, new ports' egress \
             starts as a netlink filter and moves to a TCX link in the background: the TCX \
             figure is until every port's egress is a TCX link of this agent. \
             Per round: a fresh start on an empty pin dir, then each kind of restart; at the \
             end each port's XDP program is checked to be its link's, TCX likewise, and \
             `havip-agent status` to list the port. Medians over {} rounds; time per port: \
             (last port - first port) / (ports - 1).",
            opts.ports, opts.restart_rounds
        ),
        format!(
            "Owner reports: two hypervisors on the etcd source (a real etcd and the \
             controller), vm1 and the client on hv-a, vm2 and the rogue on hv-b; the rogue \
             floods hv-b at {} frames/s throughout. {} failovers, keepalived's master stopped \
             (SIGTERM: the backup takes over at once) and started again as backup, so the VIP \
             goes to vm2 and back to vm1 in turn. The delay: from the new master's first GARP \
             on its hypervisor port (tcpdump, kernel timestamp) to an etcd watch on \
             /havip/v1/owners/ (etcd's JSON gateway, from the control namespace) delivering \
             the record naming the new master. Percentiles by nearest rank, separately for \
             the new owner beside the rogue (reported by the flooded host's agent) and on \
             the other host. The flood: {}.",
            opts.flood_rate,
            opts.failovers,
            counted(report_rejections)
        ),
    ]
}
