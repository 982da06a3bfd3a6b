//! The failover history: every owner change of a VIP, kept by the
//! controller from the agents' owner reports.
//!
//! The recorder watches the owner reports (with their previous value) and
//! writes one `events/<vip>/<revision>` record per change of owning port,
//! named by the etcd revision of the report, in a transaction that puts it
//! only if that key does not exist yet and the VIP does: however many
//! controllers run, a change is recorded once, and none outlives its VIP
//! (deleting a HAVIP deletes its events). Then the oldest beyond the
//! newest `keep` are deleted. Agents need no change and no write rights
//! beyond their owner reports.

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, GetOptions, TxnOp, WatchOptions};
use havip_schema::guards::vip_exists;
use havip_schema::keys::{self, Key};
use havip_schema::records::{self, OwnerEnd, OwnerEvent};

use super::{put, Scope, Store};
use crate::error::{Error, Result};
use crate::history::{OwnerChange, OwnerChanges};

/// The newest owner changes kept per VIP unless the config says otherwise.
pub const DEFAULT_HISTORY_PER_VIP: usize = 50;

/// Whether a report moved the VIP to another port (a split-brain update
/// of the same owner is no change).
fn is_change(before: Option<&records::Owner>, after: &records::Owner) -> bool {
    before.is_none_or(|b| b.port != after.port || b.host != after.host)
}

/// Which of `keys` (sorted oldest first) to delete to keep the newest `keep`.
fn beyond(keys: &[String], keep: usize) -> &[String] {
    &keys[..keys.len().saturating_sub(keep)]
}

impl Store {
    /// The owner changes of `id` the caller may see, newest first.
    pub async fn owner_changes(&self, scope: &Scope, id: &str) -> Result<OwnerChanges> {
        havip_schema::rules::check_id("havip", id)?;
        match self.read::<records::Vip>(&keys::vip(id)).await? {
            Some((v, _)) if scope.sees(&v.project) => {}
            _ => return Err(Error::not_found(format!("havip {id} not found"))),
        }
        let (events, _) = self.list::<OwnerEvent>(&keys::owner_events_of(id)).await?;
        let operator = matches!(scope, Scope::Operator);
        let mut events: Vec<OwnerChange> = events
            .into_iter()
            .rev()
            .map(|(_, e, _)| OwnerChange::view(e, operator))
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.at));
        Ok(OwnerChanges {
            havip: id.to_string(),
            events,
        })
    }

    /// The VM of `port`, if its record reads.
    async fn vm_of(&self, port: &str) -> Option<String> {
        match self.read::<records::Port>(&keys::port(port)).await {
            Ok(Some((p, _))) => Some(p.vm),
            _ => None,
        }
    }

    /// Records the owner report of `vip` at `revision` (its value before in
    /// `before`) if it moved the VIP, then compacts the VIP's history to
    /// the newest `keep`. Returns whether this call wrote the event.
    pub async fn record_owner_change(
        &self,
        vip: &str,
        before: Option<&records::Owner>,
        after: &records::Owner,
        revision: i64,
        keep: usize,
    ) -> Result<bool> {
        if !is_change(before, after) {
            return Ok(false);
        }
        let end = |o: &records::Owner, vm| OwnerEnd {
            port: o.port.clone(),
            vm,
            host: o.host.clone(),
        };
        let from = match before {
            Some(b) => Some(end(b, self.vm_of(&b.port).await)),
            None => None,
        };
        let event = OwnerEvent {
            at: after.since,
            from,
            to: end(after, self.vm_of(&after.port).await),
            revision,
        };
        let key = keys::owner_event(vip, revision);
        let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        let wrote = self
            .commit(vec![vip_exists(vip), absent], vec![put(&key, &event)])
            .await?;
        self.compact_history(vip, keep).await?;
        Ok(wrote)
    }

    /// Deletes the owner changes of `vip` beyond the newest `keep`.
    pub async fn compact_history(&self, vip: &str, keep: usize) -> Result<usize> {
        let resp = self
            .client
            .kv_client()
            .get(
                keys::owner_events_of(vip),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        let all: Vec<String> = resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        let old = beyond(&all, keep);
        if old.is_empty() {
            return Ok(0);
        }
        let ops = old
            .iter()
            .map(|k| TxnOp::delete(k.as_str(), None))
            .collect();
        self.commit(vec![], ops).await?;
        Ok(old.len())
    }

    /// Keeps the failover history from the owner reports, from now on,
    /// keeping the newest `keep` per VIP. Each host reports under its own
    /// prefix (`reports/<host>/owners/<vip>`); a report written is the
    /// newest of its VIP, so its VIP's owner now, and the change is from
    /// the owner before (as read at the start, then as followed). A corrupt
    /// report, or one naming another host than its key's, is skipped. Runs
    /// until etcd fails; the caller restarts it.
    pub async fn run_history_recorder(&self, keep: usize) -> Result<()> {
        let (reports, revision) = self.all_reports().await?;
        let mut current = reports.current_owners();
        let mut stream = self
            .client
            .clone()
            .watch(
                keys::all_reports(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        while let Some(resp) = stream.message().await? {
            for event in resp.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(Key::Owner { vip, host }) = Key::parse(&key) else {
                    continue;
                };
                let Some(after) = self.decode::<records::Owner>(&key, kv.value()) else {
                    continue;
                };
                if after.host != host {
                    continue;
                }
                let before = current.get(vip);
                if let Err(e) = self
                    .record_owner_change(vip, before, &after, kv.mod_revision(), keep)
                    .await
                {
                    log::warn!("failover history of {vip}: {e}");
                }
                current.insert(vip.to_string(), after);
            }
        }
        Err(Error::unavailable("etcd closed the owner watch"))
    }

    /// The delete of `vip`'s history, for the HAVIP's delete transaction.
    pub(super) fn delete_history(vip: &str) -> TxnOp {
        TxnOp::delete(
            keys::owner_events_of(vip),
            Some(DeleteOptions::new().with_prefix()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(port: &str, host: &str) -> records::Owner {
        records::Owner {
            port: port.into(),
            host: host.into(),
            since: chrono::Utc::now(),
            split_brain: None,
        }
    }

    #[test]
    fn only_a_new_port_or_host_is_a_change() {
        let a = owner("p1", "hv-1");
        assert!(is_change(None, &a));
        assert!(!is_change(Some(&a), &owner("p1", "hv-1")));
        assert!(is_change(Some(&a), &owner("p2", "hv-1")));
        assert!(is_change(Some(&a), &owner("p1", "hv-2")));
    }

    #[test]
    fn compaction_keeps_the_newest() {
        let keys: Vec<String> = (1..=5).map(|r| keys::owner_event("v", r)).collect();
        assert_eq!(beyond(&keys, 3), &keys[..2]);
        assert!(beyond(&keys, 5).is_empty());
        assert!(beyond(&keys, 50).is_empty());
        assert_eq!(beyond(&keys, 0).len(), 5);
        // Revisions sort as numbers, not as text.
        let (k9, k10) = (keys::owner_event("v", 9), keys::owner_event("v", 10));
        assert!(k9 < k10);
    }
}
