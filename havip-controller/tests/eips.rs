//! EIP pools and EIPs through the HTTP API, against a real etcd: allocate,
//! associate with a HAVIP, disassociate, release; every refusal with its
//! stable code.

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

fn pool(id: &str, ranges: &[&str]) -> CreateEipPool {
    CreateEipPool {
        id: id.into(),
        gateway: "gw-1".into(),
        ranges: ranges.iter().map(|r| r.to_string()).collect(),
        description: None,
    }
}

fn alloc(pool: &str, address: Option<&str>) -> AllocateEip {
    AllocateEip {
        pool: pool.into(),
        address: address.map(ip),
        ..AllocateEip::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_allocation_and_refusals() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;

    // Pools: operator only, checked, idempotent.
    let p = pool("pub-1", &["198.51.100.0/30", "2001:db8:100::/126"]);
    assert_eq!(code(a.create_eip_pool(&p).await).0, ErrorCode::Forbidden);
    let created = op.create_eip_pool(&p).await.unwrap();
    assert_eq!(
        created.ranges,
        [
            "198.51.100.1-198.51.100.2",
            "2001:db8:100::1-2001:db8:100::3"
        ]
    );
    assert_eq!((created.size, created.allocated), (5, 0));
    assert_eq!(op.create_eip_pool(&p).await.unwrap().id, "pub-1");
    let other = pool("pub-1", &["203.0.113.0/29"]);
    assert_eq!(
        code(op.create_eip_pool(&other).await).0,
        ErrorCode::Conflict
    );
    for bad in [
        pool("pub-2", &[]),
        pool("pub-2", &["nonsense"]),
        pool("pub-2", &["198.51.100.0/29", "198.51.100.3"]),
        pool("pub-2", &["224.0.0.0/28"]),
    ] {
        assert_eq!(
            code(op.create_eip_pool(&bad).await).0,
            ErrorCode::InvalidArgument,
            "{bad:?}"
        );
    }

    // Allocation: lowest free, given, IPv6.
    let e1 = a.allocate_eip(&alloc("pub-1", None)).await.unwrap();
    assert_eq!(e1.address, ip("198.51.100.1"));
    assert_eq!(
        (e1.status, e1.ip_version),
        (Status::Available, IpVersion::Ipv4)
    );
    assert_eq!(
        (e1.gateway.as_str(), e1.association.as_ref()),
        ("gw-1", None)
    );
    let e2 = a
        .allocate_eip(&alloc("pub-1", Some("198.51.100.2")))
        .await
        .unwrap();
    let mut v6 = alloc("pub-1", None);
    v6.ip_version = Some(IpVersion::Ipv6);
    let e6 = a.allocate_eip(&v6).await.unwrap();
    assert_eq!(e6.address, ip("2001:db8:100::1"));

    // Refusals at allocation.
    let mut mismatch = alloc("pub-1", Some("198.51.100.2"));
    mismatch.ip_version = Some(IpVersion::Ipv6);
    let cases: Vec<(AllocateEip, ErrorCode, &str)> = vec![
        (
            alloc("pub-1", Some("198.51.100.2")),
            ErrorCode::AddressInUse,
            "already allocated",
        ),
        (
            alloc("pub-1", Some("198.51.100.9")),
            ErrorCode::AddressOutOfRange,
            "not an address of EIP pool pub-1",
        ),
        (
            alloc("pub-1", None),
            ErrorCode::PoolExhausted,
            "no free ipv4 address",
        ),
        (
            mismatch,
            ErrorCode::IpVersionMismatch,
            "not an ipv6 address",
        ),
        (alloc("nope", None), ErrorCode::NotFound, "EIP pool nope"),
    ];
    for (req, want, text) in cases {
        let (got, msg) = code(a.allocate_eip(&req).await);
        assert_eq!(got, want, "{req:?}: {msg}");
        assert!(msg.contains(text), "{req:?}: {msg}");
    }
    // Another project sees the address taken, not by whom.
    let (got, msg) = code(b.allocate_eip(&alloc("pub-1", Some("198.51.100.1"))).await);
    assert_eq!(got, ErrorCode::AddressInUse);
    assert!(msg.contains("another project"), "{msg}");
    assert_eq!(
        code(op.allocate_eip(&alloc("pub-1", None)).await).0,
        ErrorCode::Forbidden
    );

    // Scoping: b sees none of a's.
    assert!(b.list_eips(&EipQuery::default()).await.unwrap().is_empty());
    assert_eq!(code(b.get_eip(&e1.id).await).0, ErrorCode::NotFound);
    assert_eq!(a.list_eips(&EipQuery::default()).await.unwrap().len(), 3);
    assert_eq!(op.list_eips(&EipQuery::default()).await.unwrap().len(), 3);
    assert_eq!(op.get_eip_pool("pub-1").await.unwrap().allocated, 3);

    // Quota.
    op.set_eip_limits(
        "proj-b",
        &EipLimits {
            eips_per_project: Some(1),
        },
    )
    .await
    .unwrap();
    op.create_eip_pool(&pool("pub-3", &["203.0.113.0/29"]))
        .await
        .unwrap();
    b.allocate_eip(&alloc("pub-3", None)).await.unwrap();
    let (got, msg) = code(b.allocate_eip(&alloc("pub-3", None)).await);
    assert_eq!(got, ErrorCode::QuotaExceeded, "{msg}");
    assert!(msg.contains("eips_per_project"), "{msg}");
    assert_eq!(b.get_eip_limits("proj-b").await.unwrap().eips, 1);
    assert_eq!(
        code(b.get_eip_limits("proj-a").await).0,
        ErrorCode::NotFound
    );

    // A pool with EIPs is not deleted; released, it is.
    let (got, msg) = code(op.delete_eip_pool("pub-1").await);
    assert_eq!(got, ErrorCode::WrongState, "{msg}");
    for e in [&e1, &e2, &e6] {
        a.release_eip(&e.id).await.unwrap();
    }
    assert_eq!(code(a.get_eip(&e1.id).await).0, ErrorCode::NotFound);
    op.delete_eip_pool("pub-1").await.unwrap();
    assert_eq!(code(op.get_eip_pool("pub-1").await).0, ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_with_havips() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;
    op.create_eip_pool(&pool("pub", &["198.51.100.16/28", "2001:db8:7::/120"]))
        .await
        .unwrap();
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p2"]);
    let web = a.create_havip(&req).await.unwrap();
    let db = a.create_havip(&create("db", "sn-a")).await.unwrap();
    let mut v6 = create("web6", "sn-a");
    v6.ip_version = Some(IpVersion::Ipv6);
    let web6 = a.create_havip(&v6).await.unwrap();
    let theirs = b.create_havip(&create("theirs", "sn-b")).await.unwrap();

    let e = a.allocate_eip(&alloc("pub", None)).await.unwrap();
    let mut req6 = alloc("pub", None);
    req6.ip_version = Some(IpVersion::Ipv6);
    let e6 = a.allocate_eip(&req6).await.unwrap();
    let spare = a.allocate_eip(&alloc("pub", None)).await.unwrap();

    let assoc = a.associate_eip(&e.id, &web.id).await.unwrap();
    let got = assoc.association.as_ref().unwrap();
    assert_eq!(
        (got.havip.as_str(), got.address),
        (web.id.as_str(), web.address)
    );
    assert_eq!(got.master, None, "no master reported yet");
    // Again: the same answer.
    assert_eq!(a.associate_eip(&e.id, &web.id).await.unwrap(), assoc);

    let cases: Vec<(&str, &str, ErrorCode, &str)> = vec![
        (
            &e.id,
            &db.id,
            ErrorCode::AlreadyAssociated,
            "disassociate it first",
        ),
        (
            &spare.id,
            &web.id,
            ErrorCode::AlreadyAssociated,
            "one EIP per HAVIP",
        ),
        (&e6.id, &db.id, ErrorCode::IpVersionMismatch, "is ipv6"),
        (&spare.id, &web6.id, ErrorCode::IpVersionMismatch, "is ipv4"),
        (&spare.id, &theirs.id, ErrorCode::NotFound, "not found"),
        (&spare.id, "havip-nope", ErrorCode::NotFound, "not found"),
    ];
    for (eip, vip, want, text) in cases {
        let (got, msg) = code(a.associate_eip(eip, vip).await);
        assert_eq!(got, want, "{eip} -> {vip}: {msg}");
        assert!(msg.contains(text), "{eip} -> {vip}: {msg}");
    }
    assert_eq!(
        code(b.associate_eip(&spare.id, &theirs.id).await).0,
        ErrorCode::NotFound,
        "another project's EIP"
    );
    a.associate_eip(&e6.id, &web6.id).await.unwrap();
    // The HAVIP shows its EIP, in its view, its list and its export.
    let shown = a.get_havip(&web6.id).await.unwrap().eip.unwrap();
    assert_eq!(
        (shown.id.as_str(), shown.address),
        (e6.id.as_str(), e6.address)
    );
    let page = a.list_havips(&ListQuery::default()).await.unwrap();
    let listed = page.items.iter().find(|v| v.id == web.id).unwrap();
    assert_eq!(listed.eip.as_ref().map(|e| e.address), Some(e.address));
    let csv = String::from_utf8(a.export(ExportFormat::Csv).await.unwrap()).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",EIP"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&web6.id) && l.ends_with(&e6.address.to_string())),
        "{csv}"
    );

    // The master of the HAVIP is shown with its EIP (the agents' report).
    let owner = serde_json::json!({"port": "p2", "host": "hv-2", "since": "2026-01-01T00:00:00Z"});
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    kv.put(
        havip_schema::keys::owner_report(&web.id, "hv-2"),
        owner.to_string(),
        None,
    )
    .await
    .unwrap();
    let seen = a.get_eip(&e.id).await.unwrap();
    let master = seen.association.unwrap().master.unwrap();
    assert_eq!((master.port.as_str(), master.host), ("p2", None));
    let listed = op
        .list_eips(&EipQuery {
            havip: Some(web.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let master = listed[0].association.clone().unwrap().master.unwrap();
    assert_eq!(
        master.host.as_deref(),
        Some("hv-2"),
        "operators see the host"
    );

    // Refused while associated: release, HAVIP delete.
    let (got, msg) = code(a.release_eip(&e.id).await);
    assert_eq!(got, ErrorCode::WrongState, "{msg}");
    a.associate_eip(&spare.id, &db.id).await.unwrap();
    let (got, msg) = code(a.delete_havip(&db.id).await);
    assert_eq!(got, ErrorCode::WrongState, "{msg}");
    assert!(msg.contains(&spare.id), "{msg}");
    a.disassociate_eip(&spare.id).await.unwrap();
    a.delete_havip(&db.id).await.unwrap();

    // Disassociate: then both go.
    let free = a.disassociate_eip(&e.id).await.unwrap();
    assert_eq!(free.association, None);
    assert_eq!(
        code(a.disassociate_eip(&e.id).await).0,
        ErrorCode::WrongState
    );
    // The HAVIP takes another EIP now.
    a.associate_eip(&spare.id, &web.id).await.unwrap();
    a.disassociate_eip(&spare.id).await.unwrap();
    a.release_eip(&e.id).await.unwrap();

    // The metrics count them: e6 associated, spare not (e released).
    let text = havip_controller::metrics::ControllerMetrics::default()
        .scrape(&ctl.store)
        .await;
    for line in [
        r#"havip_controller_eips{status="available",associated="true"} 1"#,
        r#"havip_controller_eips{status="available",associated="false"} 1"#,
        r#"havip_controller_eip_pool_addresses{pool="pub",gateway="gw-1",state="allocated"} 2"#,
        r#"havip_controller_eip_pool_addresses{pool="pub",gateway="gw-1",state="size"} 269"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }

    // Nothing stored breaks the schema.
    assert!(op.corrupt_records().await.unwrap().records.is_empty());
}
