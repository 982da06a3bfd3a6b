//! A corrupt record of every kind in etcd harms only itself: every other
//! tenant's calls succeed (lists, gets, exports, creates), the ack
//! reconciler goes on, the record is reported to the operator (and only
//! there is its key named), and an operation that needs it says so
//! without naming the key.

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_harms_only_itself() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1"]);
    let va = a.create_havip(&req).await.unwrap();
    let mut req = create("b-web", "sn-b");
    req.ports = ids(&["b1"]);
    let vb = b.create_havip(&req).await.unwrap();
    assert_eq!((va.status, vb.status), (Status::Creating, Status::Creating));

    // One corrupt record of every kind of key, and a VIP record that reads
    // but breaks a rule.
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let garbage: Vec<String> = vec![
        "/havip/v1/vpcs/vpc-z".into(),
        "/havip/v1/subnets/sn-z".into(),
        "/havip/v1/ports/pz".into(),
        "/havip/v1/vips/havip-zz".into(),
        "/havip/v1/addrs/sn-a/10.0.0.77".into(),
        "/havip/v1/hosts/hv-1/ports/pz".into(),
        format!("/havip/v1/reports/hv-9/acks/{}", va.id),
        "/havip/v1/reports/hv-1/acks/havip-zz".into(),
        format!("/havip/v1/reports/hv-1/owners/{}", va.id),
        "/havip/v1/limits/projects/proj-c".into(),
        "/havip/v1/index/projects/proj-c/havip-zz".into(),
        "/havip/v1/index/subnets/sn-z/havip-zz".into(),
        "/havip/v1/idempotency/proj-a/k1".into(),
        havip_schema::keys::owner_event(&va.id, 7),
    ];
    for key in &garbage {
        kv.put(key.as_str(), "{not json", None).await.unwrap();
    }
    let mut zero = serde_json::to_value(
        ctl.store
            .all_havips(&havip_controller::Scope::Operator)
            .await
            .unwrap()
            .into_iter()
            .find(|v| v.id == vb.id)
            .unwrap(),
    )
    .unwrap();
    zero["id"] = "havip-zero".into();
    zero["address"] = "0.0.0.0".into();
    kv.put("/havip/v1/vips/havip-zero", zero.to_string(), None)
        .await
        .unwrap();

    // Every tenant's reads go on, corrupt records skipped.
    for (c, own) in [(&a, &va.id), (&b, &vb.id)] {
        let page = c.list_havips(&ListQuery::default()).await.unwrap();
        assert!(page.items.iter().any(|v| v.id == *own), "{page:?}");
        assert!(page.items.iter().all(|v| v.id != "havip-zz"));
        assert!(c.get_havip(own).await.is_ok());
        assert!(!c.export(ExportFormat::Csv).await.unwrap().is_empty());
        assert!(!c.export(ExportFormat::Xlsx).await.unwrap().is_empty());
        assert!(c.list_ports(&PortQuery::default()).await.is_ok());
    }
    assert!(op.list_ports(&PortQuery::default()).await.is_ok());
    assert!(op.list_havips(&ListQuery::default()).await.is_ok());
    assert_eq!(
        a.get_havip(&va.id).await.unwrap().master,
        None,
        "its owner record is corrupt"
    );
    // Writes that do not need a corrupt record go on too.
    a.create_havip(&create("web-2", "sn-a")).await.unwrap();
    b.create_havip(&create("b-web-2", "sn-b")).await.unwrap();

    // The reconciler goes on: acks written after the corrupt ones count.
    let ack =
        serde_json::json!({"generation": 1, "result": "programmed", "at": "2026-01-01T00:00:00Z"});
    for id in [&va.id, &vb.id] {
        kv.put(
            format!("/havip/v1/reports/hv-1/acks/{id}"),
            ack.to_string(),
            None,
        )
        .await
        .unwrap();
    }
    wait_status(&a, &va.id, Status::Available).await;
    wait_status(&b, &vb.id, Status::Available).await;

    // The corrupt record itself: a read does not find it; a change says it
    // cannot be read, naming the resource and not the key.
    let (c, msg) = code(a.get_havip("havip-zz").await);
    assert_eq!(c, ErrorCode::NotFound, "{msg}");
    let (c, msg) = code(
        op.put_port("pz", &port_req("vm-z", "sn-a", "10.0.0.88", "hv-1"))
            .await,
    );
    assert_eq!(c, ErrorCode::CorruptRecord, "{msg}");
    assert!(
        msg.contains("port pz") && !msg.contains("/havip/v1"),
        "{msg}"
    );
    let mut req = create("on-garbage", "sn-a");
    req.address = Some(ip("10.0.0.77"));
    let (c, msg) = code(a.create_havip(&req).await);
    assert_eq!(c, ErrorCode::CorruptRecord, "{msg}");
    assert!(!msg.contains("/havip/v1"), "{msg}");

    // Reported to the operator: every one, with its key and why.
    let report = op.corrupt_records().await.unwrap();
    let keys: Vec<&str> = report.records.iter().map(|r| r.key.as_str()).collect();
    for key in &garbage {
        assert!(keys.contains(&key.as_str()), "{key} not reported: {keys:?}");
    }
    let zero = report
        .records
        .iter()
        .find(|r| r.key == "/havip/v1/vips/havip-zero")
        .expect("the VIP at 0.0.0.0 is reported");
    assert!(zero.problem.contains("unspecified"), "{}", zero.problem);
    assert_eq!(report.records.len(), garbage.len() + 1, "{keys:?}");
    assert!(report.skipped_reads > 0);
    assert_eq!(code(a.corrupt_records().await).0, ErrorCode::Forbidden);
}
