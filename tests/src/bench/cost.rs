//! What each path through the datapath costs a frame: the XDP program run
//! by BPF_PROG_TEST_RUN on the frames of each path, against an empty XDP
//! program (`r0 = XDP_PASS; exit`) run the same way in the same round.
//!
//! The kernel times the runs itself and reports the mean per run: the time
//! around the program includes the test harness (timer reads, bottom-half
//! and context bookkeeping), which the empty program pays too, so the
//! difference is what the datapath adds. Three ways of running, each with
//! its own empty baseline:
//!
//! - repeated: one call of `--repeat` runs, for frames a run leaves as it
//!   found them (the kernel does not restore the frame between repeats);
//! - repeated within the ring: calls of as many runs as the event ring
//!   holds, drained between calls, for frames that report an event (a
//!   rejected claim): otherwise the ring fills and the runs measure the
//!   cheaper "ring full" path;
//! - single: `--single-runs` calls of one run, for frames the datapath
//!   rewrites into its answer (ARP, NA), which a repeat would no longer
//!   see as requests, and for claims that move the owner each time.
//!
//! Test runs need a real ingress device: the measuring thread works inside
//! a namespace of its own holding one veth interface per VM port, so each
//! VM's frames enter on its own port and the owner's port is another
//! device, as on a hypervisor, and no map changes between runs.
//!
//! Every call's action is checked against the path's, so a path that took
//! another turn fails the run instead of being timed.

use std::net::Ipv4Addr;

use anyhow::{bail, ensure, Context, Result};
use std::path::PathBuf;

use aya::maps::{Array, DevMapHash, HashMap, MapData, RingBuf};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use havip_common::maps::{self, EVENTS_BYTES};
use havip_common::port::{PORT_BOUND, PORT_SECURITY};
use havip_common::vip::{hint_bucket, DEFAULT_HOLD_DOWN_MS, MAX_BINDINGS};
use havip_common::{Event, NetworkAddr, Owner, Port, Vip, VipHint, VirtualMac};

use crate::bench::chart::Chart;
use crate::bench::raw_xdp::{ConstantXdp, XDP_DROP, XDP_PASS};
use crate::bench::{frames, stats, wire, Context as BenchContext, Figure, Section, Target, Unit};
use crate::lab::{VmSpec, CLIENT, NETWORK_ID, ROGUE, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1, VM2};
use crate::netns::{self, Netns};
use crate::vrrp::{self, Advert};

const XDP_REDIRECT: u32 = 4;
/// Calls per round for the paths run within the event ring: each call
/// with repeats costs milliseconds outside the timing (the kernel puts the
/// program into its XDP dispatcher and takes it out again).
const RING_CALLS: usize = 25;
/// The VM ports of the fixture, each a veth interface of that name; a
/// port's slot is its place here.
const VMS: [VmSpec; 4] = [VM1, VM2, CLIENT, ROGUE];
/// The VIPs' slots in the owner and counter arrays.
/// The VLAN every port of the fixture allows (the tagged path's).
const BENCH_VLAN: u16 = 10;
/// The options of the several-option NA: enhanced DAD's nonces before the
/// target link-layer address, every one walked.
const NA_OPTIONS: usize = 4;

const VIP4_SLOT: u32 = 0;
const VIP6_SLOT: u32 = 1;

/// Non-VIP pass: at most this many ns above the empty program.
const PASS_TARGET_NS: f64 = 15.0;
/// VIP delivery: at most this many ns above the empty program.
const DELIVERY_TARGET_NS: f64 = 60.0;

/// How a path's frames are run (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    Repeated,
    WithinRing,
    Single,
}

impl Runs {
    const ALL: [Runs; 3] = [Runs::Repeated, Runs::WithinRing, Runs::Single];

    fn describe(self) -> &'static str {
        match self {
            Runs::Repeated => "repeated",
            Runs::WithinRing => "repeated within the event ring",
            Runs::Single => "single runs",
        }
    }
}

/// One path through the datapath: who sends what, what the datapath must
/// do with it, and how it is run.
struct Path {
    name: &'static str,
    /// (sender, frame), taken in turn, one per call.
    sends: Vec<(VmSpec, Vec<u8>)>,
    action: u32,
    runs: Runs,
    reader: Reader,
    target: Option<Target>,
    /// Run through the sender's native-mode instance (`COMPLETE_CHECKSUMS`
    /// set: the TCP/UDP checksum of a redirected frame is summed, and
    /// completed when the VM left it to the offload).
    native: bool,
    /// The owner record vm1's ownership starts from.
    start: Start,
    /// Whether every call starts from it again (a claim that moves the
    /// owner each time is a failover after a quiet hold-down, never a
    /// claim the hold-down defers).
    restart_each_call: bool,
}

