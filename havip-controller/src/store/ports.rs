//! Ports (registered by orchestration) and the addresses they claim.

use std::collections::HashSet;
use std::net::IpAddr;

use etcd_client::TxnOp;
use havip_schema::guards::{absent, none_newer, unchanged};
use havip_schema::records::{self, Claim, HostPort, IdKind};
use havip_schema::{keys, rules, Mac};

use super::{backoff, lost_race, put, Scope, Store, RETRIES};
use crate::error::{Error, Result};
use crate::model::{Port, PortLimits, PortQuery, PutPort};

impl Store {
    /// Registers a port or changes an unbound one. Its fixed IPs are claimed
    /// in the subnet, so no HAVIP can take them (and it cannot take a VIP's).
    /// Refused: what no host could program (a group or zero MAC, an
    /// interface name Linux refuses or another port of the host has, a
    /// fixed IP that is not unicast or is reserved in the subnet).
    pub async fn put_port(&self, id: &str, req: &PutPort) -> Result<Port> {
        rules::check_id("port", id)?;
        rules::check_id("vm", &req.vm)?;
        rules::check_id("subnet", &req.subnet)?;
        rules::check_id("host", &req.host)?;
        rules::check_interface(&req.interface)?;
        let mac: Mac = req.mac.parse()?;
        if let Some(why) = mac.unicast_problem() {
            return Err(Error::invalid_argument(why));
        }
        let vlans = rules::check_vlans(&req.vlans)?;
        let link_locals = rules::check_link_locals(&req.link_locals)?;
        let fixed_ips: Vec<IpAddr> = {
            let mut seen = HashSet::new();
            req.fixed_ips
                .iter()
                .filter(|ip| seen.insert(**ip))
                .copied()
                .collect()
        };
        if let Some(ip) = fixed_ips.iter().find(|ip| !rules::is_unicast(ip)) {
            return Err(Error::invalid_argument(format!(
                "fixed ip {ip} is not a unicast address"
            )));
        }
        let key = keys::port(id);
        let subnet_key = keys::subnet(&req.subnet);
        for attempt in 0..RETRIES {
            let Some((subnet, subnet_rev)) = self.get::<records::Subnet>(&subnet_key).await? else {
                return Err(Error::not_found(format!("subnet {} not found", req.subnet)));
            };
            for ip in &fixed_ips {
                subnet.check_host_address(ip)?;
            }
            let existing = self.get::<records::Port>(&key).await?;
            let mut port = records::Port {
                id: id.to_string(),
                project: subnet.project.clone(),
                vm: req.vm.clone(),
                vpc: subnet.vpc.clone(),
                subnet: subnet.id.clone(),
                mac,
                fixed_ips: fixed_ips.clone(),
                host: req.host.clone(),
                interface: req.interface.clone(),
                vips: Vec::new(),
                vips_per_port: None,
                vlans: vlans.clone(),
                link_locals: link_locals.clone(),
                datapath_id: None,
            };
            // Two ports of one host with one interface would shadow each other.
            let host_prefix = keys::host_ports(&port.host);
            let (on_host, host_rev) = self.list::<HostPort>(&host_prefix).await?;
            if let Some((_, other, _)) = on_host
                .iter()
                .find(|(_, p, _)| p.port != id && p.interface == port.interface)
            {
                return Err(Error::conflict(format!(
                    "interface {} on host {} is already port {}'s",
                    port.interface, port.host, other.port
                )));
            }
            let mut compares = vec![
                unchanged(&subnet_key, subnet_rev),
                none_newer(&host_prefix, host_rev),
            ];
            let mut ops = Vec::new();
            let mut old_claims = HashSet::new();
            match &existing {
                Some((old, rev)) => {
                    if old.project != port.project {
                        return Err(Error::conflict(format!(
                            "port {id} already exists in another project"
                        )));
                    }
                    port.vips = old.vips.clone();
                    port.vips_per_port = old.vips_per_port;
                    port.datapath_id = old.datapath_id;
                    if !old.vips.is_empty() && *old != port {
                        let ids: Vec<&str> = old.vips.iter().map(|v| v.id.as_str()).collect();
                        return Err(Error::wrong_state(format!(
                            "port {id} is bound to {}; unbind it before changing it",
                            ids.join(", ")
                        )));
                    }
                    compares.push(unchanged(&key, *rev));
                    if old.host != port.host {
                        ops.push(TxnOp::delete(keys::host_port(&old.host, id), None));
                    }
                    old_claims = old
                        .claimed_addresses()
                        .map(|ip| keys::addr(&old.subnet, &ip))
                        .collect();
                }
                None => compares.push(absent(&key)),
            }
            if port.datapath_id.is_none() {
                let taken = self.next_datapath_id(IdKind::Ports).await?;
                compares.push(taken.compare);
                ops.push(taken.op);
                port.datapath_id = Some(taken.id);
            }
            let claim = Claim::Port {
                id: id.to_string(),
                vm: port.vm.clone(),
            };
            let mut new_claims = HashSet::new();
            for ip in port.claimed_addresses() {
                let ckey = keys::addr(&port.subnet, &ip);
                if !old_claims.contains(&ckey) {
                    if let Some((holder, _)) = self.get::<Claim>(&ckey).await? {
                        return Err(Error::address_in_use(format!(
                            "{ip} is already in use by {holder}"
                        )));
                    }
                    compares.push(absent(&ckey));
                }
                ops.push(put(&ckey, &claim));
                new_claims.insert(ckey);
            }
            for gone in old_claims.difference(&new_claims) {
                ops.push(TxnOp::delete(gone.as_str(), None));
            }
            ops.push(put(&key, &port));
            ops.push(put(
                &keys::host_port(&port.host, id),
                &HostPort::from(&port),
            ));
            if self.commit(compares, ops).await? {
                return Ok(Port::view(port, &Scope::Operator));
            }
            backoff(attempt).await;
        }
        Err(lost_race("put port"))
    }

