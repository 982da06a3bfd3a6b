//! Tap devices whose other end is this process: the hypervisor side is a
//! network interface (in a namespace, enslaved to a bridge, where XDP and TC
//! attach), the VM side is the file descriptor, as QEMU holds it.
//!
//! The device is opened the way the kernel's fast tap path wants it
//! (`tun_get_user` -> `tun_build_skb`, which runs native XDP on an
//! `xdp_buff` before any socket buffer exists): IFF_TAP | IFF_NO_PI (no
//! packet information, no vnet header), O_NONBLOCK, the socket's default
//! sndbuf. A frame is one `write` of the fd; frames for the VM are read
//! from it.
//!
//! [`Tap::create_offloading`] opens one as QEMU does for a virtio-net VM
//! that negotiated checksum and segmentation offload: every frame carries a
//! `virtio_net_hdr` ([`VnetHdr`]) that says what is left to the offload.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// A tap device and the fd that is its VM end. The device goes away with
/// the fd (it is not persistent).
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// Whether frames carry a `virtio_net_hdr`.
    vnet: bool,
}

/// `struct virtio_net_hdr` (linux/virtio_net.h), little-endian as the tap
/// uses it on x86-64: what a frame leaves to the offload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub const LEN: usize = 10;
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` on is
    /// left to the offload (the field holds the pseudo-header's sum).
    pub const NEEDS_CSUM: u8 = 1;
    pub const GSO_TCPV4: u8 = 1;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Self {
        let word = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        }
    }
}

impl Tap {
    /// Creates tap `name` inside `ns` (the device lives in the namespace the
    /// fd was opened in). The device is down and in no bridge.
    pub fn create(ns: &Netns, name: &str) -> Result<Self> {
        Self::open(ns, name, false)
    }

    /// Creates tap `name` inside `ns` with a vnet header on every frame, and
    /// checksum and TCP segmentation offload on (TUN_F_CSUM, TUN_F_TSO4,
    /// TUN_F_TSO6), as QEMU sets up a virtio-net VM's tap.
    pub fn create_offloading(ns: &Netns, name: &str) -> Result<Self> {
        Self::open(ns, name, true)
    }

    fn open(ns: &Netns, name: &str, vnet: bool) -> Result<Self> {
        let owned = name.to_owned();
        let what = format!("tap {name} in {}", ns.name());
        let fd = ns
            .spawn_thread("tap", move || open_here(&owned, vnet))?
            .join()
            .map_err(|_| anyhow::anyhow!("{what}: thread panicked"))??
            .with_context(|| what.clone())?;
        Ok(Self {
            fd,
            name: name.to_owned(),
            vnet,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its frames carry a vnet header.
    pub fn is_offloading(&self) -> bool {
        self.vnet
    }

    /// Sends `frame` from the VM: one write.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: a valid fd and a live buffer of frame.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!(
                "the tap took {n} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    /// Sends `frame` from the VM with vnet header `hdr` (a tap made by
    /// [`Tap::create_offloading`]).
    pub fn write_offloaded(&self, hdr: VnetHdr, frame: &[u8]) -> io::Result<()> {
        assert!(self.vnet, "{}: no vnet header", self.name);
        let mut buf = hdr.to_bytes().to_vec();
        buf.extend_from_slice(frame);
        self.write(&buf)
    }

    /// The frames waiting for the VM, with their vnet headers (a tap made
    /// by [`Tap::create_offloading`]).
    pub fn read_offloaded(&self) -> io::Result<Vec<(VnetHdr, Vec<u8>)>> {
        assert!(self.vnet, "{}: no vnet header", self.name);
        let mut frames = Vec::new();
        self.read_each(|read| {
            if read.len() < VnetHdr::LEN {
                return Err(io::Error::other(format!(
                    "{}: a read of {} bytes",
                    self.name,
                    read.len()
                )));
            }
            let (hdr, frame) = read.split_at(VnetHdr::LEN);
            frames.push((VnetHdr::from_bytes(hdr), frame.to_vec()));
            Ok(())
        })?;
        Ok(frames)
    }

    /// Reads every frame waiting for the VM (the device's queue); returns
    /// how many there were.
    pub fn drain(&self) -> io::Result<u64> {
        let mut frames = 0;
        self.read_each(|_| {
            frames += 1;
            Ok(())
        })?;
        Ok(frames)
    }

    /// Reads the device's queue empty, handing each read to `each`.
    fn read_each(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut buf = vec![0u8; 65536 + VnetHdr::LEN];
        loop {
            // SAFETY: a valid fd and a live buffer of buf.len() bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    return Ok(());
                }
                return Err(err);
            }
            each(&buf[..n as usize])?;
        }
    }
}

/// Opens /dev/net/tun and attaches it to a new tap `name` in the calling
/// thread's network namespace (with a vnet header and offloads if `vnet`).
fn open_here(name: &str, vnet: bool) -> Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated path.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("open /dev/net/tun");
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    anyhow::ensure!(
        name.len() < ifr.ifr_name.len(),
        "interface name {name:?} too long"
    );
    for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    let vnet_flag = if vnet { libc::IFF_VNET_HDR } else { 0 };
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet_flag) as libc::c_short;
    // SAFETY: a valid tun fd and a live ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } != 0 {
        return Err(io::Error::last_os_error()).context("TUNSETIFF (IFF_TAP | IFF_NO_PI)");
    }
    if vnet {
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: a valid tun fd; TUNSETOFFLOAD takes the flags by value.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offloads as libc::c_ulong,
            )
        } != 0
        {
            return Err(io::Error::last_os_error()).context("TUNSETOFFLOAD");
        }
    }
    Ok(fd)
}