/// How vm1 owns the VIPs when a path (or a call) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Long since, alone: the next claim by vm2 moves the owner.
    Quiet,
    /// Just now, vm2 claiming too (a split brain): the next claim by vm2
    /// is deferred by the hold-down, and reports nothing (vm2 is the known
    /// rival).
    SplitBrain,
}

/// The reader of the event ring (the agent), for paths that report events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// Keeps up: the ring is drained after every call, so the first event
    /// of a call wakes the reader (an irq_work), as with a running agent.
    KeepsUp,
    /// Behind: the ring is drained only when a round's path starts (or it
    /// would fill), so events after the first wake nobody.
    Behind,
}

/// The paths, as the issue lists them. vm1 owns both VIPs when each path
/// starts, and every port is a redirect target.
fn paths() -> Vec<Path> {
    let path = |name, from: VmSpec, frame: Vec<u8>, action, runs| Path {
        name,
        sends: vec![(from, frame)],
        action,
        runs,
        reader: Reader::KeepsUp,
        target: None,
        native: false,
        start: Start::Quiet,
        restart_each_call: false,
    };
    let owner_moves = || vec![(VM2, frames::garp(&VM2, VIP4))];
    vec![
        Path {
            target: Some(Target::AtMost(PASS_TARGET_NS)),
            ..path(
                "non-VIP pass",
                CLIENT,
                frames::udp4(&CLIENT, VM2.mac, VM2.ipv4, &[0; 18]),
                XDP_PASS,
                Runs::Repeated,
            )
        },
        Path {
            target: Some(Target::AtMost(DELIVERY_TARGET_NS)),
            ..path(
                "VIP delivery",
                CLIENT,
                frames::udp4(&CLIENT, VM1.mac, VIP4, &[0; 18]),
                XDP_REDIRECT,
                Runs::Repeated,
            )
        },
        Path {
            target: Some(Target::AtMost(DELIVERY_TARGET_NS)),
            native: true,
            ..path(
                "VIP delivery, native XDP (checksum summed)",
                CLIENT,
                frames::udp4(&CLIENT, VM1.mac, VIP4, &[0; 18]),
                XDP_REDIRECT,
                Runs::Repeated,
            )
        },
        Path {
            native: true,
            ..path(
                "VIP delivery, native XDP, 1500-byte UDP",
                CLIENT,
                frames::udp4(&CLIENT, VM1.mac, VIP4, &[7; 1472]),
                XDP_REDIRECT,
                Runs::Repeated,
            )
        },
        path(
            "non-VIP pass, tagged in an allowed VLAN",
            CLIENT,
            frames::tagged(
                frames::udp4(&CLIENT, VM2.mac, VM2.ipv4, &[0; 18]),
                BENCH_VLAN,
            ),
            XDP_PASS,
            Runs::Repeated,
        ),
        path(
            "NA of the port's own address, 4 options walked",
            VM1,
            na_with_options(&VM1),
            XDP_PASS,
            Runs::Repeated,
        ),
        path(
            "ARP answer",
            CLIENT,
            frames::arp_request(&CLIENT, CLIENT.ipv4, VIP4),
            XDP_REDIRECT,
            Runs::Single,
        ),
        path(
            "NA answer",
            CLIENT,
            frames::neighbor_solicitation(&CLIENT, VIP6),
            XDP_REDIRECT,
            Runs::Single,
        ),
        path(
            "accepted claim (the owner's GARP)",
            VM1,
            frames::garp(&VM1, VIP4),
            XDP_PASS,
            Runs::Repeated,
        ),
        Path {
            sends: owner_moves(),
            restart_each_call: true,
            ..path(
                "accepted claim that moves the owner",
                VM2,
                Vec::new(),
                XDP_PASS,
                Runs::Single,
            )
        },
        Path {
            sends: owner_moves(),
            restart_each_call: true,
            reader: Reader::Behind,
            ..path(
                "accepted claim that moves the owner, event reader behind",
                VM2,
                Vec::new(),
                XDP_PASS,
                Runs::Single,
            )
        },
        Path {
            start: Start::SplitBrain,
            ..path(
                "accepted claim deferred by the hold-down (split brain)",
                VM2,
                frames::garp(&VM2, VIP4),
                XDP_PASS,
                Runs::Repeated,
            )
        },
        path(
            "rejected claim (unbound port's GARP)",
            ROGUE,
            frames::garp(&ROGUE, VIP4),
            XDP_DROP,
            Runs::WithinRing,
        ),
        path(
            "VRRP advert from a bound port",
            VM1,
            vrrp_advert(&VM1),
            XDP_PASS,
            Runs::Repeated,
        ),
        path(
            "VRRP advert from an unbound port (dropped)",
            ROGUE,
            vrrp_advert(&ROGUE),
            XDP_DROP,
            Runs::Repeated,
        ),
        path(
            "frame from its VIP's virtual MAC",
            VM1,
            frames::udp4(&from_vmac(&VM1), VM2.mac, VM2.ipv4, &[0; 18]),
            XDP_PASS,
            Runs::Repeated,
        ),
        path(
            "ARP probe for a VIP from a bound port",
            VM2,
            frames::arp_request(&VM2, Ipv4Addr::UNSPECIFIED, VIP4),
            XDP_PASS,
            Runs::Repeated,
        ),
    ]
}

