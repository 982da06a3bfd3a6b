//! The migration from schema version 1 (acks at `acks/<vip>/<host>`, one
//! owner record at `owners/<vip>`) to version 2 (`reports/<host>/...`),
//! on a real etcd holding old-layout records: nothing is lost, a second run
//! changes nothing, a host's newer version 2 record is kept.

mod common;

use common::*;
use havip_controller::Store;
use havip_schema::keys;

async fn value(kv: &mut etcd_client::Client, key: &str) -> Option<String> {
    let r = kv.get(key, None).await.unwrap();
    r.kvs().first().map(|k| k.value_str().unwrap().to_owned())
}

#[tokio::test]
async fn old_acks_and_owners_move_under_their_hosts() {
    let etcd = Etcd::start();
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let ack = |g: u64| {
        format!(r#"{{"generation":{g},"result":"programmed","at":"2026-01-01T00:00:00Z"}}"#)
    };
    let owner = |port: &str, host: &str| {
        format!(r#"{{"port":"{port}","host":"{host}","since":"2026-01-01T00:00:00Z"}}"#)
    };
    let old = [
        ("/havip/v1/acks/havip-a/hv-1".to_string(), ack(3)),
        ("/havip/v1/acks/havip-a/hv-2".to_string(), ack(2)),
        ("/havip/v1/acks/havip-b/hv-1".to_string(), ack(1)),
        ("/havip/v1/owners/havip-a".to_string(), owner("p2", "hv-2")),
        ("/havip/v1/owners/havip-b".to_string(), owner("p1", "hv-1")),
        // Unreadable: no host to move it to; it stays.
        (
            "/havip/v1/owners/havip-c".to_string(),
            "{not json".to_string(),
        ),
    ];
    for (k, v) in &old {
        kv.put(k.as_str(), v.as_str(), None).await.unwrap();
    }
    // hv-1 already wrote its version 2 ack of havip-b (newer): it is kept.
    kv.put(keys::ack("havip-b", "hv-1"), ack(5), None)
        .await
        .unwrap();

    let store = Store::connect(std::slice::from_ref(&etcd.url), Limits::default())
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    let done = store.migrate().await.unwrap();
    assert_eq!((done.from, done.acks, done.owners), (1, 3, 2), "{done:?}");
    assert_eq!(done.kept, ["/havip/v1/owners/havip-c"]);
    assert_eq!(
        store.schema_version().await.unwrap(),
        havip_schema::SCHEMA_VERSION
    );

    let moved = [
        (keys::ack("havip-a", "hv-1"), ack(3)),
        (keys::ack("havip-a", "hv-2"), ack(2)),
        (keys::ack("havip-b", "hv-1"), ack(5)),
        (keys::owner_report("havip-a", "hv-2"), owner("p2", "hv-2")),
        (keys::owner_report("havip-b", "hv-1"), owner("p1", "hv-1")),
    ];
    for (k, v) in &moved {
        assert_eq!(value(&mut kv, k).await.as_deref(), Some(v.as_str()), "{k}");
    }
    for (k, _) in &old[..5] {
        assert_eq!(value(&mut kv, k).await, None, "{k} left behind");
    }
    assert!(value(&mut kv, "/havip/v1/owners/havip-c").await.is_some());

    // Again: nothing more to do, nothing changed.
    let again = store.migrate().await.unwrap();
    assert_eq!(
        (again.from, again.acks, again.owners),
        (havip_schema::SCHEMA_VERSION, 0, 0)
    );
    for (k, v) in &moved {
        assert_eq!(value(&mut kv, k).await.as_deref(), Some(v.as_str()), "{k}");
    }

    // A store newer than this controller is refused, not rewritten.
    kv.put(keys::schema(), r#"{"version":99}"#, None)
        .await
        .unwrap();
    let e = store.migrate().await.unwrap_err();
    assert!(e.message.contains("schema version 99"), "{e:?}");
}

#[tokio::test]
async fn an_old_agent_s_acks_are_moved_while_serving() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    ctl.store.migrate().await.unwrap();
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    // Give the reconciler's watch a moment to start.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ack = r#"{"generation":1,"result":"programmed","at":"2026-01-01T00:00:00Z"}"#;
    kv.put("/havip/v1/acks/havip-q/hv-7", ack, None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while value(&mut kv, &keys::ack("havip-q", "hv-7"))
        .await
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the old agent's ack was not moved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(value(&mut kv, "/havip/v1/acks/havip-q/hv-7").await, None);
}
