//! The datapath's policy, rule by rule, through BPF_PROG_TEST_RUN.
//!
//! Every case installs the port the frame comes from (test runs need a real
//! ingress device, so ports sit on `lo`), runs one hand-built frame through
//! the XDP program, and checks the action, the output bytes, the counters
//! and the owner table afterwards.
//!
//! Needs root and the datapath object (`cargo xtask test` provides both).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::{
    maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    util::nr_cpus,
    Ebpf, EbpfLoader,
};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder};
use havip_agent::damping::{self, Settle};
use havip_common::{
    counters::MAX_ND_OPTIONS,
    maps,
    port::{PORT_BOUND, PORT_SECURITY},
    vip::{hint_bucket, MAX_BINDINGS},
    DropReason, Event, EventKind, NetworkAddr, Owner, Port, Stat, Vip, VipCounters, VipHint,
    VirtualMac, BPF_F_LOCK,
};
use havip_tests::bench::frames::{
    self, ones_sum, NdKind, NdOption, ND_OPT_NONCE, ND_OPT_SLLA, ND_OPT_TLLA,
};
use havip_tests::bench::wire;
use rand::{Rng, SeedableRng};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

/// Test runs deliver every frame on `lo`.
const LO: u32 = 1;
const NET: u32 = 1;

// ---------------------------------------------------------------------------
// The fixture: one network, three VM ports, two VIPs bound to vm1 and vm2.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Vm {
    port_id: u32,
    mac: [u8; 6],
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    link_local: Ipv6Addr,
}

const fn vm(port_id: u32, n: u8) -> Vm {
    Vm {
        port_id,
        mac: [0x02, 0, 0, 0, 0, n],
        v4: Ipv4Addr::new(10, 0, 6, n),
        v6: Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, n as u16),
        link_local: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n as u16),
    }
}

const VM1: Vm = vm(11, 9);
const VM2: Vm = vm(12, 10);
const ROGUE: Vm = vm(13, 13);
/// A VM on the VIP's network that is not bound to it: a client.
const CLIENT: Vm = vm(14, 20);

const VIP4_ID: u32 = 1;
/// VIP4's VRRP router id (VIP6 has none).
const VIP4_VRID: u8 = 111;
const VIP6_ID: u32 = 2;
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 19);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, 0x19);
const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 77);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, 0x77);
const BROADCAST: [u8; 6] = [0xff; 6];
const FOREIGN_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0xee];
/// The VLAN every fixture port allows.
const ALLOWED_VLAN: u16 = 100;
const OTHER_VLAN: u16 = 200;
/// A link-local registered for VM1 (`link_locals`).
const REGISTERED_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 5, 9);
/// Stable-privacy link-locals no port has: learned by the first to use one.
const STABLE_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x1c2d, 0x3e4f, 0x5a6b, 0x7c8d);
const STABLE_LL2: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x9a8b, 0x7c6d, 0x5e4f, 0x3a2b);

fn v4(a: Ipv4Addr) -> NetworkAddr {
    NetworkAddr::v4(NET, a.octets())
}

fn v6(a: Ipv6Addr) -> NetworkAddr {
    NetworkAddr::v6(NET, a.octets())
}

/// Where the fixture keeps each VIP's owner and counters.
fn slot(vip_id: u32) -> u32 {
    match vip_id {
        VIP4_ID => 0,
        VIP6_ID => 1,
        _ => panic!("the fixture has no vip {vip_id}"),
    }
}

fn bound(vip_id: u32, ports: &[u32]) -> Vip {
    let mut vip = Vip {
        vip_id,
        slot: slot(vip_id),
        port_count: ports.len() as u32,
        ports: [0; MAX_BINDINGS],
        // The tables of single claims: every change at once (the damping
        // table sets its own).
        hold_down_ms: 0,
    };
    vip.ports[..ports.len()].copy_from_slice(ports);
    vip
}

/// `vm`'s port entry, on the interface `ifindex`, port security on if
/// `security`; bound (to the fixture's VIPs) for vm1 and vm2, as the agent
/// marks a port bound to a VIP.
fn port_entry(vm: Vm, ifindex: u32, security: bool) -> Port {
    let security = if security { PORT_SECURITY } else { 0 };
    let bound = if [VM1, VM2].contains(&vm) {
        PORT_BOUND
    } else {
        0
    };
    let mut port = Port {
        port_id: vm.port_id,
        ifindex,
        network: NET,
        mac: vm.mac,
        flags: security | bound,
        link_local: vm.link_local.octets(),
        ..Port::default()
    };
    port.add_ipv4(vm.v4.octets());
    port.add_ipv6(vm.v6.octets());
    port.set_vlans(&[ALLOWED_VLAN]);
    port
}

/// The datapath object loaded with the fixture's tables (maps not pinned).
struct Datapath {
    ebpf: Ebpf,
}

impl Datapath {
    /// The object as the agent loads it for a port in generic mode.
    fn load() -> Self {
        Self::load_in_mode(false)
    }

    /// The object as the agent loads it for a port in native mode
    /// (`COMPLETE_CHECKSUMS` set) when `native`.
    fn load_in_mode(native: bool) -> Self {
        let object = std::env::var("HAVIP_EBPF_OBJECT").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bpfel-unknown-none/release/havip-ebpf"
            )
            .to_string()
        });
        let complete_checksums = u32::from(native);
        let mut ebpf = EbpfLoader::new()
            .override_global(maps::COMPLETE_CHECKSUMS, &complete_checksums, true)
            .load_file(&object)
            .unwrap_or_else(|e| {
                panic!(
                    "loading the datapath {object} (needs root and `cargo xtask build-ebpf`): {e}"
                )
            });
        let prog: &mut Xdp = ebpf
            .program_mut(maps::XDP_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().expect("the verifier accepts the XDP program");
        let prog: &mut SchedClassifier = ebpf
            .program_mut(maps::TC_EGRESS_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load()
            .expect("the verifier accepts the TC egress program");
        let mut dp = Self { ebpf };
        dp.reset();
        dp
    }

    /// Back to the fixture: its addresses and VIPs, no owners, no events.
    fn reset(&mut self) {
        let dp = self;
        for vip_id in [VIP4_ID, VIP6_ID] {
            dp.put_owner(vip_id, Owner::default());
        }
        dp.events();
        dp.rejects();
        let mut redirect = dp.redirect();
        let targets: Vec<u32> = redirect.keys().map(Result::unwrap).collect();
        for ifindex in targets {
            redirect.remove(ifindex).unwrap();
        }
        for vm in [VM1, VM2, ROGUE, CLIENT] {
            dp.addrs().insert(v4(vm.v4), vm.port_id, 0).unwrap();
            dp.addrs().insert(v6(vm.v6), vm.port_id, 0).unwrap();
            // As the agent: every port's own link-local is its fixed address.
            dp.addrs().insert(v6(vm.link_local), vm.port_id, 0).unwrap();
        }
        dp.addrs()
            .insert(v6(REGISTERED_LL), VM1.port_id, 0)
            .unwrap();
        dp.forget_learned();
        dp.put_vip(v4(VIP4), bound(VIP4_ID, &[VM1.port_id, VM2.port_id]));
        dp.put_vip(v6(VIP6), bound(VIP6_ID, &[VM1.port_id, VM2.port_id]));
        // The virtual MACs of the bound ports, as the agent writes them:
        // VIP4 with its VRID given, VIP6 without (any VRID of IPv6's).
        let mut vmacs = dp.vmacs();
        let old: Vec<VirtualMac> = vmacs.keys().map(Result::unwrap).collect();
        for k in old {
            vmacs.remove(&k).unwrap();
        }
        for vm in [VM1, VM2] {
            vmacs
                .insert(VirtualMac::new(vm.port_id, false, VIP4_VRID), 1, 0)
                .unwrap();
            vmacs
                .insert(VirtualMac::new(vm.port_id, true, 0), 1, 0)
                .unwrap();
        }
    }

    fn vmacs(&mut self) -> HashMap<&mut MapData, VirtualMac, u32> {
        HashMap::try_from(self.ebpf.map_mut(maps::VMACS).unwrap()).unwrap()
    }

    /// The port table. Frames come in on `lo`, whose `havip_ifport` entry
    /// (zero, as every entry starts) points at slot 0: the port at slot 0,
    /// when it names `lo`, is the one frames come from.
    fn ports(&mut self) -> Array<&mut MapData, Port> {
        Array::try_from(self.ebpf.map_mut(maps::PORTS).unwrap()).unwrap()
    }

    fn addrs(&mut self) -> HashMap<&mut MapData, NetworkAddr, u32> {
        HashMap::try_from(self.ebpf.map_mut(maps::ADDRS).unwrap()).unwrap()
    }

    /// Learned link-locals: address -> port id.
    fn learned(&mut self) -> HashMap<&mut MapData, NetworkAddr, u32> {
        HashMap::try_from(self.ebpf.map_mut(maps::LL_ADDRS).unwrap()).unwrap()
    }

    /// Learned link-locals: port id -> address.
    fn learned_by_port(&mut self) -> HashMap<&mut MapData, u32, NetworkAddr> {
        HashMap::try_from(self.ebpf.map_mut(maps::LL_PORTS).unwrap()).unwrap()
    }

    /// Empties both learned link-local maps (as a reset of every port).
    fn forget_learned(&mut self) {
        let addrs: Vec<NetworkAddr> = self.learned().keys().map(Result::unwrap).collect();
        for a in addrs {
            self.learned().remove(&a).unwrap();
        }
        let ports: Vec<u32> = self.learned_by_port().keys().map(Result::unwrap).collect();
        for p in ports {
            self.learned_by_port().remove(&p).unwrap();
        }
    }

    fn vips(&mut self) -> HashMap<&mut MapData, NetworkAddr, Vip> {
        HashMap::try_from(self.ebpf.map_mut(maps::VIPS).unwrap()).unwrap()
    }

    /// Puts `vip` at `addr` as the agent does: in the VIP table and in the
    /// filter (the fixture's VIPs each have a bucket of their own).
    fn put_vip(&mut self, addr: NetworkAddr, vip: Vip) {
        self.vips().insert(addr, vip, 0).unwrap();
        let mut filter: Array<_, VipHint> =
            Array::try_from(self.ebpf.map_mut(maps::VIP_FILTER).unwrap()).unwrap();
        filter
            .set(hint_bucket(&addr), VipHint::one(&addr, &vip), 0)
            .unwrap();
    }

    fn redirect(&mut self) -> DevMapHash<&mut MapData> {
        DevMapHash::try_from(self.ebpf.map_mut(maps::REDIRECT).unwrap()).unwrap()
    }

    fn owners(&mut self) -> Array<&mut MapData, Owner> {
        Array::try_from(self.ebpf.map_mut(maps::OWNERS).unwrap()).unwrap()
    }

    /// Writes `owner` as vip `vip_id`'s record (the agent vacating it).
    fn put_owner(&mut self, vip_id: u32, owner: Owner) {
        self.owners()
            .set(slot(vip_id), owner.sealed(), BPF_F_LOCK)
            .unwrap();
    }

    /// Puts `vm`'s port on `lo`, so the next frame comes from it.
    fn from(&mut self, vm: Vm, security: bool) {
        self.ports()
            .set(0, port_entry(vm, LO, security), 0)
            .unwrap();
    }

    /// Runs `frame` through the program; returns the action and output.
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_on(LO, frame)
    }

    /// Runs `frame` through the program as if it came in on `ifindex`.
    fn run_on(&mut self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(maps::XDP_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// Runs `frame` through the program `repeat` times, through a shared
    /// reference (threads may run it at once); returns the action.
    fn run_shared(&self, frame: &[u8], repeat: u32) -> u32 {
        let md: [u32; 6] = [0, frame.len() as u32, 0, LO, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let prog: &Xdp = self
            .ebpf
            .program(maps::XDP_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        };
        prog.test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
    }

    /// Vip `vip_id`'s record, read with BPF_F_LOCK through a shared
    /// reference.
    fn owner_shared(&self, vip_id: u32) -> Option<Owner> {
        let owners: Array<&MapData, Owner> =
            Array::try_from(self.ebpf.map(maps::OWNERS).unwrap()).unwrap();
        let owner = owners.get(&slot(vip_id), BPF_F_LOCK).unwrap();
        (owner.vip_id == vip_id).then_some(owner)
    }

    /// Runs `frame` through the TC egress program, as if on its way out of
    /// the port on `lo`; returns the TC action and the output.
    fn run_egress(&mut self, frame: &[u8]) -> (i32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(maps::TC_EGRESS_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value as i32, out)
    }

    /// Makes `vm` the owner of `vip_id` as the datapath would record it
    /// (its port on `lo`).
    fn set_owner(&mut self, vip_id: u32, vm: Vm) {
        self.set_owner_on(vip_id, vm, LO);
    }

    /// Makes `vm`, on the interface `ifindex`, the owner of `vip_id`.
    fn set_owner_on(&mut self, vip_id: u32, vm: Vm, ifindex: u32) {
        let owner = Owner {
            vip_id,
            port_id: vm.port_id,
            ifindex,
            mac: vm.mac,
            generation: 1,
            since_ns: 1,
            last_claim_ns: 1,
            ..Owner::default()
        };
        self.put_owner(vip_id, owner);
    }

    /// Vip `vip_id`'s record, if its slot holds one for it.
    fn owner(&mut self, vip_id: u32) -> Option<Owner> {
        let owner = self.owners().get(&slot(vip_id), BPF_F_LOCK).unwrap();
        (owner.vip_id == vip_id).then_some(owner)
    }

    fn drops(&mut self, reason: DropReason) -> u64 {
        let a: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::DROPS).unwrap()).unwrap();
        a.get(&(reason as u32), 0).unwrap().iter().sum()
    }

    fn stat(&mut self, stat: Stat) -> u64 {
        let a: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::STATS).unwrap()).unwrap();
        a.get(&(stat as u32), 0).unwrap().iter().sum()
    }

    fn vip_counters(&mut self, vip_id: u32) -> VipCounters {
        let m: PerCpuArray<_, VipCounters> =
            PerCpuArray::try_from(self.ebpf.map(maps::VIP_STATS).unwrap()).unwrap();
        let mut sum = VipCounters::default();
        for v in m.get(&slot(vip_id), 0).unwrap().iter() {
            sum += *v;
        }
        sum
    }

    /// What `havip_events` holds: owner changes.
    fn events(&mut self) -> Vec<Event> {
        self.ring(maps::EVENTS)
    }

    /// What `havip_rejects` holds: rejected claims.
    fn rejects(&mut self) -> Vec<Event> {
        self.ring(maps::REJECTS)
    }

    fn ring(&mut self, name: &str) -> Vec<Event> {
        let mut ring = RingBuf::try_from(self.ebpf.map_mut(name).unwrap()).unwrap();
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), size_of::<Event>());
            // SAFETY: the datapath writes whole `Event`s.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
        }
        events
    }
}

