//! The snapshot and its config, bad records included.

use super::*;
use chrono::Utc;
use havip_common::vip::MAX_BINDINGS;
use havip_schema::records::{Binding, IpVersion, NetworkType, PortVip, Status};

#[test]
fn numeric_ids_are_stable_and_never_zero() {
    assert_eq!(numeric_id("havip-1"), numeric_id("havip-1"));
    assert_ne!(numeric_id("havip-1"), numeric_id("havip-2"));
    assert_ne!(numeric_id(""), 0);
    // FNV-1a of "a" (a published test vector).
    assert_eq!(numeric_id("a"), 0xe40c_292c);
}

fn snapshot() -> Snapshot {
    let subnet = Subnet {
        id: "subnet-a".into(),
        vpc: "vpc-1".into(),
        project: "p".into(),
        name: String::new(),
        cidr_v4: Some("10.0.6.0/24".parse().unwrap()),
        cidr_v6: Some("fd00:6::/64".parse().unwrap()),
        gateway_v4: None,
        gateway_v6: None,
        reserved: vec![],
        datapath_id: None,
    };
    let vip = |id: &str, addr: &str, ports: &[(&str, &str)]| Vip {
        id: id.into(),
        project: "p".into(),
        name: id.into(),
        description: String::new(),
        network_type: NetworkType::Intranet,
        vpc: "vpc-1".into(),
        subnet: "subnet-a".into(),
        ip_version: IpVersion::Ipv4,
        address: addr.parse().unwrap(),
        ports: ports
            .iter()
            .map(|(port, host)| Binding {
                port: (*port).into(),
                vm: format!("vm-{port}"),
                host: (*host).into(),
                datapath_id: None,
            })
            .collect(),
        status: Status::Creating,
        status_reason: None,
        generation: 1,
        ports_per_vip: None,
        vrid: None,
        hold_down_ms: 250,
        created_at: Utc::now(),
        datapath_id: None,
    };
    let host_port = HostPort {
        port: "port-1".into(),
        vm: "vm-1".into(),
        vpc: "vpc-1".into(),
        subnet: "subnet-a".into(),
        mac: "02:00:00:00:00:11".parse().unwrap(),
        interface: "tap-vm1".into(),
        fixed_ips: vec!["10.0.6.9".parse().unwrap()],
        vips: vec![PortVip {
            id: "havip-web".into(),
            address: "10.0.6.19".parse().unwrap(),
        }],
        vlans: vec![10],
        link_locals: vec!["fe80::5:11".parse().unwrap()],
        datapath_id: None,
    };
    Snapshot {
        revision: 7,
        host_ports: vec![host_port],
        subnets: BTreeMap::from([("subnet-a".into(), subnet)]),
        vips: BTreeMap::from([
            (
                "havip-web".into(),
                vip(
                    "havip-web",
                    "10.0.6.19",
                    &[("port-1", "hv-a"), ("port-2", "hv-b")],
                ),
            ),
            (
                "havip-db".into(),
                vip("havip-db", "10.0.6.29", &[("port-3", "hv-c")]),
            ),
            ("havip-dup".into(), vip("havip-dup", "10.0.6.19", &[])),
        ]),
        owners: BTreeMap::new(),
        port_macs: HashMap::from([
            ("port-1".into(), [2, 0, 0, 0, 0, 0x11]),
            ("port-2".into(), [2, 0, 0, 0, 0, 0x12]),
        ]),
        bad: BadRecords::default(),
    }
}

