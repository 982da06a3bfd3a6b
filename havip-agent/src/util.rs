//! Small helpers shared by the modules: MAC and address formatting, interface
//! names, and BPF time.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use havip_common::{addr::AF_INET, NetworkAddr};
use nix::time::{clock_gettime, ClockId};

/// `02:00:00:00:00:11` (lowercase, as `ip link` prints it).
pub fn format_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// The modified EUI-64 IPv6 link-local address of `mac` (RFC 4291, appendix A).
pub fn eui64_link_local(mac: &[u8; 6]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[0] = 0xfe;
    b[1] = 0x80;
    b[8] = mac[0] ^ 0x02;
    b[9] = mac[1];
    b[10] = mac[2];
    b[11] = 0xff;
    b[12] = 0xfe;
    b[13] = mac[3];
    b[14] = mac[4];
    b[15] = mac[5];
    Ipv6Addr::from(b)
}

/// The map key of `addr` in `network`.
pub fn network_addr(network: u32, addr: IpAddr) -> NetworkAddr {
    match addr {
        IpAddr::V4(a) => NetworkAddr::v4(network, a.octets()),
        IpAddr::V6(a) => NetworkAddr::v6(network, a.octets()),
    }
}

/// The IP address in a map key.
pub fn ip_of(key: &NetworkAddr) -> IpAddr {
    if key.family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(
            key.addr[0],
            key.addr[1],
            key.addr[2],
            key.addr[3],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.addr))
    }
}

/// The ifindex of interface `name` in this network namespace, if it exists.
pub fn ifindex_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|&i| i != 0)
}

/// The name of interface `ifindex`, if it exists.
pub fn ifname_of(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The kernel driver of interface `name` in this network namespace, as
/// `ethtool -i` names it (`tun` for a tap, `veth`, ...).
pub fn driver_of(name: &str) -> std::io::Result<String> {
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    if name.len() >= libc::IF_NAMESIZE {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    // SAFETY: a zeroed ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live
    // ethtool_drvinfo, as the ioctl expects.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCETHTOOL,
            &mut ifr,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// Converts `bpf_ktime_get_ns()` values (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct BpfClock {
    mono_now_ns: u64,
    wall_now: SystemTime,
}

impl BpfClock {
    /// Samples both clocks now.
    pub fn now() -> Self {
        let mono = clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        Self {
            mono_now_ns: mono,
            wall_now: SystemTime::now(),
        }
    }

    /// The monotonic clock (the datapath's `bpf_ktime_get_ns`) at sampling.
    pub fn mono_now_ns(&self) -> u64 {
        self.mono_now_ns
    }

    /// How long ago `ktime_ns` was (zero if it is in the future).
    pub fn age(&self, ktime_ns: u64) -> Duration {
        Duration::from_nanos(self.mono_now_ns.saturating_sub(ktime_ns))
    }

    /// The wall-clock time of `ktime_ns`.
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        self.wall_now - self.age(ktime_ns)
    }

    /// Milliseconds since the Unix epoch of `ktime_ns`.
    pub fn unix_ms(&self, ktime_ns: u64) -> u64 {
        self.wall(ktime_ns)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// `"12.3s ago"`, `"4m05s ago"`, `"2h03m ago"`, `"3d04h ago"`.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s ago", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s ago", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h ago", s / 86400, (s % 86400) / 3600)
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn format_unix_ms(ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(ms as i64) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64() {
        assert_eq!(
            eui64_link_local(&[0x02, 0, 0, 0, 0, 0x11]),
            "fe80::ff:fe00:11".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            eui64_link_local(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn addr_round_trip() {
        for a in ["10.0.6.19", "fd00:6::19"] {
            let ip: IpAddr = a.parse().unwrap();
            let key = network_addr(3, ip);
            assert_eq!(key.network, 3);
            assert_eq!(ip_of(&key), ip);
        }
        assert_eq!(
            network_addr(1, "10.0.6.19".parse().unwrap()).addr[4..],
            [0; 12]
        );
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(Duration::from_millis(12_345)), "12.3s ago");
        assert_eq!(format_age(Duration::from_secs(245)), "4m05s ago");
        assert_eq!(format_age(Duration::from_secs(7380)), "2h03m ago");
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 0x1a]), "02:00:00:00:00:1a");
        assert_eq!(
            format_unix_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
