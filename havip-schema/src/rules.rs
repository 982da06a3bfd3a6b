//! The rules every record holds to, whoever wrote it: the controller
//! refuses a request that breaks one, the agent refuses a record from etcd
//! that does (and its config file is checked by the same functions).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

use havip_common::port::MAX_LINK_LOCALS;
use ipnet::IpNet;

use crate::Invalid;

/// Longest name of a HAVIP.
pub const MAX_NAME: usize = 64;
/// Longest description of a HAVIP.
pub const MAX_DESCRIPTION: usize = 256;
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Identifiers become etcd key segments: `[A-Za-z0-9._:-]{1,128}`.
pub fn check_id(what: &str, id: &str) -> Result<(), Invalid> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!(
            "{what} {id:?} is not a valid identifier (1-128 of A-Z a-z 0-9 . _ - :)"
        )))
    }
}

pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() {
        return Err(Invalid("name is required".into()));
    }
    if name.chars().count() > MAX_NAME {
        return Err(Invalid(format!(
            "name is longer than {MAX_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid("name contains control characters".into()));
    }
    Ok(())
}

pub fn check_description(description: &str) -> Result<(), Invalid> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(Invalid(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    if description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid("description contains control characters".into()));
    }
    Ok(())
}

/// A VRRP virtual router id: 1-255 (RFC 9568; 0 is no router's).
pub fn check_vrid(vrid: u8) -> Result<(), Invalid> {
    if vrid == 0 {
        return Err(Invalid(
            "vrid must be a VRRP virtual router id, 1-255".into(),
        ));
    }
    Ok(())
}

/// A HAVIP's split-brain hold-down, in milliseconds: 0 (no damping) up to
/// an hour.
pub fn check_hold_down(ms: i64) -> Result<u32, Invalid> {
    havip_common::vip::hold_down_ms(ms).map_err(|e| Invalid(e.to_string()))
}

/// A port's allowed VLANs: at most 8, each 1 to 4094, none twice (the
/// rule the datapath's port entry holds; see `havip_common::port`).
pub fn check_vlans(vlans: &[i64]) -> Result<Vec<u16>, Invalid> {
    havip_common::port::check_vlans(vlans)
        .map(|ids| ids[..vlans.len()].to_vec())
        .map_err(|why| Invalid(why.to_string()))
}

/// A port's registered link-locals: at most [`MAX_LINK_LOCALS`], each in
/// fe80::/10; repeats are dropped.
pub fn check_link_locals(link_locals: &[Ipv6Addr]) -> Result<Vec<Ipv6Addr>, Invalid> {
    if link_locals.len() > MAX_LINK_LOCALS {
        return Err(Invalid(format!(
            "{} link-locals in link_locals, at most {MAX_LINK_LOCALS} are allowed per port",
            link_locals.len()
        )));
    }
    if let Some(a) = link_locals.iter().find(|a| !a.is_unicast_link_local()) {
        return Err(Invalid(format!(
            "link_local {a} in link_locals is not an IPv6 link-local address (fe80::/10)"
        )));
    }
    let mut seen = HashSet::new();
    Ok(link_locals
        .iter()
        .filter(|a| seen.insert(**a))
        .copied()
        .collect())
}

/// Why `name` cannot be a Linux interface name, if it cannot.
pub fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > IFNAME_MAX {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is not a valid interface name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':', whitespace or a control character")
    } else {
        None
    }
}

pub fn check_interface(name: &str) -> Result<(), Invalid> {
    match interface_name_problem(name) {
        Some(why) => Err(Invalid(format!("interface {name:?} {why}"))),
        None => Ok(()),
    }
}

