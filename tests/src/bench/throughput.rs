//! Packets per second through the lab: 64-byte UDP from the client, counted
//! at the VM it is for, in a lab where havip forwards and in the same
//! topology where the Linux bridge alone does (no agent).
//!
//! - VIP traffic: client -> the VIP (10.0.6.19), Ethernet destination the
//!   owner's MAC (vm1's): with havip the fast path redirects it from the
//!   client's port straight to vm1's, without it the bridge forwards it.
//! - Non-VIP traffic: client -> vm2's own address and MAC: the bridge
//!   forwards it either way; with havip it also crosses the XDP program on
//!   the client's port and the TC program on vm2's.
//!
//! The generator is an AF_PACKET socket in the client VM with
//! PACKET_QDISC_BYPASS sending bursts with sendmmsg (this kernel has no
//! pktgen). Each receiving VM ends the traffic with an XDP program that
//! drops every frame (`r0 = XDP_DROP; exit`, native, on its eth0), and the
//! figure is its eth0's rx_packets over a fixed window.
//!
//! CPUs: the client VM sends on the last CPU, the hypervisor works on the
//! first, as a VM's vCPU and the host's networking would. A veth hands a
//! frame to its peer on the sending CPU, so the hypervisor's share is moved
//! explicitly: RPS on the client's port queues its frames to the first
//! CPU's backlog, and where XDP runs in the veth driver (native, with
//! havip) the port's NAPI runs in a kernel thread pinned to the first CPU.
//! When the hypervisor's CPU cannot keep up, the client's port refuses
//! frames and the sender slows down: the figure is what the hypervisor
//! forwarded.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::bench::chart::Chart;
use crate::bench::labs::{lab_name, BenchLab, Forwarding, NicCounters, XdpMode};
use crate::bench::raw_xdp::{ConstantXdp, XDP_DROP};
use crate::bench::wire::{self, PacketSocket, SocketOptions};
use crate::bench::{frames, stats, Context, Figure, Options, Section, Target, Unit};
use crate::lab::{CLIENT, VIP4, VM1, VM2};

/// Frames per sendmmsg.
const BURST: usize = 64;
/// VIP traffic: at least this many times the bridge's packets per second.
pub(super) const FAST_PATH_TARGET: f64 = 2.0;
/// Non-VIP traffic: at most this much slower with the programs.
pub(super) const SLOWDOWN_TARGET: f64 = 0.10;

/// Which traffic a window sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Traffic {
    /// Client -> the VIP, to the owner's (vm1's) MAC.
    Vip,
    /// Client -> vm2's own address.
    NonVip,
}

impl Traffic {
    pub(super) const ALL: [Traffic; 2] = [Traffic::Vip, Traffic::NonVip];

    pub(super) fn frame(self) -> Vec<u8> {
        // 42 bytes of headers + 18 of payload: 60, 64 on the wire.
        match self {
            Traffic::Vip => frames::udp4(&CLIENT, VM1.mac, VIP4, &[0; 18]),
            Traffic::NonVip => frames::udp4(&CLIENT, VM2.mac, VM2.ipv4, &[0; 18]),
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Traffic::Vip => "VIP traffic",
            Traffic::NonVip => "non-VIP traffic",
        }
    }
}

/// Where the work runs.
#[derive(Clone, Copy, Debug)]
struct Cpus {
    /// The client VM's sender.
    sender: usize,
    /// The hypervisor: forwarding, and the receiving VMs' NAPI.
    hypervisor: usize,
}

impl Cpus {
    /// The last CPU sends, the first forwards (on one CPU, both on 0).
    fn of_this_machine() -> Self {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            sender: n - 1,
            hypervisor: 0,
        }
    }
}

/// One lab as the windows use it: its client's sender, the counters of the
/// two receiving VMs, and their drop sinks (attached while this lives).
struct Site {
    mode: XdpMode,
    forwarding: Forwarding,
    name: String,
    sender: PacketSocket,
    vm1: NicCounters,
    vm2: NicCounters,
    _sinks: Vec<aya::programs::Xdp>,
}

impl Site {
    fn new(bench_lab: &BenchLab, sink: &ConstantXdp) -> Result<Self> {
        let lab = &bench_lab.lab;
        Ok(Self {
            mode: bench_lab.mode,
            forwarding: bench_lab.forwarding,
            name: bench_lab.describe(),
            sender: PacketSocket::open(
                &lab.client.ns,
                "eth0",
                SocketOptions {
                    qdisc_bypass: true,
                    ..SocketOptions::default()
                },
            )?,
            vm1: NicCounters::open(&lab.vm1.ns, "eth0")?,
            vm2: NicCounters::open(&lab.vm2.ns, "eth0")?,
            _sinks: vec![
                sink.attach_in(&lab.vm1.ns, "eth0")?,
                sink.attach_in(&lab.vm2.ns, "eth0")?,
            ],
        })
    }
}

