//! The reconcile: the maps and the ports' attachments brought in line with
//! the desired state in force, as a sequence of named steps (see
//! [`Datapath::reconcile`]). Deletes come before inserts, so a full map has
//! room for what replaces what goes; what stays is updated in place, never
//! missing; what does not fit is not programmed, and reported.

use std::collections::{BTreeSet, HashMap};

use aya::maps::MapError;
use havip_common::{
    maps::{self, MAX_ADDRS, MAX_PORTS, MAX_VMACS},
    NetworkAddr, Port, Vip, VirtualMac, BPF_F_LOCK,
};
use log::{info, warn};

use super::{map_err, read_all, remove_entry, ApplySummary, Attachment, Datapath, DatapathError};
use crate::{
    desired::{diff, vacated, vip_diff, Diff, OwnerAction},
    shortfall::{insert_each, insert_failure, Unprogrammed},
    slots::{vip_filter, Assignment},
    util::{format_mac, ifindex_of, ip_of},
};

/// The desired state resolved against the interfaces that exist now.
struct Resolved {
    /// interface -> ifindex, for the ports whose interface exists.
    interfaces: HashMap<String, u32>,
    /// ifindex -> port entry, for those ports.
    ports: HashMap<u32, Port>,
}

/// What the map steps work from: the maps as they were, the writes that
/// bring them to the desired state, and what the VIP map holds as the steps
/// go.
struct MapPlan {
    cur_vips: HashMap<NetworkAddr, Vip>,
    assignment: Assignment,
    /// The desired VIPs that have a slot, their slot set.
    vips: HashMap<NetworkAddr, Vip>,
    vip_writes: Diff<NetworkAddr, Vip>,
    addr_writes: Diff<NetworkAddr, u32>,
    vmac_writes: Diff<VirtualMac, u32>,
    in_map: HashMap<NetworkAddr, Vip>,
    unprogrammed: Unprogrammed,
}

impl Datapath {
    /// Re-resolves the ports' interfaces and brings the maps and attachments
    /// in line with the desired state in force. Called after an apply, on
    /// every relevant link event and by the retry timer.
    pub fn reconcile(&mut self) -> Result<ApplySummary, DatapathError> {
        let mut s = ApplySummary::default();
        let resolved = self.resolve();
        self.detach_stale(&resolved, &mut s)?;
        let mut plan = self.plan_maps()?;
        self.delete_stale_entries(&mut plan, &mut s)?;
        self.write_entries(&resolved, &mut plan, &mut s)?;
        self.forget_learned_link_locals()?;
        self.attach_new_ports(&resolved, &mut s)?;
        let redirects = self.add_redirect_targets()?;
        self.vacate_owners(&resolved, &plan, &mut s)?;
        self.remove_redirect_targets(redirects)?;
        Ok(s)
    }

    /// 2d. Learned link-locals of ports that are gone (or moved to another
    ///     network), and of addresses a port now has registered, are
    ///     forgotten (see [`crate::learned`]).
    fn forget_learned_link_locals(&mut self) -> Result<(), DatapathError> {
        let gone = self
            .learned
            .forget_stale(&self.desired)
            .map_err(map_err(maps::LL_PORTS, "cannot forget learned link-locals"))?;
        for (port_id, addr) in gone {
            info!(
                "port {port_id}: forgot the link-local it learned, {}",
                std::net::Ipv6Addr::from(addr.addr)
            );
        }
        Ok(())
    }

    /// Which interfaces the desired ports are on now. A port gone, or
    /// whose interface is gone, is no longer "unprotected".
    fn resolve(&mut self) -> Resolved {
        let interfaces: HashMap<String, u32> = self
            .desired
            .ports
            .keys()
            .filter_map(|n| ifindex_of(n).map(|i| (n.clone(), i)))
            .collect();
        let ports = self
            .desired
            .ports_by_ifindex(|n| interfaces.get(n).copied());
        let present: BTreeSet<u32> = ports.values().map(|p| p.port_id).collect();
        self.unprotected.retain(|id, _| present.contains(id));
        Resolved { interfaces, ports }
    }

