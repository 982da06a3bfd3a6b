//! The havip hypervisor agent.
//!
//! The agent reads the desired state (a TOML file, see [`config`], or this
//! host's share of the controller's etcd, see [`etcd`], which also gets the
//! owners the datapath learns), turns it into the exact contents of the datapath's maps ([`desired`]),
//! loads and pins the XDP datapath and keeps its maps in line with that state
//! ([`datapath`]), holds each port's programs by links pinned so they stay
//! in force across agent restarts ([`attach`], [`qdisc`]), follows interfaces as they come and go ([`links`]), logs
//! what the datapath reports ([`events`]), says which ports are protected and
//! what could not be programmed ([`protection`], [`shortfall`]) and prints the
//! pinned state for an operator ([`status`]). [`daemon`] ties these together for `havip-agent run`.

pub mod attach;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod damping;
pub mod datapath;
pub mod desired;
pub mod etcd;
pub mod events;
pub mod gateway;
pub mod learned;
pub mod links;
pub mod metrics;
pub mod migrate;
pub mod pins;
pub mod protection;
pub mod qdisc;
pub mod shortfall;
pub mod slots;
pub mod status;
pub mod sys;
pub mod util;