// ---------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------

fn arp(eth_src: [u8; 6], op: ArpOperation, sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let tha = if op == ArpOperation::REPLY {
        BROADCAST
    } else {
        [0; 6]
    };
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha,
        &spa.octets(),
        &tha,
        &tpa.octets(),
    )
    .unwrap();
    let builder = PacketBuilder::ethernet2(eth_src, BROADCAST).arp(packet);
    let mut frame = Vec::new();
    builder.write(&mut frame).unwrap();
    frame
}

/// A gratuitous ARP request: sender IP == target IP == `ip`.
fn garp(vm: Vm, ip: Ipv4Addr) -> Vec<u8> {
    arp(vm.mac, ArpOperation::REQUEST, vm.mac, ip, ip)
}

fn arp_reply(vm: Vm, ip: Ipv4Addr) -> Vec<u8> {
    arp(vm.mac, ArpOperation::REPLY, vm.mac, ip, ip)
}

fn udp4(eth_src: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(eth_src, BROADCAST)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(4000, 5000);
    let mut frame = Vec::new();
    builder.write(&mut frame, b"hello").unwrap();
    frame
}

fn udp6(eth_src: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(eth_src, BROADCAST)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(4000, 5000);
    let mut frame = Vec::new();
    builder.write(&mut frame, b"hello").unwrap();
    frame
}

/// A Neighbor Advertisement for `target`, with a target link-layer address
/// option when `tlla` is given.
fn na(
    eth_src: [u8; 6],
    src: Ipv6Addr,
    target: Ipv6Addr,
    solicited: bool,
    tlla: Option<[u8; 6]>,
) -> Vec<u8> {
    let ends = frames::Ends6 {
        eth_src,
        eth_dst: frames::ALL_NODES.1,
        src,
        dst: frames::ALL_NODES.0,
    };
    frames::neighbor_advertisement(ends, target, solicited, tlla)
}

/// The unsolicited NA keepalived sends for a VIP it takes over.
fn unsolicited_na(vm: Vm, target: Ipv6Addr) -> Vec<u8> {
    na(vm.mac, vm.link_local, target, false, Some(vm.mac))
}

/// A Neighbor Solicitation for `target`, with a source link-layer address
/// option when `slla` is given.
fn ns(eth_src: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, slla: Option<[u8; 6]>) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    if let Some(mac) = slla {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&mac);
    }
    let builder = PacketBuilder::ethernet2(eth_src, [0x33, 0x33, 0xff, 0, 0, 0x19])
        .ipv6(
            src.octets(),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x19).octets(),
            255,
        )
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut frame = Vec::new();
    builder.write(&mut frame, &body).unwrap();
    frame
}

const ETH_LEN: usize = 14;
const IPV6_LEN: usize = 40;

/// Inserts IPv6 extension headers (each `[next, len, ...]`, 8 bytes a unit)
/// between the IPv6 header and its payload, fixing the chain and length.
fn with_ext_headers(mut frame: Vec<u8>, headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let next_at = ETH_LEN + 6;
    let mut next = frame[next_at];
    let mut chain = Vec::new();
    for (kind, body) in headers.iter().rev() {
        let mut h = body.clone();
        h[0] = next;
        chain.splice(0..0, h);
        next = *kind;
    }
    frame[next_at] = next;
    let len = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]) + chain.len() as u16;
    frame[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&len.to_be_bytes());
    frame.splice(ETH_LEN + IPV6_LEN..ETH_LEN + IPV6_LEN, chain);
    frame
}

fn dest_opts() -> (u8, Vec<u8>) {
    // Next header (filled in), length 0 (8 bytes), a PadN option.
    (60, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

fn hop_by_hop() -> (u8, Vec<u8>) {
    (0, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

/// Adds `tags` 802.1Q tags for the allowed VLAN after the source MAC.
fn tagged(mut frame: Vec<u8>, tags: usize) -> Vec<u8> {
    for _ in 0..tags {
        frame = frames::tagged(frame, ALLOWED_VLAN);
    }
    frame
}

/// Adds an 802.1Q tag for `vlan` (VLAN id 0: a priority tag, priority 5)
/// outside any tags the frame has.
fn in_vlan(frame: Vec<u8>, vlan: u16) -> Vec<u8> {
    frames::tagged(frame, if vlan == 0 { 5 << 13 } else { vlan })
}

/// Adds an 802.1ad (QinQ service) tag for `vlan` outside any tags.
fn in_service_vlan(frame: Vec<u8>, vlan: u16) -> Vec<u8> {
    let mut f = frames::tagged(frame, vlan);
    f[12..14].copy_from_slice(&[0x88, 0xa8]);
    f
}

/// An ND message from `vm`'s link-local carrying `options` (for NA, an
/// unsolicited one for `target`).
fn nd_options(vm: Vm, kind: NdKind, target: Ipv6Addr, options: &[NdOption]) -> Vec<u8> {
    let ends = frames::Ends6 {
        eth_src: vm.mac,
        eth_dst: frames::ALL_NODES.1,
        src: vm.link_local,
        dst: frames::ALL_NODES.0,
    };
    frames::nd_message(ends, kind, target, options)
}

/// `n` nonce options (RFC 3971; enhanced DAD's).
fn nonces(n: usize) -> Vec<NdOption> {
    (0..n).map(|i| (ND_OPT_NONCE, [i as u8; 6])).collect()
}

const UNSOLICITED: NdKind = NdKind::Advert { solicited: false };

/// An IPv4 frame whose header carries `options` (a multiple of 4 bytes).
fn with_ipv4_options(mut frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    frame[ETH_LEN] = 0x40 | ihl as u8;
    let total = u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]) + options.len() as u16;
    frame[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&total.to_be_bytes());
    frame.splice(ETH_LEN + 20..ETH_LEN + 20, options.iter().copied());
    frame
}

// ---------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------

/// What the owner table must say about a VIP after a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// No owner has ever been learned.
    NoOwner,
    /// `vm` owns it, at this generation.
    OwnedBy(Vm, u64),
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {}", self.port_id)
    }
}

impl PartialEq for Vm {
    fn eq(&self, other: &Self) -> bool {
        self.port_id == other.port_id
    }
}

struct Case {
    name: &'static str,
    /// Claims applied before the frame under test, each from a VM.
    before: Vec<(Vm, Vec<u8>)>,
    from: Vm,
    security: bool,
    frame: Vec<u8>,
    action: u32,
    /// The drop reason counted, for `XDP_DROP`.
    reason: Option<DropReason>,
    /// The VIP the case concerns and its owner afterwards.
    vip: u32,
    owner: Expect,
}

fn case(name: &'static str, from: Vm, frame: Vec<u8>) -> Case {
    Case {
        name,
        before: Vec::new(),
        from,
        security: true,
        frame,
        action: XDP_PASS,
        reason: None,
        vip: VIP4_ID,
        owner: Expect::NoOwner,
    }
}

impl Case {
    fn after(mut self, from: Vm, frame: Vec<u8>) -> Self {
        self.before.push((from, frame));
        self
    }
    fn drops(mut self, reason: DropReason) -> Self {
        self.action = XDP_DROP;
        self.reason = Some(reason);
        self
    }
    fn owner(mut self, vip: u32, owner: Expect) -> Self {
        self.vip = vip;
        self.owner = owner;
        self
    }
    fn without_port_security(mut self) -> Self {
        self.security = false;
        self
    }
}

