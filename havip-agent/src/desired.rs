//! The desired state: a validated [`Config`] turned into the exact contents
//! of the datapath's maps, and the rules that bring the maps there by diff.
//!
//! Everything here is pure (no syscalls), so it is unit-tested on any host.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    net::IpAddr,
};

use havip_common::{
    port::{PORT_BOUND, PORT_SECURITY},
    vip::MAX_BINDINGS,
    NetworkAddr, Owner, Port, Vip, VirtualMac,
};

use crate::{config::Config, util::network_addr};

/// The desired contents of the maps, before interfaces are resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Port entry of each port, by interface name. Its `ifindex` is known
    /// only once the interface exists, and its slot in `havip_ports` once
    /// its programs are attached there.
    pub ports: BTreeMap<String, Port>,
    /// `havip_addrs`: each fixed address (link-locals included) -> its
    /// port id.
    pub addrs: HashMap<NetworkAddr, u32>,
    /// `havip_vips`: each VIP address -> the VIP and its bound ports (slot
    /// 0 here: the datapath gives each VIP its slot).
    pub vips: HashMap<NetworkAddr, Vip>,
    /// vip id -> its address.
    pub vip_addrs: BTreeMap<u32, NetworkAddr>,
    /// port id -> its interface name.
    pub port_interfaces: HashMap<u32, String>,
    /// `havip_vmacs`: the VRRP virtual MACs each bound port may send from
    /// (its VIPs' VRIDs, or VRID 0 for "any" when a VIP has none) -> 1.
    pub vmacs: HashMap<VirtualMac, u32>,
}

impl Desired {
    /// Computes the map contents of a validated configuration.
    pub fn from_config(config: &Config) -> Self {
        let mut d = Desired::default();
        for p in config.ports.values() {
            let mut port = Port {
                port_id: p.id,
                network: p.network,
                mac: p.mac,
                flags: if p.port_security { PORT_SECURITY } else { 0 },
                link_local: p.link_local.octets(),
                ..Port::default()
            };
            port.set_vlans(&p.vlans);
            for ip in &p.ips {
                match ip {
                    IpAddr::V4(a) => port.add_ipv4(a.octets()),
                    IpAddr::V6(a) => port.add_ipv6(a.octets()),
                }
            }
            d.ports.insert(p.interface.clone(), port);
            d.port_interfaces.insert(p.id, p.interface.clone());
            // Its own and its registered link-locals are its fixed
            // addresses too: the datapath accepts them from it, and learns
            // none of them for another port.
            let link_locals = std::iter::once(&p.link_local).chain(&p.link_locals);
            for ip in p
                .ips
                .iter()
                .copied()
                .chain(link_locals.map(|a| IpAddr::V6(*a)))
            {
                d.addrs.insert(network_addr(p.network, ip), p.id);
            }
        }
        for v in config.vips.values() {
            let key = network_addr(v.network, v.address);
            let mut vip = Vip {
                vip_id: v.id,
                slot: 0,
                port_count: v.ports.len() as u32,
                ports: [0; MAX_BINDINGS],
                hold_down_ms: v.hold_down_ms,
            };
            // Validation bounds ports.len() by max_ports_per_vip <= MAX_BINDINGS.
            for (slot, port) in vip.ports.iter_mut().zip(&v.ports) {
                *slot = *port;
            }
            d.vips.insert(key, vip);
            d.vip_addrs.insert(v.id, key);
            for port_id in &v.ports {
                let vmac = VirtualMac::new(*port_id, v.address.is_ipv6(), v.vrid.unwrap_or(0));
                d.vmacs.insert(vmac, 1);
            }
        }
        // A bound port takes part in VRRP (see havip-ebpf's vrrp.rs).
        let bound: std::collections::HashSet<u32> = config
            .vips
            .values()
            .flat_map(|v| v.ports.iter().copied())
            .collect();
        for port in d.ports.values_mut() {
            if bound.contains(&port.port_id) {
                port.flags |= PORT_BOUND;
            }
        }
        d
    }

    /// The port entries by ifindex, given which interfaces exist now.
    pub fn ports_by_ifindex(&self, ifindex_of: impl Fn(&str) -> Option<u32>) -> HashMap<u32, Port> {
        self.ports
            .iter()
            .filter_map(|(name, port)| {
                ifindex_of(name).map(|ifindex| (ifindex, Port { ifindex, ..*port }))
            })
            .collect()
    }

    /// The Vip entry of vip `vip_id`.
    pub fn vip(&self, vip_id: u32) -> Option<&Vip> {
        self.vip_addrs.get(&vip_id).and_then(|a| self.vips.get(a))
    }

