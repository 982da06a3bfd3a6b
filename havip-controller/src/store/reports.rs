//! The hosts' reports (`reports/<host>/acks/<vip>` and
//! `reports/<host>/owners/<vip>`), read per VIP or all at once; a VIP's
//! owner is the newest report ([`current_owner`]).

use std::collections::{BTreeSet, HashMap};

use etcd_client::{GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use havip_schema::keys::{self, Key};
use havip_schema::owners::{current_owner, OwnerReport};
use havip_schema::records::{self, Ack};

use super::Store;
use crate::error::Result;

/// Acks and owner reports of some VIPs.
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// vip -> host -> its ack.
    pub acks: HashMap<String, HashMap<String, Ack>>,
    owners: HashMap<String, Vec<OwnerReport>>,
}

impl Reports {
    /// Takes up one stored key (corrupt records are skipped by `store`).
    fn take(&mut self, store: &Store, kv: &KeyValue) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        match Key::parse(&key) {
            Some(Key::Ack { vip, host }) => {
                if let Some(a) = store.decode::<Ack>(&key, kv.value()) {
                    self.acks
                        .entry(vip.to_string())
                        .or_default()
                        .insert(host.to_string(), a);
                }
            }
            Some(Key::Owner { vip, host }) => {
                if let Some(owner) = store.decode::<records::Owner>(&key, kv.value()) {
                    self.owners
                        .entry(vip.to_string())
                        .or_default()
                        .push(OwnerReport {
                            host: host.to_string(),
                            owner,
                            revision: kv.mod_revision(),
                        });
                }
            }
            _ => {}
        }
    }

    /// The acks of `vip`, by host.
    pub fn acks_of(&mut self, vip: &str) -> HashMap<String, Ack> {
        self.acks.remove(vip).unwrap_or_default()
    }

    /// The current owner of every VIP reported.
    pub fn current_owners(self) -> HashMap<String, records::Owner> {
        self.owners
            .into_iter()
            .filter_map(|(vip, r)| Some((vip, current_owner(r)?.0)))
            .collect()
    }

    /// The current owner of `vip`.
    pub fn owner(&mut self, vip: &str) -> Option<records::Owner> {
        current_owner(self.owners.remove(vip).unwrap_or_default()).map(|(o, _)| o)
    }
}

impl Store {
    /// Every host's reports, and the store revision of the read.
    pub(super) async fn all_reports(&self) -> Result<(Reports, i64)> {
        let resp = self
            .client
            .kv_client()
            .get(keys::all_reports(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut reports = Reports::default();
        for kv in resp.kvs() {
            reports.take(self, kv);
        }
        Ok((reports, resp.header().map_or(0, |h| h.revision())))
    }

    /// The reports of `vip` by the hosts of its bound ports (the only ones
    /// that count), in one read.
    pub(super) async fn reports_of(&self, vip: &records::Vip) -> Result<Reports> {
        let hosts: BTreeSet<&str> = vip.ports.iter().map(|b| b.host.as_str()).collect();
        let ops: Vec<TxnOp> = hosts
            .iter()
            .flat_map(|h| [keys::ack(&vip.id, h), keys::owner_report(&vip.id, h)])
            .map(|k| TxnOp::get(k, None))
            .collect();
        let mut reports = Reports::default();
        if ops.is_empty() {
            return Ok(reports);
        }
        let resp = self
            .client
            .kv_client()
            .txn(Txn::new().and_then(ops))
            .await?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                for kv in get.kvs() {
                    reports.take(self, kv);
                }
            }
        }
        Ok(reports)
    }

    /// The keys of every host's reports of `vip` (to delete them with it).
    pub(super) async fn report_keys_of(&self, vip: &str) -> Result<Vec<String>> {
        let resp = self
            .client
            .kv_client()
            .get(
                keys::all_reports(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .filter(|k| match Key::parse(k) {
                Some(Key::Ack { vip: v, .. } | Key::Owner { vip: v, .. }) => v == vip,
                _ => false,
            })
            .collect())
    }
}