fn cases() -> Vec<Case> {
    use DropReason::*;
    use Expect::*;
    let garp1 = garp(VM1, VIP4);
    let na1 = unsolicited_na(VM1, VIP6);
    vec![
        // Claims of an IPv4 VIP.
        case(
            "GARP request from a bound port makes it the owner",
            VM1,
            garp(VM1, VIP4),
        )
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "ARP reply from a bound port makes it the owner",
            VM2,
            arp_reply(VM2, VIP4),
        )
        .owner(VIP4_ID, OwnedBy(VM2, 1)),
        case(
            "failover: the backup's GARP moves the owner",
            VM2,
            garp(VM2, VIP4),
        )
        .after(VM1, garp1.clone())
        .owner(VIP4_ID, OwnedBy(VM2, 2)),
        case(
            "the owner's repeated GARP keeps the generation",
            VM1,
            garp(VM1, VIP4),
        )
        .after(VM1, garp1.clone())
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "GARP from an unbound port is dropped",
            ROGUE,
            garp(ROGUE, VIP4),
        )
        .drops(ClaimNotBound),
        case(
            "ARP reply from an unbound port is dropped",
            ROGUE,
            arp_reply(ROGUE, VIP4),
        )
        .drops(ClaimNotBound),
        case(
            "a rogue claim does not move the owner",
            ROGUE,
            garp(ROGUE, VIP4),
        )
        .after(VM1, garp1.clone())
        .drops(ClaimNotBound)
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "a rogue claim is dropped without port security too",
            ROGUE,
            arp(FOREIGN_MAC, ArpOperation::REQUEST, FOREIGN_MAC, VIP4, VIP4),
        )
        .without_port_security()
        .drops(ClaimNotBound),
        case(
            "ARP request sourced from the VIP by a bound port passes, not a claim",
            VM1,
            arp(VM1.mac, ArpOperation::REQUEST, VM1.mac, VIP4, OTHER4),
        ),
        case(
            "ARP request for the VIP from anyone passes",
            ROGUE,
            arp(ROGUE.mac, ArpOperation::REQUEST, ROGUE.mac, ROGUE.v4, VIP4),
        ),
        case(
            "VLAN-tagged GARP from a bound port is a claim",
            VM1,
            tagged(garp(VM1, VIP4), 1),
        )
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "VLAN-tagged GARP from an unbound port is dropped",
            ROGUE,
            tagged(garp(ROGUE, VIP4), 1),
        )
        .drops(ClaimNotBound),
        // VLANs.
        case(
            "a frame in a VLAN the port allows passes",
            VM1,
            in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), ALLOWED_VLAN),
        ),
        case(
            "a frame in a VLAN the port does not allow",
            VM1,
            in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), OTHER_VLAN),
        )
        .drops(VlanNotAllowed),
        case(
            "a claim in a VLAN the port does not allow is not judged",
            VM1,
            in_vlan(garp(VM1, VIP4), OTHER_VLAN),
        )
        .drops(VlanNotAllowed),
        case(
            "a priority tag (VLAN id 0) counts as untagged",
            VM1,
            in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), 0),
        ),
        case(
            "an 802.1ad tag in a VLAN the port does not allow",
            VM1,
            in_service_vlan(udp4(VM1.mac, VM1.v4, OTHER4), OTHER_VLAN),
        )
        .drops(VlanNotAllowed),
        case(
            "QinQ: a second VLAN id, even an allowed one, is refused",
            VM1,
            in_service_vlan(
                in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), ALLOWED_VLAN),
                ALLOWED_VLAN,
            ),
        )
        .drops(VlanNotAllowed),
        case(
            "QinQ: an allowed VLAN inside another is refused",
            VM1,
            in_service_vlan(
                in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), ALLOWED_VLAN),
                OTHER_VLAN,
            ),
        )
        .drops(VlanNotAllowed),
        case(
            "a priority tag inside an allowed VLAN passes",
            VM1,
            in_vlan(in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), 0), ALLOWED_VLAN),
        ),
        case(
            "a priority tag outside an allowed VLAN passes",
            VM1,
            in_vlan(in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), ALLOWED_VLAN), 0),
        ),
        case(
            "without port security any VLAN passes",
            VM1,
            in_vlan(udp4(VM1.mac, VM1.v4, OTHER4), OTHER_VLAN),
        )
        .without_port_security(),
        // ARP port security.
        case(
            "ARP with a foreign sender MAC",
            VM1,
            arp(VM1.mac, ArpOperation::REQUEST, FOREIGN_MAC, VM1.v4, OTHER4),
        )
        .drops(ArpSpoof),
        case(
            "ARP with a foreign sender IP",
            VM1,
            arp(VM1.mac, ArpOperation::REQUEST, VM1.mac, OTHER4, OTHER4),
        )
        .drops(ArpSpoof),
        case(
            "ARP with another port's IP",
            ROGUE,
            arp(ROGUE.mac, ArpOperation::REPLY, ROGUE.mac, VM1.v4, VM1.v4),
        )
        .drops(ArpSpoof),
        case(
            "ARP probe (sender 0.0.0.0) passes",
            VM1,
            arp(
                VM1.mac,
                ArpOperation::REQUEST,
                VM1.mac,
                Ipv4Addr::UNSPECIFIED,
                VM1.v4,
            ),
        ),
        case(
            "ARP with a foreign sender IP passes without port security",
            VM1,
            arp(VM1.mac, ArpOperation::REQUEST, VM1.mac, OTHER4, OTHER4),
        )
        .without_port_security(),
        // Link-layer port security.
        case("foreign source MAC", VM1, udp4(FOREIGN_MAC, VM1.v4, OTHER4)).drops(MacSpoof),
        case(
            "foreign source MAC passes without port security",
            VM1,
            udp4(FOREIGN_MAC, VM1.v4, OTHER4),
        )
        .without_port_security(),
        case("non-IP ethertype passes", VM1, {
            let mut f = udp4(VM1.mac, VM1.v4, OTHER4);
            f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
            f
        }),
        // IPv4 sources.
        case(
            "IPv4 from the port's fixed IP passes",
            VM1,
            udp4(VM1.mac, VM1.v4, OTHER4),
        ),
        case(
            "IPv4 from 0.0.0.0 (DHCP) passes",
            VM1,
            udp4(VM1.mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
        ),
        case("IPv4 from a foreign IP", VM1, udp4(VM1.mac, OTHER4, VM2.v4)).drops(IpSpoof),
        case(
            "IPv4 from another port's IP",
            ROGUE,
            udp4(ROGUE.mac, VM1.v4, VM2.v4),
        )
        .drops(IpSpoof),
        case(
            "IPv4 from the VIP by a bound port passes",
            VM2,
            udp4(VM2.mac, VIP4, OTHER4),
        ),
        case(
            "IPv4 from the VIP by an unbound port",
            ROGUE,
            udp4(ROGUE.mac, VIP4, OTHER4),
        )
        .drops(VipSourceNotBound),
        case(
            "IPv4 from the VIP by an unbound port, without port security",
            ROGUE,
            udp4(ROGUE.mac, VIP4, OTHER4),
        )
        .without_port_security()
        .drops(VipSourceNotBound),
        case(
            "IPv4 options are skipped",
            VM1,
            with_ipv4_options(udp4(VM1.mac, VM1.v4, OTHER4), &[1, 1, 1, 0]),
        ),
        case("IPv4 header length below 20", VM1, {
            let mut f = udp4(VM1.mac, VM1.v4, OTHER4);
            f[ETH_LEN] = 0x43;
            f
        })
        .drops(Malformed),
        case("IPv4 options cut off by the frame end", VM1, {
            let mut f = udp4(VM1.mac, VM1.v4, OTHER4);
            f[ETH_LEN] = 0x4f;
            f.truncate(ETH_LEN + 40);
            f
        })
        .drops(Truncated),
        // Truncated and malformed frames.
        case(
            "Ethernet header only, ARP ethertype",
            VM1,
            garp(VM1, VIP4)[..ETH_LEN].to_vec(),
        )
        .drops(Truncated),
        case(
            "VLAN tag cut off",
            VM1,
            tagged(garp(VM1, VIP4), 1)[..ETH_LEN + 2].to_vec(),
        )
        .drops(Truncated),
        case("ARP cut short", VM1, garp(VM1, VIP4)[..30].to_vec()).drops(Truncated),
        case("ARP with bad sizes", VM1, {
            let mut f = garp(VM1, VIP4);
            f[ETH_LEN + 4] = 8;
            f
        })
        .drops(Malformed),
        case("ARP with an unknown operation", VM1, {
            let mut f = garp(VM1, VIP4);
            f[ETH_LEN + 7] = 9;
            f
        })
        .drops(Malformed),
        case(
            "three VLAN tags",
            VM1,
            tagged(udp4(VM1.mac, VM1.v4, OTHER4), 3),
        )
        .drops(HeaderChainTooLong),
        // Claims of an IPv6 VIP.
        case(
            "unsolicited NA from a bound port makes it the owner",
            VM1,
            na1.clone(),
        )
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "failover: the backup's NA moves the owner",
            VM2,
            unsolicited_na(VM2, VIP6),
        )
        .after(VM1, na1.clone())
        .owner(VIP6_ID, OwnedBy(VM2, 2)),
        case(
            "NA without a link-layer option: the owner MAC is the frame's",
            VM1,
            na(VM1.mac, VM1.link_local, VIP6, false, None),
        )
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "solicited NA from a bound port passes but is not a claim",
            VM2,
            na(VM2.mac, VM2.v6, VIP6, true, Some(VM2.mac)),
        )
        .after(VM1, na1.clone())
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "NA for the VIP from an unbound port is dropped",
            ROGUE,
            unsolicited_na(ROGUE, VIP6),
        )
        .drops(ClaimNotBound)
        .owner(VIP6_ID, NoOwner),
        case(
            "NA for the VIP from an unbound port, hidden behind extension headers",
            ROGUE,
            with_ext_headers(
                unsolicited_na(ROGUE, VIP6),
                &[hop_by_hop(), dest_opts(), dest_opts()],
            ),
        )
        .drops(ClaimNotBound),
        case(
            "NA through extension headers from a bound port is a claim",
            VM1,
            with_ext_headers(unsolicited_na(VM1, VIP6), &[hop_by_hop(), dest_opts()]),
        )
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "NA for the VIP sourced from the VIP by an unbound port",
            ROGUE,
            na(ROGUE.mac, VIP6, VIP6, false, Some(ROGUE.mac)),
        )
        .drops(ClaimNotBound),
        case(
            "NS sourced from the VIP by an unbound port",
            ROGUE,
            ns(ROGUE.mac, VIP6, OTHER6, Some(ROGUE.mac)),
        )
        .drops(ClaimNotBound),
        case(
            "NS sourced from the VIP by a bound port passes",
            VM1,
            ns(VM1.mac, VIP6, OTHER6, Some(VM1.mac)),
        ),
        case(
            "DAD NS (source ::) for the VIP passes from a bound port",
            VM2,
            ns(VM2.mac, Ipv6Addr::UNSPECIFIED, VIP6, None),
        ),
        case(
            "rogue NA is dropped without port security too",
            ROGUE,
            na(FOREIGN_MAC, OTHER6, VIP6, false, Some(FOREIGN_MAC)),
        )
        .without_port_security()
        .drops(ClaimNotBound),
        // ND port security.
        case(
            "NA for a foreign target",
            VM1,
            na(VM1.mac, VM1.v6, OTHER6, false, Some(VM1.mac)),
        )
        .drops(NdSpoof),
        case(
            "NA for another port's address",
            ROGUE,
            na(ROGUE.mac, ROGUE.v6, VM1.v6, false, Some(ROGUE.mac)),
        )
        .drops(NdSpoof),
        case(
            "NA for the VIP with a foreign link-layer address",
            VM1,
            na(VM1.mac, VM1.v6, VIP6, false, Some(FOREIGN_MAC)),
        )
        .drops(NdSpoof)
        .owner(VIP6_ID, NoOwner),
        case(
            "NA for the port's own address passes",
            VM1,
            na(VM1.mac, VM1.v6, VM1.v6, false, Some(VM1.mac)),
        ),
        case(
            "NA for the port's link-local address passes",
            VM1,
            na(
                VM1.mac,
                VM1.link_local,
                VM1.link_local,
                false,
                Some(VM1.mac),
            ),
        ),
        case(
            "NS with a foreign source link-layer address",
            VM1,
            ns(VM1.mac, VM1.v6, OTHER6, Some(FOREIGN_MAC)),
        )
        .drops(NdSpoof),
        case(
            "NS from the port passes",
            VM1,
            ns(VM1.mac, VM1.v6, OTHER6, Some(VM1.mac)),
        ),
        // Every ND option is checked.
        case(
            "NA whose foreign link-layer address follows four other options",
            VM1,
            nd_options(VM1, UNSOLICITED, VM1.v6, &{
                let mut o = nonces(4);
                o.push((ND_OPT_TLLA, FOREIGN_MAC));
                o
            }),
        )
        .drops(NdSpoof),
        case(
            "NA with two target link-layer addresses, the second foreign",
            VM1,
            nd_options(
                VM1,
                UNSOLICITED,
                VM1.v6,
                &[(ND_OPT_TLLA, VM1.mac), (ND_OPT_TLLA, FOREIGN_MAC)],
            ),
        )
        .drops(NdSpoof),
        case(
            "a VIP claim whose second link-layer address is foreign does not move the owner",
            VM1,
            nd_options(
                VM1,
                UNSOLICITED,
                VIP6,
                &[(ND_OPT_TLLA, VM1.mac), (ND_OPT_TLLA, FOREIGN_MAC)],
            ),
        )
        .drops(NdSpoof)
        .owner(VIP6_ID, NoOwner),
        case(
            "NS with two source link-layer addresses, the second foreign",
            VM1,
            nd_options(
                VM1,
                NdKind::Solicit,
                OTHER6,
                &[(ND_OPT_SLLA, VM1.mac), (ND_OPT_SLLA, FOREIGN_MAC)],
            ),
        )
        .drops(NdSpoof),
        case(
            "NA with as many options as walked, all the port's, passes",
            VM1,
            nd_options(VM1, UNSOLICITED, VM1.v6, &{
                let mut o = nonces(MAX_ND_OPTIONS - 1);
                o.push((ND_OPT_TLLA, VM1.mac));
                o
            }),
        ),
        case(
            "NS with more options than walked",
            VM1,
            nd_options(VM1, NdKind::Solicit, OTHER6, &nonces(MAX_ND_OPTIONS + 1)),
        )
        .drops(NdTooManyOptions),
        case(
            "NA with more options than walked, its address hidden beyond them",
            VM1,
            nd_options(VM1, UNSOLICITED, VM1.v6, &{
                let mut o = nonces(MAX_ND_OPTIONS);
                o.push((ND_OPT_TLLA, FOREIGN_MAC));
                o
            }),
        )
        .drops(NdTooManyOptions),
        case(
            "a foreign link-layer address in another kind of option is not ours to judge",
            VM1,
            nd_options(VM1, NdKind::Solicit, OTHER6, &[(ND_OPT_TLLA, FOREIGN_MAC)]),
        ),
        case("ND option of length zero", VM1, {
            let mut f = na(VM1.mac, VM1.v6, VM1.v6, false, Some(VM1.mac));
            let at = f.len() - 7;
            f[at] = 0;
            f
        })
        .drops(Malformed),
        // IPv6 sources.
        case(
            "IPv6 from the port's fixed IP passes",
            VM1,
            udp6(VM1.mac, VM1.v6, OTHER6),
        ),
        case(
            "IPv6 from the port's link-local passes",
            VM1,
            udp6(VM1.mac, VM1.link_local, OTHER6),
        ),
        case("IPv6 from a foreign IP", VM1, udp6(VM1.mac, OTHER6, VM2.v6)).drops(IpSpoof),
        case(
            "IPv6 from another port's link-local",
            VM1,
            udp6(VM1.mac, VM2.link_local, OTHER6),
        )
        .drops(IpSpoof),
        // Link-locals beyond the port's own.
        case(
            "IPv6 from a link-local registered for the port passes",
            VM1,
            udp6(VM1.mac, REGISTERED_LL, OTHER6),
        ),
        case(
            "IPv6 from a link-local registered for another port",
            VM2,
            udp6(VM2.mac, REGISTERED_LL, OTHER6),
        )
        .drops(IpSpoof),
        case(
            "IPv6 from a link-local no port holds passes (and is learned)",
            VM1,
            udp6(VM1.mac, STABLE_LL, OTHER6),
        ),
        case(
            "IPv6 from the link-local the port learned passes",
            VM1,
            udp6(VM1.mac, STABLE_LL, OTHER6),
        )
        .after(VM1, udp6(VM1.mac, STABLE_LL, OTHER6)),
        case(
            "IPv6 from a link-local another port learned",
            VM1,
            udp6(VM1.mac, STABLE_LL, OTHER6),
        )
        .after(VM2, udp6(VM2.mac, STABLE_LL, OTHER6))
        .drops(LinkLocalTaken),
        case(
            "a second link-local is not learned",
            VM1,
            udp6(VM1.mac, STABLE_LL2, OTHER6),
        )
        .after(VM1, udp6(VM1.mac, STABLE_LL, OTHER6))
        .drops(IpSpoof),
        case(
            "NA for the link-local the port learned passes",
            VM1,
            na(VM1.mac, STABLE_LL, STABLE_LL, false, Some(VM1.mac)),
        )
        .after(VM1, udp6(VM1.mac, STABLE_LL, OTHER6)),
        case(
            "NA for a link-local another port learned",
            VM1,
            na(VM1.mac, VM1.link_local, STABLE_LL, false, Some(VM1.mac)),
        )
        .after(VM2, udp6(VM2.mac, STABLE_LL, OTHER6))
        .drops(NdSpoof),
        case(
            "NA for a link-local registered for another port",
            VM2,
            na(VM2.mac, VM2.link_local, REGISTERED_LL, false, Some(VM2.mac)),
        )
        .drops(NdSpoof),
        case(
            "DAD for a new link-local (from ::) passes",
            VM1,
            ns(VM1.mac, Ipv6Addr::UNSPECIFIED, STABLE_LL, None),
        ),
        case(
            "IPv6 from the VIP by a bound port passes",
            VM1,
            udp6(VM1.mac, VIP6, OTHER6),
        ),
        case(
            "IPv6 from the VIP by an unbound port",
            ROGUE,
            udp6(ROGUE.mac, VIP6, OTHER6),
        )
        .drops(VipSourceNotBound),
        case("IPv6 with a wrong version nibble", VM1, {
            let mut f = udp6(VM1.mac, VM1.v6, OTHER6);
            f[ETH_LEN] = 0x45;
            f
        })
        .drops(Malformed),
        case(
            "IPv6 extension header chain longer than walked",
            VM1,
            with_ext_headers(
                udp6(VM1.mac, VM1.v6, OTHER6),
                &[
                    hop_by_hop(),
                    dest_opts(),
                    dest_opts(),
                    dest_opts(),
                    dest_opts(),
                    dest_opts(),
                    dest_opts(),
                ],
            ),
        )
        .drops(HeaderChainTooLong),
        case("IPv6 extension header cut off", VM1, {
            let f = with_ext_headers(udp6(VM1.mac, VM1.v6, OTHER6), &[hop_by_hop()]);
            f[..ETH_LEN + IPV6_LEN + 1].to_vec()
        })
        .drops(Truncated),
    ]
}