/// Whether `ip` can be a host's own address: not unspecified, multicast,
/// loopback or the IPv4 broadcast.
pub fn is_unicast(ip: &IpAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// Why `ip` cannot be a VIP, if it cannot: a VIP is a unicast address
/// outside the link-local ranges (a VIP at 0.0.0.0 would drop every
/// unbound port's DHCP and ARP probes, one at a link-local a port's
/// neighbour discovery).
pub fn vip_address_problem(ip: &IpAddr) -> Option<String> {
    if ip.is_unspecified() {
        Some(format!("{ip} is the unspecified address, not a VIP"))
    } else if !is_unicast(ip) {
        Some(format!("{ip} is not a unicast address"))
    } else if is_link_local(ip) {
        Some(format!("{ip} is a link-local address, not a VIP"))
    } else {
        None
    }
}

/// Why `net` cannot be a subnet's range: unspecified, loopback, multicast
/// or link-local ranges hold no VM's addresses.
pub fn subnet_range_problem(net: &IpNet) -> Option<String> {
    let a = net.network();
    let b = net.broadcast();
    let bad = |ip: &IpAddr| {
        ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || is_link_local(ip)
    };
    if net.trunc() != *net {
        Some(format!(
            "{net} has host bits set (did you mean {}?)",
            net.trunc()
        ))
    } else if bad(&a) || bad(&b) || net.prefix_len() == 0 {
        Some(format!(
            "{net} is an unspecified, loopback, multicast or link-local range, not a subnet's"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_names_interfaces() {
        assert!(check_id("port", "port-1.a_b:c").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_id("port", bad).is_err(), "{bad:?}");
        }
        assert!(check_name(" ").is_err());
        assert!(check_name(&"n".repeat(65)).is_err());
        assert!(check_name("web-vip").is_ok());
        assert!(check_description("a\tb").is_err());
        assert_eq!(interface_name_problem("tap0"), None);
        assert!(interface_name_problem("a-very-long-interface").is_some());
        assert!(interface_name_problem("eth0:1").is_some());
    }

    #[test]
    fn vip_addresses() {
        for (ip, want) in [
            ("10.0.0.5", None),
            ("fd00::5", None),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("224.0.0.18", Some("not a unicast")),
            ("ff02::1", Some("not a unicast")),
            ("127.0.0.1", Some("not a unicast")),
            ("255.255.255.255", Some("not a unicast")),
            ("169.254.0.9", Some("link-local")),
            ("fe80::1", Some("link-local")),
        ] {
            let got = vip_address_problem(&ip.parse().unwrap());
            match want {
                None => assert_eq!(got, None, "{ip}"),
                Some(w) => assert!(got.as_deref().unwrap_or("").contains(w), "{ip}: {got:?}"),
            }
        }
        for (net, ok) in [
            ("10.0.0.0/24", true),
            ("fd00::/64", true),
            ("0.0.0.0/0", false),
            ("0.0.0.0/8", false),
            ("fe80::/64", false),
            ("224.0.0.0/24", false),
            ("127.0.0.0/8", false),
            ("10.0.0.1/24", false),
        ] {
            let n: IpNet = net.parse().unwrap();
            assert_eq!(subnet_range_problem(&n).is_none(), ok, "{net}");
        }
    }

    #[test]
    fn vlans_and_link_locals() {
        assert_eq!(check_vlans(&[10, 20]).unwrap(), vec![10, 20]);
        for (bad, text) in [
            (vec![4095], "not a VLAN id (1 to 4094)"),
            (vec![0], "priority tag"),
            ((1..=9).collect(), "at most 8"),
            (vec![5, 5], "twice"),
        ] {
            let e = check_vlans(&bad).expect_err("refused");
            assert!(e.0.contains(text), "{bad:?}: {e}");
        }
        let ll = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            check_link_locals(&[ll("fe80::1"), ll("fe80::1")]).unwrap(),
            vec![ll("fe80::1")]
        );
        let e = check_link_locals(&[ll("fd00::1")]).expect_err("not link-local");
        assert!(e.0.contains("fe80::/10"), "{e}");
        assert!(check_link_locals(&[ll("fe80::1"); 9]).is_err());
    }
}
