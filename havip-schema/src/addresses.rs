//! The addresses of a subnet: which are usable by a VIP or a port, which
//! are reserved (and why), and the allocator.
//!
//! | range | reserved, never handed out nor accepted |
//! |-------|------------------------------------------|
//! | IPv4 /30 and wider | the network address, the gateway, the broadcast |
//! | IPv4 /31 (RFC 3021), /32 | only a gateway given explicitly |
//! | IPv6 /126 and wider | the subnet-router anycast (all-zero host part), the gateway; with /64 the 128 RFC 2526 anycast addresses `::fdff:ffff:ffff:ff80`-`::fdff:ffff:ffff:ffff`, with other prefixes up to /120 the highest 128 |
//! | IPv6 /127 (RFC 6164), /128 | only a gateway given explicitly |
//! | any | the ranges the operator reserves |
//!
//! The gateway is the first host address (10.9.0.1 in 10.9.0.0/24) unless
//! the subnet names another; /31, /32, /127 and /128 have none unless named.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::records::{IpVersion, Subnet};
use crate::Invalid;

/// An inclusive range of addresses of one family: `10.0.0.10-10.0.0.20`,
/// or one address `10.0.0.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl AddrRange {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        same_family(&self.first, ip) && num(&self.first) <= num(ip) && num(ip) <= num(&self.last)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for AddrRange {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid(format!("{s:?} is not an address or a range first-last"));
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
        if !same_family(&first, &last) || num(&first) > num(&last) {
            return Err(Invalid(format!(
                "range {s:?}: the first address must not come after the last, both of one family"
            )));
        }
        Ok(AddrRange { first, last })
    }
}

impl Serialize for AddrRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddrRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

