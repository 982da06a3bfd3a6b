//! Table tests of the EIP gateway's programs (`havip_gw_in`,
//! `havip_gw_out`) through BPF_PROG_TEST_RUN: the action, the bytes out
//! (addresses, MACs, TTL, and every checksum summed again here), and the
//! counters.
//!
//! The programs run inside a namespace of the test's, whose routes the
//! outbound program's `bpf_fib_lookup` sees:
//!
//! ```text
//!  int0 (10.0.6.1/24, fd00:6::1/64)   the VIPs' side: frames come in here
//!  ext0 (203.0.113.1/24, 2001:db8:1::1/64), the internet's neighbour
//!       203.0.113.2 / 2001:db8:1::2 at NEXT_HOP (permanent); 198.51.100.0/24
//!       via 203.0.113.3, whose neighbour is not resolved
//! ```
//!
//! Needs root and the datapath object (`cargo xtask build-ebpf`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use havip_common::{
    gateway::{
        GatewayConf, GatewayCounter, GatewayOwner, EIP_NETWORK, LEARNED_FROM_AGENT,
        LEARNED_FROM_ARP, LEARNED_FROM_NA,
    },
    maps, NetworkAddr,
};
use havip_tests::bench::frames::ones_sum;
use havip_tests::netns::{self, Netns};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const NET: u32 = 1;
const EIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 19);
const EIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x19);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 19);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, 0x19);
/// A VIP with an EIP whose owner the gateway does not know.
const ORPHAN_EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const ORPHAN_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 20);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Behind a next hop with no neighbour entry.
const FAR4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const OWNER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const NEW_OWNER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const NEXT_HOP: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const SENDER: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];

fn key(network: u32, addr: IpAddr) -> NetworkAddr {
    match addr {
        IpAddr::V4(a) => NetworkAddr::v4(network, a.octets()),
        IpAddr::V6(a) => NetworkAddr::v6(network, a.octets()),
    }
}

/// The gateway's programs loaded, in the test's namespace.
struct Gateway {
    ebpf: Ebpf,
    int0: u32,
    ext0: u32,
    int_mac: [u8; 6],
    ext_mac: [u8; 6],
}

impl Gateway {
    fn load(int0: u32, ext0: u32, int_mac: [u8; 6], ext_mac: [u8; 6]) -> Self {
        let object = std::env::var("HAVIP_EBPF_OBJECT").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bpfel-unknown-none/release/havip-ebpf"
            )
            .to_string()
        });
        let mut ebpf = EbpfLoader::new().load_file(&object).unwrap_or_else(|e| {
            panic!("loading {object} (needs root and `cargo xtask build-ebpf`): {e}")
        });
        for name in [maps::GW_IN_PROGRAM, maps::GW_OUT_PROGRAM] {
            let prog: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
            prog.load()
                .unwrap_or_else(|e| panic!("the verifier refuses {name}: {e:?}"));
        }
        let mut gw = Self {
            ebpf,
            int0,
            ext0,
            int_mac,
            ext_mac,
        };
        let conf = GatewayConf {
            internal_ifindex: int0,
            internal_mac: int_mac,
            _pad: [0; 2],
            network: NET,
            external_ifindex: ext0,
        };
        let mut c: Array<&mut MapData, GatewayConf> =
            Array::try_from(gw.ebpf.map_mut(maps::GW_CONF).unwrap()).unwrap();
        c.set(0, conf, 0).unwrap();
        for (eip, vip) in [
            (IpAddr::V4(EIP4), IpAddr::V4(VIP4)),
            (IpAddr::V6(EIP6), IpAddr::V6(VIP6)),
            (IpAddr::V4(ORPHAN_EIP), IpAddr::V4(ORPHAN_VIP)),
        ] {
            gw.map(maps::GW_EIPS)
                .insert(key(EIP_NETWORK, eip), key(NET, vip), 0)
                .unwrap();
            gw.map(maps::GW_EIP_OF)
                .insert(key(NET, vip), key(EIP_NETWORK, eip), 0)
                .unwrap();
        }
        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            gw.set_owner(vip, OWNER_MAC);
        }
        gw
    }

    fn map(&mut self, name: &str) -> HashMap<&mut MapData, NetworkAddr, NetworkAddr> {
        HashMap::try_from(self.ebpf.map_mut(name).unwrap()).unwrap()
    }

    fn owners(&mut self) -> HashMap<&mut MapData, NetworkAddr, GatewayOwner> {
        HashMap::try_from(self.ebpf.map_mut(maps::GW_OWNERS).unwrap()).unwrap()
    }

    fn set_owner(&mut self, vip: IpAddr, mac: [u8; 6]) {
        let owner = GatewayOwner {
            mac,
            learned: LEARNED_FROM_AGENT,
            _pad: 0,
        };
        self.owners().insert(key(NET, vip), owner, 0).unwrap();
    }

    fn owner(&mut self, vip: IpAddr) -> Option<GatewayOwner> {
        self.owners().get(&key(NET, vip), 0).ok()
    }

    fn counter(&mut self, c: GatewayCounter) -> u64 {
        let m: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map_mut(maps::GW_STATS).unwrap()).unwrap();
        m.get(&(c as u32), 0).unwrap().iter().sum()
    }

    /// Runs `frame` through `program` as received on `ifindex`.
    fn run(&mut self, program: &str, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &mut Xdp = self.ebpf.program_mut(program).unwrap().try_into().unwrap();
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

    fn inbound(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let ext0 = self.ext0;
        self.run(maps::GW_IN_PROGRAM, ext0, frame)
    }

    fn outbound(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let int0 = self.int0;
        self.run(maps::GW_OUT_PROGRAM, int0, frame)
    }
}

