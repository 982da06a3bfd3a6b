//! The public addresses of EIP pools: the ranges an operator gives (a
//! CIDR or `first-last`), whether an address is a pool's, and the lowest
//! free one.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addresses::{addr, num, same_family, AddrRange};
use crate::records::{EipPool, IpVersion};
use crate::Invalid;

/// The most ranges one pool has.
pub const MAX_POOL_RANGES: usize = 64;

/// A pool range from an operator: a CIDR (its host addresses: without the
/// network and broadcast addresses of an IPv4 prefix shorter than /31,
/// without the subnet-router anycast address of an IPv6 prefix shorter
/// than /127), `first-last`, or one address.
pub fn parse_range(s: &str) -> Result<AddrRange, Invalid> {
    if let Ok(net) = s.trim().parse::<IpNet>() {
        let (lo, hi) = (num(&net.network()), num(&net.broadcast()));
        let (lo, hi) = match net {
            IpNet::V4(n) if n.prefix_len() < 31 => (lo + 1, hi - 1),
            IpNet::V6(n) if n.prefix_len() < 127 => (lo + 1, hi),
            _ => (lo, hi),
        };
        let v4 = net.addr().is_ipv4();
        return Ok(AddrRange {
            first: addr(v4, lo),
            last: addr(v4, hi),
        });
    }
    s.parse()
}

/// Whether `ip` is one of the pool's addresses.
pub fn contains(pool: &EipPool, ip: &IpAddr) -> bool {
    pool.ranges.iter().any(|r| r.contains(ip))
}

/// Whether the pool has addresses of `version`.
pub fn serves(pool: &EipPool, version: IpVersion) -> bool {
    pool.ranges
        .iter()
        .any(|r| IpVersion::of(&r.first) == version)
}

/// The lowest address of `version` in the pool that is not `claimed`.
pub fn first_free(pool: &EipPool, version: IpVersion, claimed: &HashSet<IpAddr>) -> Option<IpAddr> {
    let v4 = version == IpVersion::Ipv4;
    pool.ranges
        .iter()
        .filter(|r| IpVersion::of(&r.first) == version)
        .find_map(|r| {
            // At most `claimed.len()` addresses of a range are taken: the
            // first free one is within that many steps.
            let (lo, hi) = (num(&r.first), num(&r.last));
            (0..=claimed.len() as u128)
                .map_while(|i| lo.checked_add(i).filter(|n| *n <= hi))
                .map(|n| addr(v4, n))
                .find(|ip| !claimed.contains(ip))
        })
}

/// What keeps `pool` from being a pool: no range or too many, a range
/// whose ends are not one family or out of order, an address no EIP can
/// be, overlapping ranges.
pub fn pool_problem(pool: &EipPool) -> Option<String> {
    if pool.ranges.is_empty() {
        return Some("it has no address range".into());
    }
    if pool.ranges.len() > MAX_POOL_RANGES {
        return Some(format!(
            "{} ranges, at most {MAX_POOL_RANGES}",
            pool.ranges.len()
        ));
    }
    if let Err(e) = crate::rules::check_id("gateway", &pool.gateway) {
        return Some(e.0);
    }
    for (i, r) in pool.ranges.iter().enumerate() {
        if !same_family(&r.first, &r.last) || num(&r.first) > num(&r.last) {
            return Some(format!(
                "range {r}: its ends are out of order or of two families"
            ));
        }
        for ip in [r.first, r.last] {
            if !crate::rules::is_unicast(&ip) {
                return Some(format!("range {r}: {ip} is no public unicast address"));
            }
        }
        if let Some(other) = pool.ranges[..i].iter().find(|o| {
            same_family(&o.first, &r.first)
                && num(&o.first) <= num(&r.last)
                && num(&r.first) <= num(&o.last)
        }) {
            return Some(format!("ranges {other} and {r} overlap"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn pool(ranges: &[&str]) -> EipPool {
        EipPool {
            id: "pl".into(),
            description: String::new(),
            gateway: "gw-1".into(),
            ranges: ranges.iter().map(|r| parse_range(r).unwrap()).collect(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn ranges_and_allocation() {
        let p = pool(&["198.51.100.0/30", "2001:db8::/126", "203.0.113.7"]);
        assert_eq!(p.problem(), None);
        assert_eq!(p.ranges[0].to_string(), "198.51.100.1-198.51.100.2");
        assert_eq!(p.ranges[1].to_string(), "2001:db8::1-2001:db8::3");
        assert!(contains(&p, &"203.0.113.7".parse().unwrap()));
        assert!(!contains(&p, &"198.51.100.3".parse().unwrap()));
        let mut claimed = HashSet::new();
        let mut got = Vec::new();
        while let Some(ip) = first_free(&p, IpVersion::Ipv4, &claimed) {
            claimed.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(got, ["198.51.100.1", "198.51.100.2", "203.0.113.7"]);
        assert_eq!(
            first_free(&p, IpVersion::Ipv6, &HashSet::new()),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(pool(&["198.51.100.0/29", "198.51.100.4"])
            .problem()
            .unwrap()
            .contains("overlap"));
        assert!(pool(&[]).problem().unwrap().contains("no address range"));
        assert!(parse_range("198.51.100.9-198.51.100.1").is_err());
        assert!(pool(&["224.0.0.1"]).problem().is_some());
    }
}
