//! tcpdump inside a namespace, its lines collected with wall-clock
//! timestamps (`-tt`), so they line up with the prober and the agent.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cleanup::{self, Resource, Token};
use crate::netns::Netns;

/// One captured frame, as tcpdump printed it (`-n -e -tt`).
#[derive(Clone, Debug)]
pub struct Frame {
    /// Capture time, µs since the Unix epoch.
    pub at_us: i64,
    pub line: String,
}

impl Frame {
    /// A gratuitous ARP request for `ip` (sender IP == target IP).
    pub fn is_garp_for(&self, ip: &str) -> bool {
        self.line.contains(&format!("who-has {ip} ")) && self.line.contains(&format!("tell {ip},"))
    }

    /// An ARP reply announcing `ip`.
    pub fn is_arp_reply_for(&self, ip: &str) -> bool {
        self.line.contains(&format!("Reply {ip} is-at"))
    }

    /// A neighbour advertisement for target `ip`.
    pub fn is_na_for(&self, ip: &str) -> bool {
        self.line.contains("neighbor advertisement") && self.line.contains(&format!("tgt is {ip},"))
    }

    /// A question for `ip`'s link-layer address: an ARP request for it
    /// (not a gratuitous one) or a Neighbor Solicitation for it.
    pub fn is_resolution_for(&self, ip: &str) -> bool {
        (self.line.contains(&format!("who-has {ip} ")) && !self.is_garp_for(ip))
            || self
                .line
                .contains(&format!("neighbor solicitation, who has {ip},"))
    }

    /// The Ethernet source (`-e`: the word after the timestamp).
    pub fn src_mac(&self) -> Option<&str> {
        self.line.split_whitespace().nth(1)
    }

    /// Any claim of `ip` (GARP, ARP reply, NA).
    pub fn is_claim_for(&self, ip: &str) -> bool {
        self.is_garp_for(ip) || self.is_arp_reply_for(ip) || self.is_na_for(ip)
    }
}

/// A running tcpdump; stopped on drop.
pub struct Capture {
    pub what: String,
    frames: Arc<Mutex<Vec<Frame>>>,
    token: Option<Token>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    /// `tcpdump -i iface [-Q direction] filter` in `ns`; returns once
    /// tcpdump is listening.
    pub fn start(ns: &Netns, iface: &str, direction: Option<&str>, filter: &str) -> Result<Self> {
        let what = format!("tcpdump -i {iface} '{filter}' in {}", ns.name());
        let mut c = ns.cmd("tcpdump");
        c.args([
            "-i",
            iface,
            "-n",
            "-e",
            "-tt",
            "-l",
            "--immediate-mode",
            "-s",
            "256",
        ]);
        if let Some(d) = direction {
            c.args(["-Q", d]);
        }
        c.arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = c.spawn().context("start tcpdump")?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let token = Some(cleanup::register(Resource::Process {
            name: what.clone(),
            child,
            group: false,
            grace: Duration::from_secs(3),
        }));
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let reader = {
            let frames = frames.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    let Some(ts) = line
                        .split_whitespace()
                        .next()
                        .and_then(|t| t.parse::<f64>().ok())
                    else {
                        continue;
                    };
                    frames.lock().unwrap().push(Frame {
                        at_us: (ts * 1e6).round() as i64,
                        line,
                    });
                }
            })
        };
        // tcpdump says "listening on IF" on stderr once it captures.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                all.push_str(&line);
                all.push('\n');
                if line.contains("listening on") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(all));
            }
        });
        let cap = Self {
            what,
            frames,
            token,
            reader: Some(reader),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(cap),
            Ok(Err(stderr)) => bail!("{} failed: {}", cap.what, stderr.trim()),
            Err(_) => bail!("{} did not start listening within 5 s", cap.what),
        }
    }

    /// The frames captured so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Stops tcpdump (it flushes on SIGTERM) and returns every frame.
    pub fn stop(mut self) -> Vec<Frame> {
        // Give frames in flight a moment to be printed.
        std::thread::sleep(Duration::from_millis(200));
        self.halt();
        self.frames()
    }

    fn halt(&mut self) {
        if let Some(t) = self.token.take() {
            cleanup::release(t);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}
