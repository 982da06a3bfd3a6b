//! Packets per second through the lab on tap ports ([`tap_lab`]), the
//! port type of a QEMU/KVM hypervisor: 64-byte UDP written into the
//! client's tap, counted where it reaches the receiving VM's tap, with
//! havip forwarding, with the Linux bridge alone, and with an empty XDP
//! program on every tap. The traffic is that of [`throughput`] (VIP
//! traffic to the owner's MAC, non-VIP traffic to vm2's own address).
//!
//! On a tap everything the hypervisor does for a frame happens inside the
//! `write` that hands it over, on the writer's CPU: with native XDP,
//! `tun_get_user` runs the program on an `xdp_buff` before any socket
//! buffer exists, and an XDP_REDIRECT to another tap (`tun_xdp_xmit`) puts
//! the frame straight on that tap's queue; otherwise the frame becomes a
//! socket buffer and goes up the stack, through the bridge and the
//! receiving tap's qdisc, to `tun_net_xmit`. The sender is one thread on
//! the last CPU writing one frame per `write` as fast as it can (as
//! vhost-net's worker would hand frames over), so a window's rate is one
//! CPU's worth of forwarding, the system call included.
//!
//! Sink: nobody reads the receiving taps during a window. Once a tap's
//! queue (its ptr_ring, tx_queue_len frames) is full, every frame that
//! reaches it is dropped there and counted in its tx_dropped, on both
//! paths (`tun_net_xmit` and, one frame per flush as `tun_build_skb`
//! flushes after each redirect, `tun_xdp_xmit`). The figure is the
//! receiving tap's tx_dropped over the window. Each window also accounts
//! for every frame it sent: the taps' queues are read empty before it,
//! and after it every frame sent must be in the receiving tap's queue or
//! its tx_dropped, none at the other VM.
//!
//! [`tap_lab`]: crate::bench::tap_lab
//! [`throughput`]: crate::bench::throughput

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::bench::chart::Chart;
use crate::bench::labs::{Forwarding, NicCounters, XdpMode};
use crate::bench::raw_xdp::{ConstantXdp, XDP_DROP};
use crate::bench::tap_lab::{set_bridge_netfilter, tap_lab_name, TapLab};
use crate::bench::throughput::{
    busy, cpu_times, rounds_note, Traffic, FAST_PATH_TARGET, SLOWDOWN_TARGET,
};
use crate::bench::{frames, stats, wire, Context, Figure, Options, Section, Target, Unit};
use crate::lab::{VIP4, VIP4_ID};

/// Frames the sender writes between two looks at the stop flag.
const BATCH: u64 = 64;

/// What a window measures through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// A lab forwarding the frames to a receiving VM.
    Forwarding(Forwarding, XdpMode),
    /// The same with VMs that offload checksums (taps with a vnet header,
    /// UDP sent with the checksum left to the offload), havip in the
    /// agent's default mode (native on taps: the datapath completes the
    /// checksum of every frame it redirects).
    Offloading(Forwarding),
    /// The bridge-alone lab with br_netfilter's calls into iptables on (as
    /// the kernel starts a namespace where it has br_netfilter, and as the
    /// veth labs run): the bridge as a firewalling hypervisor has it.
    BridgeNetfilter,
    /// The bridge-alone lab with an XDP program that drops every frame on
    /// the client's tap (native): what writing a frame into a tap costs
    /// before any forwarding.
    WriteFloor,
}

/// One lab as the windows use it: the tx_dropped counters of the two
/// receiving VMs' taps, and for the floor the drop program on the client's.
struct Site {
    variant: Variant,
    name: String,
    lab: TapLab,
    vm1: NicCounters,
    vm2: NicCounters,
    _floor: Option<aya::programs::Xdp>,
}

impl Site {
    fn new(mode: XdpMode, forwarding: Forwarding) -> Result<Self> {
        let name = tap_lab_name(mode, forwarding);
        eprintln!("havip-bench: building the tap lab for {name}");
        let lab = TapLab::build(mode, forwarding).with_context(|| format!("tap lab {name}"))?;
        Self::of(lab, Variant::Forwarding(forwarding, mode), name, None)
    }

    /// A lab of VMs that offload checksums (see [`Variant::Offloading`]).
    fn offloading(forwarding: Forwarding) -> Result<Self> {
        let name = offloading_lab_name(forwarding);
        eprintln!("havip-bench: building the tap lab for {name}");
        let lab =
            TapLab::offloading(forwarding, "auto").with_context(|| format!("tap lab {name}"))?;
        Self::of(lab, Variant::Offloading(forwarding), name, None)
    }

