//! Test harness: a real etcd per test (on 127.0.0.1, random ports, killed on
//! drop), in-process controllers, and the test network.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use havip_controller::client::{Client, ClientError};
use havip_controller::model::*;
use havip_controller::{ErrorCode, Scope, Store};
pub use havip_schema::limits::Limits;
use serde_json::Value;

pub const OP: &str = "tok-operator-0001";
pub const PA: &str = "tok-project-a-0001";
pub const PB: &str = "tok-project-b-0001";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway etcd.
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("havip-etcd")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::Builder::new().prefix("havip-etcd").tempdir()
        }
        .unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (apt-get install etcd-server) for these tests");
        let mut etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = etcd.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(etcd._dir.path().join("etcd.log")).unwrap();
                panic!("etcd exited with {status}:\n{log}");
            }
            if let Ok(body) = http_probe::blocking_health(&format!("{}/health", etcd.url)) {
                if body.contains("true") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP GET (etcd's /health), to avoid a runtime in `start`.
mod http_probe {
    use std::io::{Read, Write};
    pub fn blocking_health(url: &str) -> std::io::Result<String> {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

pub fn tokens() -> HashMap<String, Scope> {
    HashMap::from([
        (OP.to_string(), Scope::Operator),
        (PA.to_string(), Scope::Project("proj-a".into())),
        (PB.to_string(), Scope::Project("proj-b".into())),
    ])
}

/// An in-process controller serving on 127.0.0.1.
pub struct Controller {
    pub url: String,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Controller {
    pub async fn start(etcd: &Etcd) -> Controller {
        Controller::start_with(etcd, Limits::default()).await
    }

    /// A controller with these default limits.
    pub async fn start_with(etcd: &Etcd, defaults: Limits) -> Controller {
        let store = Store::connect(std::slice::from_ref(&etcd.url), defaults)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        tokio::spawn(async move {
            havip_controller::serve(listener, s, tokens(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Controller {
            url: format!("http://{addr}"),
            store,
            stop: Some(tx),
        }
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token.to_string()))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The API error code of a failed call.
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Api { error, status }) => {
            assert_eq!(status.as_u16(), error.code.http_status());
            (error.code, error.message)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn port_req(vm: &str, subnet: &str, ip: &str, host: &str) -> PutPort {
    PutPort {
        vm: vm.into(),
        subnet: subnet.into(),
        mac: "52:54:00:00:00:01".into(),
        fixed_ips: vec![ip.parse().unwrap()],
        host: host.into(),
        interface: format!("tap-{vm}"),
        vlans: vec![],
        link_locals: vec![],
    }
}

/// Project A: vpc-a with sn-a (10.0.0.0/24, fd00:a::/64) and sn-a2
/// (10.0.1.0/24), vpc-a2 with sn-x (10.0.2.0/24); ports p1..p6 in sn-a
/// (vm-1..vm-6; odd on hv-1, even on hv-2; 10.0.0.11..16), q1 in sn-a2,
/// x1 in sn-x. Project B: vpc-b with sn-b (10.0.0.0/24), port b1.
pub async fn network(op: &Client) {
    let vpc = |p: &str| PutVpc {
        project: p.into(),
        name: String::new(),
    };
    op.put_vpc("vpc-a", &vpc("proj-a")).await.unwrap();
    op.put_vpc("vpc-a2", &vpc("proj-a")).await.unwrap();
    op.put_vpc("vpc-b", &vpc("proj-b")).await.unwrap();
    let subnet = |vpc: &str, v4: &str, v6: Option<&str>| PutSubnet {
        vpc: vpc.into(),
        name: String::new(),
        cidr_v4: Some(v4.parse().unwrap()),
        cidr_v6: v6.map(|v| v.parse().unwrap()),
        ..PutSubnet::default()
    };
    op.put_subnet("sn-a", &subnet("vpc-a", "10.0.0.0/24", Some("fd00:a::/64")))
        .await
        .unwrap();
    op.put_subnet("sn-a2", &subnet("vpc-a", "10.0.1.0/24", None))
        .await
        .unwrap();
    op.put_subnet("sn-x", &subnet("vpc-a2", "10.0.2.0/24", None))
        .await
        .unwrap();
    op.put_subnet("sn-b", &subnet("vpc-b", "10.0.0.0/24", None))
        .await
        .unwrap();
    for i in 1..=6 {
        let host = if i % 2 == 1 { "hv-1" } else { "hv-2" };
        op.put_port(
            &format!("p{i}"),
            &port_req(
                &format!("vm-{i}"),
                "sn-a",
                &format!("10.0.0.{}", 10 + i),
                host,
            ),
        )
        .await
        .unwrap();
    }
    op.put_port("q1", &port_req("vm-q", "sn-a2", "10.0.1.11", "hv-1"))
        .await
        .unwrap();
    op.put_port("x1", &port_req("vm-x", "sn-x", "10.0.2.11", "hv-1"))
        .await
        .unwrap();
    op.put_port("b1", &port_req("vm-b", "sn-b", "10.0.0.11", "hv-1"))
        .await
        .unwrap();
}

pub fn create(name: &str, subnet: &str) -> CreateHavip {
    CreateHavip {
        name: name.into(),
        subnet: subnet.into(),
        ..Default::default()
    }
}

/// Checks `value` against a JSON schema of the OpenAPI document (`$ref`,
/// type, enum, required, properties, items, oneOf/anyOf/allOf).
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling {r}");
        return validate(doc, target, value, at);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, value, at)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            if !any.iter().any(|s| validate(doc, s, value, at).is_ok()) {
                return Err(format!("{at}: {value} matches none of {key}"));
            }
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {value} is not of type {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            return Err(format!("{at}: {value} not in {e:?}"));
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: missing required {r}"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in obj {
                match props.get(k) {
                    Some(s) => validate(doc, s, v, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: undocumented field {k}")),
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Waits until HAVIP `id` is `want` (as `c` sees it).
pub async fn wait_status(c: &havip_controller::client::Client, id: &str, want: Status) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if c.get_havip(id).await.unwrap().status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Project A's `vpc-a` with these IPv4 subnets `(id, cidr)`.
pub async fn vpc_a_with(op: &Client, subnets: &[(&str, &str)]) {
    let vpc = PutVpc {
        project: "proj-a".into(),
        name: String::new(),
    };
    op.put_vpc("vpc-a", &vpc).await.unwrap();
    for (id, cidr) in subnets {
        let req = PutSubnet {
            vpc: "vpc-a".into(),
            cidr_v4: Some(cidr.parse().unwrap()),
            ..PutSubnet::default()
        };
        op.put_subnet(id, &req).await.unwrap();
    }
}

/// One HTTP call as sent, without the typed client: its status, content
/// type and body.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String, Vec<u8>) {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut r = http.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.bytes().await.unwrap().to_vec())
}