#[test]
fn a_snapshot_becomes_the_hosts_config() {
    let mut s = snapshot();
    s.vips.remove("havip-dup");
    let p = to_config(&s);
    let c = &p.config;
    let net = numeric_id("subnet-a");
    assert_eq!(c.networks[&net].cidrs.len(), 2);
    let port = &c.ports[&numeric_id("port-1")];
    assert_eq!(port.interface, "tap-vm1");
    assert_eq!(port.network, net);
    assert!(port.port_security);
    assert_eq!(
        port.link_local,
        "fe80::ff:fe00:11".parse::<std::net::Ipv6Addr>().unwrap()
    );
    // The VLANs and registered link-locals of the port record.
    assert_eq!(port.vlans, vec![10]);
    assert_eq!(
        port.link_locals,
        vec!["fe80::5:11".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert_eq!(c.ports.len(), 1, "only this host's ports");

    let web = &c.vips[&numeric_id("havip-web")];
    assert_eq!(
        web.ports,
        vec![numeric_id("port-1"), numeric_id("port-2")],
        "bound ports of every host"
    );
    assert_eq!(web.hold_down_ms, 250, "the HAVIP's hold-down");
    assert!(
        c.vips.contains_key(&numeric_id("havip-db")),
        "VIPs of the subnet bound elsewhere are programmed too (ARP answers, delivery)"
    );
    assert_eq!(p.vip_ids[&numeric_id("havip-web")], "havip-web");
    assert_eq!(p.port_ids[&numeric_id("port-1")], "port-1");
}

#[test]
fn a_vip_that_cannot_be_programmed_says_why() {
    let p = to_config(&snapshot());
    // "havip-db" < "havip-dup" < "havip-web": dup takes .19 first.
    assert_eq!(
        p.problems.get("havip-web").map(String::as_str),
        Some("havip-dup has the same address 10.0.6.19")
    );
    assert!(!p.config.vips.contains_key(&numeric_id("havip-web")));

    let mut s = snapshot();
    s.vips.remove("havip-dup");
    let many: Vec<Binding> = (0..=MAX_BINDINGS)
        .map(|i| Binding {
            port: format!("port-x{i}"),
            vm: "vm".into(),
            host: "hv-a".into(),
            datapath_id: None,
        })
        .collect();
    s.vips.get_mut("havip-db").unwrap().ports = many;
    let p = to_config(&s);
    assert!(
        p.problems["havip-db"].contains("at most 16"),
        "{:?}",
        p.problems
    );
    assert!(p.config.vips.contains_key(&numeric_id("havip-web")));
}

#[test]
fn a_vip_that_cannot_be_programmed_keeps_what_was_in_force() {
    let mut s = snapshot();
    s.vips.remove("havip-dup");
    let before = to_config(&s).config;
    let web = numeric_id("havip-web");
    // Now bound to more ports than the datapath holds.
    s.vips.get_mut("havip-web").unwrap().ports = (0..=MAX_BINDINGS)
        .map(|i| Binding {
            port: format!("port-x{i}"),
            vm: "vm".into(),
            host: "hv-a".into(),
            datapath_id: None,
        })
        .collect();
    let mut p = to_config(&s);
    assert!(!p.config.vips.contains_key(&web));
    keep_in_force(&mut p, &before);
    assert_eq!(p.config.vips[&web], before.vips[&web]);
    assert_eq!(p.vip_ids[&web], "havip-web");
    assert!(p.problems.contains_key("havip-web"), "still reported");

    // Not when its address went to another VIP meanwhile.
    let mut p = to_config(&snapshot());
    keep_in_force(&mut p, &before);
    assert!(!p.config.vips.contains_key(&web));
}

#[test]
fn a_kept_snapshot_reads_back_the_same_config() {
    let dir = std::env::temp_dir().join(format!("havip-etcd-cache-{}", std::process::id()));
    let path = dir.join("hv-a.json");
    let s = snapshot();
    s.save(&path).unwrap();
    let back = Snapshot::load(&path).unwrap();
    assert_eq!(back.revision, 7);
    assert_eq!(to_config(&back), to_config(&s));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_changes_that_concern_the_host_reread() {
    let s = snapshot();
    let other_subnet = serde_json::to_vec(&Vip {
        subnet: "subnet-z".into(),
        ..s.vips["havip-db"].clone()
    })
    .unwrap();
    let new_here = serde_json::to_vec(&Vip {
        id: "havip-new".into(),
        ..s.vips["havip-db"].clone()
    })
    .unwrap();
    let cases: &[(&str, &[u8], bool)] = &[
        ("/havip/v1/hosts/hv-a/ports/port-9", b"", true),
        ("/havip/v1/hosts/hv-b/ports/port-2", b"", false),
        ("/havip/v1/subnets/subnet-a", b"", true),
        ("/havip/v1/subnets/subnet-z", b"", false),
        ("/havip/v1/ports/port-2", b"", true),
        ("/havip/v1/ports/port-77", b"", false),
        ("/havip/v1/vips/havip-web", b"", true),
        ("/havip/v1/vips/havip-zz", &other_subnet, false),
        ("/havip/v1/vips/havip-new", &new_here, true),
        ("/havip/v1/reports/hv-a/acks/havip-web", b"", false),
        ("/havip/v1/addrs/subnet-a/10.0.6.40", b"", false),
        ("/other/app", b"", false),
    ];
    for (key, value, want) in cases {
        assert_eq!(s.concerns("hv-a", key, value), *want, "{key}");
    }
}

/// A bad record as [`Snapshot::read`] keeps it.
fn bad(key: &str, value: &[u8]) -> BadRecord {
    let e = serde_json::from_slice::<Vip>(value).expect_err("a bad record");
    BadRecord::of(key, value, &e)
}

#[test]
fn a_bad_record_tells_what_it_can() {
    let wrong_types = br#"{"id": "havip-x", "subnet": "subnet-a", "generation": 4,
        "address": 42, "ports": [{"port": "port-1", "host": "hv-a"}]}"#;
    let b = bad("/havip/v1/vips/havip-x", wrong_types);
    assert_eq!(
        (b.generation, b.subnet.as_deref(), b.hosts.clone()),
        (Some(4), Some("subnet-a"), vec!["hv-a".to_string()])
    );
    assert!(b
        .problem()
        .starts_with("its record /havip/v1/vips/havip-x is not valid: "));
    let b = bad("/havip/v1/vips/havip-y", b"{\"id\": \"havip-y\", ");
    assert_eq!((b.generation, b.subnet, b.hosts), (None, None, vec![]));
}

/// A record changed, and what that must fail: these VIPs and ports, each
/// for a reason that begins with `reason`.
struct Case {
    what: &'static str,
    change: fn(&mut Snapshot),
    vip_problems: &'static [&'static str],
    port_problems: &'static [&'static str],
    reason: &'static str,
}

