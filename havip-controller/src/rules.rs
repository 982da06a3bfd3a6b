//! The product rules that need no store: identifiers, names, addresses of a
//! subnet, search matching.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

use havip_common::port::{self as port_rules, MAX_LINK_LOCALS};

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::{Havip, IpVersion, Subnet};

/// Longest name of a HAVIP.
pub const MAX_NAME: usize = 64;
/// Longest description of a HAVIP.
pub const MAX_DESCRIPTION: usize = 256;

/// Identifiers become etcd key segments: `[A-Za-z0-9._:-]{1,128}`.
pub fn check_id(what: &str, id: &str) -> Result<()> {
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
        Err(Error::invalid_argument(format!(
            "{what} {id:?} is not a valid identifier (1-128 of A-Z a-z 0-9 . _ - :)"
        )))
    }
}

pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid_argument("name is required"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(Error::invalid_argument(format!(
            "name is longer than {MAX_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid_argument("name contains control characters"));
    }
    Ok(())
}

pub fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid_argument(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// A VRRP virtual router id: 1-255 (RFC 9568; 0 is no router's).
pub fn check_vrid(vrid: u8) -> Result<()> {
    if vrid == 0 {
        return Err(Error::invalid_argument(
            "vrid must be a VRRP virtual router id, 1-255",
        ));
    }
    Ok(())
}

/// A HAVIP's split-brain hold-down, in milliseconds: 0 (no damping) up to
/// an hour.
pub fn check_hold_down(ms: i64) -> Result<u32> {
    havip_common::vip::hold_down_ms(ms).map_err(|e| Error::invalid_argument(e.to_string()))
}

/// `aa:bb:cc:dd:ee:ff`, hex, lower or upper case.
pub fn check_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "mac {mac:?} is not of the form aa:bb:cc:dd:ee:ff"
        )))
    }
}

/// A port's allowed VLANs: at most 8, each 1 to 4094, none twice (the
/// rule the datapath's port entry holds; see `havip_common::port`).
pub fn check_vlans(vlans: &[i64]) -> Result<Vec<u16>> {
    port_rules::check_vlans(vlans)
        .map(|ids| ids[..vlans.len()].to_vec())
        .map_err(|why| Error::invalid_argument(why.to_string()))
}

