//! The owner records as etcd has them: a watch on `/havip/v1/reports/`
//! (each host's `reports/<host>/owners/<vip>`)
//! through etcd's JSON gateway (`POST /v3/watch`, one JSON object a line),
//! from the fabric's control namespace. Each record is timestamped when
//! the watch delivers it, on the clock the prober and tcpdump use
//! ([`crate::wait::now_us`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::fabric::ETCD_URL;
use crate::netns::Netns;
use crate::wait::now_us;

const REPORTS: &str = "/havip/v1/reports/";

/// One owner record as the watch delivered it.
#[derive(Clone, Debug)]
pub struct OwnerSeen {
    pub at_us: i64,
    /// The controller's VIP id (the key's last part).
    pub vip: String,
    /// The record: the controller's port id and the host.
    pub port: String,
    pub host: String,
}

/// A watch on the owner records; stopped on drop.
pub struct OwnerWatch {
    seen: Arc<Mutex<Vec<OwnerSeen>>>,
    stream: TcpStream,
    thread: Option<JoinHandle<Result<()>>>,
}

impl OwnerWatch {
    /// Starts watching from the control namespace `ctl` (where etcd
    /// listens at [`ETCD_URL`]); returns once etcd created the watch.
    pub fn start(ctl: &Netns) -> Result<Self> {
        let host = ETCD_URL
            .strip_prefix("http://")
            .context("ETCD_URL is http://host:port")?
            .to_owned();
        let connect = ctl.spawn_thread("etcd-watch", move || -> Result<TcpStream> {
            let addr = host
                .parse()
                .with_context(|| format!("{host} is not ip:port"))?;
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            let body = serde_json::json!({ "create_request": {
                "key": base64(REPORTS.as_bytes()),
                "range_end": base64(&prefix_end(REPORTS)),
            }})
            .to_string();
            write!(
                s,
                "POST /v3/watch HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            Ok(s)
        })?;
        let stream = connect
            .join()
            .map_err(|_| anyhow::anyhow!("the etcd watch thread panicked"))???;
        let mut reader = BufReader::new(stream.try_clone()?);
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // The HTTP head, then {"result":{..."created":true}}.
        let mut line = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 || Instant::now() > deadline {
                bail!("etcd closed the watch before creating it");
            }
            if String::from_utf8_lossy(&line).contains("\"created\":true") {
                break;
            }
        }
        stream.set_read_timeout(None)?;
        let seen: Arc<Mutex<Vec<OwnerSeen>>> = Arc::default();
        let thread = {
            let seen = seen.clone();
            std::thread::Builder::new()
                .name("etcd-owners".into())
                .spawn(move || -> Result<()> {
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        if reader.read_until(b'\n', &mut line)? == 0 {
                            return Ok(());
                        }
                        let at_us = now_us();
                        let records = owner_records(&line)?;
                        let mut seen = seen.lock().unwrap();
                        seen.extend(records.into_iter().map(|(vip, port, host)| OwnerSeen {
                            at_us,
                            vip,
                            port,
                            host,
                        }));
                    }
                })?
        };
        Ok(Self {
            seen,
            stream,
            thread: Some(thread),
        })
    }

    /// Every record delivered so far.
    pub fn seen(&self) -> Vec<OwnerSeen> {
        self.seen.lock().unwrap().clone()
    }

    /// The first record for `vip` naming `port` delivered at or after
    /// `since_us`, waiting up to `timeout` for it.
    pub fn wait_for(
        &self,
        vip: &str,
        port: &str,
        since_us: i64,
        timeout: Duration,
    ) -> Result<OwnerSeen> {
        let mut found = None;
        crate::wait::until(
            timeout,
            &format!("etcd's owner record of {vip} to name {port}"),
            || {
                found = self
                    .seen()
                    .into_iter()
                    .find(|s| s.vip == vip && s.port == port && s.at_us >= since_us);
                Ok(found.is_some())
            },
        )?;
        Ok(found.expect("set when the wait succeeded"))
    }
}

impl Drop for OwnerWatch {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The owner records (vip, port, host) a line of the watch carries.
fn owner_records(line: &[u8]) -> Result<Vec<(String, String, String)>> {
    let text = String::from_utf8_lossy(line);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("etcd's watch: {text}"))?;
    let events = v["result"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for e in events {
        if e["type"] == "DELETE" {
            continue;
        }
        let field = |name: &str| -> Result<String> {
            let b = unbase64(e["kv"][name].as_str().unwrap_or_default())
                .with_context(|| format!("etcd's {name} in {e}"))?;
            Ok(String::from_utf8_lossy(&b).into_owned())
        };
        let key = field("key")?;
        // `<host>/owners/<vip>`; acks share the prefix.
        let Some((_, vip)) = key
            .trim_start_matches(REPORTS)
            .split_once('/')
            .and_then(|(_, rest)| rest.split_once('/'))
            .filter(|(kind, _)| *kind == "owners")
        else {
            continue;
        };
        let vip = vip.to_owned();
        let record: Value = serde_json::from_str(&field("value")?)?;
        out.push((
            vip,
            record["port"].as_str().unwrap_or_default().to_owned(),
            record["host"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(out)
}

/// The end of the key range of `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as etcd's gateway takes keys.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of standard base64 text.
fn unbase64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .with_context(|| format!("{:?} is not base64", c as char))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_what_etcd_sends() {
        assert_eq!(base64(b"/havip/v1/owners/"), "L2hhdmlwL3YxL293bmVycy8=");
        assert_eq!(
            unbase64("L2hhdmlwL3YxL293bmVycy94").unwrap(),
            b"/havip/v1/owners/x"
        );
        for text in [&b""[..], b"a", b"ab", b"abc", b"abcd"] {
            assert_eq!(unbase64(&base64(text)).unwrap(), text);
        }
    }

    #[test]
    fn a_watch_line_gives_its_owner_records() {
        // reports/hv/owners/x = {"port":"p"}, then reports/hv/acks/x (not
        // an owner record).
        let line = br#"{"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"L2hhdmlwL3YxL3JlcG9ydHMvaHYvb3duZXJzL3g=","value":"eyJwb3J0IjoicCJ9"}},{"kv":{"key":"L2hhdmlwL3YxL3JlcG9ydHMvaHYvYWNrcy94","value":"eyJwb3J0IjoicCJ9"}}]}}"#;
        let records = owner_records(line).unwrap();
        assert_eq!(records, vec![("x".into(), "p".into(), String::new())]);
        assert!(owner_records(br#"{"result":{"created":true}}"#)
            .unwrap()
            .is_empty());
    }
}