    /// The bridge alone calling iptables; `None` where the kernel has no
    /// br_netfilter.
    fn bridge_netfilter() -> Result<Option<Self>> {
        let name = "bridge alone with br_netfilter (tap)".to_string();
        eprintln!("havip-bench: building the tap lab for {name}");
        let lab = TapLab::build(XdpMode::Native, Forwarding::BridgeAlone)?;
        if !set_bridge_netfilter(&lab.hv, true)? {
            return Ok(None);
        }
        Self::of(lab, Variant::BridgeNetfilter, name, None).map(Some)
    }

    fn floor(sink: &ConstantXdp) -> Result<Self> {
        let name = "writes dropped by XDP on the client's tap".to_string();
        eprintln!("havip-bench: building the tap lab for {name}");
        let lab = TapLab::build(XdpMode::Native, Forwarding::BridgeAlone)?;
        let drop = sink.attach_in(&lab.hv, lab.client.spec.tap)?;
        Self::of(lab, Variant::WriteFloor, name, Some(drop))
    }

    fn of(
        lab: TapLab,
        variant: Variant,
        name: String,
        floor: Option<aya::programs::Xdp>,
    ) -> Result<Self> {
        Ok(Self {
            variant,
            name,
            vm1: NicCounters::open(&lab.hv, lab.vm1.spec.tap)?,
            vm2: NicCounters::open(&lab.hv, lab.vm2.spec.tap)?,
            lab,
            _floor: floor,
        })
    }

    /// The traffic this site is measured with.
    fn traffics(&self) -> &'static [Traffic] {
        match self.variant {
            Variant::Forwarding(..) | Variant::Offloading(_) | Variant::BridgeNetfilter => {
                &Traffic::ALL
            }
            // Dropped on the client's tap: what it is addressed to is moot.
            Variant::WriteFloor => &[Traffic::Vip],
        }
    }
}

/// What one window counted.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// Frames per second that reached the receiving VM's tap.
    received_pps: f64,
    /// Frames per second the client's tap took (successful writes).
    sent_pps: f64,
    /// Every frame written from the start of the traffic to its end (the
    /// warmup included) ...
    sent: u64,
    /// ... and of those, the ones at the receiving VM (its tap's queue or
    /// its tx_dropped) ...
    delivered: u64,
    /// ... and the ones at the other VM (it should get none).
    elsewhere: u64,
    /// With havip, the frames its datapath counted as delivered to the
    /// VIP's owner meanwhile (VIP traffic: all of them, redirected).
    to_owner: Option<u64>,
    /// How busy the sender's CPU and the busiest other CPU were (0 to 1).
    sender_busy: f64,
    others_busy: f64,
}

/// Every window of every round.
#[derive(Default)]
struct Windows(Vec<((Variant, Traffic), Window)>);

impl Windows {
    fn of(&self, variant: Variant, traffic: Traffic) -> Vec<Window> {
        self.0
            .iter()
            .filter(|(k, _)| k.0 == variant && (k.1 == traffic || variant == Variant::WriteFloor))
            .map(|(_, w)| *w)
            .collect()
    }

    /// The bridge alone's windows: its lab is the same in every mode.
    fn bridge(&self, traffic: Traffic) -> Vec<Window> {
        self.0
            .iter()
            .filter(|(k, _)| {
                matches!(k.0, Variant::Forwarding(Forwarding::BridgeAlone, _)) && k.1 == traffic
            })
            .map(|(_, w)| *w)
            .collect()
    }
}