/// The VRRP router id the fixture's VIP4 names.
const VRID: u8 = 111;

/// `vm`'s advert for VIP4 at priority 100, to 224.0.0.18.
fn vrrp_advert(vm: &VmSpec) -> Vec<u8> {
    let a = Advert {
        vrid: VRID,
        priority: 100,
    };
    vrrp::advert_v2((vm.mac, vm.ipv4), vrrp::GROUP4, a, VIP4, "havip")
}

/// `vm` sending from VIP4's virtual MAC (keepalived's use_vmac).
fn from_vmac(vm: &VmSpec) -> VmSpec {
    VmSpec {
        mac: vrrp::vmac4(VRID),
        ..*vm
    }
}

/// An unsolicited NA from `vm` for its own address: three nonces, then
/// its MAC as target link-layer address ([`NA_OPTIONS`] options).
fn na_with_options(vm: &VmSpec) -> Vec<u8> {
    let ends = frames::Ends6 {
        eth_src: vm.mac,
        eth_dst: frames::ALL_NODES.1,
        src: vm.link_local(),
        dst: frames::ALL_NODES.0,
    };
    let mut options: Vec<frames::NdOption> = (1..NA_OPTIONS as u8)
        .map(|i| (frames::ND_OPT_NONCE, [i; 6]))
        .collect();
    options.push((frames::ND_OPT_TLLA, vm.mac));
    let kind = frames::NdKind::Advert { solicited: false };
    frames::nd_message(ends, kind, vm.ipv6, &options)
}

