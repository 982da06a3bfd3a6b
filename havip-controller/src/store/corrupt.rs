//! The scan for corrupt records: every key under the root checked against
//! the schema, for the operator to repair.

use etcd_client::GetOptions;
use havip_schema::keys;

use super::Store;
use crate::error::Result;
use crate::model::{CorruptRecord, CorruptRecords};

impl Store {
    /// Every record under the root that does not decode or breaks the
    /// schema's rules, with why (operators only: it names etcd keys).
    pub async fn corrupt_records(&self) -> Result<CorruptRecords> {
        let resp = self
            .client
            .kv_client()
            .get(keys::root(), Some(GetOptions::new().with_prefix()))
            .await?;
        let records = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let problem = havip_schema::check_record(&key, kv.value()).err()?;
                Some(CorruptRecord {
                    key,
                    problem: problem.to_string(),
                })
            })
            .collect();
        Ok(CorruptRecords {
            records,
            skipped_reads: self.skipped_reads(),
        })
    }
}
