//! What a tenant who tries everything the API allows gets: formula cells
//! neutralised in the CSV export, clear errors past the body, batch, page
//! and port-list limits, one HAVIP per idempotent create however often it
//! is retried, the HAVIP quotas and the datapath's ports-per-VIP maximum
//! on every change (replace included), and no hypervisor names.

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_cells_are_neutralised_in_the_csv_export() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let names = [
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "plain-name",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut req = create(name, "sn-a");
        req.description = Some(if i == 0 {
            "=cmd|' /C calc'!A0".into()
        } else {
            String::new()
        });
        a.create_havip(&req).await.unwrap();
    }
    let bytes = a.export(ExportFormat::Csv).await.unwrap();
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), names.len());
    for name in names {
        let row = rows
            .iter()
            .find(|r| r[1].trim_start_matches('\'') == name)
            .unwrap_or_else(|| panic!("{name} not exported"));
        let want = if name == "plain-name" {
            name.to_string()
        } else {
            format!("'{name}")
        };
        assert_eq!(&row[1], want.as_str());
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?}"
            );
        }
    }
    // The xlsx export writes them as text, as they are.
    use calamine::Reader;
    let bytes = a.export(ExportFormat::Xlsx).await.unwrap();
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let sheet = book.worksheet_range("HAVIP").unwrap();
    assert!(sheet.rows().any(|r| r[1] == names[0]));
}