/// What one window counted.
#[derive(Clone, Copy, Debug)]
struct Window {
    received_pps: f64,
    /// Frames the client's port took, per second.
    sent_pps: f64,
    /// Frames the other VM received meanwhile (it should get none).
    elsewhere: u64,
    /// How busy the CPUs were (0 to 1), whoever kept them busy.
    sender_busy: f64,
    hypervisor_busy: f64,
}

/// Every window of every round, by (mode, forwarding, traffic).
#[derive(Default)]
struct Windows(Vec<((XdpMode, Forwarding, Traffic), Window)>);

impl Windows {
    fn of(&self, mode: XdpMode, forwarding: Forwarding, traffic: Traffic) -> Vec<Window> {
        self.0
            .iter()
            .filter(|(k, _)| *k == (mode, forwarding, traffic))
            .map(|(_, w)| *w)
            .collect()
    }
}

pub fn run(ctx: &mut Context) -> Result<Section> {
    let opts = ctx.options.clone();
    let forwardings = [
        Forwarding::Havip,
        Forwarding::BridgeAlone,
        Forwarding::EmptyXdp,
    ];
    ctx.labs.build_all(&opts.xdp_modes, &forwardings)?;
    let cpus = Cpus::of_this_machine();
    let sink = ConstantXdp::load("havip_sink", XDP_DROP)?;
    let mut sites = Vec::new();
    let mut steering = Vec::new();
    for &mode in &opts.xdp_modes {
        for forwarding in forwardings {
            let bench_lab = ctx.labs.built(mode, forwarding)?;
            let how = steer(bench_lab, cpus.hypervisor)?;
            steering.push(format!("{}: {how}", bench_lab.describe()));
            sites.push(Site::new(bench_lab, &sink)?);
        }
    }

    let windows_per_round = sites.len() * Traffic::ALL.len();
    eprintln!(
        "havip-bench: throughput: {} rounds of {windows_per_round} windows of {:?}, sender on CPU {}, hypervisor on CPU {}",
        opts.rounds, opts.window, cpus.sender, cpus.hypervisor
    );
    let softirqs_before = net_rx_softirqs();
    let mut windows = Windows::default();
    for round in 0..opts.rounds {
        let mut order: Vec<(usize, Traffic)> = (0..sites.len())
            .flat_map(|s| Traffic::ALL.map(|t| (s, t)))
            .collect();
        let turn = round % order.len();
        order.rotate_left(turn);
        for (s, traffic) in order {
            let site = &mut sites[s];
            let w = window(site, traffic, cpus, &opts)
                .with_context(|| format!("{} through {}", traffic.describe(), site.name))?;
            windows.0.push(((site.mode, site.forwarding, traffic), w));
        }
        eprintln!(
            "havip-bench: throughput round {}/{} done",
            round + 1,
            opts.rounds
        );
    }
    let softirqs = softirq_share(&softirqs_before, &net_rx_softirqs(), cpus.hypervisor);
    // The labs go on as they were built: no sinks, no steering.
    drop(sites);
    for &mode in &opts.xdp_modes {
        for forwarding in forwardings {
            unsteer(ctx.labs.built(mode, forwarding)?)?;
        }
    }

    let mut notes = vec![format!(
        "CPUs: the client's sender thread runs on CPU {}, the hypervisor's work on CPU {}. \
         A veth hands a frame to its peer on the sending CPU, so the hypervisor's share is \
         moved there explicitly: {}.{}",
        cpus.sender,
        cpus.hypervisor,
        steering.join("; "),
        match softirqs {
            Some(share) => format!(
                " {:.0} % of the NET_RX softirqs during the windows ran on CPU {}.",
                share * 100.0,
                cpus.hypervisor
            ),
            None => String::new(),
        }
    )];
    notes.extend(delivery_note(&opts, &windows, cpus));
    Ok(summarize(&opts, &windows, notes))
}

