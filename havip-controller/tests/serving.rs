//! The real `havip-controller` binary as an operator runs it: tokens kept
//! as digests (`hash-token`), HTTPS with a certificate from a private CA
//! driven by `havipctl --ca-cert`, and a clean stop on SIGTERM with a
//! request in flight.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn havip_controller() -> Command {
    Command::new(env!("CARGO_BIN_EXE_havip-controller"))
}

/// `printf %s TOKEN | havip-controller hash-token`.
fn hash_token(token: &str) -> Output {
    let mut child = havip_controller()
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn digest(token: &str) -> String {
    let out = hash_token(token);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn havipctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_havipctl"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A config with OP's and PA's tokens as digests, listening on `port`.
fn config(dir: &Path, etcd: &Etcd, port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "listen = '127.0.0.1:{port}'\netcd = ['{}']\n{extra}\n\
             [[tokens]]\ntoken_sha256 = '{}'\noperator = true\n\
             [[tokens]]\ntoken_sha256 = '{}'\nproject = 'proj-a'\n",
            etcd.url,
            digest(OP),
            digest(PA)
        ),
    )
    .unwrap();
    path
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    havip_controller()
        .arg("--config")
        .arg(config)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn start(config: &Path, args: &[&str]) -> Server {
    Server(spawn(config, args))
}

/// What an exited controller wrote to stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn wait_up(args: &[&str], env: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = havipctl(args, env);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "controller did not come up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hash_token_prints_the_sha256_and_refuses_short_tokens() {
    // printf %s abcdefgh | sha256sum
    assert_eq!(
        digest("abcdefgh"),
        "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"
    );
    let out = hash_token("short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
}

#[test]
fn https_with_a_private_ca_and_plain_http_refused() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    // A private CA and a certificate for 127.0.0.1 signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();

    let port = free_port();
    let config = config(dir.path(), &etcd, port, "");
    let _server = start(
        &config,
        &[
            "--tls-cert",
            cert_pem.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
    );
    let https = format!("https://127.0.0.1:{port}");
    let ca = ca_pem.to_str().unwrap();
    let env = [("HAVIP_URL", https.as_str()), ("HAVIP_TOKEN", PA)];
    wait_up(&["--ca-cert", ca, "list"], &env);

    // A real call over https, with a hashed token.
    let out = havipctl(
        &[
            "--ca-cert",
            ca,
            "register",
            "vpc",
            "vpc-a",
            "--project",
            "proj-a",
        ],
        &[("HAVIP_URL", &https), ("HAVIP_TOKEN", OP)],
    );
    assert!(out.status.success(), "{out:?}");
    let out = havipctl(&["--ca-cert", ca, "--json", "list"], &env);
    assert!(out.status.success(), "{out:?}");
    // A wrong token is still refused.
    let out = havipctl(
        &["--ca-cert", ca, "list"],
        &[("HAVIP_URL", &https), ("HAVIP_TOKEN", "tok-not-configured")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token"));
    // The digest is not a token.
    let op_digest = digest(OP);
    let out = havipctl(
        &["--ca-cert", ca, "list"],
        &[("HAVIP_URL", &https), ("HAVIP_TOKEN", &op_digest)],
    );
    assert!(!out.status.success());

    // Without the CA the certificate is not trusted.
    let out = havipctl(&["list"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the controller"), "{err}");

    // Plain HTTP to the TLS port: a 400 that says to use https.
    let http = format!("http://127.0.0.1:{port}");
    let out = havipctl(&["list"], &[("HAVIP_URL", &http), ("HAVIP_TOKEN", PA)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("400") && err.contains("this port serves HTTPS"),
        "{err}"
    );

    // A CA file that is no PEM: a clear error.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let bad = dir.path().join("bad.pem");
    let out = havipctl(&["--ca-cert", bad.to_str().unwrap(), "list"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
}

#[test]
fn a_missing_certificate_is_refused_at_start() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &etcd,
        free_port(),
        "[tls]\ncert = '/nonexistent/cert.pem'\nkey = '/nonexistent/key.pem'",
    );
    let out = spawn(&config, &[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &etcd, port, "");
    let mut server = start(&config, &[]);
    let http = format!("http://127.0.0.1:{port}");
    wait_up(&["list"], &[("HAVIP_URL", &http), ("HAVIP_TOKEN", PA)]);

    // A request whose body is only half sent when SIGTERM arrives.
    let body = br#"{"project":"proj-a","name":"sent in two halves"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /v1/vpcs/vpc-inflight HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OP}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(500));
    // Still running: the request is not finished.
    assert!(server.0.try_wait().unwrap().is_none(), "exited mid-request");
    // New connections are refused meanwhile.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    s.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("vpc-inflight"), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let err = stderr_of(&mut server.0);
    assert!(!err.contains("ERROR"), "{err}");
}

#[test]
fn plaintext_tokens_still_work_with_a_warning() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "listen = '127.0.0.1:{port}'\netcd = ['{}']\n\
             [[tokens]]\ntoken = '{PA}'\nproject = 'proj-a'\n",
            etcd.url
        ),
    )
    .unwrap();
    let mut server = start(&path, &[]);
    let http = format!("http://127.0.0.1:{port}");
    wait_up(&["list"], &[("HAVIP_URL", &http), ("HAVIP_TOKEN", PA)]);
    let _ = Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status();
    let status = server.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let err = stderr_of(&mut server.0);
    assert!(
        err.contains("tokens[0] give the token in plain") && err.contains("hash-token"),
        "{err}"
    );
}
