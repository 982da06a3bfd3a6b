//! Frames on a VM's NIC, below its IP stack: AF_PACKET sockets opened
//! inside the VM's namespace (a socket belongs to the namespace it was
//! created in, whichever thread uses it later).
//!
//! A socket sends whole Ethernet frames (`sendmmsg` for bursts, optionally
//! bypassing the qdisc as pktgen does) and receives the frames of one
//! ethertype with the kernel's receive timestamp (SO_TIMESTAMPNS).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;

/// How to open a [`PacketSocket`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketOptions {
    /// The ethertype of the frames to receive; `None` receives nothing.
    pub receive: Option<u16>,
    /// PACKET_QDISC_BYPASS: frames go straight to the driver.
    pub qdisc_bypass: bool,
    /// SO_TIMESTAMPNS: received frames carry the kernel's receive time.
    pub timestamps: bool,
}

/// An AF_PACKET socket bound to one interface of one namespace.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// One received frame.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    /// When the kernel received it (CLOCK_REALTIME, ns), with timestamps on.
    pub kernel_ns: Option<i64>,
    /// CLOCK_REALTIME right after the receive call returned.
    pub user_ns: i64,
    /// A frame this host sent (PACKET_OUTGOING), not one it received.
    pub outgoing: bool,
}

impl PacketSocket {
    /// Opens a socket on `dev` inside `ns`.
    pub fn open(ns: &Netns, dev: &str, opts: SocketOptions) -> Result<Self> {
        let dev = dev.to_owned();
        let what = format!("AF_PACKET socket on {dev} in {}", ns.name());
        ns.spawn_thread("packet-socket", move || open_here(&dev, opts))?
            .join()
            .map_err(|_| anyhow::anyhow!("{what}: thread panicked"))??
            .with_context(|| what.clone())
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: a valid socket and a live buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `count` copies of `frame` in one sendmmsg; returns how many the
    /// kernel took.
    pub fn send_copies(&self, frame: &[u8], count: usize) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
        let mut msgs: Vec<libc::mmsghdr> = (0..count)
            .map(|_| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: every header points at `iov`, which points at `frame`;
        // both outlive the call, and the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Receives one frame into `buf`, waiting up to `timeout`; `None` when
    /// none came.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            return Err(io::Error::last_os_error());
        }
        if ready == 0 {
            return Ok(None);
        }
        // SAFETY: plain data; zeroed is valid.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data; zeroed is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        let user_ns = realtime_ns();
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(err);
        }
        Ok(Some(Received {
            len: n as usize,
            kernel_ns: kernel_timestamp(&msg),
            user_ns,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
        }))
    }

    /// Discards every frame waiting on the socket.
    pub fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 2048];
        while self.recv(&mut buf, Duration::ZERO)?.is_some() {}
        Ok(())
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }
}

/// Opens and binds the socket in the calling thread's namespace.
fn open_here(dev: &str, opts: SocketOptions) -> Result<PacketSocket> {
    let ifname = std::ffi::CString::new(dev)?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) } as i32;
    if ifindex == 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("no interface {dev}"));
    }
    let protocol = opts.receive.unwrap_or(0).to_be();
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex;
    // SAFETY: a valid socket and a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("bind to {dev}"));
    }
    if opts.qdisc_bypass {
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
            .context("PACKET_QDISC_BYPASS")?;
    }
    if opts.timestamps {
        set_option(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).context("SO_TIMESTAMPNS")?;
    }
    Ok(PacketSocket { fd, ifindex })
}

fn set_option(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid socket and an int option.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The SCM_TIMESTAMPNS of a received message, in ns.
fn kernel_timestamp(msg: &libc::msghdr) -> Option<i64> {
    // SAFETY: `msg` was filled in by recvmsg; the CMSG macros walk its
    // control buffer within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                return Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// CLOCK_REALTIME in ns: the clock of the kernel's receive timestamps.
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_MONOTONIC in ns: the clock of the datapath's timestamps
/// (`bpf_ktime_get_ns`).
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    // SAFETY: plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Pins the calling thread to `cpu`.
pub fn pin_thread_to(cpu: usize) -> io::Result<()> {
    pin_task(0, cpu)
}

/// Pins the thread `tid` (0: the calling thread) to `cpu`.
pub fn pin_task(tid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