async fn raw(ctl: &Controller, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", ctl.url);
    let (status, _, bytes) = send(
        &reqwest::Client::new(),
        &url,
        method,
        Some(token),
        Some(body),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_sizes_have_limits_with_clear_errors() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let v = a.create_havip(&create("web", "sn-a")).await.unwrap();
    let huge = "x".repeat(100 * 1024);
    let many_ids: Vec<String> = (0..1001).map(|i| format!("havip-{i}")).collect();
    let many_ports: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
    let long_q = "q".repeat(257);
    let cases: Vec<(&str, String, Value, u16, &str, &str)> = vec![
        (
            "a body over 64 KiB",
            "/v1/havips".into(),
            json!({"name": "x", "subnet": "sn-a", "description": huge}),
            413,
            "payload_too_large",
            "larger than 65536 bytes",
        ),
        (
            "a batch of 1001",
            "/v1/havips/batch-delete".into(),
            json!({"ids": many_ids}),
            400,
            "invalid_argument",
            "1001 ids given, at most 1000 per batch",
        ),
        (
            "17 ports to bind",
            format!("/v1/havips/{}/ports", v.id),
            json!({"ports": many_ports}),
            400,
            "invalid_argument",
            "17 ports given; a HAVIP holds at most 16",
        ),
        (
            "17 ports at create",
            "/v1/havips".into(),
            json!({"name": "x", "subnet": "sn-a", "ports": many_ports}),
            400,
            "invalid_argument",
            "a HAVIP holds at most 16",
        ),
    ];
    for (what, path, body, status, code_, text) in cases {
        let (s, b) = raw(&ctl, "POST", &path, PA, body).await;
        assert_eq!(s, status, "{what}: {b}");
        assert_eq!(b["error"]["code"], code_, "{what}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(text),
            "{what}: {b}"
        );
    }
    for (q, text) in [
        (
            ListQuery {
                page_size: Some(1001),
                ..Default::default()
            },
            "page_size must be 1..=1000",
        ),
        (
            ListQuery {
                page_size: Some(0),
                ..Default::default()
            },
            "page_size must be 1..=1000",
        ),
        (
            ListQuery {
                page: Some(0),
                ..Default::default()
            },
            "page starts at 1",
        ),
        (
            ListQuery {
                q: Some(long_q.clone()),
                ..Default::default()
            },
            "longer than 256",
        ),
    ] {
        let (c, msg) = code(a.list_havips(&q).await);
        assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");
        assert!(msg.contains(text), "{msg}");
    }
    // Nothing was created by the refused creates.
    assert_eq!(a.list_havips(&ListQuery::default()).await.unwrap().total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_create_answers_the_first_result() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;
    let req = create("web", "sn-a");
    // The header: retries, also racing ones, answer one HAVIP.
    let first = a.create_havip_idempotent(&req, "order-42").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (c, req) = (a.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            c.create_havip_idempotent(&req, "order-42").await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().id, first.id);
    }
    // Racing first creates under a new key: one HAVIP for all of them.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (c, req) = (a.clone(), create("db", "sn-a"));
        tasks.push(tokio::spawn(async move {
            c.create_havip_idempotent(&req, "order-43").await
        }));
    }
    let mut got = std::collections::HashSet::new();
    for t in tasks {
        got.insert(t.await.unwrap().unwrap().id);
    }
    assert_eq!(got.len(), 1, "{got:?}");
    // The body's client_token does the same.
    let with_token = CreateHavip {
        client_token: Some("tok-1".into()),
        ..create("cache", "sn-a")
    };
    let t1 = a.create_havip(&with_token).await.unwrap();
    assert_eq!(a.create_havip(&with_token).await.unwrap().id, t1.id);
    let all = a.list_havips(&ListQuery::default()).await.unwrap();
    assert_eq!(
        all.total,
        3,
        "one HAVIP per key: {:?}",
        all.items.iter().map(|v| &v.name).collect::<Vec<_>>()
    );

    // Another request under a used key, a key that is no identifier, a
    // header and a token that differ: refused, nothing created.
    let (c, msg) = code(
        a.create_havip_idempotent(&create("other", "sn-a"), "order-42")
            .await,
    );
    assert_eq!(c, ErrorCode::Conflict, "{msg}");
    assert!(msg.contains("used for another create request"), "{msg}");
    let (c, _) = code(a.create_havip_idempotent(&req, "no spaces/here").await);
    assert_eq!(c, ErrorCode::InvalidArgument);
    let (c, msg) = code(a.create_havip_idempotent(&with_token, "tok-2").await);
    assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");
    // Keys are per project: B's "order-42" is B's own.
    let vb = b
        .create_havip_idempotent(&create("web", "sn-b"), "order-42")
        .await
        .unwrap();
    assert_ne!(vb.id, first.id);
    assert_eq!(a.list_havips(&ListQuery::default()).await.unwrap().total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_every_change() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    // Ports per VIP: never above what the datapath holds.
    for (limits, text) in [
        (
            ProjectLimits {
                ports_per_vip: Some(5000),
                ..Default::default()
            },
            "the datapath holds at most 16 ports per VIP",
        ),
        (
            ProjectLimits {
                vips_per_subnet: Some(0),
                ..Default::default()
            },
            "vips_per_subnet must be at least 1",
        ),
        (
            ProjectLimits {
                vips_per_project: Some(10_001),
                ..Default::default()
            },
            "vips_per_project = 10001 must be at most 10000",
        ),
    ] {
        let (c, msg) = code(op.set_project_limits("proj-a", &limits).await);
        assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");
        assert!(msg.contains(text), "{msg}");
    }
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p2", "p3"]);
    let v = a.create_havip(&req).await.unwrap();
    let (c, msg) = code(
        op.set_vip_limits(
            &v.id,
            &VipLimits {
                ports_per_vip: Some(17),
            },
        )
        .await,
    );
    assert_eq!(c, ErrorCode::InvalidArgument, "{msg}");

    // A lowered limit cannot be bypassed by a replace of the same size.
    op.set_project_limits(
        "proj-a",
        &ProjectLimits {
            ports_per_vip: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (c, msg) = code(a.replace_ports(&v.id, &ids(&["p1", "p2", "p4"])).await);
    assert_eq!(c, ErrorCode::QuotaExceeded, "{msg}");
    assert!(msg.contains("at most 2 bound ports"), "{msg}");
    // Dropping ports is always allowed; adding one back is not.
    assert_eq!(
        a.replace_ports(&v.id, &ids(&["p1", "p3"]))
            .await
            .unwrap()
            .ports
            .len(),
        2
    );
    let (c, _) = code(a.bind(&v.id, &ids(&["p2"])).await);
    assert_eq!(c, ErrorCode::QuotaExceeded);
    // A swap at the limit is fine.
    assert_eq!(
        a.replace_ports(&v.id, &ids(&["p1", "p5"]))
            .await
            .unwrap()
            .ports
            .len(),
        2
    );

    // HAVIPs per subnet and per project.
    op.set_project_limits(
        "proj-a",
        &ProjectLimits {
            vips_per_subnet: Some(2),
            vips_per_project: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    a.create_havip(&create("second", "sn-a")).await.unwrap();
    let (c, msg) = code(a.create_havip(&create("third", "sn-a")).await);
    assert_eq!(c, ErrorCode::QuotaExceeded, "{msg}");
    assert!(
        msg.contains("subnet sn-a has 2 HAVIPs, the most allowed is 2"),
        "{msg}"
    );
    let x = a
        .create_havip(&create("other-subnet", "sn-a2"))
        .await
        .unwrap();
    let (c, msg) = code(a.create_havip(&create("fourth", "sn-x")).await);
    assert_eq!(c, ErrorCode::QuotaExceeded, "{msg}");
    assert!(
        msg.contains("project proj-a has 3 HAVIPs, the most allowed is 3"),
        "{msg}"
    );
    // A delete gives its slot back.
    a.delete_havip(&x.id).await.unwrap();
    a.create_havip(&create("fourth", "sn-x")).await.unwrap();
    // Setting a project's limits sets them all: ports_per_vip, not given,
    // is back to the default.
    let limits = a.get_project_limits("proj-a").await.unwrap();
    assert_eq!(
        (
            limits.vips_per_subnet,
            limits.vips_per_project,
            limits.ports_per_vip
        ),
        (2, 3, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_no_hypervisor_names() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p2"]);
    let v = a.create_havip(&req).await.unwrap();
    ctl.store
        .report_owner(&v.id, "p1", "hv-1", chrono::Utc::now())
        .await
        .unwrap();
    ctl.store
        .report_failed(&v.id, "hv-2", "tap-vm-2: no such device")
        .await
        .unwrap();
    let tenant_reads = [
        format!("/v1/havips/{}", v.id),
        "/v1/havips".to_string(),
        "/v1/ports".to_string(),
        "/v1/ports/p1".to_string(),
        "/v1/havips/export?format=csv".to_string(),
    ];
    let http = reqwest::Client::new();
    for path in &tenant_reads {
        let text = |token: &'static str| {
            let req = http.get(format!("{}{path}", ctl.url)).bearer_auth(token);
            async move { req.send().await.unwrap().text().await.unwrap() }
        };
        let tenant = text(PA).await;
        assert!(
            !tenant.contains("hv-1") && !tenant.contains("hv-2"),
            "{path}: {tenant}"
        );
        assert!(
            !tenant.contains("tap-vm-1"),
            "{path}: the host interface: {tenant}"
        );
        let operator = text(OP).await;
        assert!(
            operator.contains("hv-1"),
            "{path}: the operator sees hosts: {operator}"
        );
    }
    let seen = a.get_havip(&v.id).await.unwrap();
    assert_eq!(
        seen.status_reason.as_deref(),
        Some("port p2: tap-vm-2: no such device")
    );
    assert_eq!(seen.master.unwrap().port, "p1");
}
