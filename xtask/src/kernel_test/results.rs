//! What the guest reported on its serial console: the kernel it ran, each
//! part's exit code and libtest counts, the failed tests, its exit code.

use std::time::Duration;

use crate::util::Tally;

/// The prefix of the lines the guest's init writes for us.
pub const MARKER: &str = "havip-kernel-test: ";

/// How one part of the tests ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartResult {
    pub name: String,
    /// None: it began but never ended (timeout, crash).
    pub exit: Option<i32>,
    pub tally: Tally,
    /// `test NAME ... FAILED` lines, by test name.
    pub failed_tests: Vec<String>,
    /// The first failure's message: the line after the first `panicked at`
    /// (and the next one when it ends with ':'), or the first `Error: `
    /// line (a test that returned an error).
    pub first_panic: Option<String>,
    /// What the agent could not do, each once: its WARN and ERROR log
    /// lines from their `cannot ...` on.
    pub agent_errors: Vec<String>,
    /// Why the verifier rejected a program, each reason once: the two lines
    /// before its `verification time` line.
    pub verifier_rejections: Vec<String>,
    /// The last two lines, for the two fields above.
    recent: Vec<String>,
    /// From its begin to its end marker (or to the last line seen).
    pub took: Duration,
}

impl PartResult {
    pub fn passed(&self) -> bool {
        self.exit == Some(0) && self.tally.failed == 0
    }
}

/// Everything the guest reported, line by line as it arrives.
#[derive(Debug, Default)]
pub struct Report {
    /// The guest's `uname -r`.
    pub uname: Option<String>,
    /// When the guest's init started (it reports the kernel first), from
    /// QEMU's start.
    pub init_at: Option<Duration>,
    /// When the guest was ready to run the tests (modules loaded, shares
    /// mounted), from QEMU's start.
    pub ready_at: Option<Duration>,
    pub parts: Vec<PartResult>,
    /// The guest's own exit code (`exit N`).
    pub exit: Option<i32>,
    /// The guest's `error: ...` lines (a setup step that failed).
    pub errors: Vec<String>,
    /// The host killed QEMU at the timeout.
    pub timed_out: bool,
    current: Option<(usize, Duration)>,
}

impl Report {
    /// Takes one console line, seen `at` after QEMU started.
    pub fn line(&mut self, line: &str, at: Duration) {
        // The firmware leaves terminal escapes on the console.
        let line = strip_escapes(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(text) = line.strip_prefix(MARKER) else {
            return self.test_output(line, at);
        };
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "uname" => {
                self.uname = Some(rest.trim().to_string());
                self.init_at = Some(at);
            }
            "ready" => self.ready_at = Some(at),
            "begin" => {
                self.parts.push(PartResult {
                    name: rest.trim().to_string(),
                    ..Default::default()
                });
                self.current = Some((self.parts.len() - 1, at));
            }
            "end" => {
                let mut words = rest.split_whitespace();
                let (name, code) = (words.next(), words.next().and_then(|c| c.parse().ok()));
                if let Some((i, began)) = self.current.take() {
                    let part = &mut self.parts[i];
                    if Some(part.name.as_str()) == name {
                        part.exit = code;
                        part.took = at.saturating_sub(began);
                    }
                }
            }
            "exit" => self.exit = rest.trim().parse().ok(),
            "error:" => self.errors.push(rest.trim().to_string()),
            _ => {}
        }
    }

