//! A rogue VM that does not stop: it floods its port with every frame the
//! datapath must reject (GARPs, ARP replies and NAs claiming the VIPs, UDP
//! from the VIP, frames from a neighbour's MAC and from an address that is
//! not its own), and a watch on the client's NIC that counts every one of
//! them that gets through.
//!
//! The frames are built here, so they are known byte for byte: a frame the
//! client receives that equals one of them, or that carries the flood's
//! marker, is a rogue frame that passed. The drop reason each kind must
//! meet is in [`RogueFrame::reason`], so the datapath's counters can be
//! held against what was sent.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::agent::Status;
use crate::bench::frames;
use crate::bench::wire::{PacketSocket, SocketOptions};
use crate::lab::{Vm, VmSpec, VIP4, VIP6};
use crate::wait::now_us;

/// What the flood's UDP frames carry.
pub const MARKER: &[u8] = b"havip-rogue";
/// An address in the subnet that no port has.
const NOBODY: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 77);
/// ETH_P_ALL: every frame, whatever its ethertype.
const ETH_P_ALL: u16 = 0x0003;

/// One kind of frame the rogue sends, and the drop reason that must meet it.
#[derive(Clone, Debug)]
pub struct RogueFrame {
    pub name: &'static str,
    /// The reason `havip-agent status` counts it under.
    pub reason: &'static str,
    pub frame: Vec<u8>,
}

/// The flood of `rogue` (not bound to the VIPs): its claims of the lab's
/// VIPs, UDP from VIP4, from `neighbour`'s MAC and from an address that is
/// not its own, the UDP frames sent to `client`.
pub fn rogue_frames(rogue: &VmSpec, neighbour: &VmSpec, client: &VmSpec) -> Vec<RogueFrame> {
    let udp = |from: VmSpec| frames::udp4(&from, client.mac, client.ipv4, MARKER);
    let kind = |name, reason, frame| RogueFrame {
        name,
        reason,
        frame,
    };
    vec![
        kind(
            "GARP for VIP4",
            "claim_not_bound",
            frames::garp(rogue, VIP4),
        ),
        kind(
            "ARP reply for VIP4",
            "claim_not_bound",
            frames::arp_reply(rogue, VIP4),
        ),
        kind(
            "unsolicited NA for VIP6",
            "claim_not_bound",
            frames::unsolicited_na(rogue, VIP6),
        ),
        kind(
            "UDP from VIP4",
            "vip_source_not_bound",
            udp(VmSpec {
                ipv4: VIP4,
                ..*rogue
            }),
        ),
        kind(
            "UDP from a neighbour's MAC",
            "mac_spoof",
            udp(VmSpec {
                mac: neighbour.mac,
                ipv4: neighbour.ipv4,
                ..*rogue
            }),
        ),
        kind(
            "UDP from an address not its own",
            "ip_spoof",
            udp(VmSpec {
                ipv4: NOBODY,
                ..*rogue
            }),
        ),
    ]
}

/// What the flood sent of the kinds one reason meets, and what the
/// datapath counted under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejections {
    pub reason: &'static str,
    pub sent: u64,
    pub counted: u64,
}

impl Rejections {
    /// Every frame counted (1 % may be lost on the way, in the VM's queue
    /// or the bridge's backlog, under a flood), and none more.
    pub fn all_counted(&self) -> bool {
        self.counted <= self.sent && self.counted * 100 >= self.sent * 99
    }
}

