//! The fast path as a KVM hypervisor runs it: taps opened the way QEMU opens
//! them for virtio-net VMs that offload checksums and TCP segmentation
//! (every frame with a `virtio_net_hdr`), and the agent in its default XDP
//! mode, which is native on taps.
//!
//! - the agent attaches natively to taps by default;
//! - a UDP frame to the VIP whose checksum the client left to the offload
//!   reaches the owner through the native redirect with its checksum
//!   completed (the redirect does not carry the offload along);
//! - a TCP segmentation-offload frame to the VIP, larger than the MTU, goes
//!   by the bridge to the owner with its offload intact, its checksum field
//!   untouched (in generic mode too, where a redirect would drop it).
//!
//! Needs root and the built agent. Run with `--test-threads=1`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use etherparse::PacketBuilder;
use havip_tests::bench::frames::{checksum_is_complete, left_to_the_offload, segment};
use havip_tests::bench::labs::Forwarding;
use havip_tests::bench::tap::VnetHdr;
use havip_tests::bench::tap_lab::{TapLab, TapVm};
use havip_tests::lab::{CLIENT, VIP4, VM1};

const ETH: usize = 14;
const IPV4: usize = 20;
const TCP: usize = 20;
const WAIT: Duration = Duration::from_secs(2);

/// What reaches `vm` within [`WAIT`], once something has.
fn received(vm: &TapVm) -> Result<Vec<(VnetHdr, Vec<u8>)>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let frames = vm.tap.read_offloaded()?;
        if !frames.is_empty() || Instant::now() > deadline {
            // Whatever else is on its way.
            std::thread::sleep(Duration::from_millis(50));
            let mut all = frames;
            all.extend(vm.tap.read_offloaded()?);
            return Ok(all);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Frames to the VIP among `frames`.
fn to_vip(frames: Vec<(VnetHdr, Vec<u8>)>) -> Vec<(VnetHdr, Vec<u8>)> {
    frames
        .into_iter()
        .filter(|(_, f)| {
            f.len() > ETH + IPV4
                && f[12..14] == [0x08, 0x00]
                && f[ETH + 16..ETH + 20] == VIP4.octets()
        })
        .collect()
}

fn stat(lab: &TapLab, name: &str) -> Result<u64> {
    let status = lab.agent().context("the lab runs the agent")?.status()?;
    Ok(status.stats.get(name).copied().unwrap_or(0))
}

/// The lab with the agent in its default mode, nothing queued for any VM.
fn lab() -> Result<TapLab> {
    lab_in_mode("auto")
}

fn lab_in_mode(agent_mode: &str) -> Result<TapLab> {
    let lab = TapLab::offloading(Forwarding::Havip, agent_mode)?;
    lab.drain_all()?;
    Ok(lab)
}

#[test]
fn the_agent_attaches_natively_to_taps_by_default() -> Result<()> {
    let lab = lab()?;
    for vm in lab.vms() {
        // `ip link` says "xdp" for a program in the driver, "xdpgeneric"
        // for one in the generic path.
        let link = lab
            .hv
            .ip(&["-details", "link", "show", "dev", vm.tap.name()])?;
        ensure!(
            link.contains("xdp"),
            "{}: no native XDP program:\n{link}",
            vm.tap.name()
        );
        ensure!(
            !link.contains("xdpgeneric"),
            "{}: attached in generic mode:\n{link}",
            vm.tap.name()
        );
    }
    Ok(())
}

#[test]
fn a_checksum_left_to_the_offload_is_completed_on_the_native_redirect() -> Result<()> {
    let lab = lab()?;
    let payload = b"for the owner, checksum left to the NIC";
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT.mac, VM1.mac)
        .ipv4(CLIENT.ipv4.octets(), VIP4.octets(), 64)
        .udp(40000, 9)
        .write(&mut frame, payload)?;
    let (hdr, partial) = left_to_the_offload(frame);
    ensure!(
        !checksum_is_complete(&partial),
        "the frame under test is partial"
    );
    let completed = stat(&lab, "checksums_completed")?;
    let delivered = stat(&lab, "delivered_to_owner")?;

    lab.client.tap.write_offloaded(hdr, &partial)?;

    let got = to_vip(received(&lab.vm1)?);
    ensure!(
        got.len() == 1,
        "vm1 (the owner) got {} frames for the VIP",
        got.len()
    );
    let (hdr, frame) = &got[0];
    ensure!(
        hdr.flags & VnetHdr::NEEDS_CSUM == 0,
        "the redirected frame still says its checksum is left to do: {hdr:?}"
    );
    ensure!(
        checksum_is_complete(frame),
        "the owner got a frame whose UDP checksum is not complete: {frame:02x?}"
    );
    ensure!(
        frame.ends_with(payload),
        "the payload changed: {frame:02x?}"
    );
    ensure!(
        stat(&lab, "delivered_to_owner")? == delivered + 1,
        "not redirected"
    );
    ensure!(
        stat(&lab, "checksums_completed")? == completed + 1,
        "not counted as completed"
    );
    for other in [&lab.vm2, &lab.rogue] {
        let leaked = to_vip(other.tap.read_offloaded()?);
        ensure!(leaked.is_empty(), "{} got the VIP's frame", other.spec.role);
    }
    Ok(())
}