    /// What to do with the current owner record of vip `vip_id`.
    ///
    /// - `current_addr`: the VIP's address in the `havip_vips` map now (before
    ///   this apply), if it was there;
    /// - `port_ifindex`: the ifindex the owner's port has once this apply is
    ///   done (`None` when its interface is absent or the port is gone).
    ///
    /// An owner stays only while the VIP keeps its address, the owner's port
    /// stays bound to it, and that port is still on the interface the owner
    /// was learned on (an owner on another host stays while bound).
    pub fn owner_action(
        &self,
        vip_id: u32,
        owner: &Owner,
        current_addr: Option<&NetworkAddr>,
        port_ifindex: impl Fn(u32) -> Option<u32>,
    ) -> OwnerAction {
        let Some(addr) = self.vip_addrs.get(&vip_id) else {
            return OwnerAction::Delete;
        };
        if owner.is_vacant() {
            return OwnerAction::Keep;
        }
        let moved = current_addr.is_some_and(|a| a != addr);
        let bound = self
            .vips
            .get(addr)
            .is_some_and(|v| v.is_bound(owner.port_id));
        // An owner on another host (ifindex 0, set from the controller)
        // has no local link to lose.
        let remote = owner.ifindex == 0 && !self.port_interfaces.contains_key(&owner.port_id);
        let same_link = remote || port_ifindex(owner.port_id) == Some(owner.ifindex);
        if !moved && bound && same_link {
            OwnerAction::Keep
        } else {
            OwnerAction::Vacate
        }
    }
}

/// What the agent does to one `havip_owners` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAction {
    /// Leave it alone (the datapath owns it).
    Keep,
    /// Clear the owner, keeping the generation.
    Vacate,
    /// The VIP no longer exists: remove the entry.
    Delete,
}

/// `owner` without its owner: port 0, ifindex 0, MAC zero, same generation
/// and times.
pub fn vacated(owner: &Owner) -> Owner {
    Owner {
        port_id: 0,
        ifindex: 0,
        mac: [0; 6],
        pending: 0,
        ..*owner
    }
}

/// The writes that take a map from `current` to `desired`.
#[derive(Debug, PartialEq, Eq)]
pub struct Diff<K, V> {
    /// Keys missing or holding another value.
    pub upsert: Vec<(K, V)>,
    /// Keys that should not be there.
    pub remove: Vec<K>,
}

impl<K, V> Diff<K, V> {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// Compares two map contents.
pub fn diff<K: Eq + Hash + Copy, V: PartialEq + Copy>(
    current: &HashMap<K, V>,
    desired: &HashMap<K, V>,
) -> Diff<K, V> {
    let upsert = desired
        .iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .map(|(k, v)| (*k, *v))
        .collect();
    let remove = current
        .keys()
        .filter(|k| !desired.contains_key(k))
        .copied()
        .collect();
    Diff { upsert, remove }
}

/// The writes that take the VIP map from `current` to `desired`, deletes
/// first: an address that is no VIP's any more, or now another VIP's or at
/// another slot, is removed (before its slot is reset or given to another
/// VIP), then what is missing or changed is inserted. A VIP that keeps its
/// address, id and slot is updated in place (its bindings), so it is never
/// missing meanwhile.
pub fn vip_diff(
    current: &HashMap<NetworkAddr, Vip>,
    desired: &HashMap<NetworkAddr, Vip>,
) -> Diff<NetworkAddr, Vip> {
    let mut d = diff(current, desired);
    d.remove.extend(current.iter().filter_map(|(addr, now)| {
        let want = desired.get(addr)?;
        (want.vip_id != now.vip_id || want.slot != now.slot).then_some(*addr)
    }));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[networks]]
id = 1
cidrs = ["10.0.6.0/24", "fd00:6::/64"]

[[ports]]
id = 11
interface = "tap-vm1"
network = 1
mac = "02:00:00:00:00:11"
ips = ["10.0.6.9", "fd00:6::9"]
link_locals = ["fe80::5:11"]
vlans = [10, 20]

[[ports]]
id = 12
interface = "tap-vm2"
network = 1
mac = "02:00:00:00:00:12"
ips = ["10.0.6.10"]
port_security = false

[[vips]]
id = 1
network = 1
address = "10.0.6.19"
ports = [11, 12]
vrid = 111

[[vips]]
id = 2
network = 1
address = "fd00:6::19"
ports = [12]
"#;

    fn desired() -> Desired {
        Desired::from_config(&CONFIG.parse().unwrap())
    }

    fn v4(a: [u8; 4]) -> NetworkAddr {
        NetworkAddr::v4(1, a)
    }

