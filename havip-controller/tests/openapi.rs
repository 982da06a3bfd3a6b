//! The served OpenAPI document is true: every route is in it and every
//! documented operation is routed; real answers have documented statuses
//! and bodies that validate against the documented schemas.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

struct Checker {
    http: reqwest::Client,
    base: String,
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

impl Checker {
    /// Calls `method path` (`template` is its documented path) and checks
    /// the answer against the document. Returns status and JSON body.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let (status, ctype, bytes) = send(&self.http, &url, method, token, body).await;
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        self.seen.insert((method.to_string(), template.to_string()));
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path}: status {status} is not documented"
        );
        let content = &documented["content"];
        let value = if ctype.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let schema = &content["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{method} {template} {status}: JSON body not documented"
            );
            if let Err(e) = validate(&self.doc, schema, &v, "body") {
                panic!("{method} {path} {status}: {e}\n{v:#}");
            }
            v
        } else if bytes.is_empty() {
            assert!(
                content.is_null() || content.as_object().unwrap().is_empty(),
                "{method} {template} {status}: documented body, none sent"
            );
            Value::Null
        } else {
            let mime = ctype.split(';').next().unwrap();
            assert!(
                content[mime].is_object(),
                "{method} {template} {status}: {mime} not documented"
            );
            Value::Null
        };
        (status, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_api() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/openapi.json", ctl.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc,
        serde_json::to_value(havip_controller::api::openapi()).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // The validator bites: a wrong body fails against the Havip schema.
    let havip = json!({"$ref": "#/components/schemas/Havip"});
    assert!(validate(&doc, &havip, &json!({"id": 1}), "x").is_err());
    assert!(validate(&doc, &havip, &json!({}), "x")
        .unwrap_err()
        .contains("missing required"));

    // Every documented operation is routed (not the 404 fallback, not 405).
    let mut documented = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| ["get", "put", "post", "delete", "patch"].contains(&m.as_str()))
        {
            documented.insert((method.clone(), template.clone()));
            let path = template
                .replace("{id}", "zz")
                .replace("{port}", "zz")
                .replace("{project}", "zz");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http
                .request(m, format!("{}{path}", ctl.url))
                .bearer_auth(OP)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {template}");
            assert!(
                !body.contains("no route for"),
                "{method} {template} is documented but not routed"
            );
        }
    }
    // And every route is documented: undocumented ones answer the fallback.
    for (m, p) in [("GET", "/v1/havips/x/owner"), ("POST", "/v1/havips/x/acks")] {
        let resp = http
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}{p}", ctl.url),
            )
            .bearer_auth(OP)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    // Real calls over every operation, checked against the document.
    let mut c = Checker {
        http,
        base: ctl.url.clone(),
        doc,
        seen: BTreeSet::new(),
    };
    c.call("get", "/openapi.json", "/openapi.json", None, None)
        .await;
    c.call("get", "/healthz", "/healthz", None, None).await;
    c.call(
        "put",
        "/v1/vpcs/{id}",
        "/v1/vpcs/vpc-a",
        Some(OP),
        Some(json!({"project": "proj-a", "name": "main"})),
    )
    .await;
    c.call("get", "/v1/vpcs/{id}", "/v1/vpcs/vpc-a", Some(PA), None)
        .await;
    c.call("get", "/v1/vpcs/{id}", "/v1/vpcs/vpc-a", Some(PB), None)
        .await;
    c.call(
        "put",
        "/v1/subnets/{id}",
        "/v1/subnets/sn-a",
        Some(OP),
        Some(json!({"vpc": "vpc-a", "cidr_v4": "10.0.0.0/24", "cidr_v6": "fd00::/64"})),
    )
    .await;
    c.call(
        "put",
        "/v1/subnets/{id}",
        "/v1/subnets/sn-a",
        Some(PA),
        Some(json!({"vpc": "vpc-a", "cidr_v4": "10.0.0.0/24"})),
    )
    .await;
    c.call(
        "get",
        "/v1/subnets/{id}",
        "/v1/subnets/sn-a",
        Some(PA),
        None,
    )
    .await;
    for i in 1..=4 {
        c.call("put", "/v1/ports/{id}", &format!("/v1/ports/p{i}"), Some(OP),
            Some(json!({"vm": format!("vm-{i}"), "subnet": "sn-a", "mac": "52:54:00:00:00:01", "fixed_ips": [format!("10.0.0.{}", 10 + i)], "host": "hv-1", "interface": "tap0"}))).await;
    }
    c.call("put", "/v1/ports/{id}", "/v1/ports/p9", Some(OP), Some(json!({"vm": "v", "subnet": "sn-a", "mac": "52:54:00:00:00:01", "fixed_ips": ["10.0.0.11"], "host": "h", "interface": "i"}))).await;
    c.call("get", "/v1/ports/{id}", "/v1/ports/p1", Some(PA), None)
        .await;
    c.call("get", "/v1/ports", "/v1/ports?vm=vm-1", Some(PA), None)
        .await;
    c.call("get", "/v1/vpcs", "/v1/vpcs", Some(PA), None).await;
    c.call(
        "get",
        "/v1/subnets",
        "/v1/subnets?vpc=vpc-a",
        Some(PA),
        None,
    )
    .await;
    let address = "/v1/subnets/{id}/addresses/{address}";
    for (addr, status) in [("10.0.0.11", 200), ("10.0.0.99", 200), ("10.0.0", 400)] {
        let (s, _) = c
            .call(
                "get",
                address,
                &format!("/v1/subnets/sn-a/addresses/{addr}"),
                Some(PA),
                None,
            )
            .await;
        assert_eq!(s, status, "{addr}");
    }
    c.call(
        "get",
        address,
        "/v1/subnets/sn-a/addresses/10.0.0.5",
        Some(PB),
        None,
    )
    .await;
    c.call(
        "put",
        "/v1/ports/{id}/limits",
        "/v1/ports/p1/limits",
        Some(OP),
        Some(json!({"vips_per_port": 7})),
    )
    .await;
    let (s, v) = c
        .call(
            "post",
            "/v1/havips",
            "/v1/havips",
            Some(PA),
            Some(json!({"name": "web", "subnet": "sn-a", "ports": ["p1"]})),
        )
        .await;
    assert_eq!(s, 201);
    let id = v["id"].as_str().unwrap().to_string();
    c.call(
        "post",
        "/v1/havips",
        "/v1/havips",
        Some(PA),
        Some(json!({"name": "x", "subnet": "sn-a", "address": "10.0.0.11"})),
    )
    .await;
    c.call(
        "post",
        "/v1/havips",
        "/v1/havips",
        Some(PA),
        Some(json!({"name": "x", "subnet": "sn-a", "address": "10.9.0.1"})),
    )
    .await;
    c.call(
        "post",
        "/v1/havips",
        "/v1/havips",
        None,
        Some(json!({"name": "x", "subnet": "sn-a"})),
    )
    .await;
    c.call(
        "post",
        "/v1/havips",
        "/v1/havips",
        Some(OP),
        Some(json!({"name": "x", "subnet": "sn-a"})),
    )
    .await;
    ctl.store
        .report_owner(&id, "p1", "hv-1", chrono::Utc::now())
        .await
        .unwrap();
    let (_, v) = c
        .call(
            "get",
            "/v1/havips/{id}",
            &format!("/v1/havips/{id}"),
            Some(PA),
            None,
        )
        .await;
    assert_eq!(v["master"]["port"], "p1");
    // The owner change, once the history recorder has seen the report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, e) = c
            .call(
                "get",
                "/v1/havips/{id}/events",
                &format!("/v1/havips/{id}/events"),
                Some(PA),
                None,
            )
            .await;
        if e["events"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(e["events"][0]["to"]["port"], "p1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no owner change: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.call(
        "get",
        "/v1/havips",
        "/v1/havips?q=web&page=1&page_size=5",
        Some(PA),
        None,
    )
    .await;
    c.call(
        "patch",
        "/v1/havips/{id}",
        &format!("/v1/havips/{id}"),
        Some(PA),
        Some(json!({"description": "d"})),
    )
    .await;
    c.call(
        "post",
        "/v1/havips/{id}/ports",
        &format!("/v1/havips/{id}/ports"),
        Some(PA),
        Some(json!({"ports": ["p2", "p3"]})),
    )
    .await;
    c.call(
        "post",
        "/v1/havips/{id}/ports",
        &format!("/v1/havips/{id}/ports"),
        Some(PA),
        Some(json!({"ports": ["p4"]})),
    )
    .await;
    c.call(
        "delete",
        "/v1/havips/{id}",
        &format!("/v1/havips/{id}"),
        Some(PA),
        None,
    )
    .await;
    c.call(
        "delete",
        "/v1/havips/{id}/ports/{port}",
        &format!("/v1/havips/{id}/ports/p3"),
        Some(PA),
        None,
    )
    .await;
    c.call(
        "put",
        "/v1/havips/{id}/ports",
        &format!("/v1/havips/{id}/ports"),
        Some(PA),
        Some(json!({"ports": []})),
    )
    .await;
    c.call(
        "put",
        "/v1/havips/{id}/limits",
        &format!("/v1/havips/{id}/limits"),
        Some(OP),
        Some(json!({"ports_per_vip": 4})),
    )
    .await;
    c.call(
        "get",
        "/v1/limits/projects/{project}",
        "/v1/limits/projects/proj-a",
        Some(PA),
        None,
    )
    .await;
    c.call(
        "put",
        "/v1/limits/projects/{project}",
        "/v1/limits/projects/proj-a",
        Some(OP),
        Some(json!({"ports_per_vip": 2, "vips_per_port": null})),
    )
    .await;
    c.call(
        "put",
        "/v1/limits/projects/{project}",
        "/v1/limits/projects/proj-a",
        Some(PA),
        Some(json!({"ports_per_vip": 9})),
    )
    .await;
    c.call(
        "get",
        "/v1/havips/export",
        "/v1/havips/export?format=xlsx",
        Some(PA),
        None,
    )
    .await;
    c.call(
        "get",
        "/v1/havips/export",
        "/v1/havips/export?format=csv",
        Some(PA),
        None,
    )
    .await;
    let (s, _) = c
        .call(
            "delete",
            "/v1/havips/{id}",
            &format!("/v1/havips/{id}"),
            Some(PA),
            None,
        )
        .await;
    assert_eq!(s, 204);
    c.call(
        "post",
        "/v1/havips/batch-delete",
        "/v1/havips/batch-delete",
        Some(PA),
        Some(json!({"ids": [id, "havip-x"]})),
    )
    .await;
    c.call("delete", "/v1/ports/{id}", "/v1/ports/p4", Some(OP), None)
        .await;
    let (s, body) = c
        .call(
            "get",
            "/v1/records/corrupt",
            "/v1/records/corrupt",
            Some(OP),
            None,
        )
        .await;
    assert_eq!(
        (s, body["records"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (s, _) = c
        .call(
            "get",
            "/v1/records/corrupt",
            "/v1/records/corrupt",
            Some(PA),
            None,
        )
        .await;
    assert_eq!(s, 403);

    // EIPs: pools, allocation, association, quota.
    let (s, v) = c
        .call(
            "post",
            "/v1/havips",
            "/v1/havips",
            Some(PA),
            Some(json!({"name": "e", "subnet": "sn-a"})),
        )
        .await;
    assert_eq!(s, 201);
    let vip = v["id"].as_str().unwrap().to_string();
    let pool = json!({"id": "pub", "gateway": "gw-1", "ranges": ["198.51.100.0/30"]});
    c.call(
        "post",
        "/v1/eip-pools",
        "/v1/eip-pools",
        Some(OP),
        Some(pool.clone()),
    )
    .await;
    let (s, e) = c
        .call(
            "post",
            "/v1/eips",
            "/v1/eips",
            Some(PA),
            Some(json!({"pool": "pub"})),
        )
        .await;
    assert_eq!(s, 201);
    let eip = format!("/v1/eips/{}", e["id"].as_str().unwrap());
    let assoc = format!("{eip}/association");
    let pool_path = "/v1/eip-pools/pub";
    let limits = "/v1/limits/eip-projects/proj-a";
    type Step<'a> = (&'a str, &'a str, &'a str, &'a str, Option<Value>, u16);
    let steps: Vec<Step> = vec![
        (
            "post",
            "/v1/eip-pools",
            "/v1/eip-pools",
            PA,
            Some(pool),
            403,
        ),
        ("get", "/v1/eip-pools", "/v1/eip-pools", PA, None, 200),
        ("get", "/v1/eip-pools/{id}", pool_path, PA, None, 200),
        (
            "post",
            "/v1/eips",
            "/v1/eips",
            PA,
            Some(json!({"pool": "pub", "address": "203.0.113.1"})),
            400,
        ),
        (
            "put",
            "/v1/eips/{id}/association",
            &assoc,
            PA,
            Some(json!({"havip": vip})),
            200,
        ),
        ("get", "/v1/eips", "/v1/eips", PA, None, 200),
        ("get", "/v1/eips/{id}", &eip, PA, None, 200),
        ("delete", "/v1/eips/{id}", &eip, PA, None, 409),
        ("delete", "/v1/eips/{id}/association", &assoc, PA, None, 200),
        ("delete", "/v1/eip-pools/{id}", pool_path, OP, None, 409),
        ("delete", "/v1/eips/{id}", &eip, PA, None, 204),
        ("delete", "/v1/eip-pools/{id}", pool_path, OP, None, 204),
        (
            "put",
            "/v1/limits/eip-projects/{project}",
            limits,
            OP,
            Some(json!({"eips_per_project": 3})),
            200,
        ),
        (
            "get",
            "/v1/limits/eip-projects/{project}",
            limits,
            PA,
            None,
            200,
        ),
    ];
    for (method, template, path, token, body, want) in steps {
        let (s, v) = c.call(method, template, path, Some(token), body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
    }

    assert_eq!(
        c.seen, documented,
        "every documented operation was exercised"
    );
}
