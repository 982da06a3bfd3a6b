//! Traffic to the VIP: a UDP echo server in each keepalived VM that answers
//! with its own name, and a prober in the client that sends a numbered probe
//! every few milliseconds and records when, and from which VM, each reply
//! came. The name in the reply makes "who answered" unambiguous.
//!
//! The echo servers bind the VIP itself (IP_FREEBIND, so they can start
//! before keepalived adds it); replies therefore come from the VIP, as a
//! real service's would, and the client uses a connected socket.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::lab::Vm;
use crate::wait::now_us;

fn udp_socket(addr: SocketAddr, freebind: bool) -> Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if freebind {
        if addr.is_ipv4() {
            s.set_freebind_v4(true)?;
        } else {
            s.set_freebind_v6(true)?;
        }
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s.into())
}

/// UDP echo servers on the given VIPs in one VM; stopped on drop.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<Result<()>>>>,
}

impl EchoServer {
    /// Answers every datagram to `vips:port` with `"{payload} {vm name}"`.
    pub fn start(vm: &Vm, vips: &[IpAddr], port: u16) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &vip in vips {
            let stop = stop.clone();
            let name = vm.role();
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(
                vm.ns
                    .spawn_thread(&format!("echo-{name}"), move || -> Result<()> {
                        let sock = match udp_socket(SocketAddr::new(vip, port), true) {
                            Ok(s) => {
                                let _ = tx.send(Ok(()));
                                s
                            }
                            Err(e) => {
                                let _ = tx.send(Err(format!("{e:#}")));
                                return Err(e);
                            }
                        };
                        let mut buf = [0u8; 512];
                        while !stop.load(Ordering::Relaxed) {
                            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                                continue;
                            };
                            let mut reply = buf[..n].to_vec();
                            reply.push(b' ');
                            reply.extend_from_slice(name.as_bytes());
                            let _ = sock.send_to(&reply, from);
                        }
                        Ok(())
                    })?,
            );
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("echo server in {name} on {vip}: {e}"),
                Err(_) => anyhow::bail!("echo server in {name} on {vip} died"),
            }
        }
        Ok(Self { stop, threads })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One probe: when it was sent, and when and from whom the reply came.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub seq: u64,
    pub sent_us: i64,
    pub reply: Option<Reply>,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub at_us: i64,
    /// The VM that answered (its role name).
    pub from: String,
}

/// Sends probes to a VIP from the client VM until stopped.
pub struct Prober {
    pub target: SocketAddr,
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    sender: Option<JoinHandle<Result<Result<()>>>>,
    receiver: Option<JoinHandle<Result<()>>>,
}

