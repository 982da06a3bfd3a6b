//! `havip-bench`: what the datapath costs and what it buys, measured side by
//! side in one run and written to `target/bench/report.md` and `report.png`.
//!
//! The report is made of sections, each one module with a `run` function
//! that measures and returns a [`Section`]: figures (median and spread over
//! repeated rounds, a target when the issue sets one) and charts. Adding a
//! benchmark is one more module and one more line in [`SECTIONS`].
//!
//! - [`cost`]: nanoseconds per packet of each datapath path through
//!   BPF_PROG_TEST_RUN, above an empty XDP program run the same way;
//! - [`throughput`]: packets per second of 64-byte UDP through the fast
//!   path against the Linux bridge alone, and what the programs cost
//!   traffic that is not for a VIP, in both XDP modes, on veth ports;
//! - [`throughput_tap`]: the same on tap ports (as QEMU/KVM has them),
//!   where native XDP runs before the kernel builds a socket buffer;
//! - [`switch`]: from a claim on the backup's port to the first frame for
//!   the VIP on the new owner's port;
//! - [`controller`]: the controller and the agents on etcd: API create+bind
//!   operations per second, API bind to an agent's map, and a claim on one
//!   host to the remote owner programmed on another.
//! - [`capacity`]: N VIPs applied on one host at three sizes up to the
//!   default 65,536, with the agent's and the maps' memory;
//! - [`restarts`]: what agent restarts let through under a rogue flood,
//!   the time to reconcile a thousand ports, and owner reports to etcd
//!   under a flood.
//!
//! These machines are shared and noisy: every comparison is measured in the
//! same round as what it is compared with, rounds are interleaved, and the
//! report gives ratios and differences rather than absolute times.

pub mod capacity;
pub mod chart;
pub mod controller;
pub mod cost;
pub mod frames;
pub mod labs;
pub mod machine;
pub mod owner_report;
pub mod owners;
pub mod raw_xdp;
pub mod report;
pub mod restart_window;
pub mod restarts;
pub mod stats;
pub mod switch;
pub mod tap;
pub mod tap_lab;
pub mod throughput;
pub mod throughput_tap;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::bench::labs::XdpMode;

/// What a run measures and how long: the command line of `havip-bench`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds of every comparison (each round measures every variant once).
    pub rounds: usize,
    /// BPF_PROG_TEST_RUN repetitions per call, for frames a run leaves as
    /// it found them.
    pub repeat: u32,
    /// Single runs per round, for frames a run rewrites (the answers).
    pub single_runs: usize,
    /// How long traffic is counted in each throughput window.
    pub window: Duration,
    /// Traffic before the counting starts in each window.
    pub warmup: Duration,
    /// Owner switches per XDP mode.
    pub switches: usize,
    /// The XDP modes the lab benchmarks run in.
    pub xdp_modes: Vec<XdpMode>,
    /// Rounds of the restarts section (each restarts the agent every way).
    pub restart_rounds: usize,
    /// Ports the agent reconciles in the restarts section.
    pub ports: usize,
    /// Failovers under a flood in the restarts section.
    pub failovers: usize,
    /// Frames per second of the rogue's flood.
    pub flood_rate: u32,
    /// Where the report goes.
    pub out: PathBuf,
    /// The command line recorded in the report.
    pub command: String,
}

/// One benchmark of the report, as its module measured it.
pub struct Section {
    pub title: String,
    /// How it was measured, one paragraph a line, for the report.
    pub method: Vec<String>,
    pub figures: Vec<Figure>,
    pub charts: Vec<chart::Chart>,
}

/// A number the report gives, with what it is compared against.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    /// The headline value: the median over rounds, or the percentile the
    /// name gives.
    pub value: f64,
    /// The smallest and largest sample (per round, or per switch).
    pub spread: (f64, f64),
    /// How many samples the value is over.
    pub samples: usize,
    pub unit: Unit,
    pub target: Option<Target>,
}

impl Figure {
    /// The median of `samples`, with their range.
    pub fn median(name: impl Into<String>, unit: Unit, samples: &[f64]) -> Self {
        Self {
            name: name.into(),
            value: stats::median(samples),
            spread: stats::range(samples),
            samples: samples.len(),
            unit,
            target: None,
        }
    }