#[test]
fn policy_table() {
    let mut failures = Vec::new();
    let mut dp = Datapath::load();
    for case in cases().into_iter().chain(vrrp_and_probe_cases()) {
        dp.reset();
        for (vm, frame) in &case.before {
            dp.from(*vm, true);
            let (action, _) = dp.run(frame);
            assert_eq!(
                action, XDP_PASS,
                "{}: setup claim was not accepted",
                case.name
            );
        }
        let owner_before = dp.owner(case.vip);
        let drops_before = case.reason.map(|r| dp.drops(r)).unwrap_or(0);
        dp.events();

        dp.from(case.from, case.security);
        let (action, out) = dp.run(&case.frame);

        let mut problems = Vec::new();
        if action != case.action {
            problems.push(format!("action {action}, expected {}", case.action));
        }
        if out != case.frame {
            problems.push("the program changed the frame".to_string());
        }
        if let Some(reason) = case.reason {
            if dp.drops(reason) != drops_before + 1 {
                problems.push(format!("drop counter {} did not count it", reason.name()));
            }
        }
        let owner = dp.owner(case.vip).filter(|o| !o.is_vacant());
        match (case.owner, owner) {
            (Expect::NoOwner, None) => {}
            (Expect::OwnedBy(vm, generation), Some(o))
                if o.port_id == vm.port_id && o.generation == generation && o.ifindex == LO => {}
            (expect, got) => problems.push(format!("owner {got:?}, expected {expect:?}")),
        }
        // A claim that does not change the owner must not touch it either
        // (apart from the owner's own refresh).
        if case.action == XDP_DROP {
            if let (Some(before), Some(after)) = (owner_before, dp.owner(case.vip)) {
                if before != after {
                    problems.push("a dropped frame changed the owner record".to_string());
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert_cases_pass(&failures);
}

/// Fails with every failing case of a table, one a line.
fn assert_cases_pass(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "failing cases:\n  {}",
        failures.join("\n  ")
    );
}

/// A link-local no port holds is learned for the first port to use it:
/// once (counted once, in both maps), held against every other port, and
/// free again once forgotten (as `havip-agent reset-link-local` does).
#[test]
fn a_link_local_is_learned_once_and_held_until_forgotten() {
    let mut dp = Datapath::load();
    let learned_before = dp.stat(Stat::LinkLocalsLearned);
    dp.from(VM1, true);
    let from_vm1 = udp6(VM1.mac, STABLE_LL, OTHER6);
    assert_eq!(dp.run(&from_vm1).0, XDP_PASS);
    assert_eq!(dp.run(&from_vm1).0, XDP_PASS);
    assert_eq!(
        dp.stat(Stat::LinkLocalsLearned),
        learned_before + 1,
        "learned once"
    );
    assert_eq!(dp.learned().get(&v6(STABLE_LL), 0).unwrap(), VM1.port_id);
    assert_eq!(
        dp.learned_by_port().get(&VM1.port_id, 0).unwrap(),
        v6(STABLE_LL)
    );

    // Held: VM2 may not use it, and learns nothing for trying.
    dp.from(VM2, true);
    let from_vm2 = udp6(VM2.mac, STABLE_LL, OTHER6);
    let taken = dp.drops(DropReason::LinkLocalTaken);
    assert_eq!(dp.run(&from_vm2).0, XDP_DROP);
    assert_eq!(dp.drops(DropReason::LinkLocalTaken), taken + 1);
    assert!(dp.learned_by_port().get(&VM2.port_id, 0).is_err());

    // Forgotten: the next port to use it holds it.
    dp.learned().remove(&v6(STABLE_LL)).unwrap();
    dp.learned_by_port().remove(&VM1.port_id).unwrap();
    assert_eq!(dp.run(&from_vm2).0, XDP_PASS);
    assert_eq!(dp.learned().get(&v6(STABLE_LL), 0).unwrap(), VM2.port_id);
    assert_eq!(
        dp.stat(Stat::LinkLocalsLearned),
        learned_before + 2,
        "learned again"
    );

    // A port without port security may use any source: nothing is learned.
    dp.from(CLIENT, false);
    assert_eq!(dp.run(&udp6(CLIENT.mac, STABLE_LL2, OTHER6)).0, XDP_PASS);
    assert!(dp.learned().get(&v6(STABLE_LL2), 0).is_err());
    dp.reset();
}

// ---------------------------------------------------------------------------
// Split brain: damped, never frozen.
// ---------------------------------------------------------------------------

/// One step of a damping case.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `vm` sends a GARP for the VIP.
    Claims(Vm),
    /// Time passes.
    Wait(Duration),
    /// The agent looks at the record (as its damper does when a hold-down
    /// ends): applies a pending claim whose hold-down is over.
    AgentSettles,
}

struct DampCase {
    name: &'static str,
    hold_down_ms: u32,
    /// The owner before the steps, how long ago it took over, and its
    /// ifindex (0: a port on another host, learned from etcd).
    owner: Option<(Vm, Duration, u32)>,
    steps: Vec<Step>,
    /// The owner and generation afterwards.
    expect: (Vm, u64),
    /// The port whose claim is pending afterwards.
    pending: Option<Vm>,
    /// Claims deferred (and counted).
    deferred: u64,
}

fn damping_cases() -> Vec<DampCase> {
    use Step::*;
    let ms = Duration::from_millis;
    let case = |name, hold_down_ms, owner, steps, expect, pending, deferred| DampCase {
        name,
        hold_down_ms,
        owner,
        steps,
        expect,
        pending,
        deferred,
    };
    vec![
        case(
            "a failover after a quiet hold-down moves the owner on the next packet",
            1000,
            Some((VM1, Duration::from_secs(5), LO)),
            vec![Claims(VM2)],
            (VM2, 2),
            None,
            0,
        ),
        case(
            "a claim against another host's owner is that host's to damp: applied",
            1000,
            Some((VM1, Duration::ZERO, 0)),
            vec![Claims(VM2)],
            (VM2, 2),
            None,
            0,
        ),
        case(
            "a second change within the hold-down is deferred, not applied",
            1000,
            None,
            vec![Claims(VM1), Claims(VM2)],
            (VM1, 1),
            Some(VM2),
            1,
        ),
        case(
            "the same port announcing again is no change and is not deferred",
            1000,
            None,
            vec![Claims(VM1), Claims(VM1), Claims(VM1)],
            (VM1, 1),
            None,
            0,
        ),
        case(
            "the owner's claim after the deferred one is the latest: nothing pending",
            1000,
            None,
            vec![Claims(VM1), Claims(VM2), Claims(VM1)],
            (VM1, 1),
            None,
            1,
        ),
        case(
            "the agent keeps a pending claim while the hold-down lasts",
            1000,
            None,
            vec![Claims(VM1), Claims(VM2), AgentSettles],
            (VM1, 1),
            Some(VM2),
            1,
        ),
        case(
            "when the hold-down ends the latest claim wins with no new packet",
            50,
            None,
            vec![
                Claims(VM1),
                Claims(VM2),
                Claims(VM1),
                Claims(VM2),
                Wait(ms(60)),
                AgentSettles,
            ],
            (VM2, 2),
            None,
            2,
        ),
        case(
            "after the hold-down the next claim applies the latest one itself",
            50,
            None,
            vec![Claims(VM1), Claims(VM2), Wait(ms(60)), Claims(VM2)],
            (VM2, 2),
            None,
            1,
        ),
        case(
            "the owner the pending claim replaced is damped in its turn",
            50,
            None,
            vec![
                Claims(VM1),
                Claims(VM2),
                Wait(ms(60)),
                AgentSettles,
                Claims(VM1),
            ],
            (VM2, 2),
            Some(VM1),
            2,
        ),
        case(
            "hold_down_ms = 0: every change at once",
            0,
            None,
            vec![Claims(VM1), Claims(VM2), Claims(VM1)],
            (VM1, 3),
            None,
            0,
        ),
    ]
}

#[test]
fn split_brain_is_damped_never_frozen() {
    let mut failures = Vec::new();
    let mut dp = Datapath::load();
    for case in damping_cases() {
        dp.reset();
        let vip = Vip {
            hold_down_ms: case.hold_down_ms,
            ..bound(VIP4_ID, &[VM1.port_id, VM2.port_id])
        };
        dp.put_vip(v4(VIP4), vip);
        if let Some((vm, ago, ifindex)) = case.owner {
            let since = wire::mono_ns() - ago.as_nanos() as u64;
            dp.put_owner(
                VIP4_ID,
                Owner {
                    vip_id: VIP4_ID,
                    port_id: vm.port_id,
                    ifindex,
                    mac: vm.mac,
                    generation: 1,
                    since_ns: since,
                    last_claim_ns: since,
                    ..Owner::default()
                },
            );
        }
        let counted = (
            dp.stat(Stat::ClaimsDeferred),
            dp.vip_counters(VIP4_ID).claims_deferred,
        );
        let hold_down_ns = u64::from(case.hold_down_ms) * 1_000_000;
        for step in &case.steps {
            match *step {
                Step::Claims(vm) => {
                    dp.from(vm, true);
                    assert_eq!(dp.run(&garp(vm, VIP4)).0, XDP_PASS, "{}", case.name);
                }
                Step::Wait(d) => std::thread::sleep(d),
                Step::AgentSettles => {
                    let o = dp.owner(VIP4_ID).expect("an owner record");
                    let now = wire::mono_ns();
                    if let Settle::Apply(new) = damping::settle(&o, hold_down_ns, now) {
                        dp.put_owner(VIP4_ID, new);
                    }
                }
            }
        }
        let mut problems = Vec::new();
        let o = dp.owner(VIP4_ID).unwrap_or_default();
        let (vm, generation) = case.expect;
        if (o.port_id, o.generation) != (vm.port_id, generation) {
            problems.push(format!(
                "owner port {} generation {}, expected {vm:?} generation {generation}",
                o.port_id, o.generation
            ));
        }
        let pending = (o.pending == 1).then_some(o.rival_port_id);
        if pending != case.pending.map(|v| v.port_id) {
            problems.push(format!("pending {pending:?}, expected {:?}", case.pending));
        }
        let deferred = (
            dp.stat(Stat::ClaimsDeferred) - counted.0,
            dp.vip_counters(VIP4_ID).claims_deferred - counted.1,
        );
        if deferred != (case.deferred, case.deferred) {
            problems.push(format!(
                "deferred (stat, vip) {deferred:?}, expected {}",
                case.deferred
            ));
        }
        // The fast path follows the record, whoever wrote it.
        dp.redirect().insert(LO, LO, None, 0).unwrap();
        dp.from(CLIENT, true);
        let (action, out) = dp.run(&udp4(CLIENT.mac, CLIENT.v4, VIP4));
        if (action, out[..6].to_vec()) != (XDP_REDIRECT, vm.mac.to_vec()) {
            problems.push(format!(
                "traffic to the VIP: action {action}, to {:02x?}, expected {vm:?}'s MAC",
                &out[..6]
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert_cases_pass(&failures);
}

#[test]
fn a_split_brain_is_reported_once_per_rival() {
    let mut dp = Datapath::load();
    let vip = Vip {
        hold_down_ms: 1000,
        ..bound(VIP4_ID, &[VM1.port_id, VM2.port_id])
    };
    dp.put_vip(v4(VIP4), vip);
    dp.from(VM1, true);
    dp.run(&garp(VM1, VIP4));
    dp.events();
    // VM2 and VM1 alternate: one report of the deferred claim, however
    // many there are.
    for _ in 0..10 {
        dp.from(VM2, true);
        dp.run(&garp(VM2, VIP4));
        dp.from(VM1, true);
        dp.run(&garp(VM1, VIP4));
    }
    let events = dp.events();
    let kinds: Vec<(u32, u32)> = events.iter().map(|e| (e.kind, e.port_id)).collect();
    assert_eq!(
        kinds,
        vec![(EventKind::ClaimDeferred as u32, VM2.port_id)],
        "{events:?}"
    );
    assert_eq!(dp.vip_counters(VIP4_ID).claims_deferred, 10);
    let o = dp.owner(VIP4_ID).unwrap();
    assert_eq!(
        (o.port_id, o.generation, o.rival_port_id),
        (VM1.port_id, 1, VM2.port_id)
    );
    assert_eq!(o.rival_mac, VM2.mac);
}

#[test]
fn owner_record_holds_mac_time_and_generation() {
    let mut dp = Datapath::load();
    dp.from(VM1, true);
    assert_eq!(dp.run(&garp(VM1, VIP4)).0, XDP_PASS);
    let first = dp.owner(VIP4_ID).expect("owner learned");
    assert_eq!(
        (first.port_id, first.ifindex, first.mac, first.generation),
        (VM1.port_id, LO, VM1.mac, 1)
    );
    assert!(first.since_ns > 0 && first.last_claim_ns == first.since_ns);

    // keepalived repeats its GARPs: only last_claim moves.
    assert_eq!(dp.run(&garp(VM1, VIP4)).0, XDP_PASS);
    let again = dp.owner(VIP4_ID).unwrap();
    assert_eq!((again.generation, again.since_ns), (1, first.since_ns));
    assert!(again.last_claim_ns > first.last_claim_ns);

    // Failover, then back: the generation keeps counting.
    dp.from(VM2, true);
    assert_eq!(dp.run(&arp_reply(VM2, VIP4)).0, XDP_PASS);
    dp.from(VM1, true);
    assert_eq!(dp.run(&garp(VM1, VIP4)).0, XDP_PASS);
    let back = dp.owner(VIP4_ID).unwrap();
    assert_eq!((back.port_id, back.generation), (VM1.port_id, 3));
    assert!(back.since_ns > again.since_ns);

    // A vacated record (the agent unbound the owner) keeps its generation.
    let mut vacant = back;
    vacant.port_id = 0;
    vacant.ifindex = 0;
    vacant.mac = [0; 6];
    dp.put_owner(VIP4_ID, vacant);
    dp.from(VM2, true);
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_PASS);
    assert_eq!(dp.owner(VIP4_ID).unwrap().generation, 4);
}

#[test]
fn owner_changes_and_rejections_are_reported_and_counted() {
    let mut dp = Datapath::load();
    dp.from(VM1, true);
    dp.run(&garp(VM1, VIP4));
    dp.run(&garp(VM1, VIP4));
    dp.from(ROGUE, true);
    dp.run(&garp(ROGUE, VIP4));
    dp.run(&udp4(ROGUE.mac, VIP4, OTHER4));
    dp.from(VM2, true);
    dp.run(&unsolicited_na(VM2, VIP6));

    // Owner changes in havip_events, rejected claims in havip_rejects.
    let summary = |events: &[Event]| -> Vec<_> {
        events
            .iter()
            .map(|e| {
                let kind = EventKind::from_u32(e.kind).unwrap();
                let reason = (kind == EventKind::ClaimRejected)
                    .then(|| DropReason::from_u32(e.reason).unwrap());
                (kind, e.vip_id, e.port_id, reason, e.generation)
            })
            .collect()
    };
    let events = dp.events();
    assert_eq!(
        summary(&events),
        vec![
            (EventKind::OwnerChanged, VIP4_ID, VM1.port_id, None, 1),
            (EventKind::OwnerChanged, VIP6_ID, VM2.port_id, None, 1),
        ],
    );
    let rejects = dp.rejects();
    assert_eq!(
        summary(&rejects),
        vec![
            (
                EventKind::ClaimRejected,
                VIP4_ID,
                ROGUE.port_id,
                Some(DropReason::ClaimNotBound),
                0
            ),
            (
                EventKind::ClaimRejected,
                VIP4_ID,
                ROGUE.port_id,
                Some(DropReason::VipSourceNotBound),
                0
            ),
        ],
    );
    assert_eq!(events[0].vip, v4(VIP4));
    assert_eq!(events[0].mac, VM1.mac);
    assert_eq!(rejects[0].mac, ROGUE.mac);
    assert_eq!(events[1].vip, v6(VIP6));

    let c4 = dp.vip_counters(VIP4_ID);
    assert_eq!((c4.claims_accepted, c4.owner_changes), (2, 1));
    assert_eq!(c4.drops[DropReason::ClaimNotBound as usize], 1);
    assert_eq!(c4.drops[DropReason::VipSourceNotBound as usize], 1);
    let c6 = dp.vip_counters(VIP6_ID);
    assert_eq!((c6.claims_accepted, c6.owner_changes), (1, 1));
    assert_eq!(dp.stat(Stat::ClaimsAccepted), 3);
    assert_eq!(dp.stat(Stat::OwnerChanges), 2);
    assert_eq!(dp.drops(DropReason::ClaimNotBound), 1);
    assert_eq!(dp.drops(DropReason::VipSourceNotBound), 1);
}

/// The agent writes a port's entry before it attaches its programs, and
/// empties it after it detaches them: a slot with no port passes all.
#[test]
fn a_flood_of_rejected_claims_does_not_crowd_out_an_owner_change() {
    let mut dp = Datapath::load();
    // A rogue VM floods GARPs for the VIP: far more rejections than
    // havip_rejects holds, none read.
    dp.from(ROGUE, true);
    let rogue = garp(ROGUE, VIP4);
    let capacity = maps::REJECTS_BYTES as usize / size_of::<Event>();
    for _ in 0..capacity + 200 {
        assert_eq!(dp.run(&rogue).0, XDP_DROP);
    }
    assert!(dp.stat(Stat::RejectsLost) >= 200, "the rejections overflow");
    assert_eq!(
        dp.drops(DropReason::ClaimNotBound),
        capacity as u64 + 200,
        "every rogue claim is dropped and counted, reported or not"
    );
    // The master's failover claim is still reported.
    dp.from(VM2, true);
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_PASS);
    let events = dp.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        EventKind::from_u32(events[0].kind),
        Some(EventKind::OwnerChanged)
    );
    assert_eq!(
        (events[0].vip_id, events[0].port_id),
        (VIP4_ID, VM2.port_id)
    );
    assert_eq!(dp.stat(Stat::EventsLost), 0);
    assert!(dp.rejects().len() <= capacity);
}

#[test]
fn a_slot_with_no_port_passes_untouched() {
    let mut dp = Datapath::load();
    let frame = garp(ROGUE, VIP4);
    let (action, out) = dp.run(&frame);
    assert_eq!((action, out), (XDP_PASS, frame));
    assert_eq!(dp.stat(Stat::UnknownPort), 1);
    assert!(dp.owner(VIP4_ID).is_none());
}

/// Puts `vm`'s port at `slot`, on the interface `ifindex`, and points the
/// interface at it, as the agent does.
fn put_port(dp: &mut Datapath, slot: u32, vm: Vm, ifindex: u32) {
    dp.ports()
        .set(slot, port_entry(vm, ifindex, true), 0)
        .unwrap();
    point(dp, ifindex, slot);
}

/// `havip_ifport[ifindex] = slot` (`havip_ifport_hi` past 65535).
fn point(dp: &mut Datapath, ifindex: u32, slot: u32) {
    if ifindex < maps::IFINDEX_DIRECT {
        let mut a: Array<_, u32> =
            Array::try_from(dp.ebpf.map_mut(maps::IF_PORT).unwrap()).unwrap();
        a.set(ifindex, slot, 0).unwrap();
    } else {
        let mut h: HashMap<_, u32, u32> =
            HashMap::try_from(dp.ebpf.map_mut(maps::IF_PORT_HI).unwrap()).unwrap();
        h.insert(ifindex, slot, 0).unwrap();
    }
}

/// One program serves every port: a frame's port is the one the agent put
/// on the interface it came in on, below ifindex 65536 and beyond; an index
/// left pointing at a slot that now holds another interface's port finds
/// none. Runs in a network namespace of its own (the thread's), with two
/// veth interfaces, one at ifindex 70000.
#[test]
fn a_frames_port_is_the_one_on_the_interface_it_came_in_on() {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) on this thread only; nothing else runs on it.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["link", "add", "port-low", "type", "veth", "peer", "vm-low"]);
        ip(&[
            "link",
            "add",
            "port-high",
            "index",
            "70000",
            "type",
            "veth",
            "peer",
            "vm-high",
        ]);
        let index = |name: &str| {
            let c = std::ffi::CString::new(name).unwrap();
            // SAFETY: a valid NUL-terminated name.
            unsafe { libc::if_nametoindex(c.as_ptr()) }
        };
        let (low, high) = (index("port-low"), index("port-high"));
        assert!(low != 0 && high == 70000, "ifindexes {low}, {high}");

        let mut dp = Datapath::load();
        put_port(&mut dp, 5, VM1, high);
        put_port(&mut dp, 6, VM2, low);
        // Each claim is judged as its own port's: vm1's on the high
        // interface, vm2's on the low one.
        assert_eq!(dp.run_on(high, &garp(VM1, VIP4)).0, XDP_PASS);
        let owner = dp.owner(VIP4_ID).expect("vm1 owns the VIP");
        assert_eq!((owner.port_id, owner.ifindex), (VM1.port_id, high));
        assert_eq!(dp.run_on(low, &garp(VM2, VIP4)).0, XDP_PASS);
        let owner = dp.owner(VIP4_ID).expect("vm2 owns the VIP");
        assert_eq!((owner.port_id, owner.ifindex), (VM2.port_id, low));
        // vm2's MAC on vm1's interface is a spoof.
        assert_eq!(dp.run_on(high, &garp(VM2, VIP4)).0, XDP_DROP);
        assert_eq!(dp.drops(DropReason::MacSpoof), 1);
        // A stale index: the low interface pointed at vm1's slot, which
        // names the high one. No port: the frame passes, counted.
        point(&mut dp, low, 5);
        let unknown = dp.stat(Stat::UnknownPort);
        let frame = garp(ROGUE, VIP4);
        assert_eq!(dp.run_on(low, &frame), (XDP_PASS, frame));
        assert_eq!(dp.stat(Stat::UnknownPort), unknown + 1);
        assert_eq!(dp.owner(VIP4_ID).map(|o| o.port_id), Some(VM2.port_id));
    })
    .join()
    .expect("the test thread");
}