    /// 1. Detaches from interfaces that are gone, renamed, or no longer
    ///    ports.
    fn detach_stale(&mut self, r: &Resolved, s: &mut ApplySummary) -> Result<(), DatapathError> {
        let stale: Vec<u32> = self
            .attached
            .iter()
            .filter(|(ifx, a)| {
                r.interfaces.get(&a.interface) != Some(*ifx)
                    || r.ports.get(ifx).map(|p| p.port_id) != Some(a.port_id)
            })
            .map(|(ifx, _)| *ifx)
            .collect();
        for ifx in stale {
            let a = self.attached.remove(&ifx).expect("listed above");
            self.detach(ifx, a)?;
            s.detached += 1;
        }
        Ok(())
    }

    /// 2. Slots: the VIPs that stay keep theirs, the ones that go give
    ///    theirs back, new ones take the free ones (a slot freed now
    ///    included); a VIP that finds none is not programmed, and says so.
    ///    And the writes that bring the VIP and address maps where they go.
    fn plan_maps(&mut self) -> Result<MapPlan, DatapathError> {
        let cur_vips = read_all(&self.vips, maps::VIPS)?;
        let cur_addrs = read_all(&self.addrs, maps::ADDRS)?;
        let cur_vmacs = read_all(&self.vmacs, maps::VMACS)?;
        let vip_ids = self.desired.vip_addrs.keys().copied().collect();
        let assignment = self.vip_slots.assign(&vip_ids);
        let mut unprogrammed = Unprogrammed::default();
        let max_vips = self.vip_slots.capacity();
        for vip_id in &assignment.full {
            let why = format!(
                "no free VIP slot (this host holds at most {max_vips} VIPs: havip-agent run \
                 --max-vips)"
            );
            unprogrammed.vips.insert(*vip_id, why);
        }
        let vips: HashMap<NetworkAddr, Vip> = self
            .desired
            .vips
            .iter()
            .filter_map(|(addr, vip)| {
                let slot = self.vip_slots.get(vip.vip_id)?;
                Some((*addr, Vip { slot, ..*vip }))
            })
            .collect();
        Ok(MapPlan {
            vip_writes: vip_diff(&cur_vips, &vips),
            addr_writes: diff(&cur_addrs, &self.desired.addrs),
            vmac_writes: diff(&cur_vmacs, &self.desired.vmacs),
            in_map: cur_vips.clone(),
            cur_vips,
            assignment,
            vips,
            unprogrammed,
        })
    }

    /// 2b. Deletes, so that what comes in next finds room: the filter
    ///     stops pointing at the VIPs that go, they go (so no claim is
    ///     judged on stale bindings), their slots are reset (for the VIP
    ///     that takes one now, else for nobody), the addresses that go.
    fn delete_stale_entries(
        &mut self,
        p: &mut MapPlan,
        s: &mut ApplySummary,
    ) -> Result<(), DatapathError> {
        p.in_map
            .retain(|addr, _| !p.vip_writes.remove.contains(addr));
        self.write_filter(&vip_filter(&p.in_map))?;
        for addr in &p.vip_writes.remove {
            remove_entry(&mut self.vips, maps::VIPS, addr)?;
        }
        for (vip_id, slot) in &p.assignment.freed {
            // A record with a generation was learned (or vacated after it
            // was); a slot given to the VIP and never claimed has none.
            if self
                .owner_at(*slot, *vip_id)
                .is_some_and(|o| o.generation != 0)
            {
                s.owners_deleted += 1;
            }
        }
        for (_, slot) in p.assignment.vacant() {
            self.reset_vip_slot(0, slot)?;
        }
        for (vip_id, slot) in &p.assignment.fresh {
            self.reset_vip_slot(*vip_id, *slot)?;
        }
        for addr in &p.addr_writes.remove {
            remove_entry(&mut self.addrs, maps::ADDRS, addr)?;
        }
        for vmac in &p.vmac_writes.remove {
            remove_entry(&mut self.vmacs, maps::VMACS, vmac)?;
        }
        s.vips.removed = p.cur_vips.len() - p.in_map.len();
        s.addrs.removed = p.addr_writes.remove.len();
        Ok(())
    }