// ---------------------------------------------------------------------------
// Frames, and their checksums summed again.
// ---------------------------------------------------------------------------

enum L4 {
    Udp,
    Tcp,
    Ping,
}

fn frame(src: IpAddr, dst: IpAddr, l4: L4, ttl: u8) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(SENDER, [0x02, 0, 0, 0, 0, 1]);
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), ttl),
        _ => panic!("one family"),
    };
    let payload = b"through the gateway";
    let mut out = Vec::new();
    match (l4, src.is_ipv4()) {
        (L4::Udp, _) => ip.udp(40000, 7777).write(&mut out, payload).unwrap(),
        (L4::Tcp, _) => ip
            .tcp(40000, 8080, 7, 1000)
            .write(&mut out, payload)
            .unwrap(),
        (L4::Ping, true) => ip
            .icmpv4_echo_request(1, 2)
            .write(&mut out, payload)
            .unwrap(),
        (L4::Ping, false) => ip
            .icmpv6_echo_request(1, 2)
            .write(&mut out, payload)
            .unwrap(),
    }
    out
}

/// Sets the TCP/UDP checksum to the pseudo-header's sum, as a sender that
/// leaves it to the offload does.
fn make_partial(frame: &mut [u8]) {
    let l3 = 14;
    let (pseudo, l4, protocol) = if frame[l3] >> 4 == 4 {
        let hl = (frame[l3] & 0x0f) as usize * 4;
        let len = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize - hl;
        let protocol = frame[l3 + 9];
        let mut p = frame[l3 + 12..l3 + 20].to_vec();
        p.extend_from_slice(&[0, protocol, (len >> 8) as u8, len as u8]);
        (p, l3 + hl, protocol)
    } else {
        let len = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as u32;
        let protocol = frame[l3 + 6];
        let mut p = frame[l3 + 8..l3 + 40].to_vec();
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, protocol]);
        (p, l3 + 40, protocol)
    };
    let check = l4 + if protocol == 6 { 16 } else { 6 };
    frame[check..check + 2].copy_from_slice(&ones_sum(&pseudo, 0).to_be_bytes());
}

