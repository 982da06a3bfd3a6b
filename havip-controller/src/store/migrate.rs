//! Moving a store of schema version 1 (acks at `acks/<vip>/<host>`, one
//! owner record at `owners/<vip>`) to version 2 (both under the reporting
//! host's `reports/<host>/`), then recording the version (`schema`).
//!
//! Each record moves in its own transaction, guarded by its revision: the
//! new key is written with the old value unless the host already wrote it
//! (then its own, newer record stays), and the old key goes. Running it
//! again moves what is left, so it is idempotent and a crash midway loses
//! nothing. A version 1 owner record that cannot be read names no host to
//! move it to: it stays, logged, and is counted as kept.

use etcd_client::{GetOptions, TxnOp};
use havip_schema::guards::{absent, unchanged};
use havip_schema::keys::{self, Key};
use havip_schema::records::{Owner, SchemaVersion};
use havip_schema::SCHEMA_VERSION;

use super::{put, Store};
use crate::error::{Error, Result};

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version the store had.
    pub from: u32,
    pub acks: usize,
    pub owners: usize,
    /// Version 1 keys left in place (unreadable, or changed meanwhile).
    pub kept: Vec<String>,
}

impl Store {
    /// The schema version of the store (1 when it has no `schema` record).
    pub async fn schema_version(&self) -> Result<u32> {
        Ok(self
            .get::<SchemaVersion>(&keys::schema())
            .await?
            .map_or(1, |(v, _)| v.version))
    }

    /// Brings the store to [`SCHEMA_VERSION`]; refuses a newer one.
    pub async fn migrate(&self) -> Result<Migrated> {
        let from = self.schema_version().await?;
        if from > SCHEMA_VERSION {
            return Err(Error::conflict(format!(
                "the store has schema version {from}, newer than this controller's \
                 ({SCHEMA_VERSION}): upgrade the controller"
            )));
        }
        let mut done = Migrated {
            from,
            ..Migrated::default()
        };
        for prefix in [keys::v1::acks(), keys::v1::owners()] {
            let resp = self
                .client
                .kv_client()
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await?;
            for kv in resp.kvs() {
                let old = String::from_utf8_lossy(kv.key()).into_owned();
                let (new, is_ack) = match Key::parse(&old) {
                    Some(Key::V1Ack { vip, host }) => (Some(keys::ack(vip, host)), true),
                    Some(Key::V1Owner(vip)) => (
                        havip_schema::decode::<Owner>(kv.value())
                            .ok()
                            .filter(|o| havip_schema::rules::check_id("host", &o.host).is_ok())
                            .map(|o| keys::owner_report(vip, &o.host)),
                        false,
                    ),
                    _ => (None, false),
                };
                let Some(new) = new else {
                    log::error!("migrate: {old} cannot be moved (unreadable); kept");
                    done.kept.push(old);
                    continue;
                };
                let rev = kv.mod_revision();
                let moved = self
                    .commit(
                        vec![unchanged(&old, rev), absent(&new)],
                        vec![
                            TxnOp::put(new.as_str(), kv.value().to_vec(), None),
                            TxnOp::delete(old.as_str(), None),
                        ],
                    )
                    .await?
                    || self
                        .commit(
                            vec![unchanged(&old, rev)],
                            vec![TxnOp::delete(old.as_str(), None)],
                        )
                        .await?;
                match (moved, is_ack) {
                    (false, _) => done.kept.push(old),
                    (true, true) => done.acks += 1,
                    (true, false) => done.owners += 1,
                }
            }
        }
        if from != SCHEMA_VERSION {
            let version = SchemaVersion {
                version: SCHEMA_VERSION,
            };
            self.commit(vec![], vec![put(&keys::schema(), &version)])
                .await?;
        }
        if done.acks + done.owners > 0 || from != SCHEMA_VERSION {
            log::info!(
                "migrate: schema version {from} -> {SCHEMA_VERSION}: {} acks and {} owner reports moved, {} kept",
                done.acks,
                done.owners,
                done.kept.len()
            );
        }
        Ok(done)
    }
}
