//! Subnet addresses through the API: the allocator on /24, /30, /31, /32
//! and IPv6 /64, /127, /128 with gateways and operator-reserved ranges; a
//! reserved address given is refused with why; overlapping subnets of one
//! VPC are refused; what no host could program is refused at request time.

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

fn subnet(v4: Option<&str>, v6: Option<&str>) -> PutSubnet {
    PutSubnet {
        vpc: "vpc-r".into(),
        cidr_v4: v4.map(|s| s.parse().unwrap()),
        cidr_v6: v6.map(|s| s.parse().unwrap()),
        ..PutSubnet::default()
    }
}

/// Every address the allocator hands out in `sn`, in order, until
/// `subnet_exhausted` (or `limit` of them).
async fn allocate_all(
    a: &havip_controller::client::Client,
    sn: &str,
    v6: bool,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..limit {
        let mut req = create(&format!("{sn}-{i}"), sn);
        if v6 {
            req.ip_version = Some(IpVersion::Ipv6);
        }
        match a.create_havip(&req).await {
            Ok(v) => out.push(v.address.to_string()),
            Err(e) => {
                let (c, msg) = code::<()>(Err(e));
                assert_eq!(c, ErrorCode::SubnetExhausted, "{msg}");
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_skips_gateways_and_reserved_addresses() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    op.put_vpc(
        "vpc-r",
        &PutVpc {
            project: "proj-a".into(),
            name: String::new(),
        },
    )
    .await
    .unwrap();
    let mut r24 = subnet(Some("10.7.0.0/24"), Some("fd00:7::/64"));
    r24.gateway_v4 = Some("10.7.0.254".parse().unwrap());
    r24.reserved = vec!["10.7.0.1-10.7.0.9".into(), "fd00:7::2-fd00:7::ff".into()];
    let s = op.put_subnet("r24", &r24).await.unwrap();
    assert_eq!(s.gateway_v4, Some("10.7.0.254".parse().unwrap()));
    assert_eq!(
        s.gateway_v6,
        Some("fd00:7::1".parse().unwrap()),
        "the default gateway"
    );
    for (id, v4, v6) in [
        ("r30", Some("10.7.1.0/30"), None),
        ("r31", Some("10.7.1.4/31"), None),
        ("r32", Some("10.7.1.9/32"), None),
        ("r127", None, Some("fd00:8::/127")),
        ("r128", None, Some("fd00:8::5/128")),
    ] {
        op.put_subnet(id, &subnet(v4, v6)).await.unwrap();
    }
    // What each hands out, in order, until exhausted.
    assert_eq!(
        allocate_all(&a, "r24", false, 2).await,
        ["10.7.0.10", "10.7.0.11"]
    );
    assert_eq!(
        allocate_all(&a, "r24", true, 2).await,
        ["fd00:7::100", "fd00:7::101"]
    );
    assert_eq!(allocate_all(&a, "r30", false, 9).await, ["10.7.1.2"]);
    assert_eq!(
        allocate_all(&a, "r31", false, 9).await,
        ["10.7.1.4", "10.7.1.5"]
    );
    assert_eq!(allocate_all(&a, "r32", false, 9).await, ["10.7.1.9"]);
    assert_eq!(
        allocate_all(&a, "r127", true, 9).await,
        ["fd00:8::", "fd00:8::1"]
    );
    assert_eq!(allocate_all(&a, "r128", true, 9).await, ["fd00:8::5"]);

    // A reserved address given is refused, saying why.
    let cases = [
        ("10.7.0.0", "network address"),
        ("10.7.0.255", "broadcast address"),
        ("10.7.0.254", "gateway"),
        ("10.7.0.5", "reserved by the operator"),
        ("fd00:7::", "subnet-router anycast"),
        ("fd00:7::1", "gateway"),
        ("fd00:7::fdff:ffff:ffff:ff80", "RFC 2526"),
        ("fd00:7::fdff:ffff:ffff:ffff", "RFC 2526"),
        ("fd00:7::7", "reserved by the operator"),
        ("10.7.9.9", "not inside"),
    ];
    for (addr, why) in cases {
        let mut req = create("given", "r24");
        req.address = Some(ip(addr));
        let (c, msg) = code(a.create_havip(&req).await);
        assert_eq!(c, ErrorCode::AddressOutOfRange, "{addr}: {msg}");
        assert!(msg.contains(why), "{addr}: {msg}");
    }
    // Addresses that are no VIP's, whatever the subnet.
    for (addr, why) in [
        ("0.0.0.0", "unspecified"),
        ("224.0.0.18", "not a unicast"),
        ("fe80::1", "link-local"),
    ] {
        let mut req = create("given", "r24");
        req.address = Some(ip(addr));
        let (c, msg) = code(a.create_havip(&req).await);
        assert_eq!(c, ErrorCode::AddressOutOfRange, "{addr}: {msg}");
        assert!(msg.contains(why), "{addr}: {msg}");
    }
    // A port cannot take the gateway either.
    let (c, msg) = code(
        op.put_port("pg", &port_req("vm-g", "r24", "10.7.0.254", "hv-1"))
            .await,
    );
    assert_eq!(c, ErrorCode::AddressOutOfRange, "{msg}");
    assert!(msg.contains("gateway"), "{msg}");
    // Nor may a gateway be made of a held address.
    op.put_port("pq", &port_req("vm-q", "r24", "10.7.0.20", "hv-1"))
        .await
        .unwrap();
    let mut moved = r24.clone();
    moved.gateway_v4 = Some("10.7.0.20".parse().unwrap());
    let (c, msg) = code(op.put_subnet("r24", &moved).await);
    assert_eq!(c, ErrorCode::AddressInUse, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_that_cannot_be_are_refused() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let op = ctl.client(OP);
    for vpc in ["vpc-r", "vpc-s"] {
        op.put_vpc(
            vpc,
            &PutVpc {
                project: "proj-a".into(),
                name: String::new(),
            },
        )
        .await
        .unwrap();
    }
    op.put_subnet("base", &subnet(Some("10.7.0.0/24"), Some("fd00:7::/64")))
        .await
        .unwrap();
    let mut bad_gw = subnet(Some("10.8.0.0/24"), None);
    bad_gw.gateway_v4 = Some("10.9.0.1".parse().unwrap());
    let mut bad_range = subnet(Some("10.8.0.0/24"), None);
    bad_range.reserved = vec!["10.8.0.9-10.8.0.1".into()];
    let mut outside = subnet(Some("10.8.0.0/24"), None);
    outside.reserved = vec!["10.9.0.1".into()];
    let cases = [
        (
            "overlaps v4",
            subnet(Some("10.7.0.128/25"), None),
            ErrorCode::Conflict,
            "overlaps 10.7.0.0/24 of subnet base",
        ),
        (
            "overlaps v6",
            subnet(None, Some("fd00:7::/48")),
            ErrorCode::Conflict,
            "overlaps fd00:7::/64",
        ),
        (
            "no range",
            subnet(None, None),
            ErrorCode::InvalidArgument,
            "needs cidr_v4, cidr_v6 or both",
        ),
        (
            "unspecified",
            subnet(Some("0.0.0.0/8"), None),
            ErrorCode::InvalidArgument,
            "unspecified, loopback",
        ),
        (
            "link-local",
            subnet(None, Some("fe80::/64")),
            ErrorCode::InvalidArgument,
            "link-local range",
        ),
        (
            "host bits",
            subnet(Some("10.8.0.1/24"), None),
            ErrorCode::InvalidArgument,
            "did you mean 10.8.0.0/24",
        ),
        (
            "gateway outside",
            bad_gw,
            ErrorCode::InvalidArgument,
            "gateway 10.9.0.1 is not a host address",
        ),
        (
            "range backwards",
            bad_range,
            ErrorCode::InvalidArgument,
            "must not come after",
        ),
        (
            "range outside",
            outside,
            ErrorCode::InvalidArgument,
            "not inside the subnet's ranges",
        ),
    ];
    for (what, req, want, text) in cases {
        let (c, msg) = code(op.put_subnet("new", &req).await);
        assert_eq!(c, want, "{what}: {msg}");
        assert!(msg.contains(text), "{what}: {msg}");
    }
    // The same range in another VPC is another network: fine.
    let mut other = subnet(Some("10.7.0.0/24"), None);
    other.vpc = "vpc-s".into();
    op.put_subnet("elsewhere", &other).await.unwrap();
    // Registering the same subnet again is no overlap with itself.
    op.put_subnet("base", &subnet(Some("10.7.0.0/24"), Some("fd00:7::/64")))
        .await
        .unwrap();

    // Ports no host could program.
    let mut multicast = port_req("vm-m", "base", "10.7.0.30", "hv-1");
    multicast.mac = "01:00:5e:00:00:01".into();
    let mut long_if = port_req("vm-l", "base", "10.7.0.31", "hv-1");
    long_if.interface = "tap-with-a-long-name".into();
    let zero_ip = port_req("vm-z", "base", "0.0.0.0", "hv-1");
    let cases = [
        (multicast, "multicast"),
        (long_if, "longer than 15 bytes"),
        (zero_ip, "not a unicast address"),
    ];
    for (req, text) in cases {
        let (c, msg) = code(op.put_port("px", &req).await);
        assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");
        assert!(msg.contains(text), "{msg}");
    }
    // Two ports of one host on one interface would shadow each other.
    op.put_port("p1", &port_req("vm-1", "base", "10.7.0.40", "hv-1"))
        .await
        .unwrap();
    let mut same_if = port_req("vm-2", "base", "10.7.0.41", "hv-1");
    same_if.interface = "tap-vm-1".into();
    let (c, msg) = code(op.put_port("p2", &same_if).await);
    assert_eq!(c, ErrorCode::Conflict, "{msg}");
    assert!(
        msg.contains("interface tap-vm-1 on host hv-1 is already port p1's"),
        "{msg}"
    );
    // On another host the same name is another interface.
    let mut elsewhere = same_if.clone();
    elsewhere.host = "hv-2".into();
    op.put_port("p2", &elsewhere).await.unwrap();
}
