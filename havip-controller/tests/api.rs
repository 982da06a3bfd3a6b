//! The HAVIP rules through the HTTP API, against a real etcd.

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_given_or_allocated_address() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;

    // Allocated: the lowest free host address (the ports hold .11-.16;
    // .1 is the subnet's gateway).
    let v1 = a.create_havip(&create("web", "sn-a")).await.unwrap();
    assert_eq!(v1.address, ip("10.0.0.2"));
    assert_eq!(v1.status, Status::Available, "no ports: available at once");
    assert_eq!(
        (v1.ip_version, v1.network_type),
        (IpVersion::Ipv4, NetworkType::Intranet)
    );
    assert_eq!((v1.vpc.as_str(), v1.project.as_str()), ("vpc-a", "proj-a"));
    let v2 = a.create_havip(&create("web2", "sn-a")).await.unwrap();
    assert_eq!(v2.address, ip("10.0.0.3"));
    assert_eq!(v2.vrid, None, "no VRRP router id unless given");

    // Given by hand.
    let mut req = create("db", "sn-a");
    req.address = Some(ip("10.0.0.100"));
    req.description = Some("primary database".into());
    req.vrid = Some(51);
    let v3 = a.create_havip(&req).await.unwrap();
    assert_eq!(v3.address, ip("10.0.0.100"));
    assert_eq!(v3.vrid, Some(51));
    assert_eq!(v3.description, "primary database");

    // IPv6, allocated and given.
    let mut req = create("v6", "sn-a");
    req.ip_version = Some(IpVersion::Ipv6);
    let v6 = a.create_havip(&req).await.unwrap();
    assert_eq!(v6.address, ip("fd00:a::2"));
    let mut req = create("v6b", "sn-a");
    req.address = Some(ip("fd00:a::0:abc"));
    assert_eq!(
        a.create_havip(&req).await.unwrap().ip_version,
        IpVersion::Ipv6
    );

    // Errors, each with its code and a message naming the problem.
    let held_by_db = format!("HAVIP {} (db)", v3.id);
    let cases: Vec<(&str, CreateHavip, ErrorCode, &str)> = vec![
        (
            "outside",
            CreateHavip {
                address: Some(ip("10.0.1.5")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressOutOfRange,
            "not inside 10.0.0.0/24",
        ),
        (
            "network",
            CreateHavip {
                address: Some(ip("10.0.0.0")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressOutOfRange,
            "network address",
        ),
        (
            "broadcast",
            CreateHavip {
                address: Some(ip("10.0.0.255")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressOutOfRange,
            "broadcast address",
        ),
        (
            "v6 outside",
            CreateHavip {
                address: Some(ip("fd00:b::1")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressOutOfRange,
            "fd00:a::/64",
        ),
        (
            "port's",
            CreateHavip {
                address: Some(ip("10.0.0.11")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressInUse,
            "port p1 of VM vm-1",
        ),
        (
            "vip's",
            CreateHavip {
                address: Some(ip("10.0.0.100")),
                ..create("x", "sn-a")
            },
            ErrorCode::AddressInUse,
            &held_by_db,
        ),
        (
            "no name",
            create(" ", "sn-a"),
            ErrorCode::InvalidArgument,
            "name is required",
        ),
        (
            "internet",
            CreateHavip {
                network_type: Some(NetworkType::Internet),
                ..create("x", "sn-a")
            },
            ErrorCode::InvalidArgument,
            "intranet",
        ),
        (
            "vrid 0",
            CreateHavip {
                vrid: Some(0),
                ..create("x", "sn-a")
            },
            ErrorCode::InvalidArgument,
            "vrid must be a VRRP virtual router id, 1-255",
        ),
        (
            "version mismatch",
            CreateHavip {
                ip_version: Some(IpVersion::Ipv4),
                address: Some(ip("fd00:a::5")),
                ..create("x", "sn-a")
            },
            ErrorCode::InvalidArgument,
            "not an ipv4 address",
        ),
        (
            "no v6 range",
            CreateHavip {
                ip_version: Some(IpVersion::Ipv6),
                ..create("x", "sn-a2")
            },
            ErrorCode::InvalidArgument,
            "has no ipv6 range",
        ),
        (
            "other project's subnet",
            create("x", "sn-b"),
            ErrorCode::NotFound,
            "subnet sn-b not found",
        ),
        (
            "unknown subnet",
            create("x", "nope"),
            ErrorCode::NotFound,
            "subnet nope not found",
        ),
        (
            "unknown port",
            CreateHavip {
                ports: ids(&["zz"]),
                ..create("x", "sn-a")
            },
            ErrorCode::NotFound,
            "port zz not found",
        ),
    ];
    for (what, req, want, text) in cases {
        let (got, msg) = code(a.create_havip(&req).await);
        assert_eq!(got, want, "{what}: {msg}");
        assert!(msg.contains(text), "{what}: {msg:?} lacks {text:?}");
    }
    // Failed creates reserved nothing: the next allocation is still .4.
    assert_eq!(
        a.create_havip(&create("w3", "sn-a")).await.unwrap().address,
        ip("10.0.0.4")
    );

    // Project B has its own 10.0.0.0/24: the same address is free there.
    let mut req = create("b-db", "sn-b");
    req.address = Some(ip("10.0.0.100"));
    b.create_havip(&req).await.unwrap();

    // A port cannot be registered on a VIP's address.
    let (c, msg) = code(
        op.put_port("p9", &port_req("vm-9", "sn-a", "10.0.0.100", "hv-1"))
            .await,
    );
    assert_eq!(c, ErrorCode::AddressInUse, "{msg}");
    assert!(msg.contains(&v3.id));

    // Created with ports: creating until the hosts program it.
    let mut req = create("bound", "sn-a");
    req.ports = ids(&["p1", "p2"]);
    let v = a.create_havip(&req).await.unwrap();
    assert_eq!(v.status, Status::Creating);
    assert_eq!(v.pending_ports, ids(&["p1", "p2"]));
    assert_eq!(v.pending_hosts, None, "a tenant's view names no host");
    assert!(v.ports.iter().all(|b| b.host.is_none()));
    assert_eq!(
        v.ports.iter().map(|b| b.vm.as_str()).collect::<Vec<_>>(),
        ["vm-1", "vm-2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_unbind_replace_and_limits() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let vip = a.create_havip(&create("web", "sn-a")).await.unwrap();
    let id = vip.id.as_str();

    let v = a.bind(id, &ids(&["p1", "p2"])).await.unwrap();
    assert_eq!(v.ports.len(), 2);
    assert_eq!(v.generation, 2);
    let v = a.bind(id, &ids(&["p2", "p3"])).await.unwrap();
    assert_eq!(
        v.ports.iter().map(|b| b.port.as_str()).collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );

    let (c, msg) = code(a.bind(id, &ids(&["p4"])).await);
    assert_eq!(c, ErrorCode::QuotaExceeded);
    assert!(msg.contains("at most 3"), "{msg}");
    a.unbind(id, "p3").await.unwrap();
    let (c, msg) = code(a.bind(id, &ids(&["q1"])).await);
    assert_eq!(c, ErrorCode::PortInOtherSubnet);
    assert!(msg.contains("subnet sn-a2"), "{msg}");
    let (c, msg) = code(a.bind(id, &ids(&["x1"])).await);
    assert_eq!(c, ErrorCode::PortInOtherSubnet);
    assert!(msg.contains("VPC vpc-a2"), "{msg}");
    assert_eq!(
        code(a.bind(id, &ids(&["b1"])).await).0,
        ErrorCode::NotFound,
        "foreign port"
    );
    assert_eq!(
        code(a.unbind(id, "p5").await).0,
        ErrorCode::NotFound,
        "not bound"
    );
    a.bind(id, &ids(&["p3"])).await.unwrap();

    // Unbind, replace; the ports and their hosts' views follow.
    let v = a.unbind(id, "p2").await.unwrap();
    assert_eq!(v.ports.len(), 2);
    let v = a
        .replace_ports(id, &ids(&["p4", "p5", "p6"]))
        .await
        .unwrap();
    assert_eq!(
        v.ports.iter().map(|b| b.port.as_str()).collect::<Vec<_>>(),
        ["p4", "p5", "p6"]
    );
    let p1 = op
        .list_ports(&PortQuery {
            vm: Some("vm-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(p1[0].vips.is_empty());
    let hv2 = ctl.store.host_ports("hv-2").await.unwrap();
    let p4 = hv2.iter().find(|p| p.port == "p4").unwrap();
    assert_eq!(
        p4.vips,
        vec![havip_schema::records::PortVip {
            id: id.to_string(),
            address: vip.address
        }]
    );
    assert_eq!(p4.interface, "tap-vm-4");

    // Per-VIP limit (operator only).
    assert_eq!(
        code(
            a.set_vip_limits(
                id,
                &VipLimits {
                    ports_per_vip: Some(4)
                }
            )
            .await
        )
        .0,
        ErrorCode::Forbidden
    );
    op.set_vip_limits(
        id,
        &VipLimits {
            ports_per_vip: Some(4),
        },
    )
    .await
    .unwrap();
    a.bind(id, &ids(&["p1"])).await.unwrap();
    assert_eq!(
        code(a.bind(id, &ids(&["p2"])).await).0,
        ErrorCode::QuotaExceeded
    );

    // VIPs per port: 5 by default, changeable per project and per port.
    a.replace_ports(id, &[]).await.unwrap();
    let mut vips = Vec::new();
    for i in 0..6 {
        vips.push(
            a.create_havip(&create(&format!("v{i}"), "sn-a"))
                .await
                .unwrap()
                .id,
        );
    }
    for v in &vips[..5] {
        a.bind(v, &ids(&["p1"])).await.unwrap();
    }
    let (c, msg) = code(a.bind(&vips[5], &ids(&["p1"])).await);
    assert_eq!(c, ErrorCode::QuotaExceeded);
    assert!(
        msg.contains("port p1 (VM vm-1) is already bound to 5"),
        "{msg}"
    );
    assert_eq!(
        code(
            a.set_project_limits(
                "proj-a",
                &ProjectLimits {
                    ports_per_vip: None,
                    vips_per_port: Some(6),
                    ..ProjectLimits::default()
                }
            )
            .await
        )
        .0,
        ErrorCode::Forbidden
    );
    let l = op
        .set_project_limits(
            "proj-a",
            &ProjectLimits {
                ports_per_vip: Some(2),
                vips_per_port: Some(6),
                ..ProjectLimits::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((l.ports_per_vip, l.vips_per_port), (2, 6));
    assert_eq!(a.get_project_limits("proj-a").await.unwrap(), l);
    assert_eq!(
        code(a.get_project_limits("proj-b").await).0,
        ErrorCode::NotFound
    );
    a.bind(&vips[5], &ids(&["p1"])).await.unwrap();
    // The lowered ports-per-VIP limit (2) holds for VIPs without their own.
    a.bind(&vips[0], &ids(&["p2"])).await.unwrap();
    assert_eq!(
        code(a.bind(&vips[0], &ids(&["p3"])).await).0,
        ErrorCode::QuotaExceeded
    );
    // Per port.
    op.set_port_limits(
        "p2",
        &PortLimits {
            vips_per_port: Some(1),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(a.bind(&vips[1], &ids(&["p2"])).await).0,
        ErrorCode::QuotaExceeded
    );
    // Limits are validated.
    assert_eq!(
        code(
            op.set_project_limits(
                "proj-a",
                &ProjectLimits {
                    ports_per_vip: Some(0),
                    vips_per_port: None,
                    ..ProjectLimits::default()
                }
            )
            .await
        )
        .0,
        ErrorCode::InvalidArgument
    );
    // A bound port cannot be changed or removed under the VIP.
    assert_eq!(
        code(
            op.put_port("p1", &port_req("vm-1", "sn-a", "10.0.0.11", "hv-9"))
                .await
        )
        .0,
        ErrorCode::WrongState
    );
    assert_eq!(
        code(Client2::delete_port(&ctl.url, "p1").await).0,
        ErrorCode::WrongState
    );
    // An unbound port can be removed; its address is free again.
    op.put_port("p9", &port_req("vm-9", "sn-a", "10.0.0.99", "hv-1"))
        .await
        .unwrap();
    Client2::delete_port(&ctl.url, "p9").await.unwrap();
    let mut req = create("after", "sn-a");
    req.address = Some(ip("10.0.0.99"));
    a.create_havip(&req).await.unwrap();
}

/// Calls the client does not have.
struct Client2;
impl Client2 {
    async fn delete_port(url: &str, id: &str) -> Result<(), havip_controller::client::ClientError> {
        let resp = reqwest::Client::new()
            .delete(format!("{url}/v1/ports/{id}"))
            .bearer_auth(OP)
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let body: havip_controller::error::ErrorBody = resp.json().await?;
        Err(havip_controller::client::ClientError::Api {
            status,
            error: body.error,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_acks_owner_and_delete() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let store = &ctl.store;
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p2", "p3"]); // hv-1, hv-2, hv-1
    let v = a.create_havip(&req).await.unwrap();
    let id = v.id.as_str();
    assert_eq!((v.status, v.generation), (Status::Creating, 1));

    // Creating VIPs cannot be deleted; they can be renamed.
    let (c, msg) = code(a.delete_havip(id).await);
    assert_eq!(c, ErrorCode::WrongState);
    assert!(msg.contains("ports p1, p2, p3"), "{msg}");
    assert!(
        !msg.contains("hv-"),
        "a tenant's error names no host: {msg}"
    );
    let r = a
        .update_havip(
            id,
            &UpdateHavip {
                name: Some("web-renamed".into()),
                description: Some("d".into()),
                vrid: Some(111),
                ..UpdateHavip::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.description.as_str(), r.status, r.vrid),
        ("web-renamed", "d", Status::Creating, Some(111))
    );
    // The VRRP router id: 0 takes it away, an update without it keeps it.
    let r = a
        .update_havip(
            id,
            &UpdateHavip {
                vrid: Some(0),
                ..UpdateHavip::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((r.vrid, r.name.as_str()), (None, "web-renamed"));

    // The split-brain hold-down: 1 s unless set; a value that is none is
    // refused with the range, and the one in force stays.
    assert_eq!(r.hold_down_ms, 1000);
    let hold_down = |ms| UpdateHavip {
        hold_down_ms: Some(ms),
        ..UpdateHavip::default()
    };
    let r = a.update_havip(id, &hold_down(250)).await.unwrap();
    assert_eq!(r.hold_down_ms, 250);
    for bad in [-1, 3_600_001, i64::MAX] {
        let (c, msg) = code(a.update_havip(id, &hold_down(bad)).await);
        assert_eq!(c, ErrorCode::InvalidArgument, "{bad}: {msg}");
        assert!(
            msg.contains(&format!("hold_down_ms = {bad} must be between 0")),
            "{msg}"
        );
    }
    assert_eq!(a.get_havip(id).await.unwrap().hold_down_ms, 250);
    let mut bad = create("web-bad", "sn-a");
    bad.hold_down_ms = Some(-5);
    let (c, msg) = code(a.create_havip(&bad).await);
    assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");
    let mut damped = create("web-damped", "sn-a");
    damped.hold_down_ms = Some(0);
    let d = a.create_havip(&damped).await.unwrap();
    assert_eq!(d.hold_down_ms, 0);
    a.delete_havip(&d.id).await.unwrap();

    // Acks: available once every bound port's host acknowledged.
    assert_eq!(
        store.ack_programmed(id, "hv-1").await.unwrap(),
        Status::Creating
    );
    let v = a.get_havip(id).await.unwrap();
    assert_eq!((v.pending_ports.len(), v.pending_hosts), (1, None));
    let page = op.list_havips(&ListQuery::default()).await.unwrap();
    let seen = page.items.iter().find(|v| v.id == id).unwrap();
    assert_eq!(
        seen.pending_hosts,
        Some(ids(&["hv-2"])),
        "an operator's does"
    );
    assert_eq!(
        store.ack_programmed(id, "hv-2").await.unwrap(),
        Status::Available
    );
    let v = a.get_havip(id).await.unwrap();
    assert!(v.pending_ports.is_empty());

    // A binding change is a new generation: creating again; an ack of the
    // old generation does not count.
    let v = a.unbind(id, "p3").await.unwrap();
    assert_eq!((v.status, v.generation), (Status::Creating, 2));
    store
        .ack(id, "hv-1", 1, AckResult::Programmed, None)
        .await
        .unwrap();
    store
        .ack(id, "hv-2", 2, AckResult::Programmed, None)
        .await
        .unwrap();
    assert_eq!(a.get_havip(id).await.unwrap().status, Status::Creating);

    // Agents write ack keys straight to etcd; the controller's watcher
    // reconciles.
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let ack =
        serde_json::json!({"generation": 2, "result": "programmed", "at": "2026-01-01T00:00:00Z"});
    kv.put(
        format!("/havip/v1/reports/hv-1/acks/{id}"),
        ack.to_string(),
        None,
    )
    .await
    .unwrap();
    wait_status(&a, id, Status::Available).await;

    // Failure → failed, with the reason; failed VIPs can be deleted.
    store
        .report_failed(id, "hv-2", "no such interface tap-vm-2")
        .await
        .unwrap();
    let v = a.get_havip(id).await.unwrap();
    assert_eq!(v.status, Status::Failed);
    assert_eq!(
        v.status_reason.as_deref(),
        Some("port p2: no such interface tap-vm-2")
    );

    // The master, as reported by an agent.
    let since = chrono::Utc::now();
    store.report_owner(id, "p1", "hv-1", since).await.unwrap();
    let m = a.get_havip(id).await.unwrap().master.unwrap();
    assert_eq!((m.port.as_str(), m.host), ("p1", None));
    let page = op.list_havips(&ListQuery::default()).await.unwrap();
    let m = page
        .items
        .iter()
        .find(|v| v.id == id)
        .unwrap()
        .master
        .clone();
    assert_eq!(m.unwrap().host.as_deref(), Some("hv-1"));
    assert_eq!(
        code_of(store.report_owner("havip-nope", "p1", "hv-1", since).await),
        ErrorCode::NotFound
    );

    a.delete_havip(id).await.unwrap();
    assert_eq!(code(a.get_havip(id).await).0, ErrorCode::NotFound);
    // Unbound first: the ports and the hosts' views no longer carry it, and
    // its address, owner and acks are gone.
    for p in ["p1", "p2"] {
        assert!(op
            .list_ports(&PortQuery::default())
            .await
            .unwrap()
            .iter()
            .find(|x| x.id == p)
            .unwrap()
            .vips
            .is_empty());
    }
    assert!(store
        .host_ports("hv-1")
        .await
        .unwrap()
        .iter()
        .all(|p| p.vips.is_empty()));
    for prefix in [
        format!("/havip/v1/reports/hv-1/acks/{id}"),
        format!("/havip/v1/reports/hv-2/acks/{id}"),
        format!("/havip/v1/reports/hv-1/owners/{id}"),
    ] {
        let r = kv
            .get(
                prefix.clone(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        assert!(r.kvs().is_empty(), "{prefix} left behind");
    }
    let mut req = create("again", "sn-a");
    req.address = Some(v.address);
    a.create_havip(&req).await.unwrap();

    // Unbinding everything makes a creating VIP available (and deletable).
    let mut req = create("stuck", "sn-a");
    req.ports = ids(&["p4"]);
    let s = a.create_havip(&req).await.unwrap();
    assert_eq!(
        a.replace_ports(&s.id, &[]).await.unwrap().status,
        Status::Available
    );

    // Batch delete: a result per item.
    let mut req = create("busy", "sn-a");
    req.ports = ids(&["p5"]);
    let busy = a.create_havip(&req).await.unwrap();
    let r = a
        .batch_delete(&[s.id.clone(), "havip-missing".into(), busy.id.clone()])
        .await
        .unwrap();
    let got: Vec<(bool, Option<ErrorCode>)> = r
        .results
        .iter()
        .map(|i| (i.deleted, i.error.as_ref().map(|e| e.code)))
        .collect();
    assert_eq!(
        got,
        [
            (true, None),
            (false, Some(ErrorCode::NotFound)),
            (false, Some(ErrorCode::WrongState))
        ]
    );
    assert_eq!(r.results[0].id, s.id);
}

fn code_of<T>(r: Result<T, havip_controller::Error>) -> ErrorCode {
    r.err().expect("an error").code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_search_filters_pages_export_and_isolation() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;
    let mut made = Vec::new();
    for (name, desc, subnet, ports) in [
        ("Web-Frontend", "nginx pair", "sn-a", vec!["p1", "p2"]),
        ("db-primary", "MySQL HA", "sn-a", vec!["p3"]),
        ("cache", "", "sn-a2", vec![]),
        ("web-backend", "java", "sn-a", vec![]),
    ] {
        let req = CreateHavip {
            description: Some(desc.into()),
            ports: ids(&ports),
            ..create(name, subnet)
        };
        made.push(a.create_havip(&req).await.unwrap());
    }
    b.create_havip(&create("b-web", "sn-b")).await.unwrap();
    let list = |q: ListQuery| {
        let a = a.clone();
        async move {
            let p = a.list_havips(&q).await.unwrap();
            let mut names: Vec<String> = p.items.into_iter().map(|v| v.name).collect();
            names.sort();
            names
        }
    };
    let q = |s: &str| ListQuery {
        q: Some(s.into()),
        ..Default::default()
    };
    assert_eq!(list(q("WEB")).await, ["Web-Frontend", "web-backend"]);
    assert_eq!(list(q("mysql")).await, ["db-primary"]);
    assert_eq!(list(q("web front")).await, ["Web-Frontend"]);
    assert_eq!(list(q("HAVIP-")).await.len(), 4);
    assert_eq!(
        list(q(&made[1].id[..12].to_uppercase())).await,
        ["db-primary"]
    );
    assert_eq!(list(q(&made[2].id)).await, ["cache"]);
    assert_eq!(list(q("10.0.1.")).await, ["cache"]);
    assert_eq!(list(q("nothing-like-this")).await, Vec::<String>::new());
    assert_eq!(
        list(ListQuery {
            status: Some(Status::Creating),
            ..Default::default()
        })
        .await,
        ["Web-Frontend", "db-primary"]
    );
    assert_eq!(
        list(ListQuery {
            subnet: Some("sn-a2".into()),
            ..Default::default()
        })
        .await,
        ["cache"]
    );
    assert_eq!(
        list(ListQuery {
            vm: Some("vm-2".into()),
            ..Default::default()
        })
        .await,
        ["Web-Frontend"]
    );

    // Pages, newest first.
    let p1 = a
        .list_havips(&ListQuery {
            page: Some(1),
            page_size: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    let p2 = a
        .list_havips(&ListQuery {
            page: Some(2),
            page_size: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((p1.total, p1.items.len(), p2.items.len()), (4, 3, 1));
    assert_eq!(p1.items[0].name, "web-backend");
    assert_eq!(p2.items[0].name, "Web-Frontend");
    assert_eq!(
        code(
            a.list_havips(&ListQuery {
                page: Some(0),
                ..Default::default()
            })
            .await
        )
        .0,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            a.list_havips(&ListQuery {
                page_size: Some(5000),
                ..Default::default()
            })
            .await
        )
        .0,
        ErrorCode::InvalidArgument
    );

    // Isolation: B sees only its own; A's VIP is "not found" for B.
    assert_eq!(list_as(&b).await, ["b-web"]);
    assert_eq!(code(b.get_havip(&made[0].id).await).0, ErrorCode::NotFound);
    assert_eq!(
        code(b.delete_havip(&made[2].id).await).0,
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            b.update_havip(
                &made[2].id,
                &UpdateHavip {
                    name: Some("x".into()),
                    ..UpdateHavip::default()
                }
            )
            .await
        )
        .0,
        ErrorCode::NotFound
    );
    assert_eq!(
        code(b.bind(&made[2].id, &ids(&["b1"])).await).0,
        ErrorCode::NotFound
    );
    // The operator sees everything.
    assert_eq!(
        op.list_havips(&ListQuery::default()).await.unwrap().total,
        5
    );

    // Export: xlsx (opened with calamine) and csv, all of A's VIPs.
    use calamine::Reader;
    let bytes = a.export(ExportFormat::Xlsx).await.unwrap();
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let sheet = book.worksheet_range("HAVIP").unwrap();
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0], havip_controller::export::COLUMNS);
    let fe = rows.iter().find(|r| r[1] == "Web-Frontend").unwrap();
    assert_eq!(fe[0], made[0].id);
    assert_eq!(
        (fe[2].as_str(), fe[3].as_str(), fe[6].as_str()),
        ("nginx pair", "creating", "sn-a")
    );
    assert_eq!(
        (fe[8].as_str(), fe[9].as_str(), fe[10].as_str()),
        (made[0].address.to_string().as_str(), "p1 p2", "vm-1 vm-2")
    );
    assert_eq!(fe[13], "proj-a");
    assert!(!rows.iter().any(|r| r[1] == "b-web"));

    let bytes = a.export(ExportFormat::Csv).await.unwrap();
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        havip_controller::export::COLUMNS
    );
    let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 4);
    let db = recs.iter().find(|r| &r[1] == "db-primary").unwrap();
    assert_eq!((&db[2], &db[9]), ("MySQL HA", "p3"));
}

async fn list_as(c: &havip_controller::client::Client) -> Vec<String> {
    c.list_havips(&ListQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|v| v.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_error_format() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", ctl.url);

    // No token, a wrong token, a malformed header: 401 with the JSON error.
    for auth in [None, Some("Bearer wrong-token"), Some("Basic abc")] {
        let mut r = http.get(url("/v1/havips"));
        if let Some(h) = auth {
            r = r.header("authorization", h);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
        assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Roles: operators register networks and set limits, projects own VIPs.
    assert_eq!(
        code(op.create_havip(&create("x", "sn-a")).await).0,
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            a.put_port("p9", &port_req("vm-9", "sn-a", "10.0.0.99", "hv-1"))
                .await
        )
        .0,
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            a.put_vpc(
                "v9",
                &PutVpc {
                    project: "proj-a".into(),
                    name: String::new()
                }
            )
            .await
        )
        .0,
        ErrorCode::Forbidden
    );
    // Projects read their own networks; foreign ones are not found.
    let s = http
        .get(url("/v1/subnets/sn-a"))
        .bearer_auth(PA)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 200);
    let s = http
        .get(url("/v1/subnets/sn-b"))
        .bearer_auth(PA)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 404);
    let s = http
        .get(url("/v1/ports/b1"))
        .bearer_auth(PA)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 404);
    let s = http
        .get(url("/v1/vpcs/vpc-a"))
        .bearer_auth(PA)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 200);

    // Malformed requests: 400 invalid_argument in the JSON format.
    let cases = [
        (http.post(url("/v1/havips")).bearer_auth(PA).header("content-type", "application/json").body("{not json"), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).json(&serde_json::json!({"subnet": "sn-a"})), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).json(&serde_json::json!({"name": "x", "subnet": "sn-a", "colour": 1})), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).json(&serde_json::json!({"name": "x", "subnet": "sn-a", "address": "10.0.0.300"})), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).body("{}"), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).json(&serde_json::json!({"name": "x", "subnet": "sn-a", "vrid": 300})), 400, "invalid_argument"),
        (http.post(url("/v1/havips")).bearer_auth(PA).json(&serde_json::json!({"name": "x", "subnet": "sn-a", "vrid": -1})), 400, "invalid_argument"),
        (http.get(url("/v1/havips?status=sleeping")).bearer_auth(PA), 400, "invalid_argument"),
        (http.get(url("/v1/havips/bad%2Fid")).bearer_auth(PA), 400, "invalid_argument"),
        (http.get(url("/v1/nothing")).bearer_auth(PA), 404, "not_found"),
        (http.get(url("/v1/havips/havip-0000000000000000")).bearer_auth(PA), 404, "not_found"),
        (http.put(url("/v1/subnets/sn-new")).bearer_auth(OP).json(&serde_json::json!({"vpc": "vpc-a", "cidr_v4": "10.9.0.1/24"})), 400, "invalid_argument"),
        (http.put(url("/v1/subnets/sn-a")).bearer_auth(OP).json(&serde_json::json!({"vpc": "vpc-a", "cidr_v4": "10.9.0.0/24"})), 409, "conflict"),
        (http.put(url("/v1/vpcs/vpc-a")).bearer_auth(OP).json(&serde_json::json!({"project": "proj-b"})), 409, "conflict"),
        (http.put(url("/v1/ports/p9")).bearer_auth(OP).json(&serde_json::json!({"vm": "v", "subnet": "sn-a", "mac": "zz", "host": "h", "interface": "i"})), 400, "invalid_argument"),
        (http.put(url("/v1/ports/p9")).bearer_auth(OP).json(&serde_json::json!({"vm": "v", "subnet": "sn-a", "mac": "52:54:00:00:00:09", "fixed_ips": ["10.0.5.1"], "host": "h", "interface": "i"})), 400, "address_out_of_range"),
    ];
    for (i, (req, status, want)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "case {i}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], want, "case {i}: {body}");
    }
}
