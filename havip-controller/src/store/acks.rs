//! The agents' side: owner reports and acknowledgements, and the reconciler
//! that turns acks into VIP statuses.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use etcd_client::WatchOptions;
use havip_schema::guards::{unchanged, vip_exists};
use havip_schema::keys;
use havip_schema::records::{self, Ack, AckResult, Status};

use super::{backoff, lost_race, put, Store, RETRIES};
use crate::error::{Error, ErrorCode, Result};

/// The failures of `vip`'s current generation, told by its bound ports
/// (`port p1: why` or `ports p1, p2: why`; no host named), in binding
/// order.
fn failures_by_port(vip: &records::Vip, acks: &BTreeMap<String, Ack>) -> Vec<String> {
    let mut by_host: Vec<(&str, Vec<&str>)> = Vec::new();
    for b in &vip.ports {
        match by_host.iter_mut().find(|(h, _)| *h == b.host) {
            Some((_, ports)) => ports.push(&b.port),
            None => by_host.push((&b.host, vec![&b.port])),
        }
    }
    by_host
        .into_iter()
        .filter_map(|(host, ports)| {
            let a = acks.get(host).filter(|a| a.result == AckResult::Failed)?;
            let why = a.reason.as_deref().unwrap_or("failed");
            let which = match ports.as_slice() {
                [one] => format!("port {one}"),
                many => format!("ports {}", many.join(", ")),
            };
            Some(format!("{which}: {why}"))
        })
        .collect()
}