    pub async fn get_port(&self, scope: &Scope, id: &str) -> Result<Port> {
        match self.read::<records::Port>(&keys::port(id)).await? {
            Some((p, _)) if scope.sees(&p.project) => Ok(Port::view(p, scope)),
            _ => Err(Error::not_found(format!("port {id} not found"))),
        }
    }

    pub async fn list_ports(&self, scope: &Scope, q: &PortQuery) -> Result<Vec<Port>> {
        let (ports, _) = self.list::<records::Port>(&keys::ports()).await?;
        Ok(ports
            .into_iter()
            .map(|(_, p, _)| p)
            .filter(|p| scope.sees(&p.project))
            .filter(|p| q.subnet.as_ref().is_none_or(|s| *s == p.subnet))
            .filter(|p| q.vm.as_ref().is_none_or(|vm| *vm == p.vm))
            .map(|p| Port::view(p, scope))
            .collect())
    }

    /// Removes an unbound port and releases its addresses.
    pub async fn delete_port(&self, id: &str) -> Result<()> {
        let key = keys::port(id);
        for attempt in 0..RETRIES {
            let Some((port, rev)) = self.get::<records::Port>(&key).await? else {
                return Err(Error::not_found(format!("port {id} not found")));
            };
            if !port.vips.is_empty() {
                let ids: Vec<&str> = port.vips.iter().map(|v| v.id.as_str()).collect();
                return Err(Error::wrong_state(format!(
                    "port {id} is bound to {}; unbind it first",
                    ids.join(", ")
                )));
            }
            let mut ops = vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(keys::host_port(&port.host, id), None),
            ];
            for ip in port.claimed_addresses() {
                ops.push(TxnOp::delete(keys::addr(&port.subnet, &ip), None));
            }
            if self.commit(vec![unchanged(&key, rev)], ops).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(lost_race("delete port"))
    }

    /// Operator override of the VIPs-per-port limit of one port.
    pub async fn set_port_limits(&self, id: &str, limits: &PortLimits) -> Result<Port> {
        havip_schema::limits::check("vips_per_port", limits.vips_per_port)?;
        let key = keys::port(id);
        for attempt in 0..RETRIES {
            let Some((mut port, rev)) = self.get::<records::Port>(&key).await? else {
                return Err(Error::not_found(format!("port {id} not found")));
            };
            port.vips_per_port = limits.vips_per_port;
            if self
                .commit(vec![unchanged(&key, rev)], vec![put(&key, &port)])
                .await?
            {
                return Ok(Port::view(port, &Scope::Operator));
            }
            backoff(attempt).await;
        }
        Err(lost_race("set port limits"))
    }

    /// The host projection of `host` (what its agent sees).
    pub async fn host_ports(&self, host: &str) -> Result<Vec<HostPort>> {
        let (ports, _) = self.list::<HostPort>(&keys::host_ports(host)).await?;
        Ok(ports.into_iter().map(|(_, p, _)| p).collect())
    }
}