pub fn run(ctx: &mut BenchContext) -> Result<Section> {
    let opts = ctx.options.clone();
    let cpu = measuring_cpu();
    eprintln!(
        "havip-bench: cost per packet: {} rounds on CPU {cpu}",
        opts.rounds
    );
    let ports = Netns::new(&format!("{}-cost", netns::unique_stem()))?;
    for vm in &VMS {
        let peer = format!("{}-peer", vm.role);
        ports.ip(&[
            "link", "add", vm.role, "type", "veth", "peer", "name", &peer,
        ])?;
        ports.ip(&["link", "set", vm.role, "up"])?;
    }
    // Test runs execute on the calling CPU, in the calling thread's
    // namespace: one pinned thread inside `ports` does them all.
    let rounds = ports
        .spawn_thread("bench-cost", move || -> Result<Vec<Round>> {
            wire::pin_thread_to(cpu).context("pin the measuring thread")?;
            let mut bench = Bench::new(&opts)?;
            (0..opts.rounds).map(|r| bench.round(r)).collect()
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))???;
    drop(ports);

    let paths = paths();
    let mut figures = Vec::new();
    for path in &paths {
        let above: Vec<f64> = rounds
            .iter()
            .map(|r| r.path_ns(path.name) - r.empty_ns(path.runs))
            .collect();
        let mut figure = Figure::median(path.name, Unit::Nanoseconds, &above);
        figure.target = path.target;
        figures.push(figure);
    }
    let bars = Chart::bars(
        "Datapath cost per packet above an empty XDP program (BPF_PROG_TEST_RUN)",
        "ns per packet above the empty program (medians; whiskers: min to max; red: target)",
        Unit::Nanoseconds,
        &figures,
    );
    for figure in &mut figures {
        figure.name.push_str(", above the empty program");
    }
    for runs in Runs::ALL {
        let empty: Vec<f64> = rounds.iter().map(|r| r.empty_ns(runs)).collect();
        figures.push(Figure::median(
            format!(
                "empty XDP program, {} (absolute, for scale)",
                runs.describe()
            ),
            Unit::Nanoseconds,
            &empty,
        ));
    }

    let o = &ctx.options;
    Ok(Section {
        title: "Cost per packet through BPF_PROG_TEST_RUN".into(),
        method: vec![
            format!(
                "The datapath object ({}) is loaded with aya as the agent loads it: maps \
                 pinned, the programs loaded once and shared by every port, which they \
                 find by the interface they run on (`havip_ifport`). Its maps hold the lab's fixture: ports 11 (vm1), 12 (vm2), 13 (client) and 14 (rogue), each on a \
                 veth interface of its own in a namespace of the benchmark's, VIPs {VIP4} \
                 and {VIP6} bound to ports 11 and 12, vm1 their owner, every port a redirect \
                 target, port security on. A frame enters on its sender's port. The empty \
                 program is `r0 = XDP_PASS; exit`, loaded with a raw bpf(BPF_PROG_LOAD) and \
                 run through the same aya `test_run` on the same frames' port.",
                datapath_object()
            ),
            format!(
                "The kernel's reported duration per run is used. Repeated paths: one call of \
                 {} runs per round. Paths that rewrite their frame (the answers) or move the \
                 owner: {} single runs per round, median. A rejected claim reports an event: \
                 {RING_CALLS} calls of {} runs per round (what the 256 KiB event ring holds \
                 with room to spare), the ring drained between calls, median of the calls. \
                 Each path is compared with the empty program run the same way: a single run \
                 is timed with the harness around it (and the kernel calls the program \
                 through its XDP dispatcher only for repeated runs), so only the differences \
                 compare across ways of running.",
                o.repeat,
                o.single_runs,
                ring_room().min(o.repeat),
            ),
            "An event wakes the ring's reader when the reader has caught up with the ring \
             (an irq_work; on a virtual machine the self-interrupt can cost microseconds). \
             The ring is drained after every call, as a running agent keeps up with it: each \
             single run that moves the owner pays that wakeup, a rejected-claim call pays it \
             once over its runs. The row 'event reader behind' drains the ring only when the \
             path's turn starts, so its runs wake nobody: the difference between the two \
             owner-moving rows is the wakeup."
                .into(),
            format!(
                "{} rounds; in each, every path and every empty baseline runs once, the \
                 order rotated by one each round. Figures: the median over the rounds of \
                 (path - empty program) in that round; spread: the smallest and largest \
                 round. All runs on CPU {cpu}.",
                o.rounds
            ),
        ],
        figures,
        charts: vec![bars],
    })
}

/// The CPU the test runs are pinned to: the last one.
fn measuring_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() - 1)
        .unwrap_or(0)
}

/// How many events a call may report: half of what the ring holds (each
/// record is the event and an 8-byte header, 8-aligned).
fn ring_room() -> u32 {
    let record = (size_of::<Event>() + 8).div_ceil(8) * 8;
    EVENTS_BYTES / record as u32 / 2
}

/// One round's ns per run of every path and every empty baseline.
struct Round {
    paths: Vec<(&'static str, f64)>,
    empty: Vec<(Runs, f64)>,
}

impl Round {
    fn path_ns(&self, name: &str) -> f64 {
        self.paths
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    }

    fn empty_ns(&self, runs: Runs) -> f64 {
        self.empty
            .iter()
            .find(|(r, _)| *r == runs)
            .map_or(f64::NAN, |(_, ns)| *ns)
    }
}

/// What a round times.
enum Subject {
    Empty(Runs),
    Path(usize),
}

/// The programs and the fixture, inside the ports' namespace.
struct Bench {
    datapath: Datapath,
    empty: Xdp,
    _empty_program: ConstantXdp,
    paths: Vec<Path>,
    repeat: u32,
    single_runs: usize,
}

impl Bench {
    fn new(opts: &crate::bench::Options) -> Result<Self> {
        let empty_program = ConstantXdp::load("havip_empty", XDP_PASS)?;
        Ok(Self {
            datapath: Datapath::load()?,
            empty: empty_program.open()?,
            _empty_program: empty_program,
            paths: paths(),
            repeat: opts.repeat,
            single_runs: opts.single_runs,
        })
    }

