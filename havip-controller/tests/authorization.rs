//! The authorization matrix: every route, called with the owner's token,
//! another project's, the operator's, an unknown token and none, answers
//! the expected status. Another project's resources are 404 (their
//! existence is not told), operator routes 403 for tenants, 401 without a
//! known token. Each call that would change something gets fresh
//! resources, so every cell is a real call with a real effect (or none).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use havip_controller::model::*;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Owner,
    Other,
    Operator,
    BadToken,
    NoToken,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Owner => Some(PA),
            Who::Other => Some(PB),
            Who::Operator => Some(OP),
            Who::BadToken => Some("tok-not-a-real-token"),
            Who::NoToken => None,
        }
    }
}

/// A route and the status each caller gets.
struct Route {
    method: &'static str,
    /// `{vip}`, `{port}`, `{bound}` (a port bound to `{vip}`) are replaced
    /// by fresh resources of project A.
    path: &'static str,
    body: Option<fn(usize) -> Value>,
    owner: u16,
    other: u16,
    operator: u16,
}

const PUBLIC: u16 = 0;

struct World {
    http: reqwest::Client,
    url: String,
    n: AtomicUsize,
}

impl World {
    fn next(&self) -> usize {
        self.n.fetch_add(1, Ordering::Relaxed)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let (status, _, bytes) = send(&self.http, &url, method, token, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A fresh port of project A in sn-m.
    async fn port(&self) -> String {
        let n = self.next();
        let id = format!("pm{n}");
        let body = json!({"vm": format!("vm-m{n}"), "subnet": "sn-m", "mac": "52:54:00:00:10:01",
            "fixed_ips": [format!("10.50.{}.{}", 1 + n / 200, 1 + n % 200)],
            "host": "hv-1", "interface": format!("tapm{n}")});
        let (s, b) = self
            .send("PUT", &format!("/v1/ports/{id}"), Some(OP), Some(body))
            .await;
        assert_eq!(s, 200, "{b}");
        id
    }

    /// A fresh EIP of project A from pub-m, associated with `havip` if given.
    async fn eip(&self, havip: Option<&str>) -> String {
        let (s, b) = self
            .send("POST", "/v1/eips", Some(PA), Some(json!({"pool": "pub-m"})))
            .await;
        assert_eq!(s, 201, "{b}");
        let id = b["id"].as_str().unwrap().to_string();
        if let Some(vip) = havip {
            let path = format!("/v1/eips/{id}/association");
            let (s, b) = self
                .send("PUT", &path, Some(PA), Some(json!({"havip": vip})))
                .await;
            assert_eq!(s, 200, "{b}");
        }
        id
    }

    /// A fresh EIP pool without EIPs.
    async fn pool(&self) -> String {
        let n = self.next();
        let id = format!("pool-m{n}");
        let body =
            json!({"id": id, "gateway": "gw-m", "ranges": [format!("203.0.113.{}", 1 + n % 250)]});
        let (s, b) = self
            .send("POST", "/v1/eip-pools", Some(OP), Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
        id
    }

    /// A fresh HAVIP of project A in sn-m, bound to `ports`.
    async fn vip(&self, ports: &[String]) -> String {
        let body = json!({"name": format!("m{}", self.next()), "subnet": "sn-m", "ports": ports});
        let (s, b) = self.send("POST", "/v1/havips", Some(PA), Some(body)).await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }
}

fn routes() -> Vec<Route> {
    let r = |method, path, body, owner, other, operator| Route {
        method,
        path,
        body,
        owner,
        other,
        operator,
    };
    vec![
        r("GET", "/healthz", None, PUBLIC, PUBLIC, PUBLIC),
        r("GET", "/openapi.json", None, PUBLIC, PUBLIC, PUBLIC),
        r(
            "PUT",
            "/v1/vpcs/vpc-m",
            Some(|_| json!({"project": "proj-a"})),
            403,
            403,
            200,
        ),
        r("GET", "/v1/vpcs/vpc-m", None, 200, 404, 200),
        r(
            "PUT",
            "/v1/subnets/sn-m{n}",
            Some(|n| json!({"vpc": "vpc-m", "cidr_v4": format!("10.{}.0.0/24", 100 + n)})),
            403,
            403,
            200,
        ),
        r("GET", "/v1/subnets/sn-m", None, 200, 404, 200),
        r("GET", "/v1/vpcs", None, 200, 200, 200),
        r("GET", "/v1/subnets", None, 200, 200, 200),
        r(
            "GET",
            "/v1/subnets/sn-m/addresses/10.50.99.1",
            None,
            200,
            404,
            200,
        ),
        r("GET", "/v1/ports", None, 200, 200, 200),
        r(
            "PUT",
            "/v1/ports/pn{n}",
            Some(|n| {
                json!({"vm": "vm-n", "subnet": "sn-m", "mac": "52:54:00:00:11:01",
            "fixed_ips": [format!("10.50.250.{}", 1 + n % 250)], "host": "hv-9", "interface": format!("tapn{n}")})
            }),
            403,
            403,
            200,
        ),
        r("GET", "/v1/ports/{port}", None, 200, 404, 200),
        r("DELETE", "/v1/ports/{port}", None, 403, 403, 204),
        r(
            "PUT",
            "/v1/ports/{port}/limits",
            Some(|_| json!({"vips_per_port": 7})),
            403,
            403,
            200,
        ),
        r("GET", "/v1/havips", None, 200, 200, 200),
        r(
            "POST",
            "/v1/havips",
            Some(|n| json!({"name": format!("c{n}"), "subnet": "sn-m"})),
            201,
            404,
            403,
        ),
        r("GET", "/v1/havips/{vip}", None, 200, 404, 200),
        r("GET", "/v1/havips/{vip}/events", None, 200, 404, 200),
        r(
            "PATCH",
            "/v1/havips/{vip}",
            Some(|_| json!({"name": "renamed"})),
            200,
            404,
            200,
        ),
        r("DELETE", "/v1/havips/{vip}", None, 204, 404, 204),
        r(
            "POST",
            "/v1/havips/{vip}/ports",
            Some(|_| Value::Null),
            200,
            404,
            200,
        ),
        r(
            "PUT",
            "/v1/havips/{vip}/ports",
            Some(|_| Value::Null),
            200,
            404,
            200,
        ),
        r(
            "DELETE",
            "/v1/havips/{vip}/ports/{bound}",
            None,
            200,
            404,
            200,
        ),
        r(
            "POST",
            "/v1/havips/batch-delete",
            Some(|_| Value::Null),
            200,
            200,
            200,
        ),
        r("GET", "/v1/havips/export?format=csv", None, 200, 200, 200),
        r(
            "PUT",
            "/v1/havips/{vip}/limits",
            Some(|_| json!({"ports_per_vip": 4})),
            403,
            403,
            200,
        ),
        r("GET", "/v1/limits/projects/proj-a", None, 200, 404, 200),
        r(
            "PUT",
            "/v1/limits/projects/proj-a",
            Some(|_| json!({"vips_per_subnet": 500})),
            403,
            403,
            200,
        ),
        r("GET", "/v1/records/corrupt", None, 403, 403, 200),
        r("GET", "/v1/eip-pools", None, 200, 200, 200),
        r(
            "POST",
            "/v1/eip-pools",
            Some(
                |n| json!({"id": format!("pl{n}"), "gateway": "gw-m", "ranges": [format!("192.0.2.{}", 1 + n % 250)]}),
            ),
            403,
            403,
            201,
        ),
        r("GET", "/v1/eip-pools/pub-m", None, 200, 200, 200),
        r("DELETE", "/v1/eip-pools/{pool}", None, 403, 403, 204),
        r("GET", "/v1/eips", None, 200, 200, 200),
        r(
            "POST",
            "/v1/eips",
            Some(|_| json!({"pool": "pub-m"})),
            201,
            201,
            403,
        ),
        r("GET", "/v1/eips/{eip}", None, 200, 404, 200),
        r("DELETE", "/v1/eips/{eip}", None, 204, 404, 204),
        r(
            "PUT",
            "/v1/eips/{eip}/association",
            Some(|_| Value::Null),
            200,
            404,
            200,
        ),
        r(
            "DELETE",
            "/v1/eips/{assoc}/association",
            None,
            200,
            404,
            200,
        ),
        r("GET", "/v1/limits/eip-projects/proj-a", None, 200, 404, 200),
        r(
            "PUT",
            "/v1/limits/eip-projects/proj-a",
            Some(|_| json!({"eips_per_project": 1000})),
            403,
            403,
            200,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_caller() {
    let etcd = Etcd::start();
    let limits = Limits {
        vips_per_project: 1000,
        vips_per_subnet: 1000,
        ..Limits::default()
    };
    let ctl = Controller::start_with(&etcd, limits).await;
    let op = ctl.client(OP);
    network(&op).await;
    op.put_vpc(
        "vpc-m",
        &PutVpc {
            project: "proj-a".into(),
            name: String::new(),
        },
    )
    .await
    .unwrap();
    let subnet = PutSubnet {
        vpc: "vpc-m".into(),
        cidr_v4: Some("10.50.0.0/16".parse().unwrap()),
        ..PutSubnet::default()
    };
    op.put_subnet("sn-m", &subnet).await.unwrap();
    let pool = CreateEipPool {
        id: "pub-m".into(),
        gateway: "gw-m".into(),
        ranges: vec!["198.18.0.0/16".into()],
        description: None,
    };
    op.create_eip_pool(&pool).await.unwrap();
    for project in ["proj-a", "proj-b"] {
        let quota = EipLimits {
            eips_per_project: Some(1000),
        };
        op.set_eip_limits(project, &quota).await.unwrap();
    }
    let w = World {
        http: reqwest::Client::new(),
        url: ctl.url.clone(),
        n: AtomicUsize::new(0),
    };
    let mut checked = 0;
    for route in routes() {
        for who in [
            Who::Owner,
            Who::Other,
            Who::Operator,
            Who::BadToken,
            Who::NoToken,
        ] {
            let want = match (who, route.owner) {
                (_, PUBLIC) => 200,
                (Who::BadToken | Who::NoToken, _) => 401,
                (Who::Owner, _) => route.owner,
                (Who::Other, _) => route.other,
                (Who::Operator, _) => route.operator,
            };
            let n = w.next();
            let mut path = route.path.replace("{n}", &n.to_string());
            let mut ports = Vec::new();
            if path.contains("{port}") {
                path = path.replace("{port}", &w.port().await);
            }
            if path.contains("{pool}") {
                path = path.replace("{pool}", &w.pool().await);
            }
            if path.contains("{eip}") {
                path = path.replace("{eip}", &w.eip(None).await);
            }
            if path.contains("{assoc}") {
                let vip = w.vip(&[]).await;
                path = path.replace("{assoc}", &w.eip(Some(&vip)).await);
            }
            let mut vip = String::new();
            if path.contains("{vip}") || route.path.contains("batch-delete") {
                let bound = if path.contains("{bound}") {
                    vec![w.port().await]
                } else {
                    vec![]
                };
                vip = w.vip(&bound).await;
                path = path.replace("{vip}", &vip);
                if let Some(b) = bound.first() {
                    path = path.replace("{bound}", b);
                }
            }
            let body = match route.body {
                None => None,
                Some(f) if route.path.ends_with("/association") => {
                    let _ = f(n);
                    Some(json!({"havip": w.vip(&[]).await}))
                }
                Some(f) if route.path.ends_with("/ports") => {
                    ports.push(w.port().await);
                    let _ = f(n);
                    Some(json!({"ports": ports}))
                }
                Some(f) if route.path.contains("batch-delete") => {
                    let _ = f(n);
                    Some(json!({"ids": [vip]}))
                }
                Some(f) => Some(f(n)),
            };
            let (got, resp) = w.send(route.method, &path, who.token(), body).await;
            assert_eq!(got, want, "{} {path} as {who:?}: {resp}", route.method);
            // An error body is the API's, naming no etcd key.
            if got >= 400 {
                assert!(
                    resp["error"]["code"].is_string(),
                    "{} {path} as {who:?}: {resp}",
                    route.method
                );
                assert!(!resp.to_string().contains("/havip/v1"), "{resp}");
            }
            // Another project's batch delete deletes nothing: not found.
            if route.path.contains("batch-delete") {
                let item = &resp["results"][0];
                let deleted = who != Who::Other && got == 200;
                if got == 200 {
                    assert_eq!(item["deleted"], deleted, "{who:?}: {resp}");
                }
                if who == Who::Other {
                    assert_eq!(item["error"]["code"], "not_found", "{resp}");
                }
            }
            // A refused call changed nothing: the VIP is still there.
            if !vip.is_empty() && got >= 400 {
                let (s, _) = w
                    .send("GET", &format!("/v1/havips/{vip}"), Some(PA), None)
                    .await;
                assert_eq!(s, 200, "{} {path} as {who:?} removed {vip}", route.method);
            }
            checked += 1;
        }
    }
    // Every route of the document is in the matrix.
    let documented = havip_controller::api::openapi()
        .paths
        .paths
        .values()
        .map(|item| {
            [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .iter()
                .filter(|o| o.is_some())
                .count()
        })
        .sum::<usize>();
    assert_eq!(
        routes().len(),
        documented,
        "a route is missing from the matrix"
    );
    assert_eq!(checked, documented * 5);
}
