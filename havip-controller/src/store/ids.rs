//! The datapath ids of subnets, ports and VIPs: dense, never 0, never
//! given twice (a counter per kind, taken in the creating transaction).

use etcd_client::{Compare, TxnOp};
use havip_schema::guards::unchanged;
use havip_schema::keys;
use havip_schema::records::{IdCounter, IdKind};

use super::{put, Store};
use crate::error::{Error, Result};

/// A datapath id taken: the id, and the compare and write that take it
/// in the caller's transaction (a racing create loses the compare).
pub(super) struct TakenId {
    pub id: u32,
    pub compare: Compare,
    pub op: TxnOp,
}

impl Store {
    /// The next datapath id of `kind`.
    pub(super) async fn next_datapath_id(&self, kind: IdKind) -> Result<TakenId> {
        let key = keys::ids(kind);
        let (counter, rev) = self
            .get::<IdCounter>(&key)
            .await?
            .unwrap_or((IdCounter::default(), 0));
        let id = counter.next.max(1);
        let next = id.checked_add(1).ok_or_else(|| {
            Error::quota_exceeded(format!("the datapath ids of {} are used up", kind.as_str()))
        })?;
        Ok(TakenId {
            id,
            compare: unchanged(&key, rev),
            op: put(&key, &IdCounter { next }),
        })
    }
}
