//! The real `havip-controller` binary with a config file, driven by
//! `havipctl`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn havipctl(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_havipctl"))
        .args(args)
        .env("HAVIP_URL", url)
        .env("HAVIP_TOKEN", token)
        .output()
        .unwrap()
}

/// Runs havipctl, asserts success, returns stdout.
fn ok(url: &str, token: &str, args: &[&str]) -> String {
    let out = havipctl(url, token, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "havipctl {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(config: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_havip-controller"))
        .arg("--config")
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn bad_config_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "etcd = ['http://127.0.0.1:1']\n[[tokens]]\ntoken = 'tok-aaaaaaaa'\n",
    )
    .unwrap();
    let out = controller(&path).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.toml") && err.contains("tokens[0]: set project"),
        "{err}"
    );
    let out = controller(&dir.path().join("missing.toml"))
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config"));
}

#[test]
fn havipctl_against_a_running_controller() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen = '127.0.0.1:{port}'\netcd = ['{}']\n[limits]\nports_per_vip = 2\n\
             [[tokens]]\ntoken = '{OP}'\noperator = true\n[[tokens]]\ntoken = '{PA}'\nproject = 'proj-a'\n",
            etcd.url
        ),
    )
    .unwrap();
    let _server = Server(controller(&config));
    let deadline = Instant::now() + Duration::from_secs(15);
    while havipctl(&url, PA, &["list"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "controller did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    ok(
        &url,
        OP,
        &["register", "vpc", "vpc-a", "--project", "proj-a"],
    );
    ok(
        &url,
        OP,
        &[
            "register",
            "subnet",
            "sn-a",
            "--vpc",
            "vpc-a",
            "--cidr-v4",
            "10.0.6.0/24",
        ],
    );
    for (p, vm, ip, host, interface) in [
        ("p1", "vm-1", "10.0.6.9", "hv-1", "tap0"),
        ("p2", "vm-2", "10.0.6.10", "hv-2", "tap0"),
        ("p3", "vm-3", "10.0.6.11", "hv-2", "tap1"),
    ] {
        ok(
            &url,
            OP,
            &[
                "register",
                "port",
                p,
                "--vm",
                vm,
                "--subnet",
                "sn-a",
                "--mac",
                "52:54:00:00:06:01",
                "--ip",
                ip,
                "--host",
                host,
                "--interface",
                interface,
            ],
        );
    }

    let out = ok(
        &url,
        PA,
        &[
            "--json",
            "create",
            "--name",
            "vrrp",
            "--subnet",
            "sn-a",
            "--address",
            "10.0.6.19",
            "--description",
            "keepalived pair",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        (v["address"].as_str(), v["status"].as_str()),
        (Some("10.0.6.19"), Some("available"))
    );
    let other = ok(&url, PA, &["create", "--name", "spare", "--subnet", "sn-a"]);
    // .1 is the subnet's gateway.
    assert!(other.contains("10.0.6.2 (ipv4)"), "{other}");

    let out = ok(&url, PA, &["bind", &id, "p1", "p2"]);
    assert!(
        out.contains("p1(vm-1),p2(vm-2)")
            && out.contains("creating")
            && out.contains("waiting for:  p1, p2"),
        "{out}"
    );
    // The configured default limit (2) holds.
    let fail = havipctl(&url, PA, &["bind", &id, "p3"]);
    assert!(!fail.status.success());
    assert!(String::from_utf8_lossy(&fail.stderr).contains("quota_exceeded"));

    let out = ok(&url, PA, &["unbind", &id, "p2"]);
    assert!(
        out.contains("p1(vm-1)") && !out.contains("p2(vm-2)"),
        "{out}"
    );
    let out = ok(&url, PA, &["rename", &id, "vrrp-main"]);
    assert!(out.contains("name:         vrrp-main"), "{out}");
    ok(&url, PA, &["describe", &id, "db pair"]);
    let out = ok(&url, PA, &["show", &id]);
    assert!(
        out.contains("vrrp-main") && out.contains("db pair") && out.contains("10.0.6.19"),
        "{out}"
    );

    let out = ok(&url, PA, &["list", "--query", "MAIN"]);
    assert!(
        out.contains(&id) && !out.contains("spare") && out.contains("(1 of 1, page 1)"),
        "{out}"
    );
    let out = ok(&url, PA, &["list", "--vm", "vm-1"]);
    assert!(out.contains(&id), "{out}");
    let out = ok(&url, PA, &["list", "--status", "available"]);
    assert!(out.contains("spare") && !out.contains(&id), "{out}");

    let xlsx = dir.path().join("havips.xlsx");
    ok(
        &url,
        PA,
        &["export", "--format", "xlsx", "-o", xlsx.to_str().unwrap()],
    );
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(&xlsx).unwrap();
    assert_eq!(book.worksheet_range("HAVIP").unwrap().rows().count(), 3);
    let csv = ok(&url, PA, &["export", "--format", "csv", "-o", "-"]);
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.contains("vrrp-main"));

    // Creating (p1's host has not acked): not deletable; after unbinding it is.
    let out = havipctl(&url, PA, &["delete", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong_state"));
    ok(&url, PA, &["set-ports", &id]);
    let spare_id = ok(&url, PA, &["--json", "list", "--query", "spare"]);
    let spare: serde_json::Value = serde_json::from_str(&spare_id).unwrap();
    let spare_id = spare["items"][0]["id"].as_str().unwrap();
    let out = ok(&url, PA, &["delete", &id, spare_id]);
    assert!(
        out.contains(&format!("deleted {id}")) && out.contains(&format!("deleted {spare_id}")),
        "{out}"
    );
    assert!(ok(&url, PA, &["list"]).contains("(0 of 0, page 1)"));

    // Limits through the CLI.
    let out = ok(
        &url,
        OP,
        &["limits", "set-project", "proj-a", "--ports-per-vip", "4"],
    );
    assert!(
        out.contains("\"ports_per_vip\": 4") && out.contains("\"vips_per_port\": 5"),
        "{out}"
    );
    let fail = havipctl(
        &url,
        PA,
        &["limits", "set-project", "proj-a", "--ports-per-vip", "9"],
    );
    assert!(String::from_utf8_lossy(&fail.stderr).contains("forbidden"));
    let fail = havipctl(&url, "tok-nobody-000", &["list"]);
    assert!(String::from_utf8_lossy(&fail.stderr).contains("unauthenticated"));
}
