//! Link events from rtnetlink (RTNLGRP_LINK): interfaces appearing,
//! changing (renames included) and disappearing.

use futures::StreamExt;
use log::{debug, warn};
use rtnetlink::{
    packet_core::NetlinkPayload,
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
}

impl LinkEvent {
    pub fn ifindex(&self) -> u32 {
        match self {
            Self::New { ifindex, .. } | Self::Del { ifindex, .. } => *ifindex,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Self::New { name, .. } | Self::Del { name, .. } => name.as_deref(),
        }
    }
}

fn name_of(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Subscribes to link events and forwards them on the returned channel.
/// Must be called inside a tokio runtime. The subscription is in place when
/// this returns, so a caller that resolves interfaces afterwards misses
/// nothing.
pub fn watch() -> std::io::Result<mpsc::UnboundedReceiver<LinkEvent>> {
    let (conn, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let ev = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => LinkEvent::New {
                    ifindex: m.header.index,
                    name: name_of(&m),
                },
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => LinkEvent::Del {
                    ifindex: m.header.index,
                    name: name_of(&m),
                },
                other => {
                    debug!("ignoring netlink message {other:?}");
                    continue;
                }
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
        warn!("the netlink link-event socket closed; interface changes are no longer followed");
    });
    Ok(rx)
}