/// The pseudo-header sum and the layer-4 bytes of the IP packet at `l3`.
fn l4_of(frame: &[u8], l3: usize) -> (u32, u8, &[u8]) {
    if frame[l3] >> 4 == 4 {
        let hl = (frame[l3] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
        let protocol = frame[l3 + 9];
        let seg = &frame[l3 + hl..l3 + total];
        let mut p = frame[l3 + 12..l3 + 20].to_vec();
        p.extend_from_slice(&[0, protocol]);
        p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        (ones_sum(&p, 0) as u32, protocol, seg)
    } else {
        let len = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize;
        let protocol = frame[l3 + 6];
        let seg = &frame[l3 + 40..l3 + 40 + len];
        let mut p = frame[l3 + 8..l3 + 40].to_vec();
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, protocol]);
        (ones_sum(&p, 0) as u32, protocol, seg)
    }
}

/// Every checksum of the frame sums right: the IPv4 header's, the TCP,
/// UDP, ICMP or ICMPv6 checksum, and the header an ICMP error quotes.
fn assert_checksums(frame: &[u8], what: &str) {
    let l3 = 14;
    let v4 = frame[l3] >> 4 == 4;
    if v4 {
        let hl = (frame[l3] & 0x0f) as usize * 4;
        assert_eq!(
            ones_sum(&frame[l3..l3 + hl], 0),
            0xffff,
            "{what}: IPv4 header checksum"
        );
    }
    let (pseudo, protocol, seg) = l4_of(frame, l3);
    match protocol {
        6 | 17 | 58 => assert_eq!(
            ones_sum(seg, pseudo),
            0xffff,
            "{what}: protocol {protocol} checksum"
        ),
        1 => {
            assert_eq!(ones_sum(seg, 0), 0xffff, "{what}: ICMP checksum");
            if seg[0] == 3 {
                let q = &seg[8..];
                let hl = (q[0] & 0x0f) as usize * 4;
                assert_eq!(
                    ones_sum(&q[..hl], 0),
                    0xffff,
                    "{what}: the quoted header's checksum"
                );
            }
        }
        _ => {}
    }
}

fn ipv4_dst(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap())
}

fn ipv4_src(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(&frame[26..30]).unwrap())
}

fn ipv6_dst(frame: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap())
}

fn ipv6_src(frame: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap())
}

fn macs(frame: &[u8]) -> ([u8; 6], [u8; 6]) {
    (
        frame[0..6].try_into().unwrap(),
        frame[6..12].try_into().unwrap(),
    )
}

/// An ICMP destination unreachable from `router` to `to`, quoting `quoted`'s
/// IP packet (header and the first 8 bytes after it).
fn icmp_unreachable(router: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let ip = &quoted[14..];
    let hl = (ip[0] & 0x0f) as usize * 4;
    let quote = &ip[..hl + 8];
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SENDER, [0x02, 0, 0, 0, 0, 1])
        .ipv4(router.octets(), to.octets(), 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut out, quote)
        .unwrap();
    out
}

fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac,
        &ip.octets(),
        &[0; 6],
        &ip.octets(),
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac, [0xff; 6])
        .arp(packet)
        .write(&mut out)
        .unwrap();
    out
}

/// An unsolicited Neighbor Advertisement of `target` from `mac`.
fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![0x20, 0, 0, 0]; // override, not solicited
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            target.octets(),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            255,
        )
        .icmpv6_raw(136, 0, [0x20, 0, 0, 0])
        .write(&mut out, &body[4..])
        .unwrap();
    out
}

// ---------------------------------------------------------------------------
// The namespace and the tests.
// ---------------------------------------------------------------------------

