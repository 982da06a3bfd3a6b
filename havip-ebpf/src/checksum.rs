//! Readying a frame for a redirect to its owner: it must fit its port's
//! MTU, and in native XDP its TCP/UDP checksum must be complete.
//!
//! A VM whose NIC offers checksum offload (virtio-net, a veth) sends TCP and
//! UDP with only the pseudo-header's sum in the checksum field: the socket
//! buffer says "partial", and whoever transmits it finishes the sum. A
//! native XDP redirect turns the frame into an `xdp_frame` without that
//! metadata, so the owner would receive a wrong checksum and drop the
//! frame. Before such a redirect the datapath finishes the sum itself:
//! - a complete checksum is left as it is (so is a wrong one: the owner
//!   drops it, as it would have without havip);
//! - a partial one, the pseudo-header's sum, is completed;
//! - segments longer than [`MAX_SEGMENT`] and IPv6 packets with extension
//!   headers before the TCP/UDP header are not looked at: they go to the
//!   bridge with the owner's MAC, offload intact.
//!
//! A segmentation offload frame is larger than the MTU, and only a socket
//! buffer carries one (the tap runs XDP on it in the generic path): it
//! never gets here, [`fits_port`] sends it by the bridge first.
//!
//! In generic mode (`completes_checksums()` false) the redirect keeps the
//! socket buffer, and the checksum is not looked at.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_check_mtu, bpf_csum_diff, bpf_xdp_load_bytes},
    programs::XdpContext,
    EbpfContext,
};
use havip_common::{maps::MAX_SEGMENT, DropReason, Stat};

use crate::{counters::count, ipv4, ipv6, maps::SEGMENT, packet::Packet};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Offset of the checksum in the TCP and the UDP header.
const TCP_CHECK_OFFSET: usize = 16;
const UDP_CHECK_OFFSET: usize = 6;
/// "More fragments" and the fragment offset, in the IPv4 header's flags word.
const IPV4_FRAGMENT_MASK: u16 = 0x3fff;

/// A TCP or UDP segment, as the checksum sees it.
#[derive(Clone, Copy)]
struct Segment {
    /// Its offset in the frame and its length.
    at: usize,
    len: usize,
    /// The checksum's offset in its header.
    check_offset: usize,
    protocol: u8,
    /// The pseudo-header's sum (unfolded).
    pseudo: u64,
}

/// Segments up to this long are summed in place ([`sum_in_place`]),
/// longer ones through a copy ([`sum`]).
const SHORT_SEGMENT: usize = 64;

/// What to do with a frame for an owner on this host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Redirect it: its checksum is complete (or none is needed).
    Redirect,
    /// Pass it to the bridge (with the owner's MAC), which keeps its
    /// offload metadata.
    Bridge,
}

/// Readies an IPv4 packet at `l3` for a native redirect. Inlined into the
/// entry, as the IPv4 judgement is (a BPF call costs about 9 ns here).
#[inline(always)]
pub fn ipv4(ctx: XdpContext, l3: usize) -> Result<Finish, DropReason> {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let [version_ihl, _]: [u8; 2] = pkt.read(l3)?;
    let total_len = u16::from_be(pkt.load(l3 + ipv4::TOTAL_LEN_OFFSET)?) as usize;
    let fragment = u16::from_be(pkt.load(l3 + ipv4::FRAGMENT_OFFSET)?);
    let [_ttl, protocol]: [u8; 2] = pkt.read(l3 + ipv4::TTL_OFFSET)?;
    let header_len = (version_ihl & 0x0f) as usize * 4;
    // A fragment's checksum covers the whole datagram: it cannot be
    // checked here, and it is never partial (a VM completes the checksum
    // before it fragments).
    if fragment & IPV4_FRAGMENT_MASK != 0 {
        return Ok(Finish::Redirect);
    }
    let Some(check_offset) = check_offset(protocol) else {
        return Ok(Finish::Redirect);
    };
    if total_len < header_len {
        return Err(DropReason::Malformed);
    }
    let segment_len = total_len - header_len;
    // UDP over IPv4 may carry no checksum at all.
    if protocol == IPPROTO_UDP && pkt.load::<u16>(l3 + header_len + check_offset)? == 0 {
        return Ok(Finish::Redirect);
    }
    // Pseudo-header: source and destination, zero, protocol, length.
    let pseudo = words::<8>(&pkt, l3 + ipv4::SRC_OFFSET)?
        + u32::from_ne_bytes([0, protocol, (segment_len >> 8) as u8, segment_len as u8]) as u64;
    let segment = Segment {
        at: l3 + header_len,
        len: segment_len,
        check_offset,
        protocol,
        pseudo,
    };
    finish(&ctx, &pkt, &segment)
}

