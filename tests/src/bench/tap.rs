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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// A tap device and the fd that is its VM end. The device goes away with
/// the fd (it is not persistent).
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates tap `name` inside `ns` (the device lives in the namespace the
    /// fd was opened in). The device is down and in no bridge.
    pub fn create(ns: &Netns, name: &str) -> Result<Self> {
        let owned = name.to_owned();
        let what = format!("tap {name} in {}", ns.name());
        let fd = ns
            .spawn_thread("tap", move || open_here(&owned))?
            .join()
            .map_err(|_| anyhow::anyhow!("{what}: thread panicked"))??
            .with_context(|| what.clone())?;
        Ok(Self {
            fd,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
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

    /// Reads every frame waiting for the VM (the device's queue); returns
    /// how many there were.
    pub fn drain(&self) -> io::Result<u64> {
        let mut buf = [0u8; 2048];
        let mut frames = 0;
        loop {
            // SAFETY: a valid fd and a live buffer of buf.len() bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    return Ok(frames);
                }
                return Err(err);
            }
            frames += 1;
        }
    }
}

/// Opens /dev/net/tun and attaches it to a new tap `name` in the calling
/// thread's network namespace.
fn open_here(name: &str) -> Result<OwnedFd> {
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
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: a valid tun fd and a live ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } != 0 {
        return Err(io::Error::last_os_error()).context("TUNSETIFF (IFF_TAP | IFF_NO_PI)");
    }
    Ok(fd)
}
