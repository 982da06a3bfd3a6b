//! The failover history from owner reports in a real etcd: one event per
//! change of owning port, from/to with VMs (hosts for operators), newest
//! first, compacted to the newest N, a corrupt event skipped and counted,
//! recorded once however many controllers watch, deleted with its HAVIP.

mod common;

use std::time::Duration;

use common::*;
use havip_controller::history::OwnerChanges;
use havip_controller::ErrorCode;

async fn changes_until(c: &havip_controller::client::Client, id: &str, n: usize) -> OwnerChanges {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = c.owner_changes(id).await.unwrap();
        if e.events.len() >= n {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} owner changes: {e:?}",
            e.events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_changes_are_kept_once_newest_first_and_deleted_with_the_vip() {
    let etcd = Etcd::start();
    // Two controllers on one etcd: each change is still recorded once.
    let ctl = Controller::start(&etcd).await;
    let other = Controller::start(&etcd).await;
    let (op, a, b) = (ctl.client(OP), ctl.client(PA), ctl.client(PB));
    network(&op).await;
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p2"]);
    let v = a.create_havip(&req).await.unwrap();
    // Let both recorders' watches start.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = chrono::Utc::now();
    let store = &ctl.store;
    store.report_owner(&v.id, "p1", "hv-1", t0).await.unwrap();
    let t1 = t0 + chrono::Duration::seconds(1);
    store.report_owner(&v.id, "p2", "hv-2", t1).await.unwrap();
    // The same owner again (e.g. a split-brain update): no change.
    other
        .store
        .report_owner(&v.id, "p2", "hv-2", t1)
        .await
        .unwrap();
    let t2 = t0 + chrono::Duration::seconds(2);
    other
        .store
        .report_owner(&v.id, "p1", "hv-1", t2)
        .await
        .unwrap();

    let e = changes_until(&op, &v.id, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e2 = op.owner_changes(&v.id).await.unwrap();
    assert_eq!(e, e2, "recorded once, not per controller");
    assert_eq!(e.events.len(), 3, "{e:?}");
    let [last, mid, first] = &e.events[..] else {
        unreachable!()
    };
    assert_eq!((first.at, mid.at, last.at), (t0, t1, t2));
    assert!(first.from.is_none());
    assert_eq!(first.to.port, "p1");
    assert_eq!(first.to.vm.as_deref(), Some("vm-1"));
    assert_eq!(first.to.host.as_deref(), Some("hv-1"));
    let from = mid.from.as_ref().unwrap();
    assert_eq!(
        (from.port.as_str(), from.host.as_deref()),
        ("p1", Some("hv-1"))
    );
    assert_eq!(
        (
            mid.to.port.as_str(),
            mid.to.vm.as_deref(),
            mid.to.host.as_deref()
        ),
        ("p2", Some("vm-2"), Some("hv-2"))
    );
    assert_eq!(last.from.as_ref().unwrap().port, "p2");
    assert_eq!(last.to.port, "p1");

    // havipctl events: the table (newest first) and --json.
    let havipctl = |token: &str, json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_havipctl"));
        c.env("HAVIP_URL", &ctl.url).env("HAVIP_TOKEN", token);
        if json {
            c.arg("--json");
        }
        let out = c.args(["events", &v.id]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = havipctl(OP, false);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("AT") && rows[0].contains("FROM"),
        "{table}"
    );
    assert!(
        rows[1].contains("p2(vm-2)@hv-2") && rows[1].ends_with("p1(vm-1)@hv-1"),
        "{table}"
    );
    assert!(
        rows[2].contains("p1(vm-1)@hv-1") && rows[2].ends_with("p2(vm-2)@hv-2"),
        "{table}"
    );
    assert!(
        rows[3].contains(" - ") && rows[3].ends_with("p1(vm-1)@hv-1"),
        "{table}"
    );
    assert!(rows[4].starts_with("(3 owner changes"), "{table}");
    assert!(
        !havipctl(PA, false).contains("@hv-"),
        "a tenant sees no host"
    );
    let json: OwnerChanges = serde_json::from_str(&havipctl(OP, true)).unwrap();
    assert_eq!(json, e);

    // The tenant sees the same changes without hosts; another project none.
    let tenant = a.owner_changes(&v.id).await.unwrap();
    assert_eq!(tenant.events.len(), 3);
    assert!(tenant
        .events
        .iter()
        .all(|c| c.to.host.is_none() && c.from.as_ref().is_none_or(|f| f.host.is_none())));
    assert_eq!(code(b.owner_changes(&v.id).await).0, ErrorCode::NotFound);
    assert_eq!(
        code(a.owner_changes("havip-nope").await).0,
        ErrorCode::NotFound
    );
    assert_eq!(
        code(a.owner_changes("bad id!").await).0,
        ErrorCode::InvalidArgument
    );

    // A corrupt event record is skipped, counted and listed for the operator.
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let bad = havip_schema::keys::owner_event(&v.id, 1);
    kv.put(bad.as_str(), "{not json", None).await.unwrap();
    let skipped = op.corrupt_records().await.unwrap().skipped_reads;
    assert_eq!(a.owner_changes(&v.id).await.unwrap().events.len(), 3);
    let corrupt = op.corrupt_records().await.unwrap();
    assert!(corrupt.skipped_reads > skipped);
    assert!(corrupt.records.iter().any(|r| r.key == bad), "{corrupt:?}");
    kv.delete(bad.as_str(), None).await.unwrap();

    // Deleting the HAVIP deletes its history.
    for host in ["hv-1", "hv-2"] {
        store.ack_programmed(&v.id, host).await.unwrap();
    }
    wait_status(&a, &v.id, havip_controller::model::Status::Available).await;
    a.delete_havip(&v.id).await.unwrap();
    let left = kv
        .get(
            havip_schema::keys::owner_events_of(&v.id),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_compacted_to_the_newest_and_idempotent_per_report() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let mut req = create("web", "sn-a");
    req.ports = ids(&["p1", "p3"]);
    let v = a.create_havip(&req).await.unwrap();
    let store = &ctl.store;
    let t0 = chrono::Utc::now();
    let owner = |port: &str, s: i64| havip_schema::records::Owner {
        port: port.into(),
        host: "hv-1".into(),
        since: t0 + chrono::Duration::seconds(s),
        split_brain: None,
    };
    // Ten failovers p1 <-> p3 recorded directly, keeping 4.
    let mut before = None;
    for i in 0..10 {
        let after = owner(if i % 2 == 0 { "p1" } else { "p3" }, i);
        let revision = 1000 + i;
        assert!(store
            .record_owner_change(&v.id, before.as_ref(), &after, revision, 4)
            .await
            .unwrap());
        // The same report again (another controller): not written twice.
        assert!(!store
            .record_owner_change(&v.id, before.as_ref(), &after, revision, 4)
            .await
            .unwrap());
        before = Some(after);
    }
    let e = op.owner_changes(&v.id).await.unwrap();
    let at: Vec<i64> = e.events.iter().map(|c| (c.at - t0).num_seconds()).collect();
    assert_eq!(at, [9, 8, 7, 6], "{e:?}");
    // An unknown VIP gets no event.
    assert!(!store
        .record_owner_change("havip-nope", None, &owner("p1", 0), 5000, 4)
        .await
        .unwrap());
}