pub fn run(ctx: &mut Context) -> Result<Section> {
    let opts = ctx.options.clone();
    let sender_cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        - 1;
    let sink = ConstantXdp::load("havip_tap_floor", XDP_DROP)?;
    // One bridge-alone lab (no XDP: the same in every mode), then havip and
    // the empty program in each mode.
    let mut sites = vec![Site::new(opts.xdp_modes[0], Forwarding::BridgeAlone)?];
    for &mode in &opts.xdp_modes {
        sites.push(Site::new(mode, Forwarding::Havip)?);
        sites.push(Site::new(mode, Forwarding::EmptyXdp)?);
    }
    sites.push(Site::offloading(Forwarding::BridgeAlone)?);
    sites.push(Site::offloading(Forwarding::Havip)?);
    sites.extend(Site::bridge_netfilter()?);
    sites.push(Site::floor(&sink)?);

    let mut order: Vec<(usize, Traffic)> = sites
        .iter()
        .enumerate()
        .flat_map(|(s, site)| site.traffics().iter().map(move |&t| (s, t)))
        .collect();
    eprintln!(
        "havip-bench: throughput-tap: {} rounds of {} windows of {:?}, sender on CPU {sender_cpu}",
        opts.rounds,
        order.len(),
        opts.window
    );
    let mut windows = Windows::default();
    for round in 0..opts.rounds {
        // Rotate by one each round (the first round as built).
        if round > 0 {
            order.rotate_left(1);
        }
        for &(s, traffic) in &order {
            let site = &mut sites[s];
            let w = window(site, traffic, sender_cpu, &opts)
                .with_context(|| format!("{} through {}", traffic.describe(), site.name))?;
            windows.0.push(((site.variant, traffic), w));
        }
        eprintln!(
            "havip-bench: throughput-tap round {}/{} done",
            round + 1,
            opts.rounds
        );
    }
    drop(sites);
    Ok(summarize(&opts, &windows, sender_cpu))
}

/// One window of `traffic` through `site`.
fn window(site: &mut Site, traffic: Traffic, cpu: usize, opts: &Options) -> Result<Window> {
    let frame = traffic.frame();
    // From a VM that offloads checksums: the UDP checksum left to do.
    let offloaded = matches!(site.variant, Variant::Offloading(_))
        .then(|| frames::left_to_the_offload(frame.clone()));
    let floor = site.variant == Variant::WriteFloor;
    let Site { lab, vm1, vm2, .. } = site;
    let (target, other, target_tap, other_tap) = match traffic {
        Traffic::Vip => (vm1, vm2, &lab.vm1.tap, &lab.vm2.tap),
        Traffic::NonVip => (vm2, vm1, &lab.vm2.tap, &lab.vm1.tap),
    };
    lab.drain_all()?;
    let to_owner = || -> Result<Option<u64>> {
        lab.agent()
            .map(|a| Ok(a.status()?.vip(VIP4_ID)?.counters.delivered))
            .transpose()
    };
    let to_owner_before = to_owner()?;
    let before = [target.tx_dropped()?, other.tx_dropped()?];
    let client = &lab.client.tap;
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let (mut w, total) = std::thread::scope(|scope| -> Result<(Window, u64)> {
        let sender = scope.spawn(|| -> Result<u64> {
            wire::pin_thread_to(cpu).context("pin the sender")?;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..BATCH {
                    match &offloaded {
                        Some((hdr, partial)) => client.write_offloaded(*hdr, partial),
                        None => client.write(&frame),
                    }
                    .context("write into the client's tap")?;
                }
                n += BATCH;
                sent.store(n, Ordering::Relaxed);
            }
            Ok(n)
        });
        let counted = (|| -> Result<Window> {
            std::thread::sleep(opts.warmup);
            let start = [sent.load(Ordering::Relaxed), target.tx_dropped()?];
            let (t0, cpu0) = (Instant::now(), cpu_times());
            std::thread::sleep(opts.window);
            let end = [sent.load(Ordering::Relaxed), target.tx_dropped()?];
            let (t1, cpu1) = (Instant::now(), cpu_times());
            let seconds = (t1 - t0).as_secs_f64();
            let others = (0..cpu1.len())
                .filter(|&c| c != cpu)
                .map(|c| busy(&cpu0, &cpu1, c))
                .fold(0.0, f64::max);
            Ok(Window {
                sent_pps: (end[0] - start[0]) as f64 / seconds,
                received_pps: (end[1] - start[1]) as f64 / seconds,
                sender_busy: busy(&cpu0, &cpu1, cpu),
                others_busy: others,
                ..Window::default()
            })
        })();
        stop.store(true, Ordering::Relaxed);
        let total = sender
            .join()
            .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        Ok((counted?, total))
    })?;
    // Whatever the sender wrote is now queued or dropped at a VM.
    let after = [target.tx_dropped()?, other.tx_dropped()?];
    w.sent = total;
    w.delivered = after[0] - before[0] + target_tap.drain()?;
    w.elsewhere = after[1] - before[1] + other_tap.drain()?;
    w.to_owner = to_owner()?.zip(to_owner_before).map(|(a, b)| a - b);
    if floor {
        return Ok(w);
    }
    if w.received_pps == 0.0 {
        bail!(
            "the receiving VM's tap counted no frame ({:.0} per second sent)",
            w.sent_pps
        );
    }
    if w.elsewhere as f64 > 0.01 * w.sent as f64 {
        bail!(
            "the other VM received {} of {} frames: the traffic is flooded or misdirected",
            w.elsewhere,
            w.sent
        );
    }
    Ok(w)
}