impl Prober {
    /// Probes `target` from `client` every `interval`.
    pub fn start(client: &Vm, target: SocketAddr, interval: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let probes: Arc<Mutex<Vec<Probe>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let sender = {
            let stop = stop.clone();
            let probes = probes.clone();
            client.ns.spawn_thread("prober", move || -> Result<()> {
                let open = || -> Result<(UdpSocket, UdpSocket)> {
                    let any: SocketAddr = if target.is_ipv4() {
                        "0.0.0.0:0".parse()?
                    } else {
                        "[::]:0".parse()?
                    };
                    let sock = udp_socket(any, false)?;
                    sock.connect(target)?;
                    let receiver = sock.try_clone()?;
                    Ok((sock, receiver))
                };
                let sock = match open() {
                    Ok((sock, receiver)) => {
                        let _ = tx.send(Ok(receiver));
                        sock
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent_us = now_us();
                    probes.lock().unwrap().push(Probe {
                        seq,
                        sent_us,
                        reply: None,
                    });
                    // Errors (no neighbour yet, ICMP unreachable) are lost probes.
                    let _ = sock.send(seq.to_string().as_bytes());
                    seq += 1;
                    std::thread::sleep(interval);
                }
                Ok(())
            })?
        };
        let receiver_sock = match rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => anyhow::bail!("prober socket to {target}: {e}"),
            Err(_) => anyhow::bail!("the prober thread died before opening its socket"),
        };
        let receiver = {
            let stop = stop.clone();
            let probes = probes.clone();
            std::thread::Builder::new()
                .name("prober-rx".into())
                .spawn(move || -> Result<()> {
                    let mut buf = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(n) = receiver_sock.recv(&mut buf) else {
                            continue;
                        };
                        let at_us = now_us();
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let mut words = text.split_whitespace();
                        let (Some(seq), Some(from)) = (
                            words.next().and_then(|s| s.parse::<u64>().ok()),
                            words.next(),
                        ) else {
                            continue;
                        };
                        let mut p = probes.lock().unwrap();
                        if let Some(probe) = p.get_mut(seq as usize) {
                            if probe.reply.is_none() {
                                probe.reply = Some(Reply {
                                    at_us,
                                    from: from.to_owned(),
                                });
                            }
                        }
                    }
                    Ok(())
                })?
        };
        Ok(Self {
            target,
            stop,
            probes,
            sender: Some(sender),
            receiver: Some(receiver),
        })
    }

    /// A copy of the probes so far.
    pub fn snapshot(&self) -> ProbeLog {
        ProbeLog {
            target: self.target,
            probes: self.probes.lock().unwrap().clone(),
        }
    }

    /// Waits until a reply from `vm` arrives after `since_us`.
    pub fn wait_reply_from(&self, vm: &str, since_us: i64, timeout: Duration) -> Result<Reply> {
        let mut found = None;
        crate::wait::until(
            timeout,
            &format!("a reply to {} from {vm}", self.target),
            || {
                found = self.snapshot().first_reply_from(vm, since_us);
                Ok(found.is_some())
            },
        )?;
        Ok(found.expect("set when the wait succeeded"))
    }

    /// Stops probing (in-flight replies get 100 ms) and returns the log.
    pub fn stop(mut self) -> ProbeLog {
        std::thread::sleep(Duration::from_millis(100));
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sender.take() {
            let _ = t.join();
        }
        if let Some(t) = self.receiver.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What the client saw.
#[derive(Clone, Debug)]
pub struct ProbeLog {
    pub target: SocketAddr,
    pub probes: Vec<Probe>,
}

impl ProbeLog {
    pub fn sent(&self) -> usize {
        self.probes.len()
    }

    pub fn answered(&self) -> usize {
        self.probes.iter().filter(|p| p.reply.is_some()).count()
    }

    /// Replies from `vm`.
    pub fn answered_by(&self, vm: &str) -> usize {
        self.replies().filter(|r| r.from == vm).count()
    }

    fn replies(&self) -> impl Iterator<Item = &Reply> {
        self.probes.iter().filter_map(|p| p.reply.as_ref())
    }

    /// The VMs that answered, in order of first answer.
    pub fn responders(&self) -> Vec<String> {
        let mut rs: Vec<&Reply> = self.replies().collect();
        rs.sort_by_key(|r| r.at_us);
        let mut out: Vec<String> = Vec::new();
        for r in rs {
            if !out.contains(&r.from) {
                out.push(r.from.clone());
            }
        }
        out
    }

    /// The first reply from `vm` received at or after `since_us`.
    pub fn first_reply_from(&self, vm: &str, since_us: i64) -> Option<Reply> {
        self.replies()
            .filter(|r| r.from == vm && r.at_us >= since_us)
            .min_by_key(|r| r.at_us)
            .cloned()
    }

    /// The last reply from `vm` (any time).
    pub fn last_reply_from(&self, vm: &str) -> Option<Reply> {
        self.replies()
            .filter(|r| r.from == vm)
            .max_by_key(|r| r.at_us)
            .cloned()
    }

    /// Replies from `vm` received at or after `since_us`.
    pub fn replies_from_after(&self, vm: &str, since_us: i64) -> usize {
        self.replies()
            .filter(|r| r.from == vm && r.at_us >= since_us)
            .count()
    }

    /// The longest time without any reply, in ms, and how many probes were
    /// sent unanswered within it.
    pub fn longest_gap(&self) -> (f64, usize) {
        let mut times: Vec<i64> = self.replies().map(|r| r.at_us).collect();
        times.sort_unstable();
        let mut best = (0i64, 0i64, 0i64);
        for w in times.windows(2) {
            if w[1] - w[0] > best.0 {
                best = (w[1] - w[0], w[0], w[1]);
            }
        }
        let lost = self
            .probes
            .iter()
            .filter(|p| p.reply.is_none() && p.sent_us >= best.1 && p.sent_us <= best.2)
            .count();
        (best.0 as f64 / 1000.0, lost)
    }
}
