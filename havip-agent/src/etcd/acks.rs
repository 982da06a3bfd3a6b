//! The acknowledgements to the controller (`acks/<vip>/<host>`): each VIP
//! bound to a port of this host is `programmed`, or `failed` with the
//! reason: a bad record, no room in the maps, a port not programmed or not
//! protected.

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use havip_schema::{
    keys,
    records::{Ack, AckResult},
};
use log::{debug, warn};

use super::{guarded_put, EtcdSource, SourceError};
use crate::{datapath::Datapath, shortfall::Unprogrammed};

impl EtcdSource {
    /// Acknowledges again after a reconcile changed which ports are
    /// protected (a retried attach succeeded, or one failed).
    pub async fn reacknowledge(&mut self, dp: &Datapath) {
        if !self.connected() {
            return; // the resync acknowledges everything
        }
        if let Err(e) = self.acknowledge(dp, None).await {
            warn!("etcd: cannot acknowledge: {e}; will retry");
            self.conn.down(false, Duration::ZERO);
        }
    }

    /// Puts `acks/<vip>/<host>` for each VIP bound to a port of this host
    /// whose (generation, result) we have not acknowledged yet. A VIP that
    /// this host cannot program (a bad record, no room in the maps), or
    /// that is bound to a port of this host that is not programmed or not
    /// protected (its programs could not be attached), is `failed` with
    /// that reason, never `programmed`. A VIP whose record cannot be read
    /// is acknowledged `failed` at the generation it carries, if it tells.
    pub(super) async fn acknowledge(
        &mut self,
        dp: &Datapath,
        apply_error: Option<String>,
    ) -> Result<(), SourceError> {
        let client = self
            .conn
            .watching_client()
            .ok_or(SourceError::WatchEnded)?
            .clone();
        let host = self.opts.host.clone();
        let mut due: Vec<(String, u64, Option<String>)> = Vec::new();
        for (id, vip) in &self.snapshot.vips {
            let local: Vec<&str> = vip
                .ports
                .iter()
                .filter(|b| b.host == host)
                .map(|b| b.port.as_str())
                .collect();
            if local.is_empty() {
                continue;
            }
            let in_force = (dp.unprogrammed(), dp.unprotected_ports());
            let reason = self.failure(in_force, id, &local, apply_error.as_deref());
            due.push((id.clone(), vip.generation, reason));
        }
        for (id, bad) in &self.snapshot.bad.vips {
            match bad.generation {
                Some(g) if bad.hosts.contains(&host) => {
                    due.push((id.clone(), g, Some(bad.problem())));
                }
                _ => {}
            }
        }
        for (id, generation, reason) in due {
            let result = if reason.is_some() {
                AckResult::Failed
            } else {
                AckResult::Programmed
            };
            let want = (generation, result, reason.clone());
            if self.acked.get(&id) == Some(&want) {
                continue;
            }
            let ack = Ack {
                generation,
                result,
                reason,
                at: Utc::now(),
            };
            let done = guarded_put(&client, &id, &keys::ack(&id, &host), &ack).await?;
            if done.is_some() {
                debug!("etcd: acked {id} generation {generation} ({result:?})");
                self.acked.insert(id, want);
            }
        }
        Ok(())
    }

    /// Why VIP `id`, bound to the `local` ports of this host, is not in
    /// force here, if it is not.
    fn failure(
        &self,
        (unprogrammed, unprotected): (&Unprogrammed, &BTreeMap<u32, String>),
        id: &str,
        local: &[&str],
        apply_error: Option<&str>,
    ) -> Option<String> {
        if let Some(problem) = self.programmed.problems.get(id) {
            return Some(problem.clone());
        }
        if let Some(e) = apply_error {
            return Some(e.to_owned());
        }
        if let Some(why) = unprogrammed.vips.get(&self.vip_datapath_id(id)) {
            return Some(format!("not programmed on its host: {why}"));
        }
        local.iter().find_map(|port| {
            if let Some(problem) = self.programmed.port_problems.get(*port) {
                return Some(format!(
                    "port {port} is not programmed on its host: {problem}"
                ));
            }
            let why = unprotected.get(&self.port_datapath_id(port))?;
            Some(format!("port {port} is not protected on its host: {why}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::{numeric_id, EtcdOptions};

    /// Why a VIP bound to port-1 of hv-a is acked failed, if it is: the
    /// first reason that holds, in this order.
    #[test]
    fn a_vip_is_acked_failed_for_the_first_reason_that_holds() {
        #[derive(Default)]
        struct Case {
            what: &'static str,
            problem: bool,
            apply_error: bool,
            full: bool,
            port_problem: bool,
            unprotected: bool,
            reason: Option<&'static str>,
        }
        let cases = [
            Case {
                what: "all in force",
                reason: None,
                ..Case::default()
            },
            Case {
                what: "its record",
                problem: true,
                full: true,
                unprotected: true,
                reason: Some("its address is outside"),
                ..Case::default()
            },
            Case {
                what: "the apply",
                apply_error: true,
                full: true,
                reason: Some("map havip_ports: cannot write"),
                ..Case::default()
            },
            Case {
                what: "a full map",
                full: true,
                unprotected: true,
                reason: Some("not programmed on its host: no free VIP slot"),
                ..Case::default()
            },
            Case {
                what: "its port's record",
                port_problem: true,
                unprotected: true,
                reason: Some("port port-1 is not programmed on its host: its record is bad"),
                ..Case::default()
            },
            Case {
                what: "its port's programs",
                unprotected: true,
                reason: Some("port port-1 is not protected on its host: tap-vm1: busy"),
                ..Case::default()
            },
        ];
        for c in cases {
            let mut source = EtcdSource::new(EtcdOptions {
                endpoints: vec![],
                host: "hv-a".into(),
                tls: None,
                cache: None,
            });
            if c.problem {
                source
                    .programmed
                    .problems
                    .insert("havip-web".into(), "its address is outside".into());
            }
            if c.port_problem {
                source
                    .programmed
                    .port_problems
                    .insert("port-1".into(), "its record is bad".into());
            }
            let mut unprogrammed = Unprogrammed::default();
            if c.full {
                let why = "no free VIP slot".to_string();
                unprogrammed.vips.insert(numeric_id("havip-web"), why);
            }
            let mut unprotected = BTreeMap::new();
            if c.unprotected {
                unprotected.insert(numeric_id("port-1"), "tap-vm1: busy".to_string());
            }
            let apply_error = c.apply_error.then_some("map havip_ports: cannot write");
            let got = source.failure(
                (&unprogrammed, &unprotected),
                "havip-web",
                &["port-1"],
                apply_error,
            );
            assert_eq!(got.as_deref(), c.reason, "{}", c.what);
        }
    }
}