    fn test_output(&mut self, line: &str, at: Duration) {
        let Some((i, began)) = self.current else {
            return;
        };
        let part = &mut self.parts[i];
        part.took = at.saturating_sub(began);
        part.tally.add_line(line);
        if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            part.failed_tests.push(test.to_string());
        }
        let previous = part.recent.last().map(String::as_str).unwrap_or_default();
        let before = part.recent.first().map(String::as_str).unwrap_or_default();
        match &mut part.first_panic {
            None if previous.contains("panicked at ") => {
                part.first_panic = Some(shorten(line, 300));
            }
            None if line.starts_with("Error: ") => {
                part.first_panic = Some(shorten(&line["Error: ".len()..], 300));
            }
            Some(first)
                if first.ends_with(':')
                    && before.contains("panicked at ")
                    && part.recent.len() == 2 =>
            {
                *first = shorten(&format!("{first} {}", line.trim()), 300);
            }
            _ => {}
        }
        if line.contains(" WARN ") || line.contains(" ERROR ") {
            if let Some(i) = line.find("cannot ") {
                let what = line[i..].to_string();
                if !part.agent_errors.contains(&what) {
                    part.agent_errors.push(what);
                }
            }
        }
        if line.starts_with("verification time") {
            let reason = without_ids(&part.recent.join(" / "));
            if !part.verifier_rejections.contains(&reason) {
                part.verifier_rejections.push(reason);
            }
        }
        part.recent.push(line.to_string());
        if part.recent.len() > 2 {
            part.recent.remove(0);
        }
    }

    /// Every part passed and the guest said so.
    pub fn passed(&self, wanted_parts: usize) -> bool {
        self.exit == Some(0)
            && self.parts.len() == wanted_parts
            && self.parts.iter().all(PartResult::passed)
    }
}

/// `text` with the verifier's register ids (`id=368`) as `id=N`, so that
/// one reason met on several paths counts once.
fn without_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("id=") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

/// `line` without ANSI escape sequences (`ESC [ ... final`, `ESC c`).
pub fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

