//! etcd locked down, on a real etcd with TLS, `--client-cert-auth` and auth
//! on (`havip-controller etcd-auth`): certificates made for the run with
//! the openssl CLI; a certificate's common name is its etcd user. A host
//! writes only under its own `reports/<host>/`; a client without a
//! certificate of the CA is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Limits};
use etcd_client::{Certificate, Client, ConnectOptions, TlsOptions};
use havip_controller::{etcd_auth, Store};
use havip_schema::keys;
use havip_schema::tls::EtcdTls;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `ca` (ca.pem, ca-key.pem) in `dir`.
fn make_ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}-key.pem"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
}

/// `name.pem` and `name-key.pem` signed by CA `ca`, common name `cn`.
fn make_cert(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) -> EtcdTls {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    }
}

fn client_cert(dir: &Path, ca: &str, cn: &str) -> EtcdTls {
    make_cert(
        dir,
        ca,
        &format!("{ca}-{cn}"),
        cn,
        "extendedKeyUsage=clientAuth\n",
    )
}

struct TlsEtcd {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsEtcd {
    fn start() -> TlsEtcd {
        let dir = tempfile::Builder::new()
            .prefix("havip-etcd-tls")
            .tempdir()
            .unwrap();
        let d = dir.path();
        make_ca(d, "ca");
        make_cert(
            d,
            "ca",
            "server",
            "etcd",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        let (client, peer) = (free_port(), free_port());
        let url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(d.join("etcd.log")).unwrap();
        let path = |f: &str| -> PathBuf { d.join(f) };
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(path("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .arg("--cert-file")
            .arg(path("server.pem"))
            .arg("--key-file")
            .arg(path("server-key.pem"))
            .arg("--trusted-ca-file")
            .arg(path("ca.pem"))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd must be installed");
        TlsEtcd { child, url, dir }
    }

    async fn client(&self, tls: &EtcdTls) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let options = tls
                .apply(ConnectOptions::new().with_timeout(Duration::from_secs(2)))
                .unwrap();
            if let Ok(mut c) = Client::connect([self.url.as_str()], Some(options)).await {
                if c.status().await.is_ok() {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd on TLS did not answer: {}",
                std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn denied(r: Result<etcd_client::PutResponse, etcd_client::Error>, what: &str) {
    match r {
        Err(e) => assert!(e.to_string().contains("permission denied"), "{what}: {e}"),
        Ok(_) => panic!("{what}: etcd took it"),
    }
}

#[tokio::test]
async fn hosts_write_only_their_reports_and_certificates_are_required() {
    let etcd = TlsEtcd::start();
    let d = etcd.dir.path();
    let root = client_cert(d, "ca", "root");
    let controller = client_cert(d, "ca", "controller");
    let hv1 = client_cert(d, "ca", "hv1");
    let mut admin = etcd.client(&root).await;

    // Set up twice: the same result.
    for _ in 0..2 {
        etcd_auth::init(&mut admin, "controller").await.unwrap();
        for host in ["hv1", "hv2", "hv1"] {
            etcd_auth::add_host(&mut admin, host).await.unwrap();
        }
    }
    assert!(etcd_auth::add_host(&mut admin, "root").await.is_err());
    assert!(etcd_auth::add_host(&mut admin, "a/b").await.is_err());

    // The controller reads and writes the root.
    let store = Store::connect_tls(
        std::slice::from_ref(&etcd.url),
        Some(&controller),
        Limits::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        havip_schema::SCHEMA_VERSION
    );

    // hv1 writes its own ack and owner report and reads the root.
    let mut c1 = etcd.client(&hv1).await;
    let ack = r#"{"generation":1,"result":"programmed","at":"2026-01-01T00:00:00Z"}"#;
    let owner =
        |host: &str| format!(r#"{{"port":"p","host":"{host}","since":"2026-01-01T00:00:00Z"}}"#);
    c1.put(keys::ack("havip-x", "hv1"), ack, None)
        .await
        .unwrap();
    c1.put(keys::owner_report("havip-x", "hv1"), owner("hv1"), None)
        .await
        .unwrap();
    assert!(c1.get(keys::schema(), None).await.unwrap().count() == 1);

    // ... and nothing else: another host's ack or owner report, a host
    // whose name starts with its own, the controller's records.
    denied(
        c1.put(keys::ack("havip-x", "hv2"), ack, None).await,
        "hv1 acking as hv2",
    );
    denied(
        c1.put(keys::owner_report("havip-x", "hv2"), owner("hv2"), None)
            .await,
        "hv1 reporting an owner as hv2",
    );
    denied(
        c1.put(keys::ack("havip-x", "hv10"), ack, None).await,
        "hv1 acking as hv10",
    );
    denied(
        c1.put(keys::vip("havip-x"), "{}", None).await,
        "hv1 writing a VIP",
    );
    denied(
        c1.put(keys::host_port("hv1", "p"), "{}", None).await,
        "hv1 writing its own ports",
    );
    let r = c1.delete(keys::owner_report("havip-x", "hv2"), None).await;
    assert!(r.is_err(), "hv1 deleting hv2's report");

    // A client without a certificate, or with one of another CA, is refused.
    let no_cert = ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2))
        .with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(
            std::fs::read(d.join("ca.pem")).unwrap(),
        )));
    let refused = match Client::connect([etcd.url.as_str()], Some(no_cert)).await {
        Err(_) => true,
        Ok(mut c) => c.get(keys::schema(), None).await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    make_ca(d, "other");
    let mut forged = client_cert(d, "other", "hv2");
    forged.ca = d.join("ca.pem");
    let options = forged
        .apply(
            ConnectOptions::new()
                .with_timeout(Duration::from_secs(2))
                .with_connect_timeout(Duration::from_secs(2)),
        )
        .unwrap();
    let refused = match Client::connect([etcd.url.as_str()], Some(options)).await {
        Err(_) => true,
        Ok(mut c) => c.put(keys::ack("havip-x", "hv2"), ack, None).await.is_err(),
    };
    assert!(refused, "a certificate of another CA was taken");
    let plain = format!("http://{}", etcd.url.trim_start_matches("https://"));
    let refused = match Client::connect(
        [plain.as_str()],
        Some(
            ConnectOptions::new()
                .with_timeout(Duration::from_secs(2))
                .with_connect_timeout(Duration::from_secs(2)),
        ),
    )
    .await
    {
        Err(_) => true,
        Ok(mut c) => c.get(keys::schema(), None).await.is_err(),
    };
    assert!(refused, "a plaintext client was served");
}
