//! Reads the datapath's two ring buffers and logs what they report: owner
//! changes (`havip_events`) at info, rejected claims (`havip_rejects`) at
//! warn, rate-limited per VIP and port. Owner changes also go to whoever
//! reports them on (the etcd source writes them back to the controller).
//! Each ring has a task of its own, so a flood of rejected claims neither
//! fills the owner changes' ring nor delays their reader.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use havip_common::{maps, DropReason, Event, EventKind};
use log::{debug, error, info, warn};
use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};

use crate::util::{format_mac, ifname_of, ip_of};

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: `Event` is `Pod` (repr(C), every bit pattern valid) and the
    // slice holds at least `size_of::<Event>()` bytes; the read is unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// The log line of an owner change.
pub fn owner_line(e: &Event, interface: Option<&str>) -> String {
    format!(
        "vip {} {}: owner port {} ({}) on {}, generation {}",
        e.vip_id,
        ip_of(&e.vip),
        e.port_id,
        format_mac(&e.mac),
        interface.map_or_else(|| format!("ifindex {}", e.ifindex), str::to_string),
        e.generation
    )
}

/// The log line of a rejected claim.
pub fn rejected_line(e: &Event, interface: Option<&str>, suppressed: u64) -> String {
    let reason = DropReason::from_u32(e.reason).map_or("unknown", DropReason::name);
    let mut line = format!(
        "vip {} {}: claim rejected ({reason}) from port {} ({}) on {}",
        e.vip_id,
        ip_of(&e.vip),
        e.port_id,
        format_mac(&e.mac),
        interface.map_or_else(|| format!("ifindex {}", e.ifindex), str::to_string),
    );
    if suppressed > 0 {
        line.push_str(&format!(" ({suppressed} similar suppressed)"));
    }
    line
}

/// Allows one line per key and period; counts what it suppresses.
#[derive(Debug)]
pub struct RateLimiter<K> {
    period: Duration,
    last: HashMap<K, (Instant, u64)>,
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub fn check(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.last.get_mut(&key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.period => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                // Forget idle keys so the table stays small.
                let period = self.period;
                self.last
                    .retain(|_, (at, s)| *s > 0 || now.duration_since(*at) < period * 60);
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The log line of a claim the VIP's hold-down deferred.
pub fn deferred_line(e: &Event, interface: Option<&str>) -> String {
    format!(
        "vip {} {}: claim by port {} ({}) on {} deferred: the owner changed within the \
         hold-down (split brain?); the latest claim wins when it ends",
        e.vip_id,
        ip_of(&e.vip),
        e.port_id,
        format_mac(&e.mac),
        interface.map_or_else(|| format!("ifindex {}", e.ifindex), str::to_string),
    )
}

/// Logs every owner change and deferred claim in `havip_events` until the
/// ring buffer fails, and sends each to `claims` (the daemon reports owner
/// changes and watches the VIPs of deferred claims).
pub async fn owner_changes(ring: RingBuf<MapData>, claims: UnboundedSender<Event>) {
    read(ring, maps::EVENTS, |e| {
        let interface = ifname_of(e.ifindex);
        match EventKind::from_u32(e.kind) {
            Some(EventKind::OwnerChanged) => info!("{}", owner_line(&e, interface.as_deref())),
            Some(EventKind::ClaimDeferred) => info!("{}", deferred_line(&e, interface.as_deref())),
            _ => {
                debug!("{}: unexpected event kind {}", maps::EVENTS, e.kind);
                return;
            }
        }
        let _ = claims.send(e);
    })
    .await
}

/// Logs the rejected claims in `havip_rejects`, at most one line per VIP
/// and port a second, until the ring buffer fails.
pub async fn rejections(ring: RingBuf<MapData>) {
    let mut limiter = RateLimiter::new(Duration::from_secs(1));
    read(ring, maps::REJECTS, |e| match EventKind::from_u32(e.kind) {
        Some(EventKind::ClaimRejected) => {
            if let Some(suppressed) = limiter.check((e.vip_id, e.port_id), Instant::now()) {
                warn!(
                    "{}",
                    rejected_line(&e, ifname_of(e.ifindex).as_deref(), suppressed)
                );
            }
        }
        _ => debug!("{}: unexpected event kind {}", maps::REJECTS, e.kind),
    })
    .await
}

/// Hands every record of `ring` to `on_event` as it arrives, until the ring
/// buffer fails.
async fn read(ring: RingBuf<MapData>, name: &str, mut on_event: impl FnMut(Event)) {
    // SAFETY: the ring buffer owns its map fd, open and unchanged until it is
    // dropped, which only happens with the AsyncFd.
    let registered =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            error!("cannot poll the ring buffer {name}: {e}");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                error!("ring buffer {name}: {e}");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Some(e) => on_event(e),
                None => debug!("{name}: short record ({} bytes)", item.len()),
            }
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use havip_common::NetworkAddr;

    fn event(kind: EventKind, reason: u32) -> Event {
        Event {
            kind: kind as u32,
            reason,
            vip_id: 1,
            port_id: 12,
            ifindex: 5,
            mac: [2, 0, 0, 0, 0, 0x12],
            generation: 3,
            vip: NetworkAddr::v4(1, [10, 0, 6, 19]),
            ..Event::default()
        }
    }

    #[test]
    fn lines() {
        let e = event(EventKind::OwnerChanged, 0);
        assert_eq!(
            owner_line(&e, Some("tap-vm2")),
            "vip 1 10.0.6.19: owner port 12 (02:00:00:00:00:12) on tap-vm2, generation 3"
        );
        let d = event(EventKind::ClaimDeferred, 0);
        assert_eq!(
            deferred_line(&d, Some("tap-vm2")),
            "vip 1 10.0.6.19: claim by port 12 (02:00:00:00:00:12) on tap-vm2 deferred: the owner \
             changed within the hold-down (split brain?); the latest claim wins when it ends"
        );
        let r = event(EventKind::ClaimRejected, DropReason::ClaimNotBound as u32);
        assert_eq!(
            rejected_line(&r, None, 4),
            "vip 1 10.0.6.19: claim rejected (claim_not_bound) from port 12 (02:00:00:00:00:12) \
             on ifindex 5 (4 similar suppressed)"
        );
    }

    #[test]
    fn decode_checks_length() {
        let e = event(EventKind::OwnerChanged, 0);
        // SAFETY: reading the bytes of a Pod value.
        let bytes = unsafe {
            std::slice::from_raw_parts((&e as *const Event).cast::<u8>(), size_of::<Event>())
        };
        assert_eq!(decode(bytes), Some(e));
        assert_eq!(decode(&bytes[1..]), None);
    }

    #[test]
    fn rate_limit() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = RateLimiter::new(Duration::from_secs(1));
        assert_eq!(l.check((1, 12), t0), Some(0));
        assert_eq!(l.check((1, 12), t0 + ms(10)), None);
        assert_eq!(l.check((1, 12), t0 + ms(500)), None);
        assert_eq!(l.check((1, 13), t0 + ms(500)), Some(0), "other key");
        assert_eq!(l.check((1, 12), t0 + ms(1000)), Some(2));
        assert_eq!(l.check((1, 12), t0 + ms(1500)), None);
        assert_eq!(l.check((1, 12), t0 + ms(2100)), Some(1));
    }
}