impl Store {
    /// Records the port (and host) currently answering for `vip`.
    pub async fn report_owner(
        &self,
        vip: &str,
        port: &str,
        host: &str,
        since: DateTime<Utc>,
    ) -> Result<()> {
        let owner = records::Owner {
            port: port.to_string(),
            host: host.to_string(),
            since,
            split_brain: None,
        };
        if self
            .commit(
                vec![vip_exists(vip)],
                vec![put(&keys::owner_report(vip, host), &owner)],
            )
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found(format!("havip {vip} not found")))
        }
    }

    /// `host` has programmed the current generation of `vip`.
    pub async fn ack_programmed(&self, vip: &str, host: &str) -> Result<Status> {
        let generation = self.current_generation(vip).await?;
        self.ack(vip, host, generation, AckResult::Programmed, None)
            .await
    }

    /// `host` could not program the current generation of `vip`.
    pub async fn report_failed(&self, vip: &str, host: &str, reason: &str) -> Result<Status> {
        let generation = self.current_generation(vip).await?;
        self.ack(
            vip,
            host,
            generation,
            AckResult::Failed,
            Some(reason.to_string()),
        )
        .await
    }

    async fn current_generation(&self, vip: &str) -> Result<u64> {
        match self.get::<records::Vip>(&keys::vip(vip)).await? {
            Some((v, _)) => Ok(v.generation),
            None => Err(Error::not_found(format!("havip {vip} not found"))),
        }
    }

    /// Writes the ack key of `(vip, host)` for `generation`, then brings the
    /// VIP's status up to date. Returns the status after that.
    pub async fn ack(
        &self,
        vip: &str,
        host: &str,
        generation: u64,
        result: AckResult,
        reason: Option<String>,
    ) -> Result<Status> {
        havip_schema::rules::check_id("host", host)?;
        let ack = Ack {
            generation,
            result,
            reason,
            at: Utc::now(),
        };
        if !self
            .commit(
                vec![vip_exists(vip)],
                vec![put(&keys::ack(vip, host), &ack)],
            )
            .await?
        {
            return Err(Error::not_found(format!("havip {vip} not found")));
        }
        self.reconcile(vip).await
    }

    /// Derives the status of `vip` from the acks of its bound ports' hosts
    /// for the current generation: any failure → `failed`, the reason told
    /// per bound port (a tenant's view names no host); all programmed →
    /// `available`; otherwise `creating`. `deleting` is left alone. A
    /// corrupt ack counts as none.
    pub async fn reconcile(&self, id: &str) -> Result<Status> {
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let Some((vip, rev)) = self.get::<records::Vip>(&vip_key).await? else {
                return Err(Error::not_found(format!("havip {id} not found")));
            };
            if vip.status == Status::Deleting {
                return Ok(vip.status);
            }
            let acks: BTreeMap<String, Ack> = self
                .reports_of(&vip)
                .await?
                .acks_of(id)
                .into_iter()
                .filter(|(_, a)| a.generation == vip.generation)
                .collect();
            let hosts: HashSet<&str> = vip.ports.iter().map(|b| b.host.as_str()).collect();
            let failures = failures_by_port(&vip, &acks);
            let (status, reason) = if !failures.is_empty() {
                (Status::Failed, Some(failures.join("; ")))
            } else if hosts.iter().all(|h| {
                acks.get(*h)
                    .is_some_and(|a| a.result == AckResult::Programmed)
            }) {
                (Status::Available, None)
            } else {
                (Status::Creating, None)
            };
            if status == vip.status && reason == vip.status_reason {
                return Ok(status);
            }
            let mut vip = vip;
            vip.status = status;
            vip.status_reason = reason;
            if self
                .commit(vec![unchanged(&vip_key, rev)], vec![put(&vip_key, &vip)])
                .await?
            {
                log::info!("{id} is now {}", status.as_str());
                return Ok(status);
            }
            backoff(attempt).await;
        }
        Err(lost_race("reconcile havip"))
    }

    /// Keeps VIP statuses in step with the ack keys agents write (under
    /// `reports/`): reconciles
    /// every VIP once, then each VIP whose acks change. A VIP that cannot be
    /// reconciled (a corrupt record) is logged and skipped; the others go
    /// on. Runs until etcd fails; the caller restarts it.
    pub async fn run_ack_reconciler(&self) -> Result<()> {
        let (vips, revision) = self.list::<records::Vip>(&keys::vips()).await?;
        for (_, v, _) in vips {
            if v.status != Status::Deleting {
                if let Err(e) = self.reconcile(&v.id).await {
                    log::warn!("reconcile {}: {e}", v.id);
                }
            }
        }
        let mut stream = self
            .client
            .clone()
            .watch(
                keys::root(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        while let Some(resp) = stream.message().await? {
            let mut seen = HashSet::new();
            let mut old_layout = None;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let vip = match keys::Key::parse(&key) {
                    Some(keys::Key::Ack { vip, .. }) => vip,
                    Some(keys::Key::V1Ack { .. } | keys::Key::V1Owner(_))
                        if event.event_type() == etcd_client::EventType::Put =>
                    {
                        old_layout = Some(key.clone());
                        continue;
                    }
                    _ => continue,
                };
                if seen.insert(vip.to_string()) {
                    match self.reconcile(vip).await {
                        Ok(_) => {}
                        Err(e) if e.code == ErrorCode::NotFound => {}
                        Err(e) => log::warn!("reconcile {vip}: {e}"),
                    }
                }
            }
            // An agent of schema version 1 still writes the old keys: move
            // them (the moved acks are then reconciled as any) and say so.
            if let Some(key) = old_layout {
                log::warn!(
                    "an agent of schema version 1 wrote {key}: moved under reports/; upgrade that host's agent"
                );
                if let Err(e) = self.migrate().await {
                    log::warn!("migrate: {e}");
                }
            }
        }
        Err(Error::unavailable("etcd closed the ack watch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_by_port_not_by_host() {
        let vip: records::Vip = serde_json::from_value(serde_json::json!({
            "id": "v", "project": "p", "name": "n", "network_type": "intranet",
            "vpc": "vpc", "subnet": "s", "ip_version": "ipv4", "address": "10.0.0.5",
            "ports": [
                {"port": "p1", "vm": "vm1", "host": "hv-1"},
                {"port": "p2", "vm": "vm2", "host": "hv-2"},
                {"port": "p3", "vm": "vm3", "host": "hv-1"},
            ],
            "status": "creating", "generation": 1, "created_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let ack = |result, reason: Option<&str>| Ack {
            generation: 1,
            result,
            reason: reason.map(str::to_owned),
            at: Utc::now(),
        };
        let acks = BTreeMap::from([
            (
                "hv-1".to_string(),
                ack(AckResult::Failed, Some("no slot on hv-1's maps")),
            ),
            ("hv-2".to_string(), ack(AckResult::Programmed, None)),
        ]);
        assert_eq!(
            failures_by_port(&vip, &acks),
            ["ports p1, p3: no slot on hv-1's maps"]
        );
        let acks = BTreeMap::from([("hv-2".to_string(), ack(AckResult::Failed, None))]);
        assert_eq!(failures_by_port(&vip, &acks), ["port p2: failed"]);
    }
}