impl Case {
    /// `p` fails what the case says, and only that, for its reason.
    fn check(&self, p: &Programmed) {
        let problems: Vec<&str> = p.problems.keys().map(String::as_str).collect();
        let port_problems: Vec<&str> = p.port_problems.keys().map(String::as_str).collect();
        assert_eq!(problems, self.vip_problems, "{}: VIPs", self.what);
        assert_eq!(port_problems, self.port_problems, "{}: ports", self.what);
        let all: Vec<&String> = p
            .problems
            .values()
            .chain(p.port_problems.values())
            .collect();
        assert!(
            all.iter().all(|r| r.starts_with(self.reason)),
            "{}: {all:?}",
            self.what
        );
    }
}

/// A second local port like port-1, changed by `change`.
fn second_port(s: &mut Snapshot, change: fn(&mut HostPort)) {
    let mut other = s.host_ports[0].clone();
    other.port = "port-9".into();
    other.interface = "tap-vm9".into();
    other.fixed_ips = vec!["10.0.6.99".parse().unwrap()];
    other.mac = "02:00:00:00:00:99".parse().unwrap();
    other.link_locals.clear();
    change(&mut other);
    s.host_ports.push(other);
}

/// Each bad record fails what it concerns, and keeps what it had in
/// force; everything else is programmed.
#[test]
fn a_bad_record_fails_only_what_it_concerns_and_keeps_what_was_in_force() {
    let good = || {
        let mut s = snapshot();
        s.vips.remove("havip-dup");
        s
    };
    let before = to_config(&good()).config;
    let (web, db, port) = (
        numeric_id("havip-web"),
        numeric_id("havip-db"),
        numeric_id("port-1"),
    );
    let cases = [
        Case {
            what: "a VIP record of the wrong types",
            change: |s| {
                s.vips.remove("havip-web");
                s.bad.vips.insert(
                    "havip-web".into(),
                    bad("/havip/v1/vips/havip-web", br#"{"address": 42}"#),
                );
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its record /havip/v1/vips/havip-web is not valid",
        },
        Case {
            what: "a VIP outside its subnet",
            change: |s| {
                s.vips.get_mut("havip-web").unwrap().address = "10.9.9.9".parse().unwrap();
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address 10.9.9.9 is outside subnet subnet-a (10.0.6.0/24, fd00:6::/64)",
        },
        Case {
            what: "this host's record of a port, malformed",
            change: |s| {
                s.host_ports.clear();
                let key = "/havip/v1/hosts/hv-a/ports/port-1";
                s.bad.ports.insert("port-1".into(), bad(key, b"{not json"));
            },
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "its record /havip/v1/hosts/hv-a/ports/port-1 is not valid",
        },
        // This host's record of a port, field by field.
        Case {
            what: "a port whose MAC is a group address",
            change: |s| s.host_ports[0].mac = "01:00:5e:00:00:01".parse().unwrap(),
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "mac 01:00:5e:00:00:01 is a multicast (group) MAC address",
        },
        Case {
            what: "a port whose MAC is all zero",
            change: |s| s.host_ports[0].mac = "00:00:00:00:00:00".parse().unwrap(),
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "mac 00:00:00:00:00:00 is all zero",
        },
        Case {
            what: "a port whose interface is no Linux name",
            change: |s| s.host_ports[0].interface = "tap-of-a-very-long-name".into(),
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "interface \"tap-of-a-very-long-name\" is longer than 15 bytes",
        },
        Case {
            what: "a port whose fixed IP is 0.0.0.0",
            change: |s| s.host_ports[0].fixed_ips = vec!["0.0.0.0".parse().unwrap()],
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "fixed ip 0.0.0.0 is not a unicast address",
        },
        Case {
            what: "a port whose fixed IP is outside its subnet",
            change: |s| s.host_ports[0].fixed_ips = vec!["10.9.9.9".parse().unwrap()],
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "fixed ip 10.9.9.9 is outside subnet subnet-a",
        },
        Case {
            what: "a port with a VLAN that is none",
            change: |s| s.host_ports[0].vlans = vec![4095],
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "vlan 4095 in vlans is not a VLAN id (1 to 4094)",
        },
        Case {
            what: "a port with a registered link-local that is none",
            change: |s| s.host_ports[0].link_locals = vec!["fd00:6::1".parse().unwrap()],
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "link_local fd00:6::1 in link_locals is not an IPv6 link-local",
        },
        Case {
            what: "a second port on the same interface",
            change: |s| second_port(s, |p| p.interface = "tap-vm1".into()),
            vip_problems: &[],
            port_problems: &["port-9"],
            reason: "interface tap-vm1 is already port port-1's",
        },
        Case {
            what: "a second port with the same fixed IP",
            change: |s| second_port(s, |p| p.fixed_ips = vec!["10.0.6.9".parse().unwrap()]),
            vip_problems: &[],
            port_problems: &["port-9"],
            reason: "address 10.0.6.9 is already port port-1's",
        },
        // A VIP record, field by field.
        Case {
            what: "a VIP at 0.0.0.0",
            change: |s| s.vips.get_mut("havip-web").unwrap().address = "0.0.0.0".parse().unwrap(),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address 0.0.0.0 is the unspecified address",
        },
        Case {
            what: "a VIP at a multicast address",
            change: |s| {
                s.vips.get_mut("havip-web").unwrap().address = "224.0.0.18".parse().unwrap()
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address 224.0.0.18 is not a unicast address",
        },
        Case {
            what: "a VIP at a port's link-local",
            change: |s| {
                let v = s.vips.get_mut("havip-web").unwrap();
                v.address = "fe80::ff:fe00:11".parse().unwrap();
                v.ip_version = IpVersion::Ipv6;
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address fe80::ff:fe00:11 is a link-local address",
        },
        Case {
            what: "a VIP at a local port's fixed IP",
            change: |s| s.vips.get_mut("havip-web").unwrap().address = "10.0.6.9".parse().unwrap(),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address 10.0.6.9 is port port-1's own address",
        },
        Case {
            what: "a VIP of the other family than its address",
            change: |s| s.vips.get_mut("havip-web").unwrap().ip_version = IpVersion::Ipv6,
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its address 10.0.6.19 is not ipv6",
        },
        Case {
            what: "a VIP with more ports than the datapath holds",
            change: |s| {
                let v = s.vips.get_mut("havip-web").unwrap();
                v.ports = (0..17)
                    .map(|i| Binding {
                        port: format!("port-x{i}"),
                        vm: "vm".into(),
                        host: "hv-z".into(),
                        datapath_id: None,
                    })
                    .collect();
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "17 bound ports, the datapath holds at most 16",
        },
        Case {
            what: "a VIP with a port bound twice",
            change: |s| {
                let v = s.vips.get_mut("havip-web").unwrap();
                let again = v.ports[0].clone();
                v.ports.push(again);
            },
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "port port-1 is bound twice",
        },
        Case {
            what: "a VIP with VRID 0",
            change: |s| s.vips.get_mut("havip-web").unwrap().vrid = Some(0),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "vrid 0 is not a VRRP router id",
        },
        Case {
            what: "a VIP with a hold-down over an hour",
            change: |s| s.vips.get_mut("havip-web").unwrap().hold_down_ms = 3_600_001,
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "hold_down_ms = 3600001 must be between 0",
        },
        // The subnet record, field by field.
        Case {
            what: "a subnet without ranges",
            change: |s| {
                let n = s.subnets.get_mut("subnet-a").unwrap();
                n.cidr_v4 = None;
                n.cidr_v6 = None;
            },
            vip_problems: &["havip-db", "havip-web"],
            port_problems: &["port-1"],
            reason:
                "subnet subnet-a: its record breaks a rule: a subnet needs cidr_v4, cidr_v6 or both",
        },
        Case {
            what: "a subnet whose range is the unspecified network",
            change: |s| {
                s.subnets.get_mut("subnet-a").unwrap().cidr_v4 = Some("0.0.0.0/8".parse().unwrap())
            },
            vip_problems: &["havip-db", "havip-web"],
            port_problems: &["port-1"],
            reason: "subnet subnet-a: its record breaks a rule: 0.0.0.0/8 is an unspecified",
        },
        Case {
            what: "a subnet whose gateway is outside it",
            change: |s| {
                s.subnets.get_mut("subnet-a").unwrap().gateway_v4 =
                    Some("10.9.0.1".parse().unwrap())
            },
            vip_problems: &["havip-db", "havip-web"],
            port_problems: &["port-1"],
            reason:
                "subnet subnet-a: its record breaks a rule: gateway 10.9.0.1 is not a host address",
        },
        Case {
            what: "the subnet's record, malformed",
            change: |s| {
                s.subnets.clear();
                let key = "/havip/v1/subnets/subnet-a";
                s.bad.subnets.insert("subnet-a".into(), bad(key, b"[]"));
            },
            vip_problems: &["havip-db", "havip-web"],
            port_problems: &["port-1"],
            reason: "subnet subnet-a: its record /havip/v1/subnets/subnet-a is not valid",
        },
    ];
    for c in cases {
        let mut s = good();
        (c.change)(&mut s);
        let mut p = to_config(&s);
        c.check(&p);
        keep_in_force(&mut p, &before);
        assert_eq!(p.config, before, "{}: what was in force stays", c.what);
        assert_eq!(p.vip_ids.len(), 2, "{}", c.what);
        assert!(p.port_ids.contains_key(&port), "{}", c.what);
    }
    // The good VIP beside a bad one is programmed, not kept.
    let mut s = good();
    s.bad
        .vips
        .insert("havip-new".into(), bad("/havip/v1/vips/havip-new", b"{"));
    s.vips.get_mut("havip-db").unwrap().ports.pop();
    let mut p = to_config(&s);
    keep_in_force(&mut p, &before);
    assert!(
        p.config.vips[&db].ports.is_empty(),
        "the change to havip-db is applied"
    );
    assert_eq!(p.config.vips[&web], before.vips[&web]);
    assert!(!p.vip_ids.values().any(|v| v == "havip-new"));
}

#[test]
fn an_unreadable_vip_record_is_read_again() {
    let mut s = snapshot();
    s.bad
        .vips
        .insert("havip-bad".into(), bad("/havip/v1/vips/havip-bad", b"{"));
    let cases: &[(&str, &[u8], bool)] = &[
        ("/havip/v1/vips/havip-bad", b"", true),
        ("/havip/v1/vips/havip-other", b"{not json", true),
        ("/havip/v1/vips/havip-other", b"", false),
    ];
    for (key, value, want) in cases {
        assert_eq!(s.concerns("hv-a", key, value), *want, "{key} {value:?}");
    }
}

/// The snapshot with the datapath ids the controller allocates.
fn with_dense_ids() -> Snapshot {
    let mut s = snapshot();
    s.vips.remove("havip-dup");
    s.subnets.get_mut("subnet-a").unwrap().datapath_id = Some(3);
    s.host_ports[0].datapath_id = Some(5);
    let web = s.vips.get_mut("havip-web").unwrap();
    web.datapath_id = Some(9);
    web.ports[0].datapath_id = Some(5);
    web.ports[1].datapath_id = Some(6);
    let db = s.vips.get_mut("havip-db").unwrap();
    db.datapath_id = Some(10);
    db.ports[0].datapath_id = Some(7);
    s
}

#[test]
fn the_controllers_datapath_ids_are_the_datapaths() {
    let s = with_dense_ids();
    let p = to_config(&s);
    assert!(p.problems.is_empty() && p.port_problems.is_empty(), "{p:?}");
    assert_eq!(p.config.networks.keys().collect::<Vec<_>>(), [&3]);
    assert_eq!(p.config.ports.keys().collect::<Vec<_>>(), [&5]);
    assert_eq!(p.config.vips[&9].ports, vec![5, 6]);
    assert_eq!(p.config.vips[&10].ports, vec![7]);
    assert_eq!(p.vip_ids[&9], "havip-web");
    assert_eq!(p.port_ids[&5], "port-1");
    assert_eq!(s.vip_datapath_id("havip-web"), 9);
    assert_eq!(s.port_datapath_id("port-1"), 5);
    assert_eq!(
        s.port_datapath_id("port-2"),
        6,
        "a remote port's, from its binding"
    );
    // A record written before the controller allocated ids: the hash.
    assert_eq!(s.port_datapath_id("port-99"), numeric_id("port-99"));
    // A binding written by hand without an id binds a local port by its
    // record's.
    let mut s = s;
    s.vips.get_mut("havip-web").unwrap().ports[0].datapath_id = None;
    assert_eq!(to_config(&s).config.vips[&9].ports, vec![5, 6]);
}

/// Ids that two records share, or that are none, are refused by name; the
/// other records are programmed.
#[test]
fn a_datapath_id_two_records_share_is_refused() {
    let cases = [
        Case {
            what: "two VIPs with one id",
            change: |s| s.vips.get_mut("havip-web").unwrap().datapath_id = Some(10),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "its datapath id 10 collides with another VIP's",
        },
        Case {
            what: "a remote bound port with a local port's id",
            change: |s| s.vips.get_mut("havip-db").unwrap().ports[0].datapath_id = Some(5),
            vip_problems: &["havip-db"],
            port_problems: &[],
            reason: "bound port port-3's datapath id 5 is port port-1's",
        },
        Case {
            what: "two local ports with one id",
            change: |s| second_port(s, |_| {}),
            vip_problems: &[],
            port_problems: &["port-9"],
            reason: "its datapath id 5 is port port-1's",
        },
        Case {
            what: "a binding of a local port with another id than its record's",
            change: |s| s.vips.get_mut("havip-web").unwrap().ports[0].datapath_id = Some(8),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "bound port port-1's datapath id 8 is not its record's 5",
        },
        Case {
            what: "a VIP with id 0",
            change: |s| s.vips.get_mut("havip-web").unwrap().datapath_id = Some(0),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "datapath id 0 is no VIP's",
        },
        Case {
            what: "a port with id 0",
            change: |s| s.host_ports[0].datapath_id = Some(0),
            vip_problems: &[],
            port_problems: &["port-1"],
            reason: "datapath id 0 is no port's",
        },
        Case {
            what: "two bound ports of a VIP with one id",
            change: |s| s.vips.get_mut("havip-web").unwrap().ports[1].datapath_id = Some(5),
            vip_problems: &["havip-web"],
            port_problems: &[],
            reason: "bound port port-2's datapath id is another bound port's",
        },
    ];
    for c in cases {
        let mut s = with_dense_ids();
        (c.change)(&mut s);
        let p = to_config(&s);
        c.check(&p);
        // What does not share an id is programmed.
        let programmed = p.vip_ids.len() + p.problems.len();
        assert_eq!(programmed, 2, "{}", c.what);
    }
}