#[test]
fn unbinding_takes_effect_at_the_next_claim() {
    let mut dp = Datapath::load();
    dp.from(VM2, true);
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_PASS);
    // The agent unbinds vm2.
    dp.put_vip(v4(VIP4), bound(VIP4_ID, &[VM1.port_id]));
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_DROP);
    assert_eq!(dp.drops(DropReason::ClaimNotBound), 1);
}

#[test]
fn per_vip_counters_add_up_at_the_vips_slot() {
    let mut dp = Datapath::load();
    // The agent zeroes a slot before it gives it to a VIP; the datapath
    // adds to what is there.
    let zero = PerCpuValues::try_from(vec![VipCounters::default(); nr_cpus().unwrap()]).unwrap();
    let mut m: PerCpuArray<_, VipCounters> =
        PerCpuArray::try_from(dp.ebpf.map_mut(maps::VIP_STATS).unwrap()).unwrap();
    m.set(slot(VIP4_ID), zero, 0).unwrap();
    dp.from(ROGUE, true);
    dp.run(&garp(ROGUE, VIP4));
    dp.run(&garp(ROGUE, VIP4));
    assert_eq!(
        dp.vip_counters(VIP4_ID).drops[DropReason::ClaimNotBound as usize],
        2
    );
}

/// No input makes the program abort: every prefix of every valid frame, and
/// random bytes behind valid headers, end in PASS, DROP, or the fast path's
/// TX (an answer) or REDIRECT (delivery to the owner).
#[test]
fn no_input_aborts() {
    let mut dp = Datapath::load();
    let mut frames = vec![
        garp(VM1, VIP4),
        udp4(VM1.mac, VM1.v4, OTHER4),
        with_ipv4_options(udp4(VM1.mac, VM1.v4, OTHER4), &[1, 1, 1, 0]),
        unsolicited_na(ROGUE, VIP6),
        ns(VM1.mac, VM1.v6, OTHER6, Some(VM1.mac)),
        with_ext_headers(unsolicited_na(VM1, VIP6), &[hop_by_hop(), dest_opts()]),
        tagged(garp(VM1, VIP4), 2),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x4a11);
    for _ in 0..400 {
        let base = frames[rng.random_range(0..7)].clone();
        let mut f = base;
        let flips = rng.random_range(1..6);
        for _ in 0..flips {
            let i = rng.random_range(12..f.len());
            f[i] = rng.random();
        }
        frames.push(f);
    }
    for _ in 0..200 {
        let len = rng.random_range(14..200);
        frames.push((0..len).map(|_| rng.random()).collect());
    }
    for vm in [VM1, ROGUE] {
        for security in [true, false] {
            dp.from(vm, security);
            for frame in &frames {
                // Test runs need at least an Ethernet header's worth.
                for len in [frame.len()].into_iter().chain(14..frame.len().min(100)) {
                    let (action, _) = dp.run(&frame[..len]);
                    assert!(
                        [XDP_PASS, XDP_DROP, XDP_TX, XDP_REDIRECT].contains(&action),
                        "action {action} (XDP_ABORTED is {XDP_ABORTED}) for {:02x?}",
                        &frame[..len]
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The VIP fast path: answers and delivery to the owner.
// ---------------------------------------------------------------------------

fn with_dst_mac(mut frame: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&mac);
    frame
}

/// The ARP reply the datapath must send back for `requester` asking for
/// `vip` owned by `owner`.
fn expected_arp_reply(requester: Vm, owner: Vm, vip: Ipv4Addr) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &owner.mac,
        &vip.octets(),
        &requester.mac,
        &requester.v4.octets(),
    )
    .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(owner.mac, requester.mac)
        .arp(packet)
        .write(&mut frame)
        .unwrap();
    frame
}

/// The Neighbor Advertisement the datapath must send back for `requester`
/// (from `source`) asking for `vip` owned by `owner`: Solicited and
/// Override, the owner's MAC as target link-layer address, a correct
/// checksum (etherparse computes it).
fn expected_na(requester: Vm, source: Ipv6Addr, owner: Vm, vip: Ipv6Addr) -> Vec<u8> {
    let ends = frames::Ends6 {
        eth_src: owner.mac,
        eth_dst: requester.mac,
        src: vip,
        dst: source,
    };
    frames::neighbor_advertisement(ends, vip, true, Some(owner.mac))
}

struct FastCase {
    name: &'static str,
    /// The VIP's owner before the frame, if any.
    owner: Option<Vm>,
    /// Whether the owner's port is a redirect target on this host.
    in_devmap: bool,
    from: Vm,
    frame: Vec<u8>,
    action: u32,
    /// The frame that must come out (the input when `None`).
    out: Option<Vec<u8>>,
    stat: Option<Stat>,
}

fn fast(name: &'static str, owner: Option<Vm>, from: Vm, frame: Vec<u8>) -> FastCase {
    FastCase {
        name,
        owner,
        in_devmap: true,
        from,
        frame,
        action: XDP_PASS,
        out: None,
        stat: None,
    }
}

impl FastCase {
    fn answers(mut self, action: u32, out: Vec<u8>, stat: Stat) -> Self {
        self.action = action;
        self.out = Some(out);
        self.stat = Some(stat);
        self
    }
    fn port_not_in_devmap(mut self) -> Self {
        self.in_devmap = false;
        self
    }
}

fn fast_cases() -> Vec<FastCase> {
    let arp_request = |vm: Vm, ip: Ipv4Addr| arp(vm.mac, ArpOperation::REQUEST, vm.mac, vm.v4, ip);
    let ns_for_vip = ns(CLIENT.mac, CLIENT.v6, VIP6, Some(CLIENT.mac));
    vec![
        fast(
            "ARP request for the VIP is answered with the owner's MAC",
            Some(VM1),
            CLIENT,
            arp_request(CLIENT, VIP4),
        )
        .answers(
            XDP_REDIRECT,
            expected_arp_reply(CLIENT, VM1, VIP4),
            Stat::ArpAnswered,
        ),
        fast(
            "an answer goes back with XDP_TX when the port is not in the devmap",
            Some(VM1),
            CLIENT,
            arp_request(CLIENT, VIP4),
        )
        .port_not_in_devmap()
        .answers(
            XDP_TX,
            expected_arp_reply(CLIENT, VM1, VIP4),
            Stat::ArpAnswered,
        ),
        fast(
            "VLAN-tagged ARP request is answered inside its tag",
            Some(VM2),
            CLIENT,
            tagged(arp_request(CLIENT, VIP4), 1),
        )
        .answers(
            XDP_REDIRECT,
            tagged(expected_arp_reply(CLIENT, VM2, VIP4), 1),
            Stat::ArpAnswered,
        ),
        fast(
            "ARP request for the VIP with no owner passes unchanged",
            None,
            CLIENT,
            arp_request(CLIENT, VIP4),
        ),
        fast(
            "the owner's own ARP request is not answered",
            Some(VM1),
            VM1,
            arp_request(VM1, VIP4),
        ),
        fast(
            "the backup's ARP request is answered",
            Some(VM1),
            VM2,
            arp_request(VM2, VIP4),
        )
        .answers(
            XDP_REDIRECT,
            expected_arp_reply(VM2, VM1, VIP4),
            Stat::ArpAnswered,
        ),
        // (From a bound port: another port's probe for a VIP is a claim
        // it may not make, see the policy table.)
        fast(
            "ARP probe (sender 0.0.0.0) for the VIP is not answered",
            Some(VM1),
            VM2,
            arp(
                VM2.mac,
                ArpOperation::REQUEST,
                VM2.mac,
                Ipv4Addr::UNSPECIFIED,
                VIP4,
            ),
        ),
        fast(
            "a claim passes through, not answered",
            Some(VM1),
            VM2,
            garp(VM2, VIP4),
        ),
        fast(
            "ARP request for another address passes",
            Some(VM1),
            CLIENT,
            arp_request(CLIENT, VM2.v4),
        ),
        fast(
            "NS for the VIP is answered with an NA",
            Some(VM1),
            CLIENT,
            ns_for_vip.clone(),
        )
        .answers(
            XDP_REDIRECT,
            expected_na(CLIENT, CLIENT.v6, VM1, VIP6),
            Stat::NdAnswered,
        ),
        fast(
            "NS without a link-layer option grows into the NA",
            Some(VM2),
            CLIENT,
            ns(CLIENT.mac, CLIENT.link_local, VIP6, None),
        )
        .answers(
            XDP_REDIRECT,
            expected_na(CLIENT, CLIENT.link_local, VM2, VIP6),
            Stat::NdAnswered,
        ),
        fast(
            "NS behind an extension header is answered without it",
            Some(VM1),
            CLIENT,
            with_ext_headers(ns_for_vip.clone(), &[hop_by_hop()]),
        )
        .answers(
            XDP_REDIRECT,
            expected_na(CLIENT, CLIENT.v6, VM1, VIP6),
            Stat::NdAnswered,
        ),
        fast(
            "NS for the VIP with no owner passes unchanged",
            None,
            CLIENT,
            ns_for_vip.clone(),
        ),
        fast(
            "DAD NS for the VIP is not answered",
            Some(VM1),
            VM2,
            ns(VM2.mac, Ipv6Addr::UNSPECIFIED, VIP6, None),
        ),
        fast(
            "the owner's own NS is not answered",
            Some(VM1),
            VM1,
            ns(VM1.mac, VM1.v6, VIP6, Some(VM1.mac)),
        ),
        fast(
            "IPv4 to the VIP is redirected to the owner",
            Some(VM1),
            CLIENT,
            udp4(CLIENT.mac, CLIENT.v4, VIP4),
        )
        .answers(
            XDP_REDIRECT,
            with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM1.mac),
            Stat::DeliveredToOwner,
        ),
        fast(
            "IPv6 to the VIP is redirected to the owner",
            Some(VM2),
            CLIENT,
            udp6(CLIENT.mac, CLIENT.v6, VIP6),
        )
        .answers(
            XDP_REDIRECT,
            with_dst_mac(udp6(CLIENT.mac, CLIENT.v6, VIP6), VM2.mac),
            Stat::DeliveredToOwner,
        ),
        fast(
            "a stale destination MAC is replaced by the owner's",
            Some(VM2),
            CLIENT,
            with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM1.mac),
        )
        .answers(
            XDP_REDIRECT,
            with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM2.mac),
            Stat::DeliveredToOwner,
        ),
        fast(
            "owner not on this host: the frame goes on with the owner's MAC",
            Some(VM1),
            CLIENT,
            udp4(CLIENT.mac, CLIENT.v4, VIP4),
        )
        .port_not_in_devmap()
        .answers(
            XDP_PASS,
            with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM1.mac),
            Stat::OwnerMacRewritten,
        ),
        fast(
            "traffic to the VIP with no owner passes unchanged",
            None,
            CLIENT,
            udp4(CLIENT.mac, CLIENT.v4, VIP4),
        ),
        fast(
            "the owner's traffic to its own VIP passes unchanged",
            Some(VM1),
            VM1,
            udp4(VM1.mac, VM1.v4, VIP4),
        ),
        fast(
            "traffic to other addresses passes unchanged",
            Some(VM1),
            CLIENT,
            udp4(CLIENT.mac, CLIENT.v4, VM2.v4),
        ),
    ]
}

