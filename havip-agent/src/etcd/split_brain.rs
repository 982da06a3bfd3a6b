//! The split brain of a VIP whose owner is on this host, as the etcd
//! source reports it: in the owner record, rewritten as the condition
//! begins and clears, and the pending claims the damper applies.

use havip_schema::records::SplitBrain as SplitBrainRecord;
use log::warn;

use super::{is_local, owner_event, EtcdSource};
use crate::{
    damping::{split_brain, Settled},
    datapath::Datapath,
    util::BpfClock,
};

impl EtcdSource {
    /// A port's etcd id (its datapath id when it is not one of ours).
    fn port_name(&self, port_id: u32) -> String {
        self.programmed
            .port_ids
            .get(&port_id)
            .cloned()
            .unwrap_or_else(|| port_id.to_string())
    }

    /// Reports what the damper did: a pending claim applied is an owner
    /// change; a split brain that begins or clears rewrites the owner
    /// record with its condition.
    pub async fn settled(&mut self, dp: &mut Datapath, vip_id: u32, settled: Settled) {
        match settled {
            Settled::Applied(o) => self.owner_changed(dp, owner_event(vip_id, &o)).await,
            Settled::Began(_) | Settled::Cleared => {
                let Some(o) = dp.owner(vip_id).filter(is_local) else {
                    return; // the owner's host reports the condition
                };
                let Some(vip) = self.programmed.vip_ids.get(&vip_id).cloned() else {
                    return;
                };
                if !self.connected() {
                    return; // the resync reports the owner, condition and all
                }
                if let Err(e) = self.report_current(dp, &vip, vip_id, o).await {
                    warn!("etcd: cannot report the split brain of {vip}: {e}");
                }
            }
        }
    }

    /// The split brain of vip `vip_id` as its owner record carries it.
    pub(super) fn split_brain_record(
        &self,
        dp: &Datapath,
        vip_id: u32,
        clock: &BpfClock,
    ) -> Option<SplitBrainRecord> {
        let (o, hold_down_ns) = dp.damped_owner(vip_id)?;
        let c = split_brain(&o, hold_down_ns, clock.mono_now_ns())?;
        Some(SplitBrainRecord {
            ports: c.ports.iter().map(|p| self.port_name(*p)).collect(),
            pending: c.pending.then(|| self.port_name(c.ports[1])),
        })
    }
}
