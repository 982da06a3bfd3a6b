//! Link events from rtnetlink (RTNLGRP_LINK): interfaces appearing,
//! changing (renames included) and disappearing. A subscription that ends
//! (the netlink socket closed) is made again, with backoff, and
//! [`LinkEvent::Resubscribed`] tells the daemon that events were missed in
//! between, so it reconciles everything.

use std::{io, pin::Pin, time::Duration};

use futures::{Stream, StreamExt};
use log::{debug, info, warn};
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        link::{LinkAttribute, LinkMessage},
        RouteNetlinkMessage,
    },
    MulticastGroup,
};
use tokio::sync::mpsc;

/// What happened to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link appeared or changed (state, name, ...).
    New { ifindex: u32, name: Option<String> },
    /// RTM_DELLINK: the link is gone (or left this namespace).
    Del { ifindex: u32, name: Option<String> },
    /// The subscription was lost and is back: what happened in between is
    /// unknown, so every interface is resolved again.
    Resubscribed,
}

impl LinkEvent {
    /// The link's ifindex (0 for [`LinkEvent::Resubscribed`]).
    pub fn ifindex(&self) -> u32 {
        match self {
            Self::New { ifindex, .. } | Self::Del { ifindex, .. } => *ifindex,
            Self::Resubscribed => 0,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Self::New { name, .. } | Self::Del { name, .. } => name.as_deref(),
            Self::Resubscribed => None,
        }
    }
}

/// One subscription's events; it ends when its socket closes.
pub type Subscription = Pin<Box<dyn Stream<Item = LinkEvent> + Send>>;

/// How long to wait before subscribing again: `first`, doubling up to
/// `max` while attempts fail.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

fn name_of(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn link_event(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => Some(LinkEvent::New {
            ifindex: m.header.index,
            name: name_of(&m),
        }),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => Some(LinkEvent::Del {
            ifindex: m.header.index,
            name: name_of(&m),
        }),
        other => {
            debug!("ignoring netlink message {other:?}");
            None
        }
    }
}

/// Subscribes to RTNLGRP_LINK. Must be called inside a tokio runtime.
pub fn subscribe() -> io::Result<Subscription> {
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(conn);
    Ok(Box::pin(messages.filter_map(|(msg, _)| {
        std::future::ready(link_event(msg))
    })))
}

/// Subscribes to link events and forwards them on the returned channel,
/// subscribing again whenever the socket closes. Must be called inside a
/// tokio runtime. The subscription is in place when this returns, so a
/// caller that resolves interfaces afterwards misses nothing.
pub fn watch() -> io::Result<mpsc::UnboundedReceiver<LinkEvent>> {
    let first = subscribe()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(follow(first, subscribe, tx, Backoff::default()));
    Ok(rx)
}

/// Forwards the events of `current` on `tx`; when a subscription ends,
/// calls `subscribe` until it succeeds (waiting per `backoff` before each
/// attempt), sends [`LinkEvent::Resubscribed`] and goes on with the new
/// one. Returns when `tx`'s receiver is gone.
pub async fn follow<F>(
    mut current: Subscription,
    mut subscribe: F,
    tx: mpsc::UnboundedSender<LinkEvent>,
    backoff: Backoff,
) where
    F: FnMut() -> io::Result<Subscription>,
{
    loop {
        loop {
            let ev = tokio::select! {
                ev = current.next() => ev,
                () = tx.closed() => return,
            };
            let Some(ev) = ev else { break };
            if tx.send(ev).is_err() {
                return;
            }
        }
        warn!("the netlink link-event socket closed; subscribing again");
        let mut delay = backoff.first;
        current = loop {
            tokio::time::sleep(delay).await;
            if tx.is_closed() {
                return;
            }
            match subscribe() {
                Ok(s) => break s,
                Err(e) => {
                    delay = (delay * 2).min(backoff.max);
                    warn!("cannot subscribe to link events: {e}; again in {delay:?}");
                }
            }
        };
        info!("subscribed to link events again; reconciling every interface");
        if tx.send(LinkEvent::Resubscribed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
        time::Instant,
    };

    fn new(ifindex: u32) -> LinkEvent {
        LinkEvent::New {
            ifindex,
            name: None,
        }
    }

    /// A subscription that yields `events`, then ends (or, `open`, stays
    /// open with nothing more).
    fn stream(events: Vec<LinkEvent>, open: bool) -> Subscription {
        let s = futures::stream::iter(events);
        if open {
            Box::pin(s.chain(futures::stream::pending()))
        } else {
            Box::pin(s)
        }
    }

    #[tokio::test]
    async fn a_lost_stream_is_subscribed_again_with_backoff_and_says_so() {
        let backoff = Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(50),
        };
        // After the first stream ends: two attempts fail, the third works.
        let mut outcomes: VecDeque<io::Result<Subscription>> = VecDeque::from([
            Err(io::Error::other("no netlink")),
            Err(io::Error::other("no netlink")),
            Ok(stream(vec![new(2)], true)),
        ]);
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        let subscribe = move || {
            seen.lock().unwrap().push(Instant::now());
            outcomes
                .pop_front()
                .unwrap_or_else(|| Err(io::Error::other("unexpected attempt")))
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let task = tokio::spawn(follow(stream(vec![new(1)], false), subscribe, tx, backoff));
        let mut got = Vec::new();
        for _ in 0..3 {
            let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            got.push(ev.expect("an event in time").expect("the watcher runs"));
        }
        assert_eq!(got, vec![new(1), LinkEvent::Resubscribed, new(2)]);
        let at: Vec<Duration> = attempts
            .lock()
            .unwrap()
            .iter()
            .map(|t| *t - start)
            .collect();
        assert_eq!(at.len(), 3, "{at:?}");
        // Waits of 20, 40 and 50 ms (capped) before the attempts.
        let gaps = [at[0], at[1] - at[0], at[2] - at[1]];
        for (gap, want) in gaps.iter().zip([20, 40, 50]) {
            assert!(*gap >= Duration::from_millis(want), "{gaps:?}");
        }
        // The receiver gone, the watcher ends.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher ends with its receiver")
            .unwrap();
    }

    #[tokio::test]
    async fn a_watcher_whose_receiver_is_gone_stops_subscribing() {
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let subscribe =
            || -> io::Result<Subscription> { panic!("no attempt once the receiver is gone") };
        let backoff = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            follow(stream(vec![], false), subscribe, tx, backoff),
        )
        .await
        .expect("the watcher ends");
    }
}