#[test]
fn fast_path_table() {
    let mut failures = Vec::new();
    let mut dp = Datapath::load();
    for case in fast_cases() {
        dp.reset();
        if let Some(owner) = case.owner {
            dp.set_owner(VIP4_ID, owner);
            dp.set_owner(VIP6_ID, owner);
            if case.in_devmap {
                dp.redirect().insert(LO, LO, None, 0).unwrap();
            }
        }
        let before = case.stat.map(|s| dp.stat(s)).unwrap_or(0);
        dp.from(case.from, true);
        let (action, out) = dp.run(&case.frame);

        let mut problems = Vec::new();
        if action != case.action {
            problems.push(format!("action {action}, expected {}", case.action));
        }
        let expected = case.out.as_ref().unwrap_or(&case.frame);
        if &out != expected {
            problems.push(format!(
                "output\n      {out:02x?}\n    expected\n      {expected:02x?}"
            ));
        }
        if let Some(stat) = case.stat {
            if dp.stat(stat) != before + 1 {
                problems.push(format!("{} did not count it", stat.name()));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert_cases_pass(&failures);
}

/// The switch happens in the datapath: the frame right after an accepted
/// claim already goes to the new owner.
#[test]
fn the_next_frame_after_a_claim_goes_to_the_new_owner() {
    let mut dp = Datapath::load();
    dp.redirect().insert(LO, LO, None, 0).unwrap();
    let to_vip = udp4(CLIENT.mac, CLIENT.v4, VIP4);

    dp.from(VM1, true);
    assert_eq!(dp.run(&garp(VM1, VIP4)).0, XDP_PASS);
    dp.from(CLIENT, true);
    assert_eq!(
        dp.run(&to_vip),
        (XDP_REDIRECT, with_dst_mac(to_vip.clone(), VM1.mac))
    );

    dp.from(VM2, true);
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_PASS);
    dp.from(CLIENT, true);
    assert_eq!(
        dp.run(&to_vip),
        (XDP_REDIRECT, with_dst_mac(to_vip.clone(), VM2.mac))
    );
    let (action, reply) = dp.run(&arp(
        CLIENT.mac,
        ArpOperation::REQUEST,
        CLIENT.mac,
        CLIENT.v4,
        VIP4,
    ));
    assert_eq!(
        (action, reply),
        (XDP_REDIRECT, expected_arp_reply(CLIENT, VM2, VIP4))
    );

    // The agent unbinds the owner and vacates it: no owner until the next
    // claim, so frames for the VIP go unchanged to the bridge.
    let mut vacant = dp.owner(VIP4_ID).unwrap();
    vacant.port_id = 0;
    vacant.ifindex = 0;
    dp.put_owner(VIP4_ID, vacant);
    assert_eq!(dp.run(&to_vip), (XDP_PASS, to_vip.clone()));
}

struct EgressCase {
    name: &'static str,
    owner: Option<Vm>,
    /// The port the frame is on its way to.
    to: Vm,
    frame: Vec<u8>,
    action: i32,
    out: Option<Vec<u8>>,
}

#[test]
fn egress_table() {
    let to_vip = |mac: [u8; 6]| with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), mac);
    let to_vip6 = |mac: [u8; 6]| with_dst_mac(udp6(CLIENT.mac, CLIENT.v6, VIP6), mac);
    let unknown = [0x02, 0x99, 0, 0, 0, 0x99];
    let case = |name, owner, to, frame, action, out| EgressCase {
        name,
        owner,
        to,
        frame,
        action,
        out,
    };
    let cases = vec![
        case(
            "stale MAC: a frame sent to the old master goes to the owner",
            Some(VM2),
            VM1,
            to_vip(VM1.mac),
            TC_ACT_REDIRECT,
            Some(to_vip(VM2.mac)),
        ),
        case(
            "stale MAC, IPv6",
            Some(VM2),
            VM1,
            to_vip6(VM1.mac),
            TC_ACT_REDIRECT,
            Some(to_vip6(VM2.mac)),
        ),
        case(
            "a flooded copy on a non-owner port is dropped",
            Some(VM2),
            VM1,
            to_vip(unknown),
            TC_ACT_SHOT,
            None,
        ),
        case(
            "the owner's port gets the frame",
            Some(VM1),
            VM1,
            to_vip(VM1.mac),
            TC_ACT_OK,
            None,
        ),
        case(
            "the owner's port gets a flooded frame with its own MAC",
            Some(VM1),
            VM1,
            to_vip(unknown),
            TC_ACT_OK,
            Some(to_vip(VM1.mac)),
        ),
        case(
            "no owner: a bound port receives it",
            None,
            VM2,
            to_vip(VM2.mac),
            TC_ACT_OK,
            None,
        ),
        case(
            "a port not bound to the VIP never receives its traffic",
            None,
            ROGUE,
            to_vip(ROGUE.mac),
            TC_ACT_SHOT,
            None,
        ),
        case(
            "a port not bound to the VIP, with an owner",
            Some(VM1),
            ROGUE,
            to_vip(unknown),
            TC_ACT_SHOT,
            None,
        ),
        case(
            "broadcast passes",
            Some(VM1),
            ROGUE,
            to_vip(BROADCAST),
            TC_ACT_OK,
            None,
        ),
        case(
            "traffic to other addresses passes",
            Some(VM1),
            VM2,
            with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VM2.v4), VM2.mac),
            TC_ACT_OK,
            None,
        ),
        case(
            "ARP passes",
            Some(VM1),
            ROGUE,
            arp(
                CLIENT.mac,
                ArpOperation::REQUEST,
                CLIENT.mac,
                CLIENT.v4,
                VIP4,
            ),
            TC_ACT_OK,
            None,
        ),
        case(
            // (Cut behind a VLAN tag: the kernel's test run itself refuses an
            // untagged IPv4 frame shorter than its IPv4 header.)
            "a frame cut short behind its VLAN tag passes",
            Some(VM1),
            ROGUE,
            tagged(to_vip(ROGUE.mac), 1)[..24].to_vec(),
            TC_ACT_OK,
            None,
        ),
    ];
    let mut failures = Vec::new();
    let mut dp = Datapath::load();
    for c in cases {
        dp.reset();
        // The owner on an interface of its own: the test run sends every
        // frame out of `lo`, where egress never sends one back to.
        if let Some(owner) = c.owner {
            dp.set_owner_on(VIP4_ID, owner, OWNER_IFINDEX);
            dp.set_owner_on(VIP6_ID, owner, OWNER_IFINDEX);
        }
        dp.from(c.to, true);
        let drops = dp.drops(DropReason::NotOwner);
        let (action, out) = dp.run_egress(&c.frame);
        let mut problems = Vec::new();
        if action != c.action {
            problems.push(format!("action {action}, expected {}", c.action));
        }
        let expected = c.out.as_ref().unwrap_or(&c.frame);
        if &out != expected {
            problems.push(format!("output {out:02x?}, expected {expected:02x?}"));
        }
        if (c.action == TC_ACT_SHOT) != (dp.drops(DropReason::NotOwner) == drops + 1) {
            problems.push("not_owner drop counter".to_string());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.name, problems.join("; ")));
        }
    }
    assert_cases_pass(&failures);
}