    fn round(&mut self, round: usize) -> Result<Round> {
        let mut subjects: Vec<Subject> = Runs::ALL.into_iter().map(Subject::Empty).collect();
        subjects.extend((0..self.paths.len()).map(Subject::Path));
        let turn = round % subjects.len();
        subjects.rotate_left(turn);

        let mut result = Round {
            paths: Vec::new(),
            empty: Vec::new(),
        };
        for subject in subjects {
            match subject {
                Subject::Empty(runs) => {
                    let ns = self.time_empty(runs)?;
                    result.empty.push((runs, ns));
                }
                Subject::Path(i) => {
                    let ns = self.time_path(i)?;
                    result.paths.push((self.paths[i].name, ns));
                }
            }
        }
        Ok(result)
    }

    /// The empty program on the non-VIP frame from the client's port, run
    /// as `runs` says.
    fn time_empty(&mut self, runs: Runs) -> Result<f64> {
        let frame = frames::udp4(&CLIENT, VM2.mac, VM2.ipv4, &[0; 18]);
        let port = self.datapath.ifindex(&CLIENT);
        let (calls, repeat) = self.calls(runs);
        let mut per_call = Vec::with_capacity(calls);
        for _ in 0..calls {
            let (action, ns) = test_run(&self.empty, &frame, port, repeat)?;
            ensure!(action == XDP_PASS, "the empty program returned {action}");
            per_call.push(ns);
        }
        Ok(stats::median(&per_call))
    }

    fn time_path(&mut self, i: usize) -> Result<f64> {
        let path = &self.paths[i];
        let (calls, repeat) = self.calls(path.runs);
        self.datapath.own(&VM1, path.start)?;
        self.datapath.drain_events();
        let mut per_call = Vec::with_capacity(calls);
        for call in 0..calls {
            if path.restart_each_call {
                self.datapath.own(&VM1, path.start)?;
            }
            let (from, frame) = &path.sends[call % path.sends.len()];
            let port = self.datapath.ifindex(from);
            let program = self.datapath.program(path.native)?;
            let (action, ns) = test_run(program, frame, port, repeat)?;
            if action != path.action {
                bail!(
                    "{}: the datapath returned action {action}, not {} (call {call}, {repeat} runs)",
                    path.name,
                    path.action
                );
            }
            let ring_full_soon = (call + 1) % ring_room() as usize == 0;
            if path.reader == Reader::KeepsUp || ring_full_soon {
                self.datapath.drain_events();
            }
            per_call.push(ns);
        }
        Ok(stats::median(&per_call))
    }

    /// (calls per round, runs per call) for `runs`.
    fn calls(&self, runs: Runs) -> (usize, u32) {
        match runs {
            Runs::Repeated => (1, self.repeat),
            Runs::WithinRing => (RING_CALLS, ring_room().min(self.repeat)),
            Runs::Single => (self.single_runs, 1),
        }
    }
}

/// Runs `frame` `repeat` times as received on `ifindex`; the action and
/// the kernel's ns per run.
fn test_run(program: &Xdp, frame: &[u8], ifindex: u32, repeat: u32) -> Result<(u32, f64)> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((result.return_value, result.duration.as_nanos() as f64))
}

/// The datapath object: `$HAVIP_EBPF_OBJECT` or the workspace's build.
fn datapath_object() -> String {
    std::env::var("HAVIP_EBPF_OBJECT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/bpfel-unknown-none/release/havip-ebpf"
        )
        .to_string()
    })
}

/// The datapath object loaded with the lab's ports, addresses and VIPs, as
/// the agent loads it: the maps pinned (under a directory of the
/// benchmark's own) and the programs loaded once, shared by every port;
/// each port on the interface named after its VM, in the calling thread's
/// namespace, at its slot (its place in `VMS`).
struct Datapath {
    /// The programs as the agent loads them for generic mode.
    generic: Ebpf,
    /// The same in native mode (`COMPLETE_CHECKSUMS` set).
    native: Ebpf,
    events: RingBuf<MapData>,
    /// (port id, ifindex) of every VM.
    ports: Vec<(u32, u32)>,
    /// Removed after the instances (fields drop in order).
    _pins: PinDir,
}