    #[test]
    fn map_contents() {
        let d = desired();
        let vm1 = d.ports["tap-vm1"];
        assert_eq!(vm1.port_id, 11);
        assert_eq!(vm1.network, 1);
        assert_eq!(vm1.mac, [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(vm1.flags, PORT_SECURITY | PORT_BOUND, "bound to vip 1");
        assert_eq!(
            vm1.link_local,
            "fe80::ff:fe00:11"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(d.ports["tap-vm2"].flags, PORT_BOUND);
        // The port's own addresses, inline for the datapath.
        assert_eq!((vm1.ipv4_count, vm1.ipv4[0]), (1, [10, 0, 6, 9]));
        assert_eq!(vm1.ipv6_count, 1);
        assert_eq!(&vm1.ipv6[0][..2], &[0xfd, 0x00]);

        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0xfd, 0x00]);
        v6[3] = 6;
        v6[15] = 9;
        // Allowed VLANs, inline too.
        assert_eq!((vm1.vlan_count, &vm1.vlans[..2]), (2, &[10, 20][..]));
        assert_eq!(d.ports["tap-vm2"].vlan_count, 0);
        // Fixed addresses: the IPs, each port's own link-local and the
        // registered ones.
        let ll = |s: &str| NetworkAddr::v6(1, s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(
            d.addrs,
            HashMap::from([
                (v4([10, 0, 6, 9]), 11),
                (NetworkAddr::v6(1, v6), 11),
                (ll("fe80::ff:fe00:11"), 11),
                (ll("fe80::5:11"), 11),
                (v4([10, 0, 6, 10]), 12),
                (ll("fe80::ff:fe00:12"), 12),
            ])
        );

        let web = d.vips[&v4([10, 0, 6, 19])];
        assert_eq!(web.vip_id, 1);
        assert_eq!(web.port_count, 2);
        assert_eq!(web.ports[..3], [11, 12, 0]);
        assert!(web.is_bound(12) && !web.is_bound(13));
        assert_eq!(d.vip(2).unwrap().ports[..2], [12, 0]);
        assert_eq!(d.vip_addrs.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        // Vip 1's VRID for its ports; vip 2 names none: any IPv6 VRID.
        assert_eq!(
            d.vmacs,
            HashMap::from([
                (VirtualMac::new(11, false, 111), 1),
                (VirtualMac::new(12, false, 111), 1),
                (VirtualMac::new(12, true, 0), 1),
            ])
        );
    }

    #[test]
    fn a_port_bound_to_no_vip_is_not_marked_bound() {
        let unbound = CONFIG
            .replace("ports = [12]\n", "ports = []\n")
            .replace("ports = [11, 12]", "ports = [11]");
        let d = Desired::from_config(&unbound.parse().unwrap());
        assert_eq!(d.ports["tap-vm2"].flags & PORT_BOUND, 0);
        assert!(d.vmacs.keys().all(|k| k.port_id == 11));
    }

    #[test]
    fn ports_only_for_present_interfaces() {
        let d = desired();
        let m = d.ports_by_ifindex(|n| (n == "tap-vm2").then_some(7));
        assert_eq!(m.len(), 1);
        assert_eq!(m[&7].port_id, 12);
    }

    #[test]
    fn owner_actions() {
        let d = desired();
        let owner = |port_id, ifindex| Owner {
            port_id,
            ifindex,
            mac: [2, 0, 0, 0, 0, port_id as u8],
            generation: 4,
            ..Owner::default()
        };
        let web = v4([10, 0, 6, 19]);
        let elsewhere = v4([10, 0, 6, 99]);
        // Ports 11 and 12 on ifindex 5 and 6; 12's interface may be absent.
        let present = |p: u32| match p {
            11 => Some(5),
            12 => Some(6),
            _ => None,
        };
        let vm2_gone = |p: u32| (p == 11).then_some(5);
        use OwnerAction::*;
        /// (case, vip id, owner, vip address before, port -> ifindex, expected)
        type Case<'a> = (
            &'a str,
            u32,
            Owner,
            Option<&'a NetworkAddr>,
            &'a dyn Fn(u32) -> Option<u32>,
            OwnerAction,
        );
        let cases: &[Case] = &[
            (
                "bound owner on its link stays",
                1,
                owner(12, 6),
                Some(&web),
                &present,
                Keep,
            ),
            (
                "new vip, bound owner",
                1,
                owner(12, 6),
                None,
                &present,
                Keep,
            ),
            (
                "vacant stays vacant",
                1,
                Owner::default(),
                Some(&web),
                &present,
                Keep,
            ),
            ("vip removed", 3, owner(12, 6), None, &present, Delete),
            (
                "vacant of removed vip",
                3,
                Owner::default(),
                None,
                &present,
                Delete,
            ),
            (
                "owner port unbound",
                2,
                owner(11, 5),
                None,
                &present,
                Vacate,
            ),
            (
                "owner port removed",
                1,
                owner(13, 9),
                Some(&web),
                &present,
                Vacate,
            ),
            (
                "owner interface gone",
                1,
                owner(12, 6),
                Some(&web),
                &vm2_gone,
                Vacate,
            ),
            (
                "owner interface re-created",
                1,
                owner(12, 4),
                Some(&web),
                &present,
                Vacate,
            ),
            (
                "vip moved to another address",
                1,
                owner(12, 6),
                Some(&elsewhere),
                &present,
                Vacate,
            ),
        ];
        for (name, vip, o, cur, ifx, want) in cases {
            assert_eq!(d.owner_action(*vip, o, *cur, ifx), *want, "case {name:?}");
        }
    }

    #[test]
    fn remote_owners_stay_while_bound() {
        // vip 1 also bound to port 40, which lives on another host.
        let mut d = desired();
        let web = v4([10, 0, 6, 19]);
        let vip = d.vips.get_mut(&web).unwrap();
        vip.ports[vip.port_count as usize] = 40;
        vip.port_count += 1;
        let remote = |port_id| Owner {
            port_id,
            ifindex: 0,
            mac: [2, 0, 0, 0, 0, 0x40],
            generation: 2,
            ..Owner::default()
        };
        let no_links = |_: u32| None;
        assert_eq!(
            d.owner_action(1, &remote(40), Some(&web), no_links),
            OwnerAction::Keep
        );
        assert_eq!(
            d.owner_action(1, &remote(41), Some(&web), no_links),
            OwnerAction::Vacate,
            "a remote port that is not bound"
        );
        assert_eq!(
            d.owner_action(1, &remote(11), Some(&web), no_links),
            OwnerAction::Vacate,
            "a local port is never remote: its interface is gone"
        );
    }

    #[test]
    fn vacate_keeps_generation() {
        let o = Owner {
            vip_id: 3,
            port_id: 12,
            ifindex: 6,
            mac: [2; 6],
            generation: 9,
            since_ns: 100,
            last_claim_ns: 200,
            ..Owner::default()
        };
        let v = vacated(&o);
        assert!(v.is_vacant());
        assert_eq!(
            (v.vip_id, v.ifindex, v.mac, v.generation),
            (3, 0, [0; 6], 9)
        );
    }

    #[test]
    fn diffs() {
        let cur = HashMap::from([(1, 'a'), (2, 'b'), (3, 'c')]);
        let want = HashMap::from([(1, 'a'), (2, 'x'), (4, 'd')]);
        let mut d = diff(&cur, &want);
        d.upsert.sort();
        assert_eq!(d.upsert, vec![(2, 'x'), (4, 'd')]);
        assert_eq!(d.remove, vec![3]);
        assert!(diff(&want, &want).is_empty());
    }

    #[test]
    fn vip_diffs_remove_what_moves_before_inserting_it() {
        let vip = |vip_id, slot, port| Vip {
            vip_id,
            slot,
            port_count: 1,
            ports: {
                let mut p = [0; MAX_BINDINGS];
                p[0] = port;
                p
            },
            hold_down_ms: 0,
        };
        let (a, b, c) = (v4([10, 0, 6, 1]), v4([10, 0, 6, 2]), v4([10, 0, 6, 3]));
        // (what, current, desired, removed, upserted)
        type Case = (
            &'static str,
            Vec<(NetworkAddr, Vip)>,
            Vec<(NetworkAddr, Vip)>,
            Vec<NetworkAddr>,
            Vec<NetworkAddr>,
        );
        let cases: Vec<Case> = vec![
            (
                "unchanged",
                vec![(a, vip(1, 0, 11))],
                vec![(a, vip(1, 0, 11))],
                vec![],
                vec![],
            ),
            (
                "new bindings: in place",
                vec![(a, vip(1, 0, 11))],
                vec![(a, vip(1, 0, 12))],
                vec![],
                vec![a],
            ),
            (
                "gone",
                vec![(a, vip(1, 0, 11)), (b, vip(2, 1, 11))],
                vec![(a, vip(1, 0, 11))],
                vec![b],
                vec![],
            ),
            (
                "address now another VIP's",
                vec![(a, vip(1, 0, 11))],
                vec![(a, vip(2, 0, 11))],
                vec![a],
                vec![a],
            ),
            (
                "another slot",
                vec![(a, vip(1, 0, 11))],
                vec![(a, vip(1, 3, 11))],
                vec![a],
                vec![a],
            ),
            (
                "one out, one in",
                vec![(a, vip(1, 0, 11))],
                vec![(c, vip(3, 0, 11))],
                vec![a],
                vec![c],
            ),
        ];
        for (what, cur, want, removed, upserted) in cases {
            let d = vip_diff(&cur.into_iter().collect(), &want.into_iter().collect());
            let mut got: Vec<NetworkAddr> = d.upsert.iter().map(|(k, _)| *k).collect();
            got.sort_by_key(|k| k.addr);
            let mut remove = d.remove.clone();
            remove.sort_by_key(|k| k.addr);
            assert_eq!((remove, got), (removed, upserted), "{what}");
        }
    }
}