    /// 3. Inserts and updates: ports that stay attached, addresses, VIPs
    ///    (one that does not fit is not programmed, the others are), then
    ///    the filter that points at them.
    fn write_entries(
        &mut self,
        r: &Resolved,
        p: &mut MapPlan,
        s: &mut ApplySummary,
    ) -> Result<(), DatapathError> {
        let staying: Vec<(u32, Port)> = self
            .attached
            .iter()
            .filter_map(|(ifx, a)| r.ports.get(ifx).map(|port| (a.links.slot, *port)))
            .collect();
        for (slot, port) in staying {
            if self.set_port(slot, &port)? {
                s.ports.written += 1;
            }
        }
        let failed = insert_each(&mut self.addrs, &p.addr_writes.upsert);
        s.addrs.written = p.addr_writes.upsert.len() - failed.len();
        for (addr, e) in failed {
            let port = self.desired.addrs[&addr];
            let why = insert_failure(maps::ADDRS, MAX_ADDRS, &e);
            p.unprogrammed.addrs.insert((port, ip_of(&addr)), why);
        }
        // A virtual MAC that does not fit is one its port may not use:
        // its frames are dropped, as before it was bound.
        for (vmac, e) in insert_each(&mut self.vmacs, &p.vmac_writes.upsert) {
            let why = insert_failure(maps::VMACS, MAX_VMACS, &e);
            warn!(
                "port {}: may not send from virtual MAC {}: {why}",
                vmac.port_id,
                format_mac(&vmac.mac)
            );
        }
        let failed = insert_each(&mut self.vips, &p.vip_writes.upsert);
        s.vips.written = p.vip_writes.upsert.len() - failed.len();
        p.in_map.extend(p.vip_writes.upsert.iter().copied());
        for (addr, e) in failed {
            let vip = p.vips[&addr];
            let why = insert_failure(maps::VIPS, self.vip_slots.capacity(), &e);
            match p.in_map.remove(&addr) {
                // Its entry before this apply stays (its old bindings).
                Some(_)
                    if p.cur_vips.contains_key(&addr) && !p.vip_writes.remove.contains(&addr) =>
                {
                    p.in_map.insert(addr, p.cur_vips[&addr]);
                }
                // Not in the map: its slot is free for the next reconcile.
                _ => drop(self.vip_slots.give_back(vip.vip_id)),
            }
            p.unprogrammed.vips.insert(vip.vip_id, why);
        }
        self.write_filter(&vip_filter(&p.in_map))?;
        p.unprogrammed.log_changes(&self.unprogrammed, &self.config);
        self.unprogrammed = std::mem::take(&mut p.unprogrammed);
        Ok(())
    }

