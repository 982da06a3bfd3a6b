//! `havip-bench`: measures the datapath against what it replaces and writes
//! `report.md` and `report.png` (see `havip_tests::bench`).
//!
//! Needs root (namespaces, BPF) and the datapath object and agent that
//! `cargo xtask bench` builds and passes (HAVIP_EBPF_OBJECT,
//! HAVIP_AGENT_BIN). Everything it creates is removed at the end, also on
//! Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use havip_tests::bench::labs::{Labs, XdpMode};
use havip_tests::bench::machine::Machine;
use havip_tests::bench::report::{self, Report};
use havip_tests::bench::{Context, Options, SECTIONS};
use havip_tests::{cleanup, leftovers};

/// Benchmark the havip datapath: cost per packet through BPF_PROG_TEST_RUN
/// against an empty XDP program, 64-byte UDP packets per second through the
/// fast path against the Linux bridge alone, the owner switch latency (with
/// split-brain damping on, every switch a failover after a quiet hold-down), the
/// agent's restarts under a rogue flood (probes lost, rogue frames passed,
/// time to reconcile every port, owner-report delay) and the controller's
/// operations. Writes report.md and report.png into --out and prints the figures.
/// Needs root.
#[derive(Parser)]
#[command(name = "havip-bench", args_override_self = true)]
struct Cli {
    /// Rounds of the cost and throughput comparisons (each round measures
    /// every variant once, interleaved).
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// BPF_PROG_TEST_RUN runs per call for the repeated paths.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Single BPF_PROG_TEST_RUN calls per round for the paths that rewrite
    /// their frame or move the owner.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    single_runs: u64,
    /// Length of each throughput window, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    window_ms: u64,
    /// Traffic before each throughput window starts counting, in milliseconds.
    #[arg(long, default_value_t = 300)]
    warmup_ms: u64,
    /// Owner switches per XDP mode (at least 100).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(100..))]
    switches: u64,
    /// The XDP modes of the lab benchmarks, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "generic,native")]
    xdp_modes: Vec<XdpMode>,
    /// Rounds of the restarts benchmark (each restarts the agent every way,
    /// in the lab and with --ports ports).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    restart_rounds: u64,
    /// Ports the agent reconciles in the restarts benchmark.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=1020))]
    ports: u64,
    /// Failovers under a rogue flood in the restarts benchmark.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(2..))]
    failovers: u64,
    /// Frames per second of the rogue's flood in the restarts benchmark.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..))]
    flood_rate: u32,
    /// Only these benchmarks, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = benchmark_names())]
    only: Vec<String>,
    /// Where report.md and report.png go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The command line to record in the report (default: this one).
    #[arg(long, hide = true)]
    command: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("havip-bench: error: {e:#}");
        cleanup::release_all();
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks need root (network namespaces, XDP, loading BPF): run `cargo xtask bench` as root");
    }
    if cli.xdp_modes.is_empty() {
        bail!("--xdp-modes names no mode");
    }
    let command = cli
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let options = Options {
        rounds: cli.rounds as usize,
        repeat: cli.repeat,
        single_runs: cli.single_runs as usize,
        window: Duration::from_millis(cli.window_ms),
        warmup: Duration::from_millis(cli.warmup_ms),
        switches: cli.switches as usize,
        xdp_modes: dedup(cli.xdp_modes),
        restart_rounds: cli.restart_rounds as usize,
        ports: cli.ports as usize,
        failovers: cli.failovers as usize,
        flood_rate: cli.flood_rate,
        out: cli.out,
        command,
    };

    let started = Instant::now();
    let machine = Machine::now();
    let mut ctx = Context {
        options,
        labs: Labs::default(),
    };
    let mut sections = Vec::new();
    for bench in SECTIONS {
        if !cli.only.is_empty() && !cli.only.iter().any(|n| n == bench.name) {
            continue;
        }
        eprintln!("havip-bench: {}: {}", bench.name, bench.about);
        sections.push((bench.run)(&mut ctx)?);
    }
    let Context { options, labs } = ctx;
    // The labs go first (agents stopped, namespaces removed), then the
    // report is written from what was measured.
    drop(labs);

    let report = Report {
        machine,
        options: &options,
        sections: &sections,
        took: started.elapsed(),
        load_at_end: report::load_now(),
    };
    let (md, png) = report.write()?;
    print!("{}", report.text());
    println!("report: {}\nchart:  {}", md.display(), png.display());

    let left = leftovers();
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    Ok(())
}

/// The names `--only` takes: those of [`SECTIONS`].
fn benchmark_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(SECTIONS.iter().map(|s| s.name))
}

fn dedup(modes: Vec<XdpMode>) -> Vec<XdpMode> {
    let mut unique = Vec::new();
    for m in modes {
        if !unique.contains(&m) {
            unique.push(m);
        }
    }
    unique
}