/// A port's registered link-locals: at most [`MAX_LINK_LOCALS`], each in
/// fe80::/10; repeats are dropped.
pub fn check_link_locals(link_locals: &[Ipv6Addr]) -> Result<Vec<Ipv6Addr>> {
    if link_locals.len() > MAX_LINK_LOCALS {
        return Err(Error::invalid_argument(format!(
            "{} link-locals in link_locals, at most {MAX_LINK_LOCALS} are allowed per port",
            link_locals.len()
        )));
    }
    if let Some(a) = link_locals.iter().find(|a| !a.is_unicast_link_local()) {
        return Err(Error::invalid_argument(format!(
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

/// The range of `subnet` for `version`.
pub fn subnet_range(subnet: &Subnet, version: IpVersion) -> Result<IpNet> {
    match version {
        IpVersion::Ipv4 => subnet.cidr_v4.map(IpNet::V4),
        IpVersion::Ipv6 => subnet.cidr_v6.map(IpNet::V6),
    }
    .ok_or_else(|| {
        Error::invalid_argument(format!(
            "subnet {} has no {} range",
            subnet.id,
            version.as_str()
        ))
    })
}

/// A usable host address of `net`: inside it, and for IPv4 not the network
/// or broadcast address (except in /31 and /32); for IPv6 not the
/// subnet-router anycast address (the all-zero host part, except in /127
/// and /128).
pub fn check_host_address(subnet: &str, net: IpNet, addr: IpAddr) -> Result<()> {
    if !net.contains(&addr) {
        return Err(Error::address_out_of_range(format!(
            "{addr} is not inside {net}, the range of subnet {subnet}"
        )));
    }
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            if addr == IpAddr::V4(n.network()) {
                return Err(Error::address_out_of_range(format!(
                    "{addr} is the network address of subnet {subnet} ({net})"
                )));
            }
            if addr == IpAddr::V4(n.broadcast()) {
                return Err(Error::address_out_of_range(format!(
                    "{addr} is the broadcast address of subnet {subnet} ({net})"
                )));
            }
        }
        IpNet::V6(n) if n.prefix_len() < 127 && addr == IpAddr::V6(n.network()) => {
            return Err(Error::address_out_of_range(format!(
                "{addr} is the subnet-router anycast address of subnet {subnet} ({net})"
            )));
        }
        _ => {}
    }
    Ok(())
}

/// The lowest usable host address of `net` not in `claimed`.
pub fn first_free(net: IpNet, claimed: &HashSet<IpAddr>) -> Option<IpAddr> {
    // `hosts()` already leaves out the IPv4 network/broadcast addresses; at
    // most `claimed.len() + 2` candidates are looked at.
    net.hosts()
        .filter(|a| check_host_address("", net, *a).is_ok())
        .find(|a| !claimed.contains(a))
}

/// Fuzzy search: every whitespace-separated word of `q` occurs,
/// case-insensitively, in the name, description, id or address.
pub fn matches_query(vip: &Havip, q: &str) -> bool {
    let haystack = format!(
        "{}\n{}\n{}\n{}",
        vip.name, vip.description, vip.id, vip.address
    )
    .to_lowercase();
    q.split_whitespace()
        .all(|word| haystack.contains(&word.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_addresses() {
        let cases = [
            ("10.0.0.0/29", "10.0.0.1", None),
            ("10.0.0.0/29", "10.0.0.6", None),
            ("10.0.0.0/29", "10.0.0.0", Some("network address")),
            ("10.0.0.0/29", "10.0.0.7", Some("broadcast address")),
            ("10.0.0.0/29", "10.0.0.8", Some("not inside")),
            ("10.0.0.0/29", "fd00::1", Some("not inside")),
            ("10.0.0.0/31", "10.0.0.0", None),
            ("fd00::/64", "fd00::", Some("anycast")),
            ("fd00::/64", "fd00::1", None),
            ("fd00::/64", "fd00:0:0:1::1", Some("not inside")),
        ];
        for (n, a, want) in cases {
            let got = check_host_address("s", net(n), ip(a));
            match want {
                None => assert!(got.is_ok(), "{n} {a}: {got:?}"),
                Some(text) => {
                    let e = got.expect_err(a);
                    assert_eq!(e.code, crate::error::ErrorCode::AddressOutOfRange);
                    assert!(e.message.contains(text), "{n} {a}: {}", e.message);
                }
            }
        }
    }

    #[test]
    fn allocation_skips_claimed_and_reserved() {
        let n = net("10.0.0.0/29");
        let mut claimed = HashSet::new();
        assert_eq!(first_free(n, &claimed), Some(ip("10.0.0.1")));
        claimed.insert(ip("10.0.0.1"));
        claimed.insert(ip("10.0.0.2"));
        assert_eq!(first_free(n, &claimed), Some(ip("10.0.0.3")));
        for i in 3..=6 {
            claimed.insert(ip(&format!("10.0.0.{i}")));
        }
        assert_eq!(first_free(n, &claimed), None);
        assert_eq!(
            first_free(net("fd00::/64"), &HashSet::new()),
            Some(ip("fd00::1"))
        );
    }

    #[test]
    fn identifiers_and_macs() {
        assert!(check_id("port", "port-1.a_b:c").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_id("port", bad).is_err(), "{bad:?}");
        }
        assert!(check_mac("52:54:00:AB:cd:01").is_ok());
        for bad in ["52:54:00:ab:cd", "52-54-00-ab-cd-01", "zz:54:00:ab:cd:01"] {
            assert!(check_mac(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(" ").is_err());
        assert!(check_name(&"n".repeat(65)).is_err());
        assert!(check_name("web-vip").is_ok());
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
            assert!(e.message.contains(text), "{bad:?}: {}", e.message);
        }
        let ll = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            check_link_locals(&[ll("fe80::1"), ll("fe80::1")]).unwrap(),
            vec![ll("fe80::1")]
        );
        let e = check_link_locals(&[ll("fd00::1")]).expect_err("not link-local");
        assert!(e.message.contains("fe80::/10"), "{}", e.message);
        assert!(check_link_locals(&[ll("fe80::1"); 9]).is_err());
    }
}