/// What the windows say about where frames went and which CPU limited
/// them: a hypervisor CPU busy all the window was the bottleneck; a
/// window where it idled measured the sender.
fn delivery_note(opts: &Options, windows: &Windows, cpus: Cpus) -> Vec<String> {
    let all: Vec<&Window> = windows.0.iter().map(|(_, w)| w).collect();
    if all.is_empty() {
        return Vec::new();
    }
    let delivered: Vec<f64> = all.iter().map(|w| w.received_pps / w.sent_pps).collect();
    let (least, most) = stats::range(&delivered);
    let elsewhere: u64 = all.iter().map(|w| w.elsewhere).sum();
    let mut busy = Vec::new();
    for &mode in &opts.xdp_modes {
        for forwarding in [
            Forwarding::Havip,
            Forwarding::BridgeAlone,
            Forwarding::EmptyXdp,
        ] {
            for traffic in Traffic::ALL {
                let ws = windows.of(mode, forwarding, traffic);
                let hv: Vec<f64> = ws.iter().map(|w| w.hypervisor_busy * 100.0).collect();
                let tx: Vec<f64> = ws.iter().map(|w| w.sender_busy * 100.0).collect();
                busy.push(format!(
                    "{}, {}: {:.0} % / {:.0} %",
                    traffic.describe(),
                    lab_name(mode, forwarding),
                    stats::median(&hv),
                    stats::median(&tx)
                ));
            }
        }
    }
    vec![
        format!(
            "The receiving VM counted {:.1} % to {:.1} % of the frames the client's port took \
             in a window (the sender waits when the hypervisor falls behind: its socket's \
             buffer fills); the other VM received {elsewhere} frames in all windows together.",
            least * 100.0,
            most * 100.0
        ),
        format!(
            "CPU busy during the windows, hypervisor (CPU {}) / sender (CPU {}), medians, \
             whatever ran there (other work on the machine included): {}. A hypervisor CPU \
             near 100 % means the figure is the hypervisor's forwarding rate; well below, the \
             sender limited the window.",
            cpus.hypervisor,
            cpus.sender,
            busy.join("; ")
        ),
    ]
}

fn summarize(opts: &Options, windows: &Windows, notes: Vec<String>) -> Section {
    let mut fast_path = Vec::new();
    let mut slowdown = Vec::new();
    let mut rates = Vec::new();
    for &mode in &opts.xdp_modes {
        let m = mode.as_str();
        for traffic in Traffic::ALL {
            let havip = windows.of(mode, Forwarding::Havip, traffic);
            let bridge = windows.of(mode, Forwarding::BridgeAlone, traffic);
            // Each round measured both: compare within the round.
            let ratios: Vec<f64> = havip
                .iter()
                .zip(&bridge)
                .map(|(h, b)| h.received_pps / b.received_pps)
                .collect();
            match traffic {
                Traffic::Vip => fast_path.push(
                    Figure::median(
                        format!("VIP traffic, havip fast path ÷ bridge alone (veth, {m} XDP)"),
                        Unit::Ratio,
                        &ratios,
                    )
                    .with_target(Target::AtLeast(FAST_PATH_TARGET)),
                ),
                Traffic::NonVip => {
                    let slower: Vec<f64> = ratios.iter().map(|r| 1.0 - r).collect();
                    slowdown.push(
                        Figure::median(
                            format!("non-VIP traffic, slowdown with the programs (veth, {m} XDP)"),
                            Unit::Percent,
                            &slower,
                        )
                        .with_target(Target::AtMost(SLOWDOWN_TARGET)),
                    );
                    // How much of that attaching any XDP program costs.
                    let empty = windows.of(mode, Forwarding::EmptyXdp, traffic);
                    let slower: Vec<f64> = empty
                        .iter()
                        .zip(&bridge)
                        .map(|(e, b)| 1.0 - e.received_pps / b.received_pps)
                        .collect();
                    if !slower.is_empty() {
                        slowdown.push(Figure::median(
                            format!(
                                "non-VIP traffic, slowdown with an empty XDP program (veth, {m} XDP)"
                            ),
                            Unit::Percent,
                            &slower,
                        ));
                    }
                }
            }
            let empty = windows.of(mode, Forwarding::EmptyXdp, traffic);
            for (forwarding, list) in [
                (Forwarding::Havip, &havip),
                (Forwarding::BridgeAlone, &bridge),
                (Forwarding::EmptyXdp, &empty),
            ] {
                let pps: Vec<f64> = list.iter().map(|w| w.received_pps).collect();
                rates.push(Figure::median(
                    format!(
                        "{}, {} (veth)",
                        traffic.describe(),
                        lab_name(mode, forwarding)
                    ),
                    Unit::PacketsPerSecond,
                    &pps,
                ));
            }
        }
    }

    let charts = vec![
        Chart::bars(
            "Throughput on veth ports: havip fast path ÷ the bridge alone, VIP traffic (64-byte UDP)",
            "ratio of packets per second at the receiving VM",
            Unit::Ratio,
            &fast_path,
        ),
        Chart::bars(
            "Throughput on veth ports: non-VIP traffic, slowdown with the havip programs",
            "slowdown against the bridge alone",
            Unit::Percent,
            &slowdown,
        ),
        Chart::bars(
            "Throughput on veth ports: packets per second at the receiving VM",
            "packets per second",
            Unit::PacketsPerSecond,
            &rates,
        ),
    ];
    let mut figures = fast_path;
    figures.extend(slowdown);
    figures.extend(rates);

    let modes: Vec<&str> = opts.xdp_modes.iter().map(|m| m.as_str()).collect();
    let mut method = vec![
        format!(
            "Labs of the same topology (hypervisor namespace, bridge br0, four VMs on veth \
             ports): for each XDP mode ({}), one with the agent running in that mode and one \
             with no agent, the Linux bridge alone. The bridge knows every VM's MAC from a \
             static FDB entry (nothing is flooded). With the agent, vm1 owns {VIP4} (its \
             GARP). The VMs keep their NICs' offloads in both modes (the frames below carry \
             complete checksums: a packet socket's frames are sent as written).",
            modes.join(", ")
        ),
        format!(
            "Generator: an AF_PACKET socket in the client VM, PACKET_QDISC_BYPASS, sendmmsg \
             bursts of {BURST} copies of one 60-byte frame (64 on the wire). VIP traffic: \
             client -> {VIP4} with vm1's MAC as destination (the owner's, as a client that \
             resolved the VIP sends); non-VIP traffic: client -> vm2's own address and MAC. \
             Sink: `r0 = XDP_DROP; exit` on vm1's and vm2's eth0 (native) in every lab; the \
             figure is the receiving eth0's rx_packets over each window. With havip the \
             fast path hands vm1's eth0 XDP frames, the bridge hands it socket buffers: \
             that difference is part of what is measured."
        ),
    ];
    method.extend(notes);
    method.push(rounds_note(opts));
    Section {
        title: "Packets per second on veth ports: fast path against the bridge alone".into(),
        method,
        figures,
        charts,
    }
}