/// How the report names a lab of VMs that offload checksums.
fn offloading_lab_name(forwarding: Forwarding) -> String {
    match forwarding {
        Forwarding::Havip => "havip (tap, VMs with checksum offload, default mode)".into(),
        _ => "bridge alone (tap, VMs with checksum offload)".into(),
    }
}

fn summarize(opts: &Options, windows: &Windows, sender_cpu: usize) -> Section {
    let mut fast_path = Vec::new();
    let mut slowdown = Vec::new();
    let mut rates = Vec::new();
    let pps = |ws: &[Window]| -> Vec<f64> { ws.iter().map(|w| w.received_pps).collect() };
    // Each round measured all: compare within the round.
    let per_round = |a: &[Window], b: &[Window], f: fn(f64) -> f64| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(a, b)| f(a.received_pps / b.received_pps))
            .collect()
    };
    for traffic in Traffic::ALL {
        let bridge = windows.bridge(traffic);
        rates.push(Figure::median(
            format!(
                "{}, {}",
                traffic.describe(),
                tap_lab_name(XdpMode::Native, Forwarding::BridgeAlone)
            ),
            Unit::PacketsPerSecond,
            &pps(&bridge),
        ));
        for &mode in &opts.xdp_modes {
            let m = mode.as_str();
            let havip = windows.of(Variant::Forwarding(Forwarding::Havip, mode), traffic);
            let empty = windows.of(Variant::Forwarding(Forwarding::EmptyXdp, mode), traffic);
            match traffic {
                Traffic::Vip => fast_path.push(
                    Figure::median(
                        format!("VIP traffic, havip fast path ÷ bridge alone (tap, {m} XDP)"),
                        Unit::Ratio,
                        &per_round(&havip, &bridge, |r| r),
                    )
                    .with_target(Target::AtLeast(FAST_PATH_TARGET)),
                ),
                Traffic::NonVip => {
                    slowdown.push(
                        Figure::median(
                            format!("non-VIP traffic, slowdown with the programs (tap, {m} XDP)"),
                            Unit::Percent,
                            &per_round(&havip, &bridge, |r| 1.0 - r),
                        )
                        .with_target(Target::AtMost(SLOWDOWN_TARGET)),
                    );
                    slowdown.push(Figure::median(
                        format!(
                            "non-VIP traffic, slowdown with an empty XDP program (tap, {m} XDP)"
                        ),
                        Unit::Percent,
                        &per_round(&empty, &bridge, |r| 1.0 - r),
                    ));
                }
            }
            for (forwarding, list) in [(Forwarding::Havip, &havip), (Forwarding::EmptyXdp, &empty)]
            {
                rates.push(Figure::median(
                    format!("{}, {}", traffic.describe(), tap_lab_name(mode, forwarding)),
                    Unit::PacketsPerSecond,
                    &pps(list),
                ));
            }
        }
        // VMs that offload checksums, havip in the agent's default mode.
        let offloading_bridge = windows.of(Variant::Offloading(Forwarding::BridgeAlone), traffic);
        let offloading_havip = windows.of(Variant::Offloading(Forwarding::Havip), traffic);
        match traffic {
            Traffic::Vip => fast_path.push(
                Figure::median(
                    "VIP traffic, havip fast path ÷ bridge alone (tap, VMs with checksum offload, \
                     agent's default mode: native)",
                    Unit::Ratio,
                    &per_round(&offloading_havip, &offloading_bridge, |r| r),
                )
                .with_target(Target::AtLeast(FAST_PATH_TARGET)),
            ),
            Traffic::NonVip => slowdown.push(
                Figure::median(
                    "non-VIP traffic, slowdown with the programs (tap, VMs with checksum \
                     offload, agent's default mode: native)",
                    Unit::Percent,
                    &per_round(&offloading_havip, &offloading_bridge, |r| 1.0 - r),
                )
                .with_target(Target::AtMost(SLOWDOWN_TARGET)),
            ),
        }
        for forwarding in [Forwarding::BridgeAlone, Forwarding::Havip] {
            rates.push(Figure::median(
                format!(
                    "{}, {}",
                    traffic.describe(),
                    offloading_lab_name(forwarding)
                ),
                Unit::PacketsPerSecond,
                &pps(&windows.of(Variant::Offloading(forwarding), traffic)),
            ));
        }
        // The bridge calling iptables, for context: no target is set on it.
        let netfilter = windows.of(Variant::BridgeNetfilter, traffic);
        if netfilter.is_empty() {
            continue;
        }
        if traffic == Traffic::Vip {
            for &mode in &opts.xdp_modes {
                let havip = windows.of(Variant::Forwarding(Forwarding::Havip, mode), traffic);
                fast_path.push(Figure::median(
                    format!(
                        "VIP traffic, havip fast path ÷ bridge with br_netfilter (tap, {} XDP)",
                        mode.as_str()
                    ),
                    Unit::Ratio,
                    &per_round(&havip, &netfilter, |r| r),
                ));
            }
        }
        rates.push(Figure::median(
            format!(
                "{}, bridge alone with br_netfilter (tap)",
                traffic.describe()
            ),
            Unit::PacketsPerSecond,
            &pps(&netfilter),
        ));
    }
    let floor = windows.of(Variant::WriteFloor, Traffic::Vip);
    let floor_pps: Vec<f64> = floor.iter().map(|w| w.sent_pps).collect();
    rates.push(Figure::median(
        "writes into a tap, dropped by its XDP program (tap, native XDP)",
        Unit::PacketsPerSecond,
        &floor_pps,
    ));

    let charts = vec![
        Chart::bars(
            "Throughput on tap ports: havip fast path ÷ the bridge alone, VIP traffic (64-byte UDP)",
            "ratio of packets per second at the receiving VM's tap",
            Unit::Ratio,
            &fast_path,
        ),
        Chart::bars(
            "Throughput on tap ports: non-VIP traffic, slowdown with the havip programs",
            "slowdown against the bridge alone",
            Unit::Percent,
            &slowdown,
        ),
        Chart::bars(
            "Throughput on tap ports: packets per second at the receiving VM's tap",
            "packets per second",
            Unit::PacketsPerSecond,
            &rates,
        ),
    ];
    let mut method =
        vec![
            format!(
            "Labs on tap ports: a hypervisor namespace with bridge br0 and four taps (tap-vm1, \
             tap-vm2, tap-client, tap-rogue: the VMs, ports and agent config of the veth lab), \
             opened IFF_TAP | IFF_NO_PI, O_NONBLOCK, default sndbuf, so the kernel builds each \
             written frame in a page with XDP headroom and runs native XDP before any socket \
             buffer exists. This process holds the taps' fds: it is the VMs. The bridge knows \
             every VM's MAC from a static FDB entry. One lab with the bridge alone (no XDP: the \
             same for every mode) and, for each XDP mode ({}), one with the agent running in \
             that mode (vm1 owns {VIP4}: a GARP written into its tap) and one with an empty XDP \
             program on every tap. {}",
            opts.xdp_modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if windows.of(Variant::BridgeNetfilter, Traffic::Vip).is_empty() {
                "The kernel has no br_netfilter: the bridges call no iptables."
            } else {
                "In these labs the bridge calls no iptables (br_netfilter's bridge-nf-call-* off \
                 in the hypervisor namespace; this kernel has br_netfilter built in and a new \
                 namespace starts with them on, as the veth labs run). One more bridge-alone lab \
                 keeps them on, for context (\"with br_netfilter\": every bridged frame also \
                 passes br_netfilter's hooks, its iptables tables empty)."
            }
        ),
            format!(
            "Generator: one thread pinned to CPU {sender_cpu} writing one 60-byte frame (64 on \
             the wire) per write() into the client's tap, the traffic of the veth benchmark. \
             Everything the hypervisor does for a frame runs inside that write on that CPU \
             (XDP, the redirect to the owner's tap or the bridge and the receiving tap's qdisc), \
             so the rate is what one CPU forwards, a system call per frame included."
        ),
            "Sink: nobody reads the receiving taps during a window. Once a tap's queue (a ring of \
         tx_queue_len = 1000 frames) is full, every frame that reaches it is dropped and counted \
         in the tap's tx_dropped, whether it came as a socket buffer (tun_net_xmit: the bridge) \
         or as an XDP frame (tun_xdp_xmit: the fast path). The figure is the receiving tap's \
         tx_dropped over the window: the frames the hypervisor brought to the VM's queue, \
         without a reader's cost or its pace in the figure. Freeing the frame at the full queue \
         (a socket buffer, or an XDP frame's page fragment) stands in for the VM's read; both \
         paths pay it."
                .to_string(),
        ];
    method.extend(delivery_note(windows, sender_cpu, &floor, &rates));
    method.push(rounds_note(opts));
    let mut figures = fast_path;
    figures.extend(slowdown);
    figures.extend(rates);
    Section {
        title: "Packets per second on tap ports: fast path against the bridge alone".into(),
        method,
        figures,
        charts,
    }
}