/// Readies an IPv6 packet at `l3` for a native redirect.
#[inline(never)]
pub fn ipv6(ctx: XdpContext, l3: usize) -> Result<Finish, DropReason> {
    let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
    let [len_hi, len_lo, next_header, _hop_limit]: [u8; 4] =
        pkt.read(l3 + ipv6::PAYLOAD_LEN_OFFSET)?;
    let payload_len = u16::from_be_bytes([len_hi, len_lo]) as usize;
    let Some(check_offset) = check_offset(next_header) else {
        return Ok(if ipv6::is_extension_header(next_header) {
            Finish::Bridge
        } else {
            Finish::Redirect
        });
    };
    // Pseudo-header: source and destination, upper-layer length, zeros and
    // next header.
    let [a, b, c, d] = (payload_len as u32).to_be_bytes();
    let pseudo = words::<32>(&pkt, l3 + ipv6::SRC_OFFSET)?
        + u32::from_ne_bytes([a, b, c, d]) as u64
        + u32::from_ne_bytes([0, 0, 0, next_header]) as u64;
    let segment = Segment {
        at: l3 + ipv6::HEADER_LEN,
        len: payload_len,
        check_offset,
        protocol: next_header,
        pseudo,
    };
    finish(&ctx, &pkt, &segment)
}

/// The checksum's offset in a TCP or UDP header; `None` for any other
/// protocol (ICMP and the rest: never offloaded).
#[inline(always)]
fn check_offset(protocol: u8) -> Option<usize> {
    match protocol {
        IPPROTO_TCP => Some(TCP_CHECK_OFFSET),
        IPPROTO_UDP => Some(UDP_CHECK_OFFSET),
        _ => None,
    }
}

/// Checks the segment's checksum, and completes it if the VM left it to
/// the offload.
#[inline(always)]
fn finish(ctx: &XdpContext, pkt: &Packet, segment: &Segment) -> Result<Finish, DropReason> {
    let Segment {
        at,
        len,
        check_offset,
        protocol,
        pseudo,
    } = *segment;
    if len > MAX_SEGMENT {
        return Ok(Finish::Bridge);
    }
    if len < check_offset + 2 {
        return Err(DropReason::Truncated);
    }
    let check: u16 = pkt.load(at + check_offset)?;
    let data = sum(ctx, pkt, at, len)?;
    if fold(data + pseudo) == 0xffff || check != fold(pseudo) {
        // Complete (or wrong, and left for the owner to drop).
        return Ok(Finish::Redirect);
    }
    // Partial: the field holds the pseudo-header's sum, so the segment's
    // sum is the whole sum.
    let mut complete = !fold(data);
    if protocol == IPPROTO_UDP && complete == 0 {
        // Zero means "no checksum" in UDP.
        complete = 0xffff;
    }
    pkt.store(at + check_offset, complete)?;
    count(Stat::ChecksumsCompleted);
    Ok(Finish::Redirect)
}

/// Whether the frame fits the MTU of the port it came in on, as a
/// redirect requires (`xdp_ok_fwd_dev`; a VIP's ports are in one network,
/// with one MTU). A segmentation offload frame from a VM is larger: the
/// tap runs XDP on it in its socket buffer (generic path), and only the
/// bridge forwards it, offload intact. The ingress port's own MTU is read
/// without a device lookup. A helper error counts as not fitting: the
/// bridge is always safe.
#[inline(always)]
pub fn fits_port(ctx: &XdpContext) -> bool {
    // 0: the frame's own length; ifindex 0: the port it came in on.
    let mut mtu_len = 0u32;
    // SAFETY: the XDP context and a stack variable.
    let ret = unsafe { bpf_check_mtu(ctx.as_ptr(), 0, &mut mtu_len, 0, 0) };
    ret == 0
}