/// How the throughput sections' windows and rounds go, for their method.
pub(super) fn rounds_note(opts: &Options) -> String {
    format!(
        "{} rounds; each round has one window of {} ms (after {} ms of traffic) for every lab \
         and traffic, the order rotated by one each round. Ratios are taken within a round, \
         then the median over rounds; spread: smallest and largest round.",
        opts.rounds,
        opts.window.as_millis(),
        opts.warmup.as_millis(),
    )
}

/// One window of `traffic` through `site`.
fn window(site: &mut Site, traffic: Traffic, cpus: Cpus, opts: &Options) -> Result<Window> {
    let frame = traffic.frame();
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let Site {
        sender, vm1, vm2, ..
    } = site;
    let (target, other) = match traffic {
        Traffic::Vip => (vm1, vm2),
        Traffic::NonVip => (vm2, vm1),
    };
    let read = |target: &mut NicCounters, other: &mut NicCounters| -> Result<[u64; 3]> {
        Ok([
            sent.load(Ordering::Relaxed),
            target.rx_packets()?,
            other.rx_packets()?,
        ])
    };
    std::thread::scope(|scope| -> Result<Window> {
        let generator = scope.spawn(|| -> Result<()> {
            wire::pin_thread_to(cpus.sender).context("pin the sender")?;
            while !stop.load(Ordering::Relaxed) {
                match sender.send_copies(&frame, BURST) {
                    Ok(took) => {
                        sent.fetch_add(took as u64, Ordering::Relaxed);
                    }
                    // The client's port dropped the frame (a full queue): go on.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => return Err(e).context("sendmmsg"),
                }
            }
            Ok(())
        });
        let counted = (|| -> Result<Window> {
            std::thread::sleep(opts.warmup);
            let (start, t0) = (read(target, other)?, Instant::now());
            let cpu0 = cpu_times();
            std::thread::sleep(opts.window);
            let cpu1 = cpu_times();
            let (end, t1) = (read(target, other)?, Instant::now());
            let seconds = (t1 - t0).as_secs_f64();
            let d: Vec<u64> = end.iter().zip(start).map(|(e, s)| e - s).collect();
            Ok(Window {
                sent_pps: d[0] as f64 / seconds,
                received_pps: d[1] as f64 / seconds,
                elsewhere: d[2],
                sender_busy: busy(&cpu0, &cpu1, cpus.sender),
                hypervisor_busy: busy(&cpu0, &cpu1, cpus.hypervisor),
            })
        })();
        stop.store(true, Ordering::Relaxed);
        generator
            .join()
            .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        let w = counted?;
        if w.received_pps == 0.0 {
            bail!(
                "the receiving VM counted no frame ({:.0} per second sent)",
                w.sent_pps
            );
        }
        let received = w.received_pps * opts.window.as_secs_f64();
        if w.elsewhere as f64 > 0.01 * received {
            bail!(
                "the other VM received {} frames during the window: the traffic is flooded or misdirected",
                w.elsewhere
            );
        }
        Ok(w)
    })
}

