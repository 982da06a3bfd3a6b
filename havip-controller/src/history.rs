//! The failover history as the API answers it (`GET
//! /v1/havips/{id}/events`): a VIP's owner changes, newest first. A
//! tenant's view names no hypervisor host.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use havip_schema::records;

/// One owner change of a HAVIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerChange {
    /// When the new owner's claim was accepted.
    pub at: DateTime<Utc>,
    /// The owner before, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<OwnerSide>,
    pub to: OwnerSide,
}

/// A port that owned (or now owns) the VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerSide {
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Its hypervisor host (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A HAVIP's owner changes, newest first (at most the controller's
/// `history_per_vip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerChanges {
    pub havip: String,
    pub events: Vec<OwnerChange>,
}

impl OwnerChange {
    pub fn view(e: records::OwnerEvent, operator: bool) -> OwnerChange {
        let side = |s: records::OwnerEnd| OwnerSide {
            port: s.port,
            vm: s.vm,
            host: operator.then_some(s.host),
        };
        OwnerChange {
            at: e.at,
            from: e.from.map(side),
            to: side(e.to),
        }
    }
}
