//! Two controllers on one etcd racing for the last addresses and the last
//! quota slots: nothing is given twice, no limit is exceeded.

mod common;

use std::collections::HashSet;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_controllers_race_for_the_last_addresses() {
    let etcd = Etcd::start();
    let (c1, c2) = (
        Controller::start(&etcd).await,
        Controller::start(&etcd).await,
    );
    let op = c1.client(OP);
    vpc_a_with(&op, &[("tiny", "10.1.0.0/29"), ("other", "10.2.0.0/24")]).await;
    // Of the six host addresses, .1 is the gateway and .3 a port's.
    op.put_port("p1", &port_req("vm-1", "tiny", "10.1.0.3", "hv-1"))
        .await
        .unwrap();

    // 16 creates for 4 free addresses, half through each controller.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = if i % 2 == 0 {
            c1.client(PA)
        } else {
            c2.client(PA)
        };
        tasks.push(tokio::spawn(async move {
            c.create_havip(&create(&format!("v{i}"), "tiny")).await
        }));
    }
    let mut got = Vec::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => got.push(v.address),
            Err(e) => {
                assert_eq!(code::<()>(Err(e)).0, ErrorCode::SubnetExhausted);
                exhausted += 1;
            }
        }
    }
    let distinct: HashSet<_> = got.iter().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(distinct.len(), 4, "an address was given twice: {got:?}");
    assert_eq!(exhausted, 12);
    for a in &got {
        assert!(
            !["10.1.0.0", "10.1.0.1", "10.1.0.3", "10.1.0.7"].contains(&a.to_string().as_str()),
            "{a}"
        );
    }

    // 10 creates of one given address: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = if i % 2 == 0 {
            c1.client(PA)
        } else {
            c2.client(PA)
        };
        tasks.push(tokio::spawn(async move {
            let req = CreateHavip {
                address: Some(ip("10.2.0.50")),
                ..create(&format!("w{i}"), "other")
            };
            c.create_havip(&req).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)).0, ErrorCode::AddressInUse),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_controllers_race_for_the_last_quota_slots() {
    let etcd = Etcd::start();
    let (c1, c2) = (
        Controller::start(&etcd).await,
        Controller::start(&etcd).await,
    );
    let op = c1.client(OP);
    vpc_a_with(&op, &[("sn", "10.3.0.0/24")]).await;
    for i in 0..10 {
        op.put_port(
            &format!("p{i}"),
            &port_req(
                &format!("vm-{i}"),
                "sn",
                &format!("10.3.0.{}", 100 + i),
                &format!("hv-{}", i % 3),
            ),
        )
        .await
        .unwrap();
    }
    let client = |i: usize| {
        if i % 2 == 0 {
            c1.client(PA)
        } else {
            c2.client(PA)
        }
    };

    // Ten ports race onto one VIP (limit 3).
    let vip = client(0).create_havip(&create("web", "sn")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (c, id) = (client(i), vip.id.clone());
        tasks.push(tokio::spawn(async move {
            c.bind(&id, &[format!("p{i}")]).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)).0, ErrorCode::QuotaExceeded),
        }
    }
    assert_eq!(ok, 3);
    let v = client(1).get_havip(&vip.id).await.unwrap();
    assert_eq!(v.ports.len(), 3);

    // Twelve VIPs race onto one port (limit 5).
    let mut vips = Vec::new();
    for i in 0..12 {
        vips.push(
            client(i)
                .create_havip(&create(&format!("v{i}"), "sn"))
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = Vec::new();
    for (i, id) in vips.iter().enumerate() {
        let (c, id) = (client(i), id.clone());
        tasks.push(tokio::spawn(
            async move { c.bind(&id, &ids(&["p9"])).await },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)).0, ErrorCode::QuotaExceeded),
        }
    }
    let p9_vips = op
        .list_ports(&PortQuery::default())
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.id == "p9")
        .unwrap()
        .vips;
    // p9 may also have won a slot on `web` above.
    let on_web = v.ports.iter().any(|b| b.port == "p9") as usize;
    assert_eq!(ok + on_web, 5);
    assert_eq!(p9_vips.len(), 5);

    // Both sides of every binding agree.
    let all = op
        .list_havips(&ListQuery {
            page_size: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    for p in op.list_ports(&PortQuery::default()).await.unwrap() {
        let from_vips: HashSet<&str> = all
            .iter()
            .filter(|v| v.ports.iter().any(|b| b.port == p.id))
            .map(|v| v.id.as_str())
            .collect();
        let from_port: HashSet<&str> = p.vips.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(from_vips, from_port, "port {}", p.id);
    }
    // Each binding carries its port's datapath id; ports' ids are distinct.
    let ports = records(&etcd, "/havip/v1/ports/").await;
    let port_ids: std::collections::HashMap<&str, u64> = ports
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap(),
                p["datapath_id"].as_u64().unwrap(),
            )
        })
        .collect();
    let distinct: HashSet<&u64> = port_ids.values().collect();
    assert_eq!(distinct.len(), port_ids.len(), "{port_ids:?}");
    for v in records(&etcd, "/havip/v1/vips/").await {
        for b in v["ports"].as_array().unwrap() {
            let port = b["port"].as_str().unwrap();
            assert_eq!(b["datapath_id"].as_u64(), Some(port_ids[port]), "{b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_controllers_race_for_the_havip_quotas() {
    let etcd = Etcd::start();
    let limits = Limits {
        vips_per_subnet: 4,
        vips_per_project: 6,
        ..Limits::default()
    };
    let (c1, c2) = (
        Controller::start_with(&etcd, limits).await,
        Controller::start_with(&etcd, limits).await,
    );
    let op = c1.client(OP);
    vpc_a_with(&op, &[("s1", "10.4.0.0/24"), ("s2", "10.5.0.0/24")]).await;
    let race = |subnet: &'static str, n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let c = if i % 2 == 0 {
                    c1.client(PA)
                } else {
                    c2.client(PA)
                };
                tokio::spawn(async move {
                    c.create_havip(&create(&format!("{subnet}-{i}"), subnet))
                        .await
                })
            })
            .collect();
        async move {
            let (mut ok, mut refused) = (0, Vec::new());
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let (c, msg) = code::<()>(Err(e));
                        assert_eq!(c, ErrorCode::QuotaExceeded, "{msg}");
                        refused.push(msg);
                    }
                }
            }
            (ok, refused)
        }
    };
    // 12 creates racing into s1 (4 per subnet): exactly 4.
    let (ok, refused) = race("s1", 12).await;
    assert_eq!(ok, 4);
    assert!(
        refused.iter().all(|m| m.contains("vips_per_subnet")),
        "{refused:?}"
    );
    // 12 into s2: the project (6) is full after 2 more.
    let (ok, refused) = race("s2", 12).await;
    assert_eq!(ok, 2);
    assert!(
        refused.iter().all(|m| m.contains("vips_per_project")),
        "{refused:?}"
    );
    let all = op.list_havips(&ListQuery::default()).await.unwrap();
    assert_eq!(all.total, 6);
    // Racing deletes and creates: never more than the quota.
    let s1: Vec<String> = all
        .items
        .iter()
        .filter(|v| v.subnet == "s1")
        .map(|v| v.id.clone())
        .collect();
    let deleter = c2.client(PA);
    let gone = s1[0].clone();
    let del = tokio::spawn(async move { deleter.delete_havip(&gone).await });
    let (ok, _) = race("s2", 6).await;
    del.await.unwrap().unwrap();
    let all = op.list_havips(&ListQuery::default()).await.unwrap();
    assert!(all.total <= 6, "{}", all.total);
    assert_eq!(all.total, 5 + ok, "each create that won took a slot");
    assert!(ok <= 1);

    // Datapath ids: one per VIP ever created, dense, none given twice,
    // whichever controller made it.
    let mut ids: Vec<u64> = records(&etcd, "/havip/v1/vips/")
        .await
        .iter()
        .map(|v| v["datapath_id"].as_u64().expect("a datapath id"))
        .collect();
    ids.sort();
    let created = 6 + ok;
    assert_eq!(ids.len() as u64, created - 1, "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len() as u64, created - 1, "an id given twice: {ids:?}");
    assert!(ids.iter().all(|id| (1..=created).contains(id)), "{ids:?}");
}

/// The records under `prefix`, as JSON.
async fn records(etcd: &Etcd, prefix: &str) -> Vec<serde_json::Value> {
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let resp = kv
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| serde_json::from_slice(kv.value()).unwrap())
        .collect()
}
