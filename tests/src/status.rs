//! `havip-agent status --json`, parsed: the VIPs with their owners and
//! counters, the ports, and the drop and other counters by name.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

/// `havip-agent status --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub vips: Vec<VipStatus>,
    /// The ports in the datapath (those whose interface exists).
    pub ports: Vec<PortStatus>,
    /// Global drop counters by reason name.
    pub drops: BTreeMap<String, u64>,
    /// Global non-drop counters by name.
    pub stats: BTreeMap<String, u64>,
    /// Each port protected, failed or absent; what is not programmed.
    pub protection: Protection,
}

/// `status --json`'s `protection`: the agent's word (`source` "agent"), or
/// what the pinned links say ("pinned links").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Protection {
    pub source: String,
    pub agent_running: bool,
    pub ports: Vec<PortProtection>,
    pub vips_not_programmed: Vec<NotProgrammed>,
    pub addrs_not_programmed: Vec<NotProgrammed>,
    /// Ports whose TC egress is still to move from netlink to TCX.
    pub egress_handover: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortProtection {
    pub port_id: u32,
    pub interface: String,
    /// "protected", "failed" or "absent".
    pub state: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NotProgrammed {
    /// The VIP's id, or the port's (an address).
    pub id: u32,
    pub address: String,
    pub reason: String,
}

impl Protection {
    /// The state of port `port_id` and its reason ("" if none).
    pub fn port(&self, port_id: u32) -> Result<(&str, &str)> {
        let p = self
            .ports
            .iter()
            .find(|p| p.port_id == port_id)
            .with_context(|| format!("port {port_id} missing from the protection: {self:?}"))?;
        Ok((&p.state, p.reason.as_deref().unwrap_or("")))
    }
}

impl Status {
    /// The VIP at `address` (as the agent prints it).
    pub fn vip_at(&self, address: &str) -> Result<&VipStatus> {
        self.vips
            .iter()
            .find(|v| v.address == address)
            .with_context(|| format!("no vip at {address} in the datapath"))
    }

    /// The link-local the datapath learned for port `port_id` (which must
    /// be in the datapath), if any.
    pub fn learned_link_local(&self, port_id: u32) -> Result<Option<&str>> {
        self.ports
            .iter()
            .find(|p| p.port_id == port_id)
            .map(|p| p.learned_link_local.as_deref())
            .with_context(|| format!("no port {port_id} in the datapath"))
    }

    /// The port id of the port on `interface`.
    pub fn port_on(&self, interface: &str) -> Result<u32> {
        self.ports
            .iter()
            .find(|p| p.interface.as_deref() == Some(interface))
            .map(|p| p.port_id)
            .with_context(|| format!("no port on {interface} in the datapath"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortStatus {
    pub port_id: u32,
    pub ifindex: u32,
    pub interface: Option<String>,
    /// The link-local the datapath learned for the port, if any.
    pub learned_link_local: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VipStatus {
    pub vip_id: u32,
    pub network: u32,
    pub address: String,
    pub ports: Vec<u32>,
    /// The owner generation, kept when the owner is vacated (0: never owned).
    pub generation: u64,
    pub owner: Option<OwnerStatus>,
    pub hold_down_ms: u32,
    /// Two bound ports claiming the VIP within its hold-down.
    pub split_brain: Option<SplitBrain>,
    pub counters: VipCounters,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SplitBrain {
    /// The owner, then its rival.
    pub ports: Vec<u32>,
    /// The port whose claim waits for the end of the hold-down.
    pub pending: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OwnerStatus {
    pub port_id: u32,
    pub ifindex: u32,
    pub mac: String,
    pub generation: u64,
    pub since_unix_ms: i64,
    pub last_claim_unix_ms: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VipCounters {
    pub claims_accepted: u64,
    pub owner_changes: u64,
    /// Claims the hold-down deferred.
    pub claims_deferred: u64,
    /// ARP requests and Neighbor Solicitations the datapath answered.
    pub answered: u64,
    /// Frames delivered to the owner (redirected or MAC rewritten).
    pub delivered: u64,
    pub drops: BTreeMap<String, u64>,
}

impl Status {
    pub fn vip(&self, vip_id: u32) -> Result<&VipStatus> {
        self.vips
            .iter()
            .find(|v| v.vip_id == vip_id)
            .with_context(|| format!("vip {vip_id} missing from status: {self:?}"))
    }

    /// The owner of `vip_id`, if it has one (port 0 counts as none).
    pub fn owner(&self, vip_id: u32) -> Result<Option<&OwnerStatus>> {
        Ok(self.vip(vip_id)?.owner.as_ref().filter(|o| o.port_id != 0))
    }

    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }
}

impl VipStatus {
    pub fn drop_count(&self, reason: &str) -> u64 {
        self.counters.drops.get(reason).copied().unwrap_or(0)
    }
}