/// A pin directory removed when the benchmark is done.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Datapath {
    fn load() -> Result<Self> {
        let object = datapath_object();
        let pins = PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/havip-bench-cost-{}",
            std::process::id()
        )));
        std::fs::create_dir_all(&pins.0)
            .with_context(|| format!("create {} (is bpffs mounted?)", pins.0.display()))?;
        let load = |native: bool| -> Result<Ebpf> {
            let mut loader = EbpfLoader::new();
            for name in maps::ALL {
                loader.map_pin_path(name, pins.0.join(name));
            }
            let complete_checksums = u32::from(native);
            loader.override_global(maps::COMPLETE_CHECKSUMS, &complete_checksums, true);
            let mut ebpf = loader.load_file(&object).with_context(|| {
                format!("load the datapath {object} (`cargo xtask build-ebpf` builds it)")
            })?;
            let prog: &mut Xdp = ebpf
                .program_mut(maps::XDP_PROGRAM)
                .context("no XDP program in the datapath object")?
                .try_into()?;
            prog.load()
                .context("the verifier rejects the XDP program")?;
            Ok(ebpf)
        };
        let mut generic = load(false)?;
        let native = load(true)?;
        let events = generic
            .take_map(maps::EVENTS)
            .context("no event ring in the datapath object")?;
        let mut ports = Vec::new();
        for vm in &VMS {
            let name = std::ffi::CString::new(vm.role)?;
            // SAFETY: a valid NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            ensure!(
                ifindex != 0,
                "no interface {} for port {}",
                vm.role,
                vm.port_id
            );
            ports.push((vm.port_id, ifindex));
        }
        let mut dp = Self {
            events: RingBuf::try_from(events)?,
            generic,
            native,
            ports,
            _pins: pins,
        };
        dp.fixture()?;
        Ok(dp)
    }

    fn fixture(&mut self) -> Result<()> {
        let on: Vec<u32> = VMS.iter().map(|vm| self.ifindex(vm)).collect();
        let mut ports: Array<_, Port> = Array::try_from(self.map(maps::PORTS)?)?;
        for (slot, (vm, ifindex)) in VMS.iter().zip(on).enumerate() {
            let mut port = Port {
                port_id: vm.port_id,
                ifindex,
                network: NETWORK_ID,
                mac: vm.mac,
                flags: PORT_SECURITY
                    | if [VM1.port_id, VM2.port_id].contains(&vm.port_id) {
                        PORT_BOUND
                    } else {
                        0
                    },
                link_local: vm.link_local().octets(),
                ..Port::default()
            };
            port.add_ipv4(vm.ipv4.octets());
            port.add_ipv6(vm.ipv6.octets());
            port.set_vlans(&[BENCH_VLAN]);
            ports.set(slot as u32, port, 0)?;
        }
        let on = self.ports.clone();
        let mut if_port: Array<_, u32> = Array::try_from(self.map(maps::IF_PORT)?)?;
        for (slot, (_, ifindex)) in on.into_iter().enumerate() {
            if_port.set(ifindex, slot as u32, 0)?;
        }
        let mut addrs: HashMap<_, NetworkAddr, u32> = HashMap::try_from(self.map(maps::ADDRS)?)?;
        for vm in &VMS {
            addrs.insert(v4(vm.ipv4), vm.port_id, 0)?;
            addrs.insert(NetworkAddr::v6(NETWORK_ID, vm.ipv6.octets()), vm.port_id, 0)?;
            let link_local = NetworkAddr::v6(NETWORK_ID, vm.link_local().octets());
            addrs.insert(link_local, vm.port_id, 0)?;
        }
        let vips = [
            (v4(VIP4), bound(VIP4_ID, VIP4_SLOT, &[VM1, VM2])),
            (
                NetworkAddr::v6(NETWORK_ID, VIP6.octets()),
                bound(VIP6_ID, VIP6_SLOT, &[VM1, VM2]),
            ),
        ];
        let mut table: HashMap<_, NetworkAddr, Vip> = HashMap::try_from(self.map(maps::VIPS)?)?;
        for (addr, vip) in &vips {
            table.insert(addr, vip, 0)?;
        }
        let mut filter: Array<_, VipHint> = Array::try_from(self.map(maps::VIP_FILTER)?)?;
        for (addr, vip) in &vips {
            let bucket = hint_bucket(addr);
            let hint = filter.get(&bucket, 0)?.with(addr, vip);
            filter.set(bucket, hint, 0)?;
        }
        let mut vmacs: HashMap<_, VirtualMac, u32> = HashMap::try_from(self.map(maps::VMACS)?)?;
        for vm in [VM1, VM2] {
            vmacs.insert(VirtualMac::new(vm.port_id, false, VRID), 1, 0)?;
        }
        let targets: Vec<u32> = self.ports.iter().map(|(_, ifindex)| *ifindex).collect();
        let mut redirect = DevMapHash::try_from(self.map(maps::REDIRECT)?)?;
        for ifindex in targets {
            redirect.insert(ifindex, ifindex, None, 0)?;
        }
        Ok(())
    }

    fn map(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.generic
            .map_mut(name)
            .with_context(|| format!("no map {name} in the datapath object"))
    }

    /// The XDP program every port runs, in native mode if `native`.
    fn program(&self, native: bool) -> Result<&Xdp> {
        let ebpf = if native { &self.native } else { &self.generic };
        Ok(ebpf
            .program(maps::XDP_PROGRAM)
            .context("no XDP program in the datapath object")?
            .try_into()?)
    }

    /// The interface `vm`'s port is on.
    fn ifindex(&self, vm: &VmSpec) -> u32 {
        self.ports
            .iter()
            .find(|(port, _)| *port == vm.port_id)
            .map(|(_, ifindex)| *ifindex)
            .expect("every VM of the fixture has a port")
    }

    /// `vm` owns both VIPs, as the datapath records a claim from its port,
    /// from `start`.
    fn own(&mut self, vm: &VmSpec, start: Start) -> Result<()> {
        let mut owner = Owner {
            vip_id: 0,
            port_id: vm.port_id,
            ifindex: self.ifindex(vm),
            mac: vm.mac,
            generation: 1,
            since_ns: 1,
            last_claim_ns: 1,
            ..Owner::default()
        };
        if start == Start::SplitBrain {
            let now = super::wire::mono_ns();
            owner.since_ns = now;
            owner.last_claim_ns = now;
            owner.rival_port_id = VM2.port_id;
            owner.rival_ifindex = self.ifindex(&VM2);
            owner.rival_mac = VM2.mac;
            owner.rival_claim_ns = now;
            owner.pending = 1;
        }
        let mut owners: Array<_, Owner> = Array::try_from(self.map(maps::OWNERS)?)?;
        for (vip_id, slot) in [(VIP4_ID, VIP4_SLOT), (VIP6_ID, VIP6_SLOT)] {
            let owner = Owner { vip_id, ..owner }.sealed();
            owners.set(slot, owner, havip_common::BPF_F_LOCK)?;
        }
        Ok(())
    }

    /// Empties the event ring.
    fn drain_events(&mut self) {
        while self.events.next().is_some() {}
    }
}