    /// The `p`th percentile (nearest rank) of `samples`, with their range.
    pub fn percentile(name: impl Into<String>, unit: Unit, samples: &[f64], p: f64) -> Self {
        Self {
            name: name.into(),
            value: stats::percentile(samples, p),
            spread: stats::range(samples),
            samples: samples.len(),
            unit,
            target: None,
        }
    }

    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// Whether the value meets the target; `None` without a target.
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met_by(self.value))
    }
}

/// The unit a figure is in, and how it prints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Nanoseconds,
    Microseconds,
    PacketsPerSecond,
    /// A ratio, printed as `2.10x`.
    Ratio,
    /// A fraction, printed as a percentage.
    Percent,
    Count,
    /// Memory, printed in MiB.
    Mebibytes,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        if v.is_nan() {
            return "n/a".into();
        }
        match self {
            Unit::Nanoseconds => format!("{v:.1} ns"),
            Unit::Microseconds if v >= 1e6 => format!("{:.2} s", v / 1e6),
            Unit::Microseconds if v >= 1000.0 => format!("{:.2} ms", v / 1000.0),
            Unit::Microseconds => format!("{v:.1} µs"),
            Unit::PacketsPerSecond if v >= 1e6 => format!("{:.3} Mpps", v / 1e6),
            Unit::PacketsPerSecond => format!("{:.1} kpps", v / 1e3),
            Unit::Ratio => format!("{v:.2}x"),
            Unit::Percent => format!("{:.1} %", v * 100.0),
            Unit::Count => format!("{v:.0}"),
            Unit::Mebibytes => format!("{v:.1} MiB"),
        }
    }
}

/// A bound the issue sets on a figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
}

impl Target {
    pub fn met_by(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
            Target::Below(t) => v < t,
        }
    }

    pub fn format(self, unit: Unit) -> String {
        match self {
            Target::AtMost(t) => format!("≤ {}", unit.format(t)),
            Target::AtLeast(t) => format!("≥ {}", unit.format(t)),
            Target::Below(t) => format!("< {}", unit.format(t)),
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Target::AtMost(t) | Target::AtLeast(t) | Target::Below(t) => t,
        }
    }
}

/// What every section may use: the options and the labs, built once when a
/// section first asks for them and shared by the sections after it.
pub struct Context {
    pub options: Options,
    pub labs: labs::Labs,
}

/// A benchmark of the report: its name on the command line (`--only`) and
/// the function that runs it.
pub struct Benchmark {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&mut Context) -> Result<Section>,
}

/// Every benchmark, in the order of the report.
pub const SECTIONS: &[Benchmark] = &[
    Benchmark {
        name: "cost",
        about: "ns per packet of each datapath path above an empty XDP program (BPF_PROG_TEST_RUN)",
        run: cost::run,
    },
    Benchmark {
        name: "throughput",
        about: "64-byte UDP packets per second on veth ports: fast path against the bridge alone, non-VIP traffic with and without the programs",
        run: throughput::run,
    },
    Benchmark {
        name: "throughput-tap",
        about: "the throughput comparison on tap ports: 64-byte UDP written into the client's tap, counted at the receiving VM's tap",
        run: throughput_tap::run,
    },
    Benchmark {
        name: "switch",
        about: "from a claim on the backup's port to the first frame for the VIP on the new owner's port",
        run: switch::run,
    },
    Benchmark {
        name: "controller",
        about: "API create+bind operations per second on one etcd, API bind -> agent map, claim on one host -> remote owner on another",
        run: controller::run,
    },
    Benchmark {
        name: "capacity",
        about: "a host's capacity: N VIPs applied at the agent's start and one change among them, the agent's RSS and the VIP maps' kernel memory, at three sizes up to 65,536",
        run: capacity::run,
    },
    Benchmark {
        name: "restarts",
        about: "probes lost and rogue frames passed in each kind of agent restart, time to reconcile --ports ports, GARP -> owner in etcd under a rogue flood",
        run: restarts::run,
    },
];