impl std::fmt::Display for PartResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match (self.exit, self.passed()) {
            (_, true) => "passed".to_string(),
            (Some(code), false) => format!("FAILED (exit code {code})"),
            (None, _) => "DID NOT FINISH".to_string(),
        };
        write!(
            f,
            "{}: {verdict}: {} passed, {} failed, in {:.1} s",
            self.name,
            self.tally.passed,
            self.tally.failed,
            self.took.as_secs_f64()
        )?;
        if !self.failed_tests.is_empty() {
            write!(f, "; failed: {}", self.failed_tests.join(", "))?;
        }
        if let Some(panic) = &self.first_panic {
            write!(f, "\n    first failure: {panic}")?;
        }
        for error in &self.agent_errors {
            write!(f, "\n    the agent: {error}")?;
        }
        for reason in &self.verifier_rejections {
            write!(f, "\n    the verifier: {reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn feed(lines: &[(&str, u64)]) -> Report {
        let mut r = Report::default();
        for (line, at) in lines {
            r.line(line, s(*at));
        }
        r
    }

    #[test]
    fn a_run_that_passes() {
        let r = feed(&[
            ("\x1bc\x1b[?7l\x1b[2Jhavip-kernel-test: uname 6.1.0-57-amd64\r", 3),
            ("havip-kernel-test: ready", 4),
            ("havip-kernel-test: begin datapath", 4),
            ("test policy_table ... ok", 10),
            (
                "test result: ok. 41 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 7.10s",
                11,
            ),
            ("havip-kernel-test: end datapath 0", 11),
            ("havip-kernel-test: exit 0", 12),
        ]);
        assert_eq!(r.uname.as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(r.init_at, Some(s(3)));
        assert_eq!(r.ready_at, Some(s(4)));
        assert_eq!(r.parts.len(), 1);
        let p = &r.parts[0];
        assert_eq!((p.exit, p.tally.passed, p.tally.failed), (Some(0), 41, 0));
        assert_eq!(p.took, s(7));
        assert!(r.passed(1));
        assert!(!r.passed(2), "a part is missing");
        assert_eq!(
            p.to_string(),
            "datapath: passed: 41 passed, 0 failed, in 7.0 s"
        );
    }

    #[test]
    fn failures_are_named_and_an_unfinished_part_fails() {
        let r = feed(&[
            ("havip-kernel-test: begin datapath", 4),
            ("test tc_egress_redirects ... FAILED", 5),
            (
                "thread 'tc_egress_redirects' (130) panicked at tests/tests/datapath.rs:145:21:",
                5,
            ),
            (
                "the verifier accepts the XDP program: LoadError { io_error: Os { code: 13 }",
                5,
            ),
            ("932: (71) r0 = *(u8 *)(r7 +1)", 5),
            (
                "invalid access to packet, off=1 size=1, R7(id=8,off=1,r=0)",
                5,
            ),
            ("R7 offset is outside of the packet", 5),
            ("verification time 19344 usec", 5),
            (
                "thread 'x' (131) panicked at tests/tests/datapath.rs:145:21:",
                5,
            ),
            ("another message", 5),
            (
                "invalid access to packet, off=1 size=1, R7(id=8,off=1,r=0)",
                5,
            ),
            ("R7 offset is outside of the packet", 5),
            ("verification time 20000 usec", 5),
            ("test result: FAILED. 40 passed; 1 failed; 0 ignored", 6),
            ("havip-kernel-test: end datapath 101", 6),
            ("havip-kernel-test: begin failover", 6),
            ("test ipv4_master_crash_moves_the_vip_to_the_backup ... ", 9),
        ]);
        let [datapath, failover] = &r.parts[..] else {
            panic!("two parts: {:?}", r.parts);
        };
        assert_eq!(datapath.failed_tests, ["tc_egress_redirects"]);
        assert_eq!(
            datapath.to_string(),
            "datapath: FAILED (exit code 101): 40 passed, 1 failed, in 2.0 s; \
             failed: tc_egress_redirects\n    \
             first failure: the verifier accepts the XDP program: LoadError { io_error: Os { code: 13 }\n    \
             the verifier: invalid access to packet, off=1 size=1, R7(id=N,off=1,r=0) / \
             R7 offset is outside of the packet"
        );
        assert_eq!(failover.exit, None);
        assert_eq!(failover.took, s(3));
        assert!(failover.to_string().starts_with("failover: DID NOT FINISH"));
        assert!(!r.passed(2));
    }

    #[test]
    fn a_test_error_and_what_the_agent_could_not_do_are_kept() {
        let r = feed(&[
            ("havip-kernel-test: begin failover", 1),
            ("test ipv4_master_crash_moves_the_vip_to_the_backup ... FAILED", 2),
            ("Error: timed out after 30s waiting for the agent to attach XDP", 2),
            ("[2026-12-01T20:07:23Z WARN  havip_agent::datapath] port 11 (vm1): tap-vm1 (ifindex 3): cannot attach TC egress: netlink error: [\"Parent Qdisc doesn't exists\"]", 2),
            ("[2026-12-01T20:07:24Z WARN  havip_agent::datapath] port 12 (vm2): tap-vm2 (ifindex 4): cannot attach TC egress: netlink error: [\"Parent Qdisc doesn't exists\"]", 2),
            ("Error: a second one", 2),
            ("havip-kernel-test: end failover 101", 3),
            ("havip-kernel-test: begin datapath", 3),
            ("thread 'native' (132) panicked at tests/tests/datapath.rs:1981:5:", 4),
            ("failing cases:", 4),
            ("  TCP/IPv4 of 1401 bytes is completed: action 1, expected 4; output", 4),
            ("      [02, 00]", 4),
        ]);
        let failover = &r.parts[0];
        assert_eq!(
            failover.first_panic.as_deref(),
            Some("timed out after 30s waiting for the agent to attach XDP")
        );
        assert_eq!(
            failover.agent_errors,
            ["cannot attach TC egress: netlink error: [\"Parent Qdisc doesn't exists\"]"]
        );
        assert_eq!(
            r.parts[1].first_panic.as_deref(),
            Some(
                "failing cases: TCP/IPv4 of 1401 bytes is completed: action 1, expected 4; output"
            )
        );
    }

    #[test]
    fn a_setup_error_is_kept_and_lines_outside_parts_count_nowhere() {
        let r = feed(&[
            ("test result: ok. 9 passed; 0 failed", 1),
            ("havip-kernel-test: error: insmod lib/modules/9p.ko", 2),
            ("havip-kernel-test: exit 125", 2),
        ]);
        assert!(r.parts.is_empty());
        assert_eq!(r.errors, ["insmod lib/modules/9p.ko"]);
        assert_eq!(r.exit, Some(125));
        assert!(!r.passed(0));
        // A marker that is not at the start of the line is test output.
        let r = feed(&[("echo havip-kernel-test: exit 0", 1)]);
        assert_eq!(r.exit, None);
    }
}