#[test]
fn a_segmentation_offload_frame_goes_by_the_bridge_with_its_offload() -> Result<()> {
    segmentation_offload_goes_by_the_bridge("auto")
}

/// In generic mode too: a redirect would drop a frame larger than the
/// owner port's MTU (`xdp_ok_fwd_dev`), socket buffer or not.
#[test]
fn in_generic_mode_a_segmentation_offload_frame_goes_by_the_bridge_too() -> Result<()> {
    segmentation_offload_goes_by_the_bridge("generic")
}

fn segmentation_offload_goes_by_the_bridge(agent_mode: &str) -> Result<()> {
    let lab = lab_in_mode(agent_mode)?;
    const MSS: usize = 1448;
    let payload: Vec<u8> = (0..3000).map(|i| (i * 13 + 1) as u8).collect();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT.mac, VM1.mac)
        .ipv4(CLIENT.ipv4.octets(), VIP4.octets(), 64)
        .tcp(40000, 80, 1, 64000)
        .write(&mut frame, &payload)?;
    let (mut hdr, tso) = left_to_the_offload(frame);
    hdr.gso_type = VnetHdr::GSO_TCPV4;
    hdr.gso_size = MSS as u16;
    hdr.hdr_len = (ETH + IPV4 + TCP) as u16;
    let via_bridge = stat(&lab, "offload_via_bridge")?;
    let completed = stat(&lab, "checksums_completed")?;

    lab.client.tap.write_offloaded(hdr, &tso)?;

    let got = to_vip(received(&lab.vm1)?);
    ensure!(!got.is_empty(), "vm1 (the owner) got nothing for the VIP");
    let mut data = Vec::new();
    for (hdr, frame) in &got {
        // Either still left to the offload, its field the pseudo-header's
        // sum as the offload expects, or segmented with complete checksums.
        let s = segment(frame);
        let field = u16::from_be_bytes([frame[s.check], frame[s.check + 1]]);
        if hdr.flags & VnetHdr::NEEDS_CSUM != 0 {
            ensure!(
                field == s.pseudo,
                "left to the offload, but the field is {field:#06x}, not the pseudo-header's sum {:#06x}",
                s.pseudo
            );
        } else {
            ensure!(
                checksum_is_complete(frame),
                "a segment with a wrong checksum"
            );
        }
        data.extend_from_slice(&frame[ETH + IPV4 + TCP..]);
    }
    ensure!(
        data == payload,
        "the owner got {} of the 3000 bytes, or other bytes",
        data.len()
    );
    ensure!(
        stat(&lab, "offload_via_bridge")? == via_bridge + 1,
        "not counted as via the bridge"
    );
    ensure!(
        stat(&lab, "checksums_completed")? == completed,
        "its checksum was touched"
    );
    Ok(())
}