/// The ones' complement sum (RFC 1071) of the `len`-byte segment at
/// `offset` (at most [`MAX_SEGMENT`] bytes). A short one is summed in
/// place; a longer one is copied into this CPU's segment buffer, padded
/// with zeros to whole words (an odd last byte is the high half of a
/// word), and summed with `bpf_csum_diff` (one call per 512 bytes): one
/// copy and a few sums whatever the length, where summing the frame in
/// place would take pieces of fixed sizes, whose combinations the verifier
/// walks one by one.
#[inline(always)]
fn sum(ctx: &XdpContext, pkt: &Packet, offset: usize, len: usize) -> Result<u64, DropReason> {
    if len <= SHORT_SEGMENT {
        return sum_in_place(pkt, offset, len);
    }
    let Some(buf) = SEGMENT.get_ptr_mut(0) else {
        return Err(DropReason::Truncated);
    };
    let buf = buf as *mut u8;
    // The bounds `finish` checked, checked again on the very register the
    // helper gets: the compiler may keep `len` on the stack in between,
    // and Linux 6.1's verifier can lose a spilled length's bounds there.
    // (A 32-bit read: the register checked is the only one it is in.)
    let len32 = len as u32;
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&len32) };
    // (A lower bound by `<=`: 6.1 learns no bound from `== 0`.)
    if n <= SHORT_SEGMENT as u32 || n > MAX_SEGMENT as u32 {
        return Err(DropReason::Truncated);
    }
    // From here on, the length whose bounds the verifier knows.
    let len = n as usize;
    // SAFETY: `buf` has MAX_SEGMENT + 4 bytes and 0 < n <= MAX_SEGMENT; the
    // helper checks the segment against the frame's end.
    let copied = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf as *mut c_void, n) };
    if copied < 0 {
        // The IP header says the segment runs past the frame's end.
        return Err(DropReason::Truncated);
    }
    // SAFETY: len + 4 <= MAX_SEGMENT + 4, the buffer's size.
    unsafe { core::ptr::write_unaligned(buf.add(len) as *mut u32, 0) };
    let words = (len + 3) & !3;
    // In pieces of at most CSUM_DIFF_MAX bytes, each seeded with the sum so
    // far: before 6.12 (Debian 12's 6.1), bpf_csum_diff sums at most 512
    // bytes and fails with -EINVAL on more.
    let mut sum = 0u32;
    // `words` <= MAX_SEGMENT: at most MAX_SEGMENT / CSUM_DIFF_MAX pieces.
    for i in 0..MAX_SEGMENT / CSUM_DIFF_MAX {
        let start = i * CSUM_DIFF_MAX;
        if start >= words {
            break;
        }
        let rest = words - start;
        let piece = if rest >= CSUM_DIFF_MAX {
            CSUM_DIFF_MAX
        } else {
            // Masked for 6.1's verifier, which knows no lower bound of
            // `rest` ("R4 min value is negative" at the call); read
            // volatile so that LLVM, which knows `rest < CSUM_DIFF_MAX`,
            // keeps the mask.
            // SAFETY: a read of a local.
            unsafe { core::ptr::read_volatile(&rest) & (CSUM_DIFF_MAX - 1) }
        };
        // SAFETY: start + piece <= `words` <= MAX_SEGMENT bytes of the
        // buffer; only read.
        let ret = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                buf.add(start) as *mut u32,
                piece as u32,
                sum,
            )
        };
        if ret < 0 {
            return Err(DropReason::Malformed);
        }
        sum = ret as u32;
    }
    Ok(sum as u64)
}

/// The most bytes one bpf_csum_diff sums on every kernel (its scratch
/// buffer before Linux 6.12).
const CSUM_DIFF_MAX: usize = 512;

/// The sum of a segment of at most [`SHORT_SEGMENT`] bytes, in the frame
/// a word at a time: for ACKs and small datagrams, where the copy and the
/// helper calls of [`sum`] cost more than the words.
#[inline(always)]
fn sum_in_place(pkt: &Packet, offset: usize, len: usize) -> Result<u64, DropReason> {
    let mut acc = 0u64;
    let mut at = offset;
    let mut left = len;
    for _ in 0..SHORT_SEGMENT / 4 {
        if left < 4 {
            break;
        }
        acc += pkt.load::<u32>(at)? as u64;
        at += 4;
        left -= 4;
    }
    if left >= 2 {
        acc += pkt.load::<u16>(at)? as u64;
        at += 2;
        left -= 2;
    }
    if left == 1 {
        // The odd byte is the high half of a last word padded with zero
        // (read with the byte before it: `read` takes two at least).
        let [_, last]: [u8; 2] = pkt.read(at - 1)?;
        acc += u16::from_ne_bytes([last, 0]) as u64;
    }
    Ok(acc)
}

/// The sum of the `N` bytes at `offset` (`N` a multiple of four), a word
/// at a time. Summing native 32-bit loads and folding gives the same 16
/// bits as summing the big-endian 16-bit words (RFC 1071, byte order
/// independence), stored as they are in memory.
#[inline(always)]
fn words<const N: usize>(pkt: &Packet, offset: usize) -> Result<u64, DropReason> {
    let p = pkt.at::<[u8; N]>(offset)? as *const u32;
    let mut sum = 0u64;
    for i in 0..N / 4 {
        // SAFETY: `at` checked that the `N` bytes are in the frame;
        // unaligned packet load (see `Packet::load`).
        sum += unsafe { core::ptr::read(p.add(i)) } as u64;
    }
    Ok(sum)
}

/// Folds a ones' complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