pub(crate) fn num(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

pub(crate) fn addr(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The gateway a range gets when the subnet names none: its first host
/// address, for ranges with room for one besides the reserved ones.
pub fn default_gateway(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() <= 30 => Some(addr(true, num(&n.network().into()) + 1)),
        IpNet::V6(n) if n.prefix_len() <= 126 => Some(addr(false, num(&n.network().into()) + 1)),
        _ => None,
    }
}

/// The RFC 2526 reserved anycast addresses of an IPv6 range, if it has them.
fn rfc2526(net: &ipnet::Ipv6Net) -> Option<(u128, u128)> {
    let base = u128::from(net.network());
    match net.prefix_len() {
        64 => {
            let first = base | 0xfdff_ffff_ffff_ff80;
            Some((first, first | 0x7f))
        }
        p if p <= 120 => {
            let last = u128::from(net.broadcast());
            Some((last - 0x7f, last))
        }
        _ => None,
    }
}

impl Subnet {
    /// The range of this subnet for `version`.
    pub fn range(&self, version: IpVersion) -> Option<IpNet> {
        match version {
            IpVersion::Ipv4 => self.cidr_v4.map(IpNet::V4),
            IpVersion::Ipv6 => self.cidr_v6.map(IpNet::V6),
        }
    }

    /// The gateway of the range of `version`: the one named, else the
    /// default ([`default_gateway`]).
    pub fn gateway(&self, version: IpVersion) -> Option<IpAddr> {
        match version {
            IpVersion::Ipv4 => self.gateway_v4.map(IpAddr::V4),
            IpVersion::Ipv6 => self.gateway_v6.map(IpAddr::V6),
        }
        .or_else(|| default_gateway(&self.range(version)?))
    }

    /// Why `ip` is reserved in this subnet, if it is (it must be inside).
    pub fn reserved_reason(&self, ip: &IpAddr) -> Option<String> {
        let version = IpVersion::of(ip);
        let net = self.range(version)?;
        if self.gateway(version) == Some(*ip) {
            return Some(format!("{ip} is the gateway of subnet {}", self.id));
        }
        match net {
            IpNet::V4(n) if n.prefix_len() <= 30 => {
                if *ip == IpAddr::V4(n.network()) {
                    return Some(format!(
                        "{ip} is the network address of subnet {} ({net})",
                        self.id
                    ));
                }
                if *ip == IpAddr::V4(n.broadcast()) {
                    return Some(format!(
                        "{ip} is the broadcast address of subnet {} ({net})",
                        self.id
                    ));
                }
            }
            IpNet::V6(n) if n.prefix_len() <= 126 => {
                if *ip == IpAddr::V6(n.network()) {
                    return Some(format!(
                        "{ip} is the subnet-router anycast address of subnet {} ({net})",
                        self.id
                    ));
                }
                if let Some((a, b)) = rfc2526(&n) {
                    if (a..=b).contains(&num(ip)) {
                        return Some(format!(
                            "{ip} is a reserved IPv6 anycast address (RFC 2526) of subnet {} ({net})",
                            self.id
                        ));
                    }
                }
            }
            _ => {}
        }
        self.reserved.iter().find(|r| r.contains(ip)).map(|r| {
            format!(
                "{ip} is in {r}, reserved by the operator in subnet {}",
                self.id
            )
        })
    }

    /// A usable host address of this subnet: inside its range of that
    /// family and not reserved.
    pub fn check_host_address(&self, ip: &IpAddr) -> Result<(), AddressError> {
        let version = IpVersion::of(ip);
        let Some(net) = self.range(version) else {
            return Err(AddressError::OutOfRange(format!(
                "subnet {} has no {} range",
                self.id,
                version.as_str()
            )));
        };
        if !net.contains(ip) {
            return Err(AddressError::OutOfRange(format!(
                "{ip} is not inside {net}, the range of subnet {}",
                self.id
            )));
        }
        match self.reserved_reason(ip) {
            Some(why) => Err(AddressError::Reserved(why)),
            None => Ok(()),
        }
    }

    /// The lowest usable address of `version` not in `claimed`.
    pub fn first_free(&self, version: IpVersion, claimed: &HashSet<IpAddr>) -> Option<IpAddr> {
        let net = self.range(version)?;
        let v4 = version == IpVersion::Ipv4;
        let (lo, hi) = (num(&net.network()), num(&net.broadcast()));
        let mut n = lo;
        loop {
            let ip = addr(v4, n);
            if let Some(r) = self.reserved.iter().find(|r| r.contains(&ip)) {
                // Jump over a whole reserved range (it may be huge).
                n = num(&r.last).checked_add(1)?;
            } else if self.reserved_reason(&ip).is_none() && !claimed.contains(&ip) {
                return Some(ip);
            } else {
                n = n.checked_add(1)?;
            }
            if n > hi {
                return None;
            }
        }
    }

    /// What keeps this record from being a subnet: no range, a range that
    /// holds no VM's addresses, a gateway outside its range, a reserved
    /// range of another family or outside.
    pub fn problem(&self) -> Option<String> {
        if self.datapath_id == Some(0) {
            return Some("datapath id 0 is no subnet's".into());
        }
        if self.cidr_v4.is_none() && self.cidr_v6.is_none() {
            return Some("a subnet needs cidr_v4, cidr_v6 or both".into());
        }
        for net in self
            .cidr_v4
            .map(IpNet::V4)
            .into_iter()
            .chain(self.cidr_v6.map(IpNet::V6))
        {
            if let Some(why) = crate::rules::subnet_range_problem(&net) {
                return Some(why);
            }
        }
        let gateways = [
            (self.gateway_v4.map(IpAddr::V4), IpVersion::Ipv4),
            (self.gateway_v6.map(IpAddr::V6), IpVersion::Ipv6),
        ];
        for (gw, version) in gateways {
            let Some(gw) = gw else { continue };
            match self.range(version) {
                Some(net)
                    if net.contains(&gw)
                        && (net_is_small(&net)
                            || (gw != net.network()
                                && !(version == IpVersion::Ipv4 && gw == net.broadcast()))) => {}
                _ => {
                    return Some(format!(
                        "gateway {gw} is not a host address of the subnet's {} range",
                        version.as_str()
                    ))
                }
            }
        }
        for r in &self.reserved {
            let inside = self
                .range(IpVersion::of(&r.first))
                .is_some_and(|n| n.contains(&r.first) && n.contains(&r.last));
            if !inside {
                return Some(format!(
                    "reserved range {r} is not inside the subnet's ranges"
                ));
            }
        }
        None
    }
}

/// /31, /32, /127, /128: every address is a host address.
fn net_is_small(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() >= 31,
        IpNet::V6(n) => n.prefix_len() >= 127,
    }
}

/// Why an address cannot be given in a subnet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Reserved(String),
}

/// Whether two ranges share an address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests;