/// The rogue sending [`rogue_frames`] round-robin at a steady rate from
/// its eth0, until stopped (or dropped).
pub struct Flood {
    pub kinds: Vec<RogueFrame>,
    /// Frames per second, all kinds together.
    pub rate: u32,
    sent: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Flood {
    /// Starts flooding from `rogue` at `rate` frames per second.
    pub fn start(rogue: &Vm, kinds: Vec<RogueFrame>, rate: u32) -> Result<Self> {
        let socket = PacketSocket::open(&rogue.ns, "eth0", SocketOptions::default())?;
        let sent: Arc<Vec<AtomicU64>> = Arc::new(kinds.iter().map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sent, stop) = (sent.clone(), stop.clone());
            let frames: Vec<Vec<u8>> = kinds.iter().map(|k| k.frame.clone()).collect();
            let per_kind = f64::from(rate) / frames.len() as f64;
            std::thread::Builder::new()
                .name("rogue-flood".into())
                .spawn(move || -> Result<()> {
                    let started = Instant::now();
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let due = (started.elapsed().as_secs_f64() * per_kind) as u64;
                        let burst = due.saturating_sub(rounds).min(64) as usize;
                        for (frame, count) in frames.iter().zip(sent.iter()) {
                            if burst > 0 {
                                // A full queue (ENOBUFS) sends fewer: counted as sent.
                                let n = socket.send_copies(frame, burst).unwrap_or(0);
                                count.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        }
                        rounds += burst as u64;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                })?
        };
        Ok(Self {
            kinds,
            rate,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Frames sent so far, per kind (in the order of [`Flood::kinds`]).
    pub fn sent(&self) -> Vec<u64> {
        self.sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Frames sent so far of the kinds met by `reason`.
    pub fn sent_for(&self, reason: &str) -> u64 {
        self.kinds
            .iter()
            .zip(self.sent())
            .filter(|(k, _)| k.reason == reason)
            .map(|(_, n)| n)
            .sum()
    }

    /// Per reason, what was sent and what the datapath counted between
    /// `before` and `after` (statuses of the rogue's host).
    pub fn rejections(&self, before: &Status, after: &Status) -> Vec<Rejections> {
        let mut reasons: Vec<&'static str> = self.kinds.iter().map(|k| k.reason).collect();
        reasons.dedup();
        reasons
            .into_iter()
            .map(|reason| Rejections {
                reason,
                sent: self.sent_for(reason),
                counted: after.drop_count(reason) - before.drop_count(reason),
            })
            .collect()
    }

    /// What was sent, one line per kind.
    pub fn describe(&self) -> String {
        self.kinds
            .iter()
            .zip(self.sent())
            .map(|(k, n)| format!("{n} x {} ({})", k.name, k.reason))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stops the flood (what it sent stays readable).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A rogue frame that reached the watched NIC.
#[derive(Clone, Debug)]
pub struct Passed {
    pub at_us: i64,
    /// The kind it is ([`RogueFrame::name`]), or "marked frame" for one
    /// that carries the marker but was changed on its way.
    pub kind: &'static str,
}

/// Every frame a VM's eth0 receives, checked against the rogue's; stopped
/// on drop.
pub struct RogueWatch {
    passed: Arc<Mutex<Vec<Passed>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl RogueWatch {
    /// Watches `vm`'s eth0 for the frames of `kinds`.
    pub fn start(vm: &Vm, kinds: &[RogueFrame]) -> Result<Self> {
        let opts = SocketOptions {
            receive: Some(ETH_P_ALL),
            ..SocketOptions::default()
        };
        let socket = PacketSocket::open(&vm.ns, "eth0", opts)
            .with_context(|| format!("watching {}'s eth0 for the rogue's frames", vm.role()))?;
        let passed: Arc<Mutex<Vec<Passed>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let kinds: Vec<RogueFrame> = kinds.to_vec();
        let thread = {
            let (passed, stop) = (passed.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rogue-watch".into())
                .spawn(move || -> Result<()> {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        let Some(r) = socket.recv(&mut buf, Duration::from_millis(50))? else {
                            continue;
                        };
                        if r.outgoing {
                            continue;
                        }
                        if let Some(kind) = rogue_kind(&kinds, &buf[..r.len]) {
                            passed.lock().unwrap().push(Passed {
                                at_us: now_us(),
                                kind,
                            });
                        }
                    }
                    Ok(())
                })?
        };
        Ok(Self {
            passed,
            stop,
            thread: Some(thread),
        })
    }

    /// The rogue frames seen so far.
    pub fn passed(&self) -> Vec<Passed> {
        self.passed.lock().unwrap().clone()
    }

    /// Proves the watch sees what passes: `rogue` sends `count` frames of
    /// its own (its MAC and address, carrying the marker) to `to`, which
    /// the datapath lets through; waits until the watch saw them all.
    pub fn ensure_sees_passing(&self, rogue: &Vm, to: &VmSpec, count: usize) -> Result<()> {
        let before = self.passed().len();
        let frame = frames::udp4(&rogue.spec, to.mac, to.ipv4, MARKER);
        let socket = PacketSocket::open(&rogue.ns, "eth0", SocketOptions::default())?;
        for _ in 0..count {
            socket.send(&frame)?;
        }
        crate::wait::until(
            Duration::from_secs(2),
            &format!("the watch to see {count} frames {} may send", rogue.role()),
            || Ok(self.passed().len() >= before + count),
        )
    }

    /// How many were seen from `from_us` to `to_us`.
    pub fn passed_between(&self, from_us: i64, to_us: i64) -> usize {
        self.passed
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.at_us >= from_us && p.at_us <= to_us)
            .count()
    }
}

impl Drop for RogueWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which of the rogue's frames `frame` is, if it is one.
fn rogue_kind(kinds: &[RogueFrame], frame: &[u8]) -> Option<&'static str> {
    if let Some(k) = kinds.iter().find(|k| k.frame == frame) {
        return Some(k.name);
    }
    let marked = frame.windows(MARKER.len()).any(|w| w == MARKER);
    marked.then_some("marked frame")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{CLIENT, ROGUE, VM1};

    #[test]
    fn the_watch_knows_the_rogue_frames_and_nothing_else() {
        let kinds = rogue_frames(&ROGUE, &VM1, &CLIENT);
        for k in &kinds {
            assert_eq!(rogue_kind(&kinds, &k.frame), Some(k.name));
        }
        let mut changed = kinds[3].frame.clone();
        changed[0] ^= 1;
        assert_eq!(rogue_kind(&kinds, &changed), Some("marked frame"));
        let probe = frames::udp4(&CLIENT, VM1.mac, VIP4, b"42");
        assert_eq!(rogue_kind(&kinds, &probe), None);
        assert_eq!(rogue_kind(&kinds, &frames::garp(&VM1, VIP4)), None);
    }
}