/// Moves the hypervisor's work on the client's frames to `cpu`, off the
/// sender's: RPS on the client's port queues its frames to `cpu`'s backlog,
/// and where XDP runs in the veth driver (native, with havip) the port's
/// NAPI, which would run on the sending CPU, gets a thread of its own
/// pinned to `cpu`. Returns what it did.
fn steer(bench_lab: &BenchLab, cpu: usize) -> Result<String> {
    let lab = &bench_lab.lab;
    let tap = lab.client.spec.tap;
    let rps = format!("/sys/class/net/{tap}/queues/rx-0/rps_cpus");
    lab.hv
        .exec("sh", &["-c", &format!("echo {:x} > {rps}", 1u64 << cpu)])?;
    let mut did = format!("RPS on {tap} to CPU {cpu}");
    if bench_lab.mode == XdpMode::Native && bench_lab.runs_xdp() {
        let before = napi_threads(tap);
        lab.hv.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{tap}/threaded")],
        )?;
        let threads: Vec<i32> = napi_threads(tap).difference(&before).copied().collect();
        if threads.is_empty() {
            bail!("no NAPI thread appeared for {tap} after turning threaded NAPI on");
        }
        for pid in threads {
            wire::pin_task(pid, cpu).with_context(|| format!("pin NAPI thread {pid}"))?;
        }
        did.push_str(&format!(
            ", its NAPI (where native XDP runs) threaded and pinned to CPU {cpu}"
        ));
    }
    Ok(did)
}

/// Undoes [`steer`].
fn unsteer(bench_lab: &BenchLab) -> Result<()> {
    let lab = &bench_lab.lab;
    let tap = lab.client.spec.tap;
    let mut undo = format!("echo 0 > /sys/class/net/{tap}/queues/rx-0/rps_cpus");
    if bench_lab.mode == XdpMode::Native && bench_lab.runs_xdp() {
        undo.push_str(&format!(" && echo 0 > /sys/class/net/{tap}/threaded"));
    }
    lab.hv.exec("sh", &["-c", &undo]).map(drop)
}

/// The kernel threads of threaded NAPI on interfaces named `dev`
/// (`napi/{dev}-{id}`, cut to 15 characters).
fn napi_threads(dev: &str) -> BTreeSet<i32> {
    let name = format!("napi/{dev}-");
    let prefix = &name[..name.len().min(15)];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .collect()
}

/// (busy, total) clock ticks so far per CPU, from /proc/stat; busy is all
/// but idle and iowait.
pub(super) fn cpu_times() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let ticks: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|t| t.parse().ok())
                .collect();
            let total: u64 = ticks.iter().sum();
            let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// How busy `cpu` was between two [`cpu_times`] readings (0 to 1).
pub(super) fn busy(before: &[(u64, u64)], after: &[(u64, u64)], cpu: usize) -> f64 {
    match (before.get(cpu), after.get(cpu)) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

/// NET_RX softirqs so far, per CPU (/proc/softirqs).
fn net_rx_softirqs() -> Vec<u64> {
    std::fs::read_to_string("/proc/softirqs")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("NET_RX:"))
        .map(|counts| {
            counts
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The share of the NET_RX softirqs between two readings that ran on `cpu`.
fn softirq_share(before: &[u64], after: &[u64], cpu: usize) -> Option<f64> {
    let deltas: Vec<u64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    Some(*deltas.get(cpu)? as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softirq_share_is_per_cpu_of_the_difference() {
        assert_eq!(softirq_share(&[10, 10], &[40, 20], 0), Some(0.75));
        assert_eq!(softirq_share(&[1, 1], &[1, 1], 0), None);
    }

    #[test]
    fn frames_are_64_bytes_on_the_wire() {
        for t in Traffic::ALL {
            assert_eq!(t.frame().len(), frames::MIN_FRAME);
        }
    }
}