/// Where the egress table's owners are (an ifindex no device has: a
/// redirect there is only recorded by the test run).
const OWNER_IFINDEX: u32 = 4242;

#[test]
fn egress_never_sends_a_frame_back_out_of_the_port_it_leaves_by() {
    let mut dp = Datapath::load();
    // An owner record naming VM2's port with the ifindex of the port the
    // frame is on its way out of (`lo` in the test run): what a record of
    // two owners mixed would say. Redirecting would loop it.
    dp.set_owner_on(VIP4_ID, VM2, LO);
    dp.from(VM1, true);
    let frame = with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM1.mac);
    let before = dp.drops(DropReason::NotOwner);
    assert_eq!(dp.run_egress(&frame).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::NotOwner), before + 1);
}

#[test]
fn a_record_whose_seal_does_not_match_is_not_acted_upon() {
    let mut dp = Datapath::load();
    dp.set_owner(VIP4_ID, VM2);
    let whole = dp.owner(VIP4_ID).unwrap();
    assert!(
        whole.is_whole(),
        "the agent's and the datapath's records are sealed"
    );
    // Fields of two owners: VM1's port id beside VM2's MAC, as a reader
    // sees a record while a writer writes it (or two writers mixed it).
    let mixed = Owner {
        port_id: VM1.port_id,
        ..whole
    };
    dp.owners().set(slot(VIP4_ID), mixed, BPF_F_LOCK).unwrap();
    dp.from(CLIENT, true);
    // No owner as far as the fast path can tell: the frame goes on to the
    // bridge unchanged, and ARP for the VIP is not answered.
    let to_vip = with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), VM1.mac);
    assert_eq!(dp.run(&to_vip), (XDP_PASS, to_vip.clone()));
    let request = arp(
        CLIENT.mac,
        ArpOperation::REQUEST,
        CLIENT.mac,
        CLIENT.v4,
        VIP4,
    );
    assert_eq!(dp.run(&request), (XDP_PASS, request.clone()));
    // The owner's next GARP writes a whole record again.
    dp.from(VM2, true);
    assert_eq!(dp.run(&garp(VM2, VIP4)).0, XDP_PASS);
    let healed = dp.owner(VIP4_ID).unwrap();
    assert!(healed.is_whole());
    assert_eq!(healed.port_id, VM2.port_id);
    dp.from(CLIENT, true);
    let (action, reply) = dp.run(&request);
    assert_ne!(action, XDP_PASS, "answered again");
    assert_eq!(reply, expected_arp_reply(CLIENT, VM2, VIP4));
}

#[test]
fn claims_on_two_cpus_never_leave_a_mixed_record() {
    // Two claims race for the VIP, one thread each (on both CPUs), until
    // the owner has moved more than 100 times (at most 20 seconds, on a
    // loaded machine); a reader beside them reads every record with
    // BPF_F_LOCK, as the agent does, and checks each is one claim's whole
    // record.
    let mut dp = Datapath::load();
    // One port (slot 0, security off) sends both: the same port id with
    // two MACs, so every claim changes the owner.
    dp.from(VM1, false);
    let dp = &dp;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mixed, seen) = std::thread::scope(|scope| {
        for mac in [VM1.mac, VM2.mac] {
            let stop = &stop;
            let frame = garp(Vm { mac, ..VM1 }, VIP4);
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    dp.run_shared(&frame, 100);
                }
            });
        }
        let reader = scope.spawn(|| {
            let (mut mixed, mut seen, mut moves) = (0u64, 0u64, 0u64);
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < until && (moves <= 100 || seen <= 100) {
                if let Some(o) = dp.owner_shared(VIP4_ID).filter(|o| !o.is_vacant()) {
                    seen += 1;
                    mixed += u64::from(!o.is_whole());
                    moves = o.generation;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (mixed, seen)
        });
        reader.join().unwrap()
    });
    assert!(seen > 100, "the reader saw {seen} records");
    assert_eq!(mixed, 0, "{mixed} of {seen} records were mixed");
    let generation = dp.owner_shared(VIP4_ID).unwrap().generation;
    assert!(generation > 100, "the owner moved {generation} times");
}

/// A port entry holds its first two addresses of each family; a port with
/// more is checked against `havip_addrs` for the rest, and only then.
#[test]
fn a_port_with_more_addresses_than_it_holds_finds_the_rest_in_the_address_map() {
    let mut dp = Datapath::load();
    let (second, third, foreign) = (
        Ipv4Addr::new(10, 0, 6, 98),
        Ipv4Addr::new(10, 0, 6, 99),
        Ipv4Addr::new(10, 0, 6, 97),
    );
    dp.from(VM1, true);
    let mut port = dp.ports().get(&0, 0).unwrap();
    port.add_ipv4(second.octets());
    port.add_ipv4(third.octets());
    assert_eq!(port.ipv4_count, 3);
    dp.ports().set(0, port, 0).unwrap();
    dp.addrs().insert(v4(third), VM1.port_id, 0).unwrap();

    for src in [VM1.v4, second, third] {
        assert_eq!(
            dp.run(&udp4(VM1.mac, src, VM2.v4)).0,
            XDP_PASS,
            "from {src}, one of the port's addresses"
        );
    }
    assert_eq!(dp.run(&udp4(VM1.mac, foreign, VM2.v4)).0, XDP_DROP);
    assert_eq!(dp.drops(DropReason::IpSpoof), 1);

    // Another port's address in the map is not this port's.
    dp.addrs().insert(v4(foreign), VM2.port_id, 0).unwrap();
    assert_eq!(dp.run(&udp4(VM1.mac, foreign, VM2.v4)).0, XDP_DROP);
    assert_eq!(dp.drops(DropReason::IpSpoof), 2);
}

// ---------------------------------------------------------------------------
// Checksums in native mode: a redirected frame leaves its socket buffer, and
// the checksum offload with it, behind; the datapath completes what the VM
// left to the offload.
// ---------------------------------------------------------------------------

/// The frame as a VM with checksum offload sends it: the checksum field
/// holds the pseudo-header's sum, for the NIC to finish.
fn offloaded(frame: Vec<u8>) -> Vec<u8> {
    frames::left_to_the_offload(frame).1
}

/// The frame with its checksum field set to `value`.
fn with_l4_checksum(mut frame: Vec<u8>, value: u16) -> Vec<u8> {
    let check = frames::segment(&frame).check;
    frame[check..check + 2].copy_from_slice(&value.to_be_bytes());
    frame
}

/// The IPv4 frame marked as the first fragment of a larger datagram (its
/// header checksum updated).
fn first_fragment(mut frame: Vec<u8>) -> Vec<u8> {
    let ip = ETH_LEN;
    frame[ip + 6] |= 0x20;
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let check = !ones_sum(&frame[ip..ip + 20], 0);
    frame[ip + 10..ip + 12].copy_from_slice(&check.to_be_bytes());
    frame
}

