//! The allocator and the reserved addresses, on every prefix the README
//! documents.

use std::collections::HashSet;
use std::net::IpAddr;

use super::*;

fn subnet(v4: Option<&str>, v6: Option<&str>) -> Subnet {
    Subnet {
        id: "s".into(),
        vpc: "v".into(),
        project: "p".into(),
        name: String::new(),
        cidr_v4: v4.map(|s| s.parse().unwrap()),
        cidr_v6: v6.map(|s| s.parse().unwrap()),
        gateway_v4: None,
        gateway_v6: None,
        reserved: Vec::new(),
        datapath_id: None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every address the allocator hands out, in order, until it has none.
fn all_free(s: &Subnet, v: IpVersion, limit: usize) -> Vec<String> {
    let mut claimed = HashSet::new();
    let mut out = Vec::new();
    while let Some(a) = s.first_free(v, &claimed) {
        out.push(a.to_string());
        claimed.insert(a);
        if out.len() == limit {
            break;
        }
    }
    out
}

#[test]
fn allocation_per_prefix() {
    use IpVersion::*;
    let cases: Vec<(Subnet, IpVersion, usize, Vec<&str>)> = vec![
        // /24: .0 network, .1 gateway, .255 broadcast.
        (
            subnet(Some("10.9.0.0/24"), None),
            Ipv4,
            2,
            vec!["10.9.0.2", "10.9.0.3"],
        ),
        // /30: one address left besides network, gateway, broadcast.
        (subnet(Some("10.9.0.0/30"), None), Ipv4, 9, vec!["10.9.0.2"]),
        // /31 (RFC 3021): both, no gateway unless named.
        (
            subnet(Some("10.9.0.0/31"), None),
            Ipv4,
            9,
            vec!["10.9.0.0", "10.9.0.1"],
        ),
        (subnet(Some("10.9.0.7/32"), None), Ipv4, 9, vec!["10.9.0.7"]),
        (
            subnet(None, Some("fd00:9::/64")),
            Ipv6,
            2,
            vec!["fd00:9::2", "fd00:9::3"],
        ),
        // /127 (RFC 6164): both; /128: the one.
        (
            subnet(None, Some("fd00:9::/127")),
            Ipv6,
            9,
            vec!["fd00:9::", "fd00:9::1"],
        ),
        (
            subnet(None, Some("fd00:9::5/128")),
            Ipv6,
            9,
            vec!["fd00:9::5"],
        ),
    ];
    for (s, v, limit, want) in cases {
        assert_eq!(
            all_free(&s, v, limit),
            want,
            "{:?} {:?}",
            s.cidr_v4,
            s.cidr_v6
        );
    }
    // A /24 hands out 253 addresses in all: 256 less network, gateway, broadcast.
    assert_eq!(
        all_free(&subnet(Some("10.9.0.0/24"), None), Ipv4, 1000).len(),
        253
    );
    // A /120 keeps its highest 128 (RFC 2526) and ::0 and ::1.
    assert_eq!(
        all_free(&subnet(None, Some("fd00:9::/120")), Ipv6, 1000).len(),
        126
    );
}

#[test]
fn gateways_and_operator_ranges() {
    let mut s = subnet(Some("10.9.0.0/24"), Some("fd00:9::/64"));
    s.gateway_v4 = Some("10.9.0.254".parse().unwrap());
    s.gateway_v6 = Some("fd00:9::fe".parse().unwrap());
    s.reserved = vec![
        "10.9.0.1-10.9.0.9".parse().unwrap(),
        "fd00:9::1-fd00:9::ffff".parse().unwrap(),
    ];
    assert_eq!(s.problem(), None);
    assert_eq!(
        s.first_free(IpVersion::Ipv4, &HashSet::new()),
        Some(ip("10.9.0.10"))
    );
    assert_eq!(
        s.first_free(IpVersion::Ipv6, &HashSet::new()),
        Some(ip("fd00:9::1:0"))
    );
    // A huge reserved IPv6 range is jumped over, not walked.
    s.reserved
        .push("fd00:9::1:0-fd00:9::ffff:ffff:ffff".parse().unwrap());
    assert_eq!(
        s.first_free(IpVersion::Ipv6, &HashSet::new()),
        Some(ip("fd00:9::1:0:0:0"))
    );
    let cases = [
        ("10.9.0.0", "network address"),
        ("10.9.0.254", "gateway"),
        ("10.9.0.255", "broadcast"),
        ("10.9.0.5", "reserved by the operator"),
        ("10.9.1.5", "not inside"),
        ("fd00:9::", "subnet-router anycast"),
        ("fd00:9::fe", "gateway"),
        ("fd00:9::fdff:ffff:ffff:ff80", "RFC 2526"),
        ("fd00:9::fdff:ffff:ffff:ffff", "RFC 2526"),
        ("fd00:9::7", "reserved by the operator"),
    ];
    for (a, why) in cases {
        let e = s.check_host_address(&ip(a)).expect_err(a);
        assert!(e.to_string().contains(why), "{a}: {e}");
    }
    for a in ["10.9.0.10", "10.9.0.1", "fd00:9::fdff:ffff:ffff:ff7f"] {
        // 10.9.0.1 is neither the named gateway nor outside the operator's
        // range: still reserved by the operator.
        let r = s.check_host_address(&ip(a));
        assert_eq!(r.is_ok(), a != "10.9.0.1", "{a}: {r:?}");
    }
}

#[test]
fn small_prefixes_and_bad_subnets() {
    let mut s = subnet(Some("10.9.0.0/31"), None);
    assert!(s.check_host_address(&ip("10.9.0.0")).is_ok());
    s.gateway_v4 = Some("10.9.0.0".parse().unwrap());
    assert_eq!(s.problem(), None);
    assert!(s
        .check_host_address(&ip("10.9.0.0"))
        .unwrap_err()
        .to_string()
        .contains("gateway"));
    assert_eq!(
        s.first_free(IpVersion::Ipv4, &HashSet::new()),
        Some(ip("10.9.0.1"))
    );
    let mut bad = subnet(Some("10.9.0.0/24"), None);
    bad.gateway_v4 = Some("10.9.0.0".parse().unwrap());
    assert!(bad.problem().unwrap().contains("gateway"));
    bad.gateway_v4 = Some("10.9.1.1".parse().unwrap());
    assert!(bad.problem().unwrap().contains("gateway"));
    bad.gateway_v4 = None;
    bad.reserved = vec!["10.8.0.1-10.9.0.3".parse().unwrap()];
    assert!(bad.problem().unwrap().contains("not inside"));
    assert!(subnet(Some("0.0.0.0/8"), None).problem().is_some());
    assert!(subnet(None, None).problem().is_some());
    assert!("10.0.0.9-10.0.0.1".parse::<AddrRange>().is_err());
    assert!("10.0.0.1-fd00::1".parse::<AddrRange>().is_err());
    let a: IpNet = "10.0.0.0/16".parse().unwrap();
    assert!(overlap(&a, &"10.0.5.0/24".parse().unwrap()));
    assert!(!overlap(&a, &"10.1.0.0/24".parse().unwrap()));
}