/// What the windows say about where the frames went, what the CPUs did,
/// and what a frame costs.
fn delivery_note(
    windows: &Windows,
    sender_cpu: usize,
    floor: &[Window],
    rates: &[Figure],
) -> Vec<String> {
    let forwarded: Vec<&Window> = windows
        .0
        .iter()
        .filter(|(k, _)| k.0 != Variant::WriteFloor)
        .map(|(_, w)| w)
        .collect();
    if forwarded.is_empty() {
        return Vec::new();
    }
    let sent: u64 = forwarded.iter().map(|w| w.sent).sum();
    let delivered: u64 = forwarded.iter().map(|w| w.delivered).sum();
    let elsewhere: u64 = forwarded.iter().map(|w| w.elsewhere).sum();
    let floor_at_vms: u64 = floor.iter().map(|w| w.delivered + w.elsewhere).sum();
    let shares: Vec<f64> = forwarded
        .iter()
        .map(|w| w.received_pps / w.sent_pps)
        .collect();
    let (least, most) = stats::range(&shares);
    let sender: Vec<f64> = forwarded.iter().map(|w| w.sender_busy * 100.0).collect();
    let others: Vec<f64> = forwarded.iter().map(|w| w.others_busy * 100.0).collect();
    let havip = |traffic: Traffic| {
        windows
            .0
            .iter()
            .filter(move |(k, _)| {
                matches!(
                    k.0,
                    Variant::Forwarding(Forwarding::Havip, _)
                        | Variant::Offloading(Forwarding::Havip)
                ) && k.1 == traffic
            })
            .map(|(_, w)| w)
    };
    let vip_sent: u64 = havip(Traffic::Vip).map(|w| w.sent).sum();
    let vip_to_owner: u64 = havip(Traffic::Vip).filter_map(|w| w.to_owner).sum();
    let non_vip_to_owner: u64 = havip(Traffic::NonVip).filter_map(|w| w.to_owner).sum();
    let per_frame: Vec<String> = rates
        .iter()
        .filter(|f| f.value > 0.0)
        .map(|f| format!("{}: {:.0} ns", f.name, 1e9 / f.value))
        .collect();
    vec![
        format!(
            "Accounting: the windows wrote {sent} frames in all (warmups included); {delivered} \
             ({:.3} %) were at the receiving VM afterwards (its tap's tx_dropped plus what was \
             left in its queue), {elsewhere} at the other VM; the floor's {} frames reached no \
             VM ({floor_at_vms} did). Within a window, the receiving tap counted {:.1} % to \
             {:.1} % of the rate the client's tap took.",
            delivered as f64 / sent.max(1) as f64 * 100.0,
            floor.iter().map(|w| w.sent).sum::<u64>(),
            least * 100.0,
            most * 100.0
        ),
        format!(
            "With havip, its datapath counted {vip_to_owner} of the {vip_sent} VIP frames \
             written as delivered to the owner (the fast path's redirect to vm1's tap) and \
             {non_vip_to_owner} of the non-VIP frames."
        ),
        format!(
            "CPU busy during the windows, medians: the sender's CPU {sender_cpu} {:.0} %, the \
             busiest other CPU {:.0} % (whatever ran there, other work on the machine \
             included).",
            stats::median(&sender),
            stats::median(&others)
        ),
        format!(
            "Per frame on the sender's CPU (1 / median rate): {}. The floor (write(), the tap \
             building the frame, an XDP program dropping it) is paid by every variant alike, so \
             it narrows every ratio.",
            per_frame.join("; ")
        ),
    ]
}
