//! The EIP gateway (`havip_common::gateway`): two XDP programs on a
//! gateway host, one on each side.
//!
//! `havip_gw_in`, on the external interface, for each packet:
//! 1. Parse: Ethernet, then IPv4 or IPv6; anything else passes.
//! 2. Classify: a destination that is an EIP (`havip_gw_eips`) is the
//!    gateway's; any other packet passes to the host's stack untouched.
//! 3. Decide: the VIP's owner known (`havip_gw_owners`), the destination
//!    becomes the VIP (`nat.rs`), the TTL or hop limit goes down by one,
//!    and the frame goes out of the internal interface to the owner's MAC.
//!    No owner yet: dropped (`no_owner`). A TTL that ran out, or a frame
//!    larger than the internal interface takes: to the kernel (it answers
//!    with Time Exceeded, or fragments and routes it).
//!
//! `havip_gw_out`, on the internal interface:
//! 1. Learn: a gratuitous ARP or an ARP reply, or an unsolicited Neighbor
//!    Advertisement, for a VIP with an EIP makes its sender's MAC the
//!    VIP's owner here (the hypervisors' datapath lets only a bound port
//!    announce a VIP). The agent writes the owners it reads from etcd
//!    into the same map.
//! 2. Classify: a source that is a VIP with an EIP (`havip_gw_eip_of`) is
//!    the gateway's; a source that is an EIP is dropped (`eip_spoofed`:
//!    only the gateway sends from an EIP); anything else passes.
//! 3. Decide by the kernel's route to the destination (`bpf_fib_lookup`):
//!    a packet that does not leave by another interface (to the gateway
//!    itself, back inside, multicast: Neighbor Discovery) passes as it
//!    is; one that does gets the EIP as its source and goes to the next
//!    hop's MAC out of the route's interface, or, without a resolved next
//!    hop, to the kernel, which resolves it and routes.
//!
//! Every packet the gateway drops is counted by its reason
//! (`havip_gw_stats`); no translation needs connection state.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibLookup, xdp_action, BPF_FIB_LKUP_RET_FRAG_NEEDED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::{bpf_check_mtu, bpf_fib_lookup, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
    EbpfContext,
};
use havip_common::{
    gateway::{
        GatewayConf, GatewayCounter, GatewayOwner, EIP_NETWORK, LEARNED_FROM_ARP, LEARNED_FROM_NA,
    },
    DropReason, NetworkAddr,
};