    /// 4. Attaches the programs where a port's interface exists, its entry
    ///    written first so they never run without it. A port that cannot be
    ///    attached is not protected, and says so, until a reconcile
    ///    attaches it.
    fn attach_new_ports(
        &mut self,
        r: &Resolved,
        s: &mut ApplySummary,
    ) -> Result<(), DatapathError> {
        let mut new_ports: Vec<(u32, Port)> = r
            .ports
            .iter()
            .filter(|(ifx, _)| !self.attached.contains_key(ifx))
            .map(|(ifx, port)| (*ifx, *port))
            .collect();
        new_ports.sort_by_key(|(ifx, _)| *ifx);
        let mut used: BTreeSet<u32> = self.attached.values().map(|a| a.links.slot).collect();
        for (ifx, port) in new_ports {
            let interface = self.desired.port_interfaces[&port.port_id].clone();
            let label = self.config.port_label(port.port_id);
            let Some(slot) = (0..MAX_PORTS).find(|s| !used.contains(s)) else {
                let why = format!("no free port slot (this host holds at most {MAX_PORTS})");
                warn!("{label}: {why}; not protected");
                self.unprotected
                    .insert(port.port_id, format!("{interface}: {why}"));
                s.attach_failures += 1;
                continue;
            };
            if self.set_port(slot, &port)? {
                s.ports.written += 1;
            }
            self.unprotected.remove(&port.port_id);
            match self.attach(ifx, &interface, slot) {
                Ok(links) => {
                    info!(
                        "{label}: attached XDP ({} mode) and TC egress ({}) to {interface} \
                         (ifindex {ifx}, slot {slot})",
                        links.mode, links.egress
                    );
                    used.insert(slot);
                    let a = Attachment {
                        interface,
                        port_id: port.port_id,
                        links,
                        netlink_kept: false,
                    };
                    self.attached.insert(ifx, a);
                    s.attached += 1;
                }
                Err(e) => {
                    warn!("{label}: {interface} (ifindex {ifx}): {e}; not protected, retrying");
                    self.set_port(slot, &Port::default())?;
                    self.unprotected
                        .insert(port.port_id, format!("{interface}: {e}"));
                    s.attach_failures += 1;
                }
            }
        }
        Ok(())
    }

    /// 4b. Redirect targets: the ports the programs are attached to.
    /// Returns the targets that were there before.
    fn add_redirect_targets(&mut self) -> Result<Vec<u32>, DatapathError> {
        let before: Vec<u32> = self
            .redirect
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(maps::REDIRECT, "cannot read"))?;
        for ifx in self.attached.keys() {
            if !before.contains(ifx) {
                self.redirect
                    .insert(*ifx, *ifx, None, 0)
                    .map_err(|source| DatapathError::Redirect {
                        ifindex: *ifx,
                        source,
                    })?;
            }
        }
        Ok(before)
    }

    /// 5. Owners: vacates the ones no longer entitled (the VIP moved, the
    ///    port unbound or on another interface).
    fn vacate_owners(
        &mut self,
        r: &Resolved,
        p: &MapPlan,
        s: &mut ApplySummary,
    ) -> Result<(), DatapathError> {
        let cur_vip_addr: HashMap<u32, NetworkAddr> =
            p.cur_vips.iter().map(|(a, v)| (v.vip_id, *a)).collect();
        let port_ifindex = |port_id: u32| {
            self.desired
                .port_interfaces
                .get(&port_id)
                .and_then(|n| r.interfaces.get(n).copied())
        };
        let mut vacate = Vec::new();
        for (vip_id, slot) in self.vip_slots.iter() {
            let Some(owner) = self.owner(vip_id) else {
                continue;
            };
            let action =
                self.desired
                    .owner_action(vip_id, &owner, cur_vip_addr.get(&vip_id), port_ifindex);
            if action == OwnerAction::Vacate {
                vacate.push((vip_id, slot, owner));
            }
        }
        for (vip_id, slot, owner) in vacate {
            // The datapath may have learned a new owner since we read it.
            if self.owner(vip_id) != Some(owner) {
                continue;
            }
            self.owners
                .set(slot, vacated(&owner).sealed(), BPF_F_LOCK)
                .map_err(map_err(maps::OWNERS, "cannot vacate"))?;
            info!(
                "{}: owner port {} ({}) vacated, generation {}",
                self.config.vip_label(vip_id),
                owner.port_id,
                format_mac(&owner.mac),
                owner.generation
            );
            s.owners_vacated += 1;
        }
        Ok(())
    }

    /// 6. Removes the redirect targets no program is attached to.
    fn remove_redirect_targets(&mut self, before: Vec<u32>) -> Result<(), DatapathError> {
        for ifx in before {
            if !self.attached.contains_key(&ifx) {
                match self.redirect.remove(ifx) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(maps::REDIRECT, "cannot remove")(e)),
                }
            }
        }
        Ok(())
    }
}