fn v4(a: Ipv4Addr) -> NetworkAddr {
    NetworkAddr::v4(NETWORK_ID, a.octets())
}

fn bound(vip_id: u32, slot: u32, vms: &[VmSpec]) -> Vip {
    let mut vip = Vip {
        vip_id,
        slot,
        port_count: vms.len() as u32,
        ports: [0; MAX_BINDINGS],
        // Damping on, as the agent programs a VIP by default.
        hold_down_ms: DEFAULT_HOLD_DOWN_MS,
    };
    for (slot, vm) in vip.ports.iter_mut().zip(vms) {
        *slot = vm.port_id;
    }
    vip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_the_issue_is_measured_and_the_two_targets_are_set() {
        let paths = paths();
        let names: Vec<&str> = paths.iter().map(|p| p.name).collect();
        for wanted in [
            "non-VIP pass",
            "VIP delivery",
            "ARP answer",
            "NA answer",
            "accepted claim",
            "rejected claim",
        ] {
            assert!(names.iter().any(|n| n.starts_with(wanted)), "{wanted}");
        }
        let targets: Vec<_> = paths.iter().filter_map(|p| p.target).collect();
        assert_eq!(
            targets,
            [
                Target::AtMost(15.0),
                Target::AtMost(60.0),
                Target::AtMost(60.0)
            ],
            "non-VIP pass and VIP delivery, generic and native"
        );
    }

    #[test]
    fn a_call_within_the_ring_leaves_room() {
        let room = ring_room() as usize;
        assert!(room > 100);
        assert!(room * (size_of::<Event>() + 8) < EVENTS_BYTES as usize);
    }
}
