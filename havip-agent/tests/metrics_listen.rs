//! `havip-agent run --metrics-listen`: an address that is not one, or one
//! that cannot be bound, stops the start before the datapath is touched.

use std::process::Command;

fn run_with(listen: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "havip-metrics-listen-{}-{}",
        std::process::id(),
        // Each test its own dir (the tests run at once).
        listen.replace([':', '.'], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "# no ports yet\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_havip-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--pin-dir", "/nonexistent/havip-metrics-listen"])
        .args(["--metrics-listen", listen])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_address_that_is_not_one_is_refused_by_the_command_line() {
    let (code, err) = run_with("localhost:nine");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--metrics-listen") && err.contains("invalid socket address"),
        "{err}"
    );
}

#[test]
fn an_address_that_cannot_be_bound_stops_the_start() {
    // 192.0.2.1 (TEST-NET-1) is on no interface of this machine.
    let (code, err) = run_with("192.0.2.1:9469");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot listen for metrics on 192.0.2.1:9469"),
        "{err}"
    );
}