/// Runs `f` with the gateway loaded, on a thread inside a namespace with
/// the module's topology.
fn in_topology(f: impl FnOnce(&mut Gateway) + Send + 'static) {
    let ns = Netns::new(&format!("{}-gwdp", netns::unique_stem())).expect("a namespace (root?)");
    for args in [
        &[
            "link", "add", "int0", "type", "veth", "peer", "name", "int1",
        ][..],
        &[
            "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
        ],
        &["addr", "add", "10.0.6.1/24", "dev", "int0"],
        &["-6", "addr", "add", "fd00:6::1/64", "dev", "int0", "nodad"],
        &["addr", "add", "203.0.113.1/24", "dev", "ext0"],
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:1::1/64",
            "dev",
            "ext0",
            "nodad",
        ],
        &["link", "set", "int0", "up"],
        &["link", "set", "int1", "up"],
        &["link", "set", "ext0", "up"],
        &["link", "set", "ext1", "up"],
        &[
            "neigh",
            "replace",
            "203.0.113.2",
            "lladdr",
            "02:aa:00:00:00:01",
            "dev",
            "ext0",
            "nud",
            "permanent",
        ],
        &[
            "-6",
            "neigh",
            "replace",
            "2001:db8:1::2",
            "lladdr",
            "02:aa:00:00:00:01",
            "dev",
            "ext0",
            "nud",
            "permanent",
        ],
        &["route", "add", "192.0.2.0/24", "via", "203.0.113.3"],
    ] {
        ns.ip(args)
            .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    }
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    let ifindex = |dev: &str| -> u32 {
        let out = ns.ip(&["-o", "link", "show", dev]).unwrap();
        out.split(':').next().unwrap().trim().parse().unwrap()
    };
    let mac = |dev: &str| -> [u8; 6] {
        let out = ns.ip(&["-o", "link", "show", dev]).unwrap();
        let text = out
            .split("link/ether ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    };
    let (int0, ext0, int_mac, ext_mac) =
        (ifindex("int0"), ifindex("ext0"), mac("int0"), mac("ext0"));
    ns.spawn_thread("gateway", move || {
        let mut gw = Gateway::load(int0, ext0, int_mac, ext_mac);
        f(&mut gw);
    })
    .unwrap()
    .join()
    .map_err(|_| "the test panicked")
    .unwrap()
    .unwrap();
}

#[test]
fn a_packet_for_an_eip_goes_to_the_owner_translated_with_every_checksum_right() {
    in_topology(|gw| {
        let cases: [(&str, IpAddr, IpAddr, L4, bool); 8] = [
            ("UDP", CLIENT4.into(), EIP4.into(), L4::Udp, false),
            ("TCP", CLIENT4.into(), EIP4.into(), L4::Tcp, false),
            (
                "TCP, partial checksum",
                CLIENT4.into(),
                EIP4.into(),
                L4::Tcp,
                true,
            ),
            ("ping", CLIENT4.into(), EIP4.into(), L4::Ping, false),
            ("UDP over IPv6", CLIENT6.into(), EIP6.into(), L4::Udp, false),
            ("TCP over IPv6", CLIENT6.into(), EIP6.into(), L4::Tcp, false),
            (
                "UDP over IPv6, partial checksum",
                CLIENT6.into(),
                EIP6.into(),
                L4::Udp,
                true,
            ),
            (
                "ping over IPv6",
                CLIENT6.into(),
                EIP6.into(),
                L4::Ping,
                false,
            ),
        ];
        for (what, src, dst, l4, partial) in cases {
            let mut f = frame(src, dst, l4, 64);
            if partial {
                make_partial(&mut f);
            }
            let before = gw.counter(GatewayCounter::TranslatedIn);
            let (action, out) = gw.inbound(&f);
            assert_eq!(action, XDP_REDIRECT, "{what}");
            assert_eq!(macs(&out), (OWNER_MAC, gw.int_mac), "{what}: MACs");
            if src.is_ipv4() {
                assert_eq!(ipv4_dst(&out), VIP4, "{what}");
                assert_eq!(ipv4_src(&out), CLIENT4, "{what}");
                assert_eq!(out[22], 63, "{what}: TTL");
            } else {
                assert_eq!(ipv6_dst(&out), VIP6, "{what}");
                assert_eq!(out[21], 63, "{what}: hop limit");
            }
            if partial {
                // Still partial: the pseudo-header's sum with the VIP.
                let mut expected = out.clone();
                make_partial(&mut expected);
                assert_eq!(
                    out, expected,
                    "{what}: the field is the new pseudo-header's sum"
                );
            } else {
                assert_checksums(&out, what);
            }
            assert_eq!(
                gw.counter(GatewayCounter::TranslatedIn),
                before + 1,
                "{what}"
            );
        }
    });
}

#[test]
fn a_reply_from_a_vip_leaves_from_its_eip_by_the_route() {
    in_topology(|gw| {
        for (what, src, dst, l4) in [
            ("UDP", IpAddr::from(VIP4), IpAddr::from(CLIENT4), L4::Udp),
            ("TCP", VIP4.into(), CLIENT4.into(), L4::Tcp),
            ("ping", VIP4.into(), CLIENT4.into(), L4::Ping),
            ("UDP over IPv6", VIP6.into(), CLIENT6.into(), L4::Udp),
            ("TCP over IPv6", VIP6.into(), CLIENT6.into(), L4::Tcp),
        ] {
            let (action, out) = gw.outbound(&frame(src, dst, l4, 64));
            assert_eq!(action, XDP_REDIRECT, "{what}");
            assert_eq!(
                macs(&out),
                (NEXT_HOP, gw.ext_mac),
                "{what}: the next hop's MAC, from ext0"
            );
            if src.is_ipv4() {
                assert_eq!(ipv4_src(&out), EIP4, "{what}");
                assert_eq!(out[22], 63, "{what}: TTL");
            } else {
                assert_eq!(ipv6_src(&out), EIP6, "{what}");
            }
            assert_checksums(&out, what);
        }

        // No neighbour for the next hop yet: translated, to the kernel
        // (which resolves it), the MACs as they were.
        let before = gw.counter(GatewayCounter::ToKernel);
        let (action, out) = gw.outbound(&frame(VIP4.into(), FAR4.into(), L4::Udp, 64));
        assert_eq!(action, XDP_PASS);
        assert_eq!(ipv4_src(&out), EIP4);
        assert_eq!(out[22], 64, "the kernel decrements the TTL itself");
        assert_checksums(&out, "to the kernel");
        assert_eq!(gw.counter(GatewayCounter::ToKernel), before + 1);

        // What does not leave is not the gateway's: to the gateway itself,
        // back into the VIPs' network, Neighbor Discovery to multicast.
        for (what, f) in [
            (
                "to the gateway",
                frame(VIP4.into(), Ipv4Addr::new(10, 0, 6, 1).into(), L4::Ping, 64),
            ),
            (
                "to another VM",
                frame(VIP4.into(), Ipv4Addr::new(10, 0, 6, 9).into(), L4::Udp, 64),
            ),
            (
                "to multicast",
                frame(
                    VIP6.into(),
                    "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap().into(),
                    L4::Ping,
                    255,
                ),
            ),
        ] {
            let (action, out) = gw.outbound(&f);
            assert_eq!((action, out), (XDP_PASS, f), "{what}: untouched");
        }
    });
}

#[test]
fn an_icmp_error_carries_the_translated_packet_it_quotes() {
    in_topology(|gw| {
        // A router on the way back tells the EIP that the client is
        // unreachable: the quoted packet went out from the EIP.
        let sent = frame(EIP4.into(), CLIENT4.into(), L4::Udp, 64);
        let error = icmp_unreachable(Ipv4Addr::new(203, 0, 113, 9), EIP4, &sent);
        let (action, out) = gw.inbound(&error);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(ipv4_dst(&out), VIP4);
        let quote = &out[14 + 20 + 8..];
        assert_eq!(
            &quote[12..16],
            &VIP4.octets(),
            "the quoted source is the VIP"
        );
        assert_checksums(&out, "ICMP error in");

        // The VM's own error about a packet from the client: the quoted
        // destination becomes the EIP on the way out.
        let received = frame(CLIENT4.into(), VIP4.into(), L4::Udp, 63);
        let error = icmp_unreachable(VIP4, CLIENT4, &received);
        let (action, out) = gw.outbound(&error);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(ipv4_src(&out), EIP4);
        let quote = &out[14 + 20 + 8..];
        assert_eq!(
            &quote[16..20],
            &EIP4.octets(),
            "the quoted destination is the EIP"
        );
        assert_checksums(&out, "ICMP error out");
    });
}

#[test]
fn what_the_gateway_refuses_is_counted_and_the_rest_passes() {
    in_topology(|gw| {
        // An EIP whose VIP has no owner yet: dropped.
        let (action, _) = gw.inbound(&frame(CLIENT4.into(), ORPHAN_EIP.into(), L4::Udp, 64));
        assert_eq!(action, XDP_DROP);
        assert_eq!(gw.counter(GatewayCounter::NoOwner), 1);

        // A TTL that runs out here: the kernel's, untranslated.
        let f = frame(CLIENT4.into(), EIP4.into(), L4::Udp, 1);
        let (action, out) = gw.inbound(&f);
        assert_eq!((action, out), (XDP_PASS, f));
        assert_eq!(gw.counter(GatewayCounter::TtlExceeded), 1);

        // Not for an EIP: the host's, untouched; however short.
        for f in [
            frame(
                CLIENT4.into(),
                Ipv4Addr::new(203, 0, 113, 1).into(),
                L4::Ping,
                64,
            ),
            vec![0xff; 20],
        ] {
            let (action, out) = gw.inbound(&f);
            assert_eq!((action, out), (XDP_PASS, f));
        }

        // For an EIP, but cut short of its IPv4 header's options: dropped.
        let mut f = frame(CLIENT4.into(), EIP4.into(), L4::Udp, 64);
        f[14] = 0x4f; // IHL 15: 60 bytes of header
        f.truncate(14 + 40);
        let (action, _) = gw.inbound(&f);
        assert_eq!(action, XDP_DROP);
        assert_eq!(gw.counter(GatewayCounter::Truncated), 1);

        // From the VIPs' side with an EIP as source: only the gateway sends
        // from an EIP.
        let (action, _) = gw.outbound(&frame(EIP4.into(), CLIENT4.into(), L4::Udp, 64));
        assert_eq!(action, XDP_DROP);
        assert_eq!(gw.counter(GatewayCounter::EipSpoofed), 1);
    });
}

#[test]
fn the_gateway_learns_the_owner_from_its_announcements() {
    in_topology(|gw| {
        // A GARP for the VIP: its sender owns it now.
        let (action, _) = gw.outbound(&garp(NEW_OWNER_MAC, VIP4));
        assert_eq!(action, XDP_PASS, "ARP goes on to the host");
        let owner = gw.owner(VIP4.into()).unwrap();
        assert_eq!(
            (owner.mac, owner.learned),
            (NEW_OWNER_MAC, LEARNED_FROM_ARP)
        );
        let (_, out) = gw.inbound(&frame(CLIENT4.into(), EIP4.into(), L4::Udp, 64));
        assert_eq!(
            macs(&out).0,
            NEW_OWNER_MAC,
            "the next packet goes to the new owner"
        );

        // An unsolicited NA for the IPv6 VIP.
        gw.outbound(&unsolicited_na(NEW_OWNER_MAC, VIP6));
        let owner = gw.owner(VIP6.into()).unwrap();
        assert_eq!((owner.mac, owner.learned), (NEW_OWNER_MAC, LEARNED_FROM_NA));
        assert_eq!(gw.counter(GatewayCounter::OwnersLearned), 2);

        // A GARP for an address that is no VIP with an EIP teaches nothing.
        gw.outbound(&garp(SENDER, Ipv4Addr::new(10, 0, 6, 9)));
        assert!(gw.owner(Ipv4Addr::new(10, 0, 6, 9).into()).is_none());
        assert_eq!(gw.counter(GatewayCounter::OwnersLearned), 2);
    });
}