fn tcp4(eth_src: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(eth_src, BROADCAST)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(40000, 80, 1, 64000);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn tcp6(eth_src: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(eth_src, BROADCAST)
        .ipv6(src.octets(), dst.octets(), 64)
        .tcp(40000, 80, 1, 64000);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

/// `n` bytes of payload that are not all alike.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// (name, frame in, action, frame out, the stat that counts it).
type ChecksumCase = (&'static str, Vec<u8>, u32, Vec<u8>, Stat);

#[test]
fn native_redirects_complete_the_checksums_the_vm_left_to_the_offload() {
    let udp4_ok = udp4(CLIENT.mac, CLIENT.v4, VIP4);
    let tcp4_ok = tcp4(CLIENT.mac, CLIENT.v4, VIP4, &payload(1401));
    let tcp6_ok = tcp6(CLIENT.mac, CLIENT.v6, VIP6, &payload(1000));
    let udp6_odd = udp6(CLIENT.mac, CLIENT.v6, VIP6);
    // 64 bytes of TCP, the longest summed in place, and 65, the shortest
    // summed through the copy.
    let tcp4_64 = tcp4(CLIENT.mac, CLIENT.v4, VIP4, &payload(44));
    let tcp4_65 = tcp4(CLIENT.mac, CLIENT.v4, VIP4, &payload(45));
    let udp6_ext = with_ext_headers(udp6(CLIENT.mac, CLIENT.v6, VIP6), &[dest_opts()]);
    let to_owner = |frame: &Vec<u8>| with_dst_mac(frame.clone(), VM1.mac);
    let wrong = with_l4_checksum(udp4_ok.clone(), 0x1234);
    let cases: Vec<ChecksumCase> = vec![
        (
            "UDP/IPv4 left to the offload is completed",
            offloaded(udp4_ok.clone()),
            XDP_REDIRECT,
            to_owner(&udp4_ok),
            Stat::ChecksumsCompleted,
        ),
        (
            "TCP/IPv4 of 1401 bytes (pieces of every size, an odd byte) is completed",
            offloaded(tcp4_ok.clone()),
            XDP_REDIRECT,
            to_owner(&tcp4_ok),
            Stat::ChecksumsCompleted,
        ),
        (
            "TCP/IPv6 left to the offload is completed",
            offloaded(tcp6_ok.clone()),
            XDP_REDIRECT,
            to_owner(&tcp6_ok),
            Stat::ChecksumsCompleted,
        ),
        (
            "UDP/IPv6 with an odd length is completed",
            offloaded(udp6_odd.clone()),
            XDP_REDIRECT,
            to_owner(&udp6_odd),
            Stat::ChecksumsCompleted,
        ),
        (
            "TCP/IPv4 of 64 bytes (summed in place) is completed",
            offloaded(tcp4_64.clone()),
            XDP_REDIRECT,
            to_owner(&tcp4_64),
            Stat::ChecksumsCompleted,
        ),
        (
            "TCP/IPv4 of 65 bytes (summed through the copy) is completed",
            offloaded(tcp4_65.clone()),
            XDP_REDIRECT,
            to_owner(&tcp4_65),
            Stat::ChecksumsCompleted,
        ),
        (
            "a complete checksum is left as it is",
            tcp4_ok.clone(),
            XDP_REDIRECT,
            to_owner(&tcp4_ok),
            Stat::DeliveredToOwner,
        ),
        (
            "a wrong checksum is left for the owner to drop",
            wrong.clone(),
            XDP_REDIRECT,
            to_owner(&wrong),
            Stat::DeliveredToOwner,
        ),
        (
            "UDP/IPv4 without a checksum stays without",
            with_l4_checksum(udp4_ok.clone(), 0),
            XDP_REDIRECT,
            to_owner(&with_l4_checksum(udp4_ok.clone(), 0)),
            Stat::DeliveredToOwner,
        ),
        (
            "an IPv4 fragment is redirected as it is",
            first_fragment(offloaded(udp4_ok.clone())),
            XDP_REDIRECT,
            to_owner(&first_fragment(offloaded(udp4_ok.clone()))),
            Stat::DeliveredToOwner,
        ),
        (
            "IPv6 with an extension header before UDP goes by the bridge",
            udp6_ext.clone(),
            XDP_PASS,
            to_owner(&udp6_ext),
            Stat::OffloadViaBridge,
        ),
    ];

    let mut failures = Vec::new();
    let mut dp = Datapath::load_in_mode(true);
    for (name, frame, expected_action, expected, stat) in cases {
        dp.reset();
        dp.set_owner(VIP4_ID, VM1);
        dp.set_owner(VIP6_ID, VM1);
        dp.redirect().insert(LO, LO, None, 0).unwrap();
        dp.from(CLIENT, true);
        let completed = dp.stat(Stat::ChecksumsCompleted);
        let counted = dp.stat(stat);
        let (action, out) = dp.run(&frame);

        let mut problems = Vec::new();
        if action != expected_action {
            problems.push(format!("action {action}, expected {expected_action}"));
        }
        if out != expected {
            problems.push(format!(
                "output\n      {out:02x?}\n    expected\n      {expected:02x?}"
            ));
        }
        if dp.stat(stat) != counted + 1 {
            problems.push(format!("{} did not count it", stat.name()));
        }
        if stat != Stat::ChecksumsCompleted && dp.stat(Stat::ChecksumsCompleted) != completed {
            problems.push("counted as completed".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n  {}",
        failures.join("\n  ")
    );

    // A segment that says it is longer than the frame is dropped, counted.
    let mut short = offloaded(udp4_ok.clone());
    short.truncate(short.len() - 2);
    let truncated = dp.drops(DropReason::Truncated);
    assert_eq!(dp.run(&short).0, XDP_DROP);
    assert_eq!(dp.drops(DropReason::Truncated), truncated + 1);
}

/// In generic mode the redirect keeps the socket buffer and its offload:
/// the checksum field is left for the owner's side to finish.
#[test]
fn generic_redirects_leave_the_offload_to_the_socket_buffer() {
    let mut dp = Datapath::load();
    dp.set_owner(VIP4_ID, VM1);
    dp.redirect().insert(LO, LO, None, 0).unwrap();
    dp.from(CLIENT, true);
    let frame = offloaded(tcp4(CLIENT.mac, CLIENT.v4, VIP4, &payload(200)));
    let (action, out) = dp.run(&frame);
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(out, with_dst_mac(frame, VM1.mac));
    assert_eq!(dp.stat(Stat::ChecksumsCompleted), 0);
}

// ---------------------------------------------------------------------------
// VRRP among the bound ports, virtual MACs, address probes.
// ---------------------------------------------------------------------------

use havip_tests::vrrp::{self, vmac4, vmac6, Advert, GROUP4 as VRRP_GROUP4, GROUP6 as VRRP_GROUP6};

/// VIP4's advert as keepalived sends it, at `priority`.
fn vrrp_advert4(eth_src: [u8; 6], src: Ipv4Addr, to: (Ipv4Addr, [u8; 6]), priority: u8) -> Vec<u8> {
    let a = Advert {
        vrid: VIP4_VRID,
        priority,
    };
    vrrp::advert_v2((eth_src, src), to, a, VIP4, "havip")
}

/// A VRRPv3 advert for VIP6 from a link-local.
fn vrrp_advert6(eth_src: [u8; 6], src: Ipv6Addr, to: (Ipv6Addr, [u8; 6])) -> Vec<u8> {
    let a = Advert {
        vrid: 7,
        priority: 100,
    };
    vrrp::advert_v3((eth_src, src), to, a, VIP6)
}

/// An ARP probe (RFC 5227): sender 0.0.0.0, target `target`.
fn arp_probe(vm: Vm, target: Ipv4Addr) -> Vec<u8> {
    arp(
        vm.mac,
        ArpOperation::REQUEST,
        vm.mac,
        Ipv4Addr::UNSPECIFIED,
        target,
    )
}

/// Duplicate Address Detection (RFC 4862): an NS for `target` from ::,
/// with no source link-layer address option.
fn dad(vm: Vm, target: Ipv6Addr) -> Vec<u8> {
    ns(vm.mac, Ipv6Addr::UNSPECIFIED, target, None)
}

fn vrrp_and_probe_cases() -> Vec<Case> {
    use DropReason::*;
    use Expect::*;
    let advert = |vm: Vm| vrrp_advert4(vm.mac, vm.v4, VRRP_GROUP4, 100);
    let from_vmac = |vm: Vm, mac: [u8; 6]| udp4(mac, vm.v4, CLIENT.v4);
    let vmac_garp = || {
        arp(
            vmac4(VIP4_VRID),
            ArpOperation::REQUEST,
            vmac4(VIP4_VRID),
            VIP4,
            VIP4,
        )
    };
    vec![
        // VRRP: the bound ports take part, no other.
        case(
            "VRRP advert to 224.0.0.18 from a bound port passes",
            VM1,
            advert(VM1),
        ),
        case(
            "unicast VRRP to the peer from a bound port passes",
            VM1,
            vrrp_advert4(VM1.mac, VM1.v4, (VM2.v4, VM2.mac), 100),
        ),
        case(
            "VRRP from a port bound to no VIP is dropped",
            ROGUE,
            vrrp_advert4(ROGUE.mac, ROGUE.v4, VRRP_GROUP4, 255),
        )
        .drops(VrrpNotBound),
        case(
            "VRRP from an unbound port without port security is dropped too",
            ROGUE,
            vrrp_advert4(ROGUE.mac, ROGUE.v4, VRRP_GROUP4, 255),
        )
        .without_port_security()
        .drops(VrrpNotBound),
        case(
            "VRRPv3 to ff02::12 from a bound port passes",
            VM2,
            vrrp_advert6(VM2.mac, VM2.link_local, VRRP_GROUP6),
        ),
        case(
            "VRRPv3 from an unbound port is dropped",
            ROGUE,
            vrrp_advert6(ROGUE.mac, ROGUE.link_local, VRRP_GROUP6),
        )
        .drops(VrrpNotBound),
        // Virtual MACs.
        case(
            "a bound port may send from its VIP's VRID's virtual MAC",
            VM1,
            from_vmac(VM1, vmac4(VIP4_VRID)),
        ),
        case(
            "VRRP from the virtual MAC (keepalived's use_vmac) passes",
            VM2,
            vrrp_advert4(vmac4(VIP4_VRID), VM2.v4, VRRP_GROUP4, 100),
        ),
        case(
            "a GARP from the virtual MAC makes the bound port the owner",
            VM1,
            vmac_garp(),
        )
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "failover with the same virtual MAC moves the owner by port",
            VM2,
            vmac_garp(),
        )
        .after(VM1, vmac_garp())
        .owner(VIP4_ID, OwnedBy(VM2, 2)),
        case(
            "another VRID's virtual MAC is dropped",
            VM1,
            from_vmac(VM1, vmac4(7)),
        )
        .drops(VirtualMacNotAllowed),
        case(
            "an IPv6 virtual MAC of any VRID passes when the IPv6 VIP has none",
            VM1,
            udp6(vmac6(9), VM1.v6, CLIENT.v6),
        ),
        case(
            "an IPv6 virtual MAC from a port bound to no VIP is dropped",
            ROGUE,
            udp6(vmac6(9), ROGUE.v6, CLIENT.v6),
        )
        .drops(VirtualMacNotAllowed),
        case(
            "a virtual MAC from a port bound to no VIP is dropped",
            ROGUE,
            from_vmac(ROGUE, vmac4(VIP4_VRID)),
        )
        .drops(VirtualMacNotAllowed),
        case(
            "an unsolicited NA with a virtual MAC makes the owner",
            VM1,
            na(vmac6(5), VM1.link_local, VIP6, false, Some(vmac6(5))),
        )
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "an NA naming another VRID's IPv4 virtual MAC is nd_spoof",
            VM1,
            na(VM1.mac, VM1.link_local, VIP6, false, Some(vmac4(7))),
        )
        .drops(NdSpoof),
        case(
            "an ARP whose sender MAC is another VRID's virtual MAC is arp_spoof",
            VM1,
            arp(VM1.mac, ArpOperation::REQUEST, vmac4(7), VIP4, VIP4),
        )
        .drops(ArpSpoof),
        // Address probes are claims to be.
        case(
            "an ARP probe for the VIP from a bound port passes, not learned",
            VM2,
            arp_probe(VM2, VIP4),
        ),
        case(
            "an ARP probe for the VIP from an unbound port is dropped",
            ROGUE,
            arp_probe(ROGUE, VIP4),
        )
        .drops(ClaimNotBound),
        case(
            "an ARP probe for the VIP from an unbound port, no port security",
            ROGUE,
            arp_probe(ROGUE, VIP4),
        )
        .without_port_security()
        .drops(ClaimNotBound),
        case(
            "an ARP probe for the VIP is never answered, even with an owner",
            VM2,
            arp_probe(VM2, VIP4),
        )
        .after(VM1, garp(VM1, VIP4))
        .owner(VIP4_ID, OwnedBy(VM1, 1)),
        case(
            "an ARP probe for another address passes from any port",
            ROGUE,
            arp_probe(ROGUE, OTHER4),
        ),
        case(
            "DAD for the IPv6 VIP from an unbound port is dropped",
            ROGUE,
            dad(ROGUE, VIP6),
        )
        .drops(ClaimNotBound)
        .owner(VIP6_ID, NoOwner),
        case(
            "DAD for the IPv6 VIP from a bound port passes, never answered",
            VM2,
            dad(VM2, VIP6),
        )
        .after(VM1, unsolicited_na(VM1, VIP6))
        .owner(VIP6_ID, OwnedBy(VM1, 1)),
        case(
            "DAD for another address passes from any port",
            ROGUE,
            dad(ROGUE, OTHER6),
        ),
    ]
}

/// The owner learned from a claim sent from a virtual MAC has that MAC:
/// frames for the VIP are delivered to its port with it.
#[test]
fn an_owner_learned_with_a_virtual_mac_is_delivered_to_by_port() {
    let mut dp = Datapath::load();
    dp.from(VM1, true);
    let garp = arp(
        vmac4(VIP4_VRID),
        ArpOperation::REQUEST,
        vmac4(VIP4_VRID),
        VIP4,
        VIP4,
    );
    assert_eq!(dp.run(&garp).0, XDP_PASS);
    let owner = dp.owner(VIP4_ID).expect("vm1 owns VIP4");
    assert_eq!((owner.port_id, owner.mac), (VM1.port_id, vmac4(VIP4_VRID)));
    // A frame for the VIP that the bridge brought to vm2's port by the
    // shared virtual MAC goes to the owner's port.
    dp.put_owner(
        VIP4_ID,
        Owner {
            ifindex: OWNER_IFINDEX,
            ..owner
        },
    );
    dp.from(VM2, true);
    let frame = with_dst_mac(udp4(CLIENT.mac, CLIENT.v4, VIP4), vmac4(VIP4_VRID));
    let before = dp.stat(Stat::EgressRedirected);
    let (action, out) = dp.run_egress(&frame);
    assert_eq!(action, TC_ACT_REDIRECT, "to the owner's port");
    assert_eq!(out, frame, "its destination is the owner's MAC already");
    assert_eq!(dp.stat(Stat::EgressRedirected), before + 1);
}

/// VRRP reaches only ports bound to a VIP: multicast or unicast, IPv4 or
/// IPv6, on its way out of a port bound to none it is dropped, and counted.
#[test]
fn vrrp_reaches_only_the_bound_ports() {
    let mut dp = Datapath::load();
    let frames = [
        (
            "VRRP to 224.0.0.18",
            vrrp_advert4(VM1.mac, VM1.v4, VRRP_GROUP4, 110),
        ),
        (
            "unicast VRRP",
            vrrp_advert4(VM1.mac, VM1.v4, (ROGUE.v4, ROGUE.mac), 110),
        ),
        (
            "VRRPv3 to ff02::12",
            vrrp_advert6(VM1.mac, VM1.link_local, VRRP_GROUP6),
        ),
    ];
    let mut failures = Vec::new();
    for (what, frame) in &frames {
        for (to, want) in [(VM2, TC_ACT_OK), (ROGUE, TC_ACT_SHOT)] {
            dp.from(to, true);
            let before = dp.drops(DropReason::VrrpToUnbound);
            let (action, out) = dp.run_egress(frame);
            let counted = dp.drops(DropReason::VrrpToUnbound) - before;
            let want_counted = u64::from(want == TC_ACT_SHOT);
            if action != want || counted != want_counted || &out != frame {
                failures.push(format!(
                    "{what} to {to:?}: action {action} (want {want}), counted {counted}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