use crate::{
    arp::{self, ARP_REPLY},
    ipv4, ipv6,
    maps::{GW_CONF, GW_EIPS, GW_EIP_OF, GW_OWNERS, GW_STATS},
    nat::{self, Side},
    packet::{parse_ethernet, set_macs, Packet, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_SOLICITED: u8 = 0x40;
const IPV6_NEXT_HEADER_OFFSET: usize = 6;
const IPV4_CHECK_OFFSET: usize = 10;

/// What the gateway does with a packet, or the counter of its drop.
type Decision = Result<u32, GatewayCounter>;

#[xdp]
pub fn havip_gw_in(ctx: XdpContext) -> u32 {
    verdict(inbound(&ctx))
}

#[xdp]
pub fn havip_gw_out(ctx: XdpContext) -> u32 {
    verdict(outbound(&ctx))
}

/// A packet from the internet.
#[inline(always)]
fn inbound(ctx: &XdpContext) -> Decision {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // What is not for an EIP is the host's, however it looks.
    let Ok(eth) = parse_ethernet(&pkt) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let l3 = eth.link.l3();
    let Some(conf) = GW_CONF.get(0).filter(|c| c.internal_ifindex != 0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    match eth.ethertype {
        ETH_P_IP => {
            let Ok(dst) = pkt.ipv4(l3 + ipv4::DST_OFFSET) else {
                return Ok(xdp_action::XDP_PASS);
            };
            // SAFETY: read at once.
            let Some(vip) = (unsafe { GW_EIPS.get(&NetworkAddr::v4(EIP_NETWORK, dst)) }) else {
                return Ok(xdp_action::XDP_PASS);
            };
            let header = Ipv4Header::read(&pkt, l3)?;
            let owner = owner_of(vip)?;
            if header.ttl <= 1 {
                return to_kernel(GatewayCounter::TtlExceeded);
            }
            let [a, b, c, d, ..] = vip.addr;
            nat::ipv4(&pkt, l3, header.len, Side::Destination, [a, b, c, d]).map_err(counter)?;
            to_owner(ctx, &pkt, conf, owner, |pkt| header.decrement_ttl(pkt, l3))
        }
        ETH_P_IPV6 => {
            let Ok(dst) = pkt.ipv6(l3 + ipv6::DST_OFFSET) else {
                return Ok(xdp_action::XDP_PASS);
            };
            // SAFETY: read at once.
            let Some(vip) = (unsafe { GW_EIPS.get(&NetworkAddr::v6(EIP_NETWORK, dst)) }) else {
                return Ok(xdp_action::XDP_PASS);
            };
            let next_header = ipv6_next_header(&pkt, l3)?;
            if ipv6::is_extension_header(next_header) {
                // Its layer-4 checksum is not where the translation looks.
                return to_kernel(GatewayCounter::ToKernel);
            }
            let owner = owner_of(vip)?;
            if hop_limit(&pkt, l3)? <= 1 {
                return to_kernel(GatewayCounter::TtlExceeded);
            }
            nat::ipv6(&pkt, l3, Side::Destination, &vip.addr).map_err(counter)?;
            to_owner(ctx, &pkt, conf, owner, |pkt| decrement_hop_limit(pkt, l3))
        }
        _ => Ok(xdp_action::XDP_PASS),
    }
}

/// A packet from the VIPs' network.
#[inline(always)]
fn outbound(ctx: &XdpContext) -> Decision {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Ok(eth) = parse_ethernet(&pkt) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let l3 = eth.link.l3();
    let Some(conf) = GW_CONF.get(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    match eth.ethertype {
        ETH_P_ARP => {
            if let Ok(arp) = arp::parse(&pkt, l3) {
                if arp.op == ARP_REPLY || arp.spa == arp.tpa {
                    learn(
                        &NetworkAddr::v4(conf.network, arp.spa),
                        arp.sha,
                        LEARNED_FROM_ARP,
                    );
                }
            }
            Ok(xdp_action::XDP_PASS)
        }
        ETH_P_IP => {
            let Ok(src) = pkt.ipv4(l3 + ipv4::SRC_OFFSET) else {
                return Ok(xdp_action::XDP_PASS);
            };
            // SAFETY: read at once.
            let Some(eip) = (unsafe { GW_EIP_OF.get(&NetworkAddr::v4(conf.network, src)) }) else {
                return refuse_eip_source(&NetworkAddr::v4(EIP_NETWORK, src));
            };
            let header = Ipv4Header::read(&pkt, l3)?;
            let mut fib = fib_params(ctx, AF_INET, header.total_len);
            fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
            fib.__bindgen_anon_4.ipv4_dst = pkt.load(l3 + ipv4::DST_OFFSET).map_err(counter)?;
            let route = route_of(ctx, &mut fib);
            if route == Route::Inside {
                return Ok(xdp_action::XDP_PASS);
            }
            if header.ttl <= 1 {
                return to_kernel(GatewayCounter::TtlExceeded);
            }
            let [a, b, c, d, ..] = eip.addr;
            nat::ipv4(&pkt, l3, header.len, Side::Source, [a, b, c, d]).map_err(counter)?;
            send(&pkt, route, &fib, |pkt| header.decrement_ttl(pkt, l3))
        }
        ETH_P_IPV6 => {
            let Ok(src) = pkt.ipv6(l3 + ipv6::SRC_OFFSET) else {
                return Ok(xdp_action::XDP_PASS);
            };
            let Ok([_, _, next_header, _]) = pkt.read::<[u8; 4]>(l3 + ipv6::PAYLOAD_LEN_OFFSET)
            else {
                return Ok(xdp_action::XDP_PASS);
            };
            if next_header == IPPROTO_ICMPV6 {
                learn_from_advert(&pkt, l3, eth.link.src_mac, conf.network);
            }
            // SAFETY: read at once.
            let Some(eip) = (unsafe { GW_EIP_OF.get(&NetworkAddr::v6(conf.network, src)) }) else {
                return refuse_eip_source(&NetworkAddr::v6(EIP_NETWORK, src));
            };
            let next_header = ipv6_next_header(&pkt, l3)?;
            if ipv6::is_extension_header(next_header) {
                return to_kernel(GatewayCounter::ToKernel);
            }
            let [len_hi, len_lo, _, hop_limit]: [u8; 4] =
                pkt.read(l3 + ipv6::PAYLOAD_LEN_OFFSET).map_err(counter)?;
            let payload_len = u16::from_be_bytes([len_hi, len_lo]);
            let mut fib = fib_params(
                ctx,
                AF_INET6,
                payload_len.saturating_add(ipv6::HEADER_LEN as u16),
            );
            fib.__bindgen_anon_3.ipv6_src = words(&src);
            fib.__bindgen_anon_4.ipv6_dst =
                words(&pkt.ipv6(l3 + ipv6::DST_OFFSET).map_err(counter)?);
            let route = route_of(ctx, &mut fib);
            if route == Route::Inside {
                return Ok(xdp_action::XDP_PASS);
            }
            if hop_limit <= 1 {
                return to_kernel(GatewayCounter::TtlExceeded);
            }
            nat::ipv6(&pkt, l3, Side::Source, &eip.addr).map_err(counter)?;
            send(&pkt, route, &fib, |pkt| decrement_hop_limit(pkt, l3))
        }
        _ => Ok(xdp_action::XDP_PASS),
    }
}

/// What the IPv4 translation reads of the header.
#[derive(Clone, Copy)]
struct Ipv4Header {
    len: usize,
    total_len: u16,
    ttl: u8,
}

impl Ipv4Header {
    #[inline(always)]
    fn read(pkt: &Packet, l3: usize) -> Result<Self, GatewayCounter> {
        pkt.at::<[u8; 20]>(l3).map_err(counter)?;
        let [version_ihl, _]: [u8; 2] = pkt.read(l3).map_err(counter)?;
        let len = (version_ihl & 0x0f) as usize * 4;
        if version_ihl >> 4 != 4 || len < 20 {
            return Err(GatewayCounter::Malformed);
        }
        pkt.at::<[u8; 4]>(l3 + len - 4).map_err(counter)?;
        let total_len = u16::from_be(pkt.load(l3 + ipv4::TOTAL_LEN_OFFSET).map_err(counter)?);
        let [ttl, _]: [u8; 2] = pkt.read(l3 + ipv4::TTL_OFFSET).map_err(counter)?;
        Ok(Self {
            len,
            total_len,
            ttl,
        })
    }

    /// The TTL one less, and the header checksum with it.
    #[inline(always)]
    fn decrement_ttl(&self, pkt: &Packet, l3: usize) -> Result<(), GatewayCounter> {
        // TTL and protocol are one 16-bit word of the header.
        let field = l3 + ipv4::TTL_OFFSET;
        let old: u16 = pkt.load(field).map_err(counter)?;
        let [ttl, protocol] = old.to_ne_bytes();
        let new = u16::from_ne_bytes([ttl.wrapping_sub(1), protocol]);
        pkt.store(field, new).map_err(counter)?;
        let check = l3 + IPV4_CHECK_OFFSET;
        let sum = nat::replaced(pkt.load(check).map_err(counter)?, old as u32, new as u32);
        pkt.store(check, sum).map_err(counter)
    }
}

/// The next header of the IPv6 packet at `l3` (its header checked).
#[inline(always)]
fn ipv6_next_header(pkt: &Packet, l3: usize) -> Result<u8, GatewayCounter> {
    pkt.at::<[u8; ipv6::HEADER_LEN]>(l3).map_err(counter)?;
    let [version, ..]: [u8; 4] = pkt.read(l3).map_err(counter)?;
    if version >> 4 != 6 {
        return Err(GatewayCounter::Malformed);
    }
    let [_, _, next_header, _]: [u8; 4] =
        pkt.read(l3 + ipv6::PAYLOAD_LEN_OFFSET).map_err(counter)?;
    Ok(next_header)
}

/// The hop limit one less; false (and untouched) when it ran out.
#[inline(always)]
fn decrement_hop_limit(pkt: &Packet, l3: usize) -> Result<(), GatewayCounter> {
    // Next header and hop limit: one 16-bit word.
    let field = l3 + IPV6_NEXT_HEADER_OFFSET;
    let [next_header, hop_limit]: [u8; 2] = pkt.read(field).map_err(counter)?;
    pkt.store(
        field,
        u16::from_ne_bytes([next_header, hop_limit.wrapping_sub(1)]),
    )
    .map_err(counter)
}

/// The hop limit of the IPv6 packet at `l3`.
#[inline(always)]
fn hop_limit(pkt: &Packet, l3: usize) -> Result<u8, GatewayCounter> {
    let [_, hop_limit]: [u8; 2] = pkt.read(l3 + IPV6_NEXT_HEADER_OFFSET).map_err(counter)?;
    Ok(hop_limit)
}

/// The owner of `vip`, or the drop of a packet for an EIP nobody owns.
#[inline(always)]
fn owner_of(vip: &NetworkAddr) -> Result<GatewayOwner, GatewayCounter> {
    // SAFETY: copied out at once.
    unsafe { GW_OWNERS.get(vip) }
        .copied()
        .ok_or(GatewayCounter::NoOwner)
}

/// A translated inbound packet to its owner, out of the internal
/// interface; one larger than that interface takes goes to the kernel.
#[inline(always)]
fn to_owner(
    ctx: &XdpContext,
    pkt: &Packet,
    conf: &GatewayConf,
    owner: GatewayOwner,
    decrement: impl FnOnce(&Packet) -> Result<(), GatewayCounter>,
) -> Decision {
    let mut mtu_len = 0u32;
    // SAFETY: the XDP context and a stack variable.
    let fits =
        unsafe { bpf_check_mtu(ctx.as_ptr(), conf.internal_ifindex, &mut mtu_len, 0, 0) } == 0;
    if !fits {
        // The kernel routes it (by its own neighbour for the VIP, which the
        // hypervisors' datapath sends on to the owner even when stale); the
        // MACs stay this host's, or it would not take the frame.
        return to_kernel(GatewayCounter::ToKernel);
    }
    forward(
        pkt,
        (owner.mac, conf.internal_mac),
        conf.internal_ifindex,
        GatewayCounter::TranslatedIn,
        decrement,
    )
}

/// The route lookup for a translated outbound packet, from the interface
/// it came in on.
#[inline(always)]
fn fib_params(ctx: &XdpContext, family: u8, tot_len: u16) -> FibLookup {
    // SAFETY: a plain C struct; zero is a valid value of every field.
    let mut fib: FibLookup = unsafe { core::mem::zeroed() };
    fib.family = family;
    fib.__bindgen_anon_1.tot_len = tot_len;
    // SAFETY: reading the context's ingress interface.
    fib.ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    fib
}

/// Where the kernel's route takes a packet from a VIP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Out of another interface, the next hop resolved: the gateway sends
    /// it there itself.
    Out,
    /// Out, but the kernel has to resolve the next hop (or fragment): it
    /// gets the translated packet to route.
    Kernel,
    /// Not out: to the gateway host itself, back into the VIPs' network,
    /// multicast or broadcast (Neighbor Discovery, ARP's peers, DHCP):
    /// not the gateway's to translate.
    Inside,
}

/// Looks the route of `fib`'s packet up (`bpf_fib_lookup`, as the kernel
/// would forward it).
#[inline(always)]
fn route_of(ctx: &XdpContext, fib: &mut FibLookup) -> Route {
    let ingress = fib.ifindex;
    // SAFETY: the XDP context and a stack struct of the size given.
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            fib,
            core::mem::size_of::<FibLookup>() as i32,
            0,
        )
    } as u32;
    match ret {
        BPF_FIB_LKUP_RET_SUCCESS if fib.ifindex != ingress => Route::Out,
        BPF_FIB_LKUP_RET_NO_NEIGH if fib.ifindex != ingress => Route::Kernel,
        // Checked before the route's interface is known; only a unicast
        // route gets that far.
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Route::Kernel,
        _ => Route::Inside,
    }
}

/// Sends a translated outbound packet as `route` says: to the next hop's
/// MAC out of the route's interface, or to the kernel.
#[inline(always)]
fn send(
    pkt: &Packet,
    route: Route,
    fib: &FibLookup,
    decrement: impl FnOnce(&Packet) -> Result<(), GatewayCounter>,
) -> Decision {
    if route != Route::Out {
        return to_kernel(GatewayCounter::ToKernel);
    }
    forward(
        pkt,
        (fib.dmac, fib.smac),
        fib.ifindex,
        GatewayCounter::TranslatedOut,
        decrement,
    )
}

/// Sends a translated packet on by the gateway itself: its TTL or hop
/// limit one less (`decrement`: only here, as a packet left to the kernel
/// has it decremented there), the MACs of the hop (destination, source),
/// out of `ifindex`, counted as `translated`.
#[inline(always)]
fn forward(
    pkt: &Packet,
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
    ifindex: u32,
    translated: GatewayCounter,
    decrement: impl FnOnce(&Packet) -> Result<(), GatewayCounter>,
) -> Decision {
    decrement(pkt)?;
    set_macs(pkt, dst_mac, src_mac).map_err(counter)?;
    count(translated);
    // SAFETY: a plain helper call.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as u32)
}

/// A packet from the internal side whose source is no VIP with an EIP:
/// dropped when its source is an EIP, passed otherwise.
#[inline(always)]
fn refuse_eip_source(src: &NetworkAddr) -> Decision {
    // SAFETY: read for presence only.
    if unsafe { GW_EIPS.get(src) }.is_some() {
        return Err(GatewayCounter::EipSpoofed);
    }
    Ok(xdp_action::XDP_PASS)
}

/// An unsolicited Neighbor Advertisement for a VIP: its sender is the
/// owner.
#[inline(always)]
fn learn_from_advert(pkt: &Packet, l3: usize, mac: [u8; 6], network: u32) {
    let l4 = l3 + ipv6::HEADER_LEN;
    let Ok([icmp_type, _, _, _, flags, _, _, _]) = pkt.read::<[u8; 8]>(l4) else {
        return;
    };
    if icmp_type != ND_NEIGHBOR_ADVERT || flags & NA_FLAG_SOLICITED != 0 {
        return;
    }
    if let Ok(target) = pkt.ipv6(l4 + ipv6::ND_TARGET_OFFSET) {
        learn(&NetworkAddr::v6(network, target), mac, LEARNED_FROM_NA);
    }
}

/// `mac` owns `vip` from now on, if `vip` has an EIP here.
#[inline(always)]
fn learn(vip: &NetworkAddr, mac: [u8; 6], learned: u8) {
    // SAFETY: read for presence only.
    if unsafe { GW_EIP_OF.get(vip) }.is_none() {
        return;
    }
    // SAFETY: compared at once.
    if let Some(current) = unsafe { GW_OWNERS.get(vip) } {
        if current.mac == mac {
            return;
        }
    }
    let owner = GatewayOwner {
        mac,
        learned,
        _pad: 0,
    };
    if GW_OWNERS.insert(vip, &owner, 0).is_ok() {
        count(GatewayCounter::OwnersLearned);
    }
}

#[inline(always)]
fn to_kernel(counter: GatewayCounter) -> Decision {
    count(counter);
    Ok(xdp_action::XDP_PASS)
}

/// The XDP action, every drop counted by its reason.
#[inline(always)]
fn verdict(decision: Decision) -> u32 {
    match decision {
        Ok(action) => action,
        Err(reason) => {
            count(reason);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn count(counter: GatewayCounter) {
    if let Some(c) = GW_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

/// The gateway's counter for a parse error.
#[inline(always)]
fn counter(reason: DropReason) -> GatewayCounter {
    match reason {
        DropReason::Truncated => GatewayCounter::Truncated,
        _ => GatewayCounter::Malformed,
    }
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    // SAFETY: same size, any bits valid.
    unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*addr) }
}
