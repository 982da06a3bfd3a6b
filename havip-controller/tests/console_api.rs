//! What the console needs from the API, against a real etcd: the VPCs and
//! subnets a token sees, the address check of the creation wizard, the
//! list's VPC and IP version filters, and the console's own files.

mod common;

use common::*;
use havip_controller::model::*;
use serde_json::Value;

async fn get(ctl: &Controller, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    send(
        &reqwest::Client::new(),
        &format!("{}{path}", ctl.url),
        "GET",
        token,
        None,
    )
    .await
}

async fn get_json(ctl: &Controller, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = get(ctl, path, Some(token)).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_in_scope_and_the_address_check() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let (op, a) = (ctl.client(OP), ctl.client(PA));
    network(&op).await;
    let reserved = PutSubnet {
        vpc: "vpc-a2".into(),
        cidr_v4: Some("10.0.9.0/24".parse().unwrap()),
        reserved: vec!["10.0.9.2-10.0.9.9".into()],
        ..PutSubnet::default()
    };
    op.put_subnet("sn-r", &reserved).await.unwrap();

    // Each project sees its own VPCs and subnets; the operator all.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, vpcs) = get_json(&ctl, "/v1/vpcs", PA).await;
    assert_eq!(
        (s, ids(&vpcs)),
        (200, vec!["vpc-a".into(), "vpc-a2".into()])
    );
    let (_, vpcs) = get_json(&ctl, "/v1/vpcs", PB).await;
    assert_eq!(ids(&vpcs), ["vpc-b"]);
    let (_, vpcs) = get_json(&ctl, "/v1/vpcs", OP).await;
    assert_eq!(ids(&vpcs).len(), 3);
    let (_, subnets) = get_json(&ctl, "/v1/subnets", PA).await;
    assert_eq!(ids(&subnets), ["sn-a", "sn-a2", "sn-r", "sn-x"]);
    let (_, subnets) = get_json(&ctl, "/v1/subnets?vpc=vpc-a", PA).await;
    assert_eq!(ids(&subnets), ["sn-a", "sn-a2"]);
    assert_eq!(subnets[0]["cidr_v6"], "fd00:a::/64");
    let (_, subnets) = get_json(&ctl, "/v1/subnets?vpc=vpc-a", PB).await;
    assert_eq!(ids(&subnets), Vec::<String>::new(), "B sees none of A's");
    let (s, err) = get_json(&ctl, "/v1/subnets?vpcs=x", PA).await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (s, _, _) = get(&ctl, "/v1/vpcs", None).await;
    assert_eq!(s, 401);

    // The address check: each state with why, the create's own rules.
    let mut req = create("db", "sn-a");
    req.address = Some(ip("10.0.0.100"));
    let db = a.create_havip(&req).await.unwrap();
    let check = |sn: &str, addr: &str| format!("/v1/subnets/{sn}/addresses/{addr}");
    let cases = [
        ("sn-a", "10.0.0.50", "free", None),
        ("sn-a", "fd00:a::50", "free", None),
        ("sn-a", "10.0.0.11", "in_use", Some("port p1 of VM vm-1")),
        ("sn-a", "10.0.0.100", "in_use", Some(db.id.as_str())),
        (
            "sn-a",
            "10.0.1.5",
            "out_of_range",
            Some("not inside 10.0.0.0/24"),
        ),
        ("sn-a2", "fd00:a::5", "out_of_range", Some("no ipv6 range")),
        (
            "sn-a",
            "224.0.0.5",
            "out_of_range",
            Some("not a unicast address"),
        ),
        ("sn-a", "10.0.0.1", "reserved", Some("gateway")),
        ("sn-a", "10.0.0.255", "reserved", Some("broadcast")),
        ("sn-r", "10.0.9.5", "reserved", Some("10.0.9.2-10.0.9.9")),
    ];
    for (sn, addr, state, why) in cases {
        let (s, v) = get_json(&ctl, &check(sn, addr), PA).await;
        assert_eq!((s, v["state"].as_str()), (200, Some(state)), "{addr}: {v}");
        assert_eq!(
            v["address"],
            addr.parse::<std::net::IpAddr>().unwrap().to_string()
        );
        match why {
            Some(w) => assert!(
                v["message"].as_str().unwrap().contains(w),
                "{addr}: {v} should say {w}"
            ),
            None => assert!(v.get("message").is_none(), "{v}"),
        }
    }
    // A free answer is what the create does.
    let mut req = create("web", "sn-a");
    req.address = Some(ip("10.0.0.50"));
    a.create_havip(&req).await.unwrap();
    let (_, v) = get_json(&ctl, &check("sn-a", "10.0.0.50"), PA).await;
    assert_eq!(v["state"], "in_use");
    // Bad input: not an address, another project's subnet, no subnet.
    let (s, v) = get_json(&ctl, &check("sn-a", "10.0.0.300"), PA).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not an IP address"));
    let (s, v) = get_json(&ctl, &check("sn-b", "10.0.0.5"), PA).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = get_json(&ctl, &check("no-such", "10.0.0.5"), PA).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = get_json(&ctl, &check("bad%20id", "10.0.0.5"), PA).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );

    // The list's VPC and IP version filters.
    let mut req = create("v6", "sn-a");
    req.ip_version = Some(IpVersion::Ipv6);
    a.create_havip(&req).await.unwrap();
    a.create_havip(&create("other-vpc", "sn-x")).await.unwrap();
    let names = |q: ListQuery| {
        let a = &a;
        async move {
            let mut n: Vec<String> = a
                .list_havips(&q)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|v| v.name)
                .collect();
            n.sort();
            n
        }
    };
    let by_vpc = names(ListQuery {
        vpc: Some("vpc-a2".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_vpc, ["other-vpc"]);
    let v6 = names(ListQuery {
        ip_version: Some(IpVersion::Ipv6),
        ..Default::default()
    })
    .await;
    assert_eq!(v6, ["v6"]);
    let v4_in_a = names(ListQuery {
        vpc: Some("vpc-a".into()),
        ip_version: Some(IpVersion::Ipv4),
        ..Default::default()
    })
    .await;
    assert_eq!(v4_in_a, ["db", "web"]);
    let (s, v) = get_json(&ctl, "/v1/havips?ip_version=ipv5", PA).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http
        .get(format!("{}/console", ctl.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(resp.headers()["location"], "/console/");
    let resp = http
        .get(format!("{}/console/", ctl.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("高可用VIP"));
    for (file, ctype) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let (s, t, body) = get(&ctl, &format!("/console/{file}"), None).await;
        assert_eq!(s, 200, "{file}");
        assert!(t.starts_with(ctype), "{file}: {t}");
        assert!(!body.is_empty());
    }
    // No token needed for the page; every API call still needs one.
    let (s, _, _) = get(&ctl, "/console/nothing.js", None).await;
    assert_eq!(s, 404);
    // The OpenAPI document has the wizard's routes.
    let (_, doc) = get_json(&ctl, "/openapi.json", PA).await;
    for path in [
        "/v1/vpcs",
        "/v1/subnets",
        "/v1/subnets/{id}/addresses/{address}",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} not documented"
        );
    }
    let params = doc["paths"]["/v1/havips"]["get"]["parameters"].to_string();
    assert!(params.contains("\"vpc\"") && params.contains("\"ip_version\""));
}
