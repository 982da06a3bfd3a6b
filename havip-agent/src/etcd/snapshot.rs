//! This host's share of the controller's state, read at one revision
//! ([`Snapshot`]), and turned into the agent's [`Config`] ([`to_config`]).
//! Pure but for [`Snapshot::read`], so it is unit-tested on any host.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::Path,
};

use etcd_client::{Client, GetOptions};
use havip_common::vip::MAX_BINDINGS;
use havip_controller::{
    keys,
    model::{Havip, HostPort, Owner as OwnerRecord, Port as PortRecord, Subnet},
};
use ipnet::IpNet;
use log::{error, warn};
use serde::de::DeserializeOwned;

use super::SourceError;
use crate::{
    config::{Config, Network, PortConfig, VipConfig},
    util::eui64_link_local,
};

/// The datapath id of a controller id: 32-bit FNV-1a of its text, never 0
/// (0 means "no owner"). Stable across hosts and restarts; [`to_config`]
/// refuses the rare collision.
pub fn numeric_id(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// This host's share of the controller's state, read at one revision.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub revision: i64,
    pub host_ports: Vec<HostPort>,
    pub subnets: BTreeMap<String, Subnet>,
    /// The VIPs of the local ports' subnets.
    pub vips: BTreeMap<String, Havip>,
    /// vip -> its owner record and that key's mod revision.
    pub owners: BTreeMap<String, (OwnerRecord, i64)>,
    /// port -> MAC, for the bound ports of the VIPs above.
    pub port_macs: HashMap<String, [u8; 6]>,
}

impl Snapshot {
    /// Reads the snapshot of `host` at the current revision.
    pub async fn read(client: &Client, host: &str) -> Result<Self, SourceError> {
        let mut kv = client.kv_client();
        let resp = kv
            .get(
                keys::host_ports(host),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let at = || GetOptions::new().with_revision(revision);
        let mut s = Snapshot {
            revision,
            host_ports: decode_all(resp.kvs()),
            ..Snapshot::default()
        };
        for p in &s.host_ports {
            s.port_macs
                .extend(parse_mac(&p.mac).map(|m| (p.port.clone(), m)));
        }
        let subnet_ids: BTreeSet<String> = s.host_ports.iter().map(|p| p.subnet.clone()).collect();
        for id in subnet_ids {
            let resp = kv.get(keys::subnet(&id), Some(at())).await?;
            if let Some(subnet) = decode_all::<Subnet>(resp.kvs()).pop() {
                s.subnets.insert(id, subnet);
            }
        }
        let resp = kv.get(keys::vips(), Some(at().with_prefix())).await?;
        s.vips = decode_all::<Havip>(resp.kvs())
            .into_iter()
            .filter(|v| s.subnets.contains_key(&v.subnet))
            .map(|v| (v.id.clone(), v))
            .collect();
        let resp = kv.get(keys::owners(), Some(at().with_prefix())).await?;
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let vip = keys::last_segment(&key).to_string();
            if s.vips.contains_key(&vip) {
                if let Some(o) = decode::<OwnerRecord>(&key, kv.value()) {
                    s.owners.insert(vip, (o, kv.mod_revision()));
                }
            }
        }
        let remote_ports: BTreeSet<String> = s
            .vips
            .values()
            .flat_map(|v| v.ports.iter().map(|b| b.port.clone()))
            .filter(|p| !s.port_macs.contains_key(p))
            .collect();
        for port in remote_ports {
            let resp = kv.get(keys::port(&port), Some(at())).await?;
            if let Some(p) = decode_all::<PortRecord>(resp.kvs()).pop() {
                s.port_macs.extend(parse_mac(&p.mac).map(|m| (port, m)));
            }
        }
        Ok(s)
    }

    /// Whether a change of `key` can change this snapshot.
    pub(super) fn concerns(&self, host: &str, key: &str, value: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(keys::ROOT) else {
            return false;
        };
        if rest.starts_with("/hosts/") {
            return key.starts_with(&keys::host_ports(host));
        }
        if let Some(id) = rest.strip_prefix("/subnets/") {
            return self.subnets.contains_key(id);
        }
        if let Some(id) = rest.strip_prefix("/ports/") {
            return self.port_macs.contains_key(id);
        }
        if let Some(id) = rest.strip_prefix("/vips/") {
            // A known VIP changed or went, or a new one in a local subnet.
            return self.vips.contains_key(id)
                || serde_json::from_slice::<Havip>(value)
                    .is_ok_and(|v| self.subnets.contains_key(&v.subnet));
        }
        false
    }
}

impl Snapshot {
    /// Keeps this snapshot in `path` (written aside, then renamed over).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }

    /// The snapshot kept in `path`.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

pub(super) fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!("etcd: ignoring {key}: not a valid record: {e}");
            None
        }
    }
}

fn decode_all<T: DeserializeOwned>(kvs: &[etcd_client::KeyValue]) -> Vec<T> {
    kvs.iter()
        .filter_map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
        .collect()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    match text.parse::<macaddr::MacAddr6>() {
        Ok(m) => Some(m.into_array()),
        Err(_) => {
            warn!("etcd: ignoring MAC {text:?}: not a MAC address");
            None
        }
    }
}

/// A snapshot as the agent's configuration, and the way back to the
/// controller's ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Programmed {
    pub config: Config,
    /// Datapath vip id -> controller VIP id.
    pub vip_ids: BTreeMap<u32, String>,
    /// Datapath port id -> controller port id (local ports).
    pub port_ids: BTreeMap<u32, String>,
    /// VIP id -> why this host cannot program it.
    pub problems: BTreeMap<String, String>,
}

/// Turns `s` into the agent's configuration: every local port (port
/// security on, link-local from the MAC), the networks of their subnets,
/// and every VIP of those subnets with all its bound ports (also those on
/// other hosts, where remote owners live).
pub fn to_config(s: &Snapshot) -> Programmed {
    let mut p = Programmed {
        // The controller enforces the binding limits.
        config: Config::default(),
        ..Programmed::default()
    };
    let mut networks: HashMap<&str, u32> = HashMap::new();
    for (id, subnet) in &s.subnets {
        let nid = numeric_id(id);
        if p.config.networks.contains_key(&nid) {
            error!("etcd: subnet {id} collides with another subnet's datapath id {nid}; skipped");
            continue;
        }
        let cidrs: Vec<IpNet> = subnet
            .cidr_v4
            .map(IpNet::V4)
            .into_iter()
            .chain(subnet.cidr_v6.map(IpNet::V6))
            .collect();
        p.config.networks.insert(
            nid,
            Network {
                id: nid,
                name: Some(id.clone()),
                cidrs,
            },
        );
        networks.insert(id, nid);
    }
    for hp in &s.host_ports {
        let (Some(&network), Some(&mac)) =
            (networks.get(hp.subnet.as_str()), s.port_macs.get(&hp.port))
        else {
            warn!("etcd: port {}: no subnet record or MAC; skipped", hp.port);
            continue;
        };
        let id = numeric_id(&hp.port);
        if p.port_ids.contains_key(&id) {
            error!(
                "etcd: port {} collides with another port's datapath id {id}; skipped",
                hp.port
            );
            continue;
        }
        p.port_ids.insert(id, hp.port.clone());
        p.config.ports.insert(
            id,
            PortConfig {
                id,
                name: Some(hp.port.clone()),
                interface: hp.interface.clone(),
                network,
                mac,
                ips: hp.fixed_ips.clone(),
                port_security: true,
                link_local: eui64_link_local(&mac),
            },
        );
    }
    let mut addresses: HashMap<(u32, IpAddr), &str> = HashMap::new();
    for (vid, v) in &s.vips {
        let Some(&network) = networks.get(v.subnet.as_str()) else {
            continue;
        };
        let id = numeric_id(vid);
        let problem = if p.vip_ids.contains_key(&id) {
            Some(format!("its datapath id {id} collides with another VIP's"))
        } else if let Some(other) = addresses.get(&(network, v.address)) {
            Some(format!("{other} has the same address {}", v.address))
        } else if v.ports.len() > MAX_BINDINGS {
            Some(format!(
                "{} bound ports, the datapath holds at most {MAX_BINDINGS}",
                v.ports.len()
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            error!("etcd: vip {vid}: not programmed: {problem}");
            p.problems.insert(vid.clone(), problem);
            continue;
        }
        addresses.insert((network, v.address), vid);
        p.vip_ids.insert(id, vid.clone());
        p.config.vips.insert(
            id,
            VipConfig {
                id,
                name: Some(vid.clone()),
                network,
                address: v.address,
                ports: v.ports.iter().map(|b| numeric_id(&b.port)).collect(),
            },
        );
    }
    p
}

/// Keeps in force what `in_force` programs for each VIP that `p` cannot
/// program now (a bad change must not undo what worked), unless that would
/// clash with the new state (its id or address taken).
pub fn keep_in_force(p: &mut Programmed, in_force: &Config) {
    for vid in p.problems.keys() {
        let id = numeric_id(vid);
        let Some(old) = in_force.vips.get(&id) else {
            continue;
        };
        let clash = p.config.vips.contains_key(&id)
            || p.config
                .vips
                .values()
                .any(|v| v.network == old.network && v.address == old.address)
            || !p.config.networks.contains_key(&old.network);
        if !clash {
            p.config.vips.insert(id, old.clone());
            p.vip_ids.insert(id, vid.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use havip_controller::model::{Binding, IpVersion, NetworkType, PortVip, Status};

    #[test]
    fn numeric_ids_are_stable_and_never_zero() {
        assert_eq!(numeric_id("havip-1"), numeric_id("havip-1"));
        assert_ne!(numeric_id("havip-1"), numeric_id("havip-2"));
        assert_ne!(numeric_id(""), 0);
        // FNV-1a of "a" (a published test vector).
        assert_eq!(numeric_id("a"), 0xe40c_292c);
    }

    fn snapshot() -> Snapshot {
        let subnet = Subnet {
            id: "subnet-a".into(),
            vpc: "vpc-1".into(),
            project: "p".into(),
            name: String::new(),
            cidr_v4: Some("10.0.6.0/24".parse().unwrap()),
            cidr_v6: Some("fd00:6::/64".parse().unwrap()),
        };
        let vip = |id: &str, addr: &str, ports: &[(&str, &str)]| Havip {
            id: id.into(),
            project: "p".into(),
            name: id.into(),
            description: String::new(),
            network_type: NetworkType::Intranet,
            vpc: "vpc-1".into(),
            subnet: "subnet-a".into(),
            ip_version: IpVersion::Ipv4,
            address: addr.parse().unwrap(),
            ports: ports
                .iter()
                .map(|(port, host)| Binding {
                    port: (*port).into(),
                    vm: format!("vm-{port}"),
                    host: (*host).into(),
                })
                .collect(),
            status: Status::Creating,
            status_reason: None,
            generation: 1,
            ports_per_vip: None,
            created_at: Utc::now(),
            pending_hosts: vec![],
            master: None,
        };
        let host_port = HostPort {
            port: "port-1".into(),
            vm: "vm-1".into(),
            vpc: "vpc-1".into(),
            subnet: "subnet-a".into(),
            mac: "02:00:00:00:00:11".into(),
            interface: "tap-vm1".into(),
            fixed_ips: vec!["10.0.6.9".parse().unwrap()],
            vips: vec![PortVip {
                id: "havip-web".into(),
                address: "10.0.6.19".parse().unwrap(),
            }],
        };
        Snapshot {
            revision: 7,
            host_ports: vec![host_port],
            subnets: BTreeMap::from([("subnet-a".into(), subnet)]),
            vips: BTreeMap::from([
                (
                    "havip-web".into(),
                    vip(
                        "havip-web",
                        "10.0.6.19",
                        &[("port-1", "hv-a"), ("port-2", "hv-b")],
                    ),
                ),
                (
                    "havip-db".into(),
                    vip("havip-db", "10.0.6.29", &[("port-3", "hv-c")]),
                ),
                ("havip-dup".into(), vip("havip-dup", "10.0.6.19", &[])),
            ]),
            owners: BTreeMap::new(),
            port_macs: HashMap::from([
                ("port-1".into(), [2, 0, 0, 0, 0, 0x11]),
                ("port-2".into(), [2, 0, 0, 0, 0, 0x12]),
            ]),
        }
    }

    #[test]
    fn a_snapshot_becomes_the_hosts_config() {
        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let p = to_config(&s);
        let c = &p.config;
        let net = numeric_id("subnet-a");
        assert_eq!(c.networks[&net].cidrs.len(), 2);
        let port = &c.ports[&numeric_id("port-1")];
        assert_eq!(port.interface, "tap-vm1");
        assert_eq!(port.network, net);
        assert!(port.port_security);
        assert_eq!(
            port.link_local,
            "fe80::ff:fe00:11".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(c.ports.len(), 1, "only this host's ports");

        let web = &c.vips[&numeric_id("havip-web")];
        assert_eq!(
            web.ports,
            vec![numeric_id("port-1"), numeric_id("port-2")],
            "bound ports of every host"
        );
        assert!(
            c.vips.contains_key(&numeric_id("havip-db")),
            "VIPs of the subnet bound elsewhere are programmed too (ARP answers, delivery)"
        );
        assert_eq!(p.vip_ids[&numeric_id("havip-web")], "havip-web");
        assert_eq!(p.port_ids[&numeric_id("port-1")], "port-1");
    }

    #[test]
    fn a_vip_that_cannot_be_programmed_says_why() {
        let p = to_config(&snapshot());
        // "havip-db" < "havip-dup" < "havip-web": dup takes .19 first.
        assert_eq!(
            p.problems.get("havip-web").map(String::as_str),
            Some("havip-dup has the same address 10.0.6.19")
        );
        assert!(!p.config.vips.contains_key(&numeric_id("havip-web")));

        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let many: Vec<Binding> = (0..=MAX_BINDINGS)
            .map(|i| Binding {
                port: format!("port-x{i}"),
                vm: "vm".into(),
                host: "hv-a".into(),
            })
            .collect();
        s.vips.get_mut("havip-db").unwrap().ports = many;
        let p = to_config(&s);
        assert!(
            p.problems["havip-db"].contains("at most 16"),
            "{:?}",
            p.problems
        );
        assert!(p.config.vips.contains_key(&numeric_id("havip-web")));
    }

    #[test]
    fn a_vip_that_cannot_be_programmed_keeps_what_was_in_force() {
        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let before = to_config(&s).config;
        let web = numeric_id("havip-web");
        // Now bound to more ports than the datapath holds.
        s.vips.get_mut("havip-web").unwrap().ports = (0..=MAX_BINDINGS)
            .map(|i| Binding {
                port: format!("port-x{i}"),
                vm: "vm".into(),
                host: "hv-a".into(),
            })
            .collect();
        let mut p = to_config(&s);
        assert!(!p.config.vips.contains_key(&web));
        keep_in_force(&mut p, &before);
        assert_eq!(p.config.vips[&web], before.vips[&web]);
        assert_eq!(p.vip_ids[&web], "havip-web");
        assert!(p.problems.contains_key("havip-web"), "still reported");

        // Not when its address went to another VIP meanwhile.
        let mut p = to_config(&snapshot());
        keep_in_force(&mut p, &before);
        assert!(!p.config.vips.contains_key(&web));
    }

    #[test]
    fn a_kept_snapshot_reads_back_the_same_config() {
        let dir = std::env::temp_dir().join(format!("havip-etcd-cache-{}", std::process::id()));
        let path = dir.join("hv-a.json");
        let s = snapshot();
        s.save(&path).unwrap();
        let back = Snapshot::load(&path).unwrap();
        assert_eq!(back.revision, 7);
        assert_eq!(to_config(&back), to_config(&s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_changes_that_concern_the_host_reread() {
        let s = snapshot();
        let other_subnet = serde_json::to_vec(&Havip {
            subnet: "subnet-z".into(),
            ..s.vips["havip-db"].clone()
        })
        .unwrap();
        let new_here = serde_json::to_vec(&Havip {
            id: "havip-new".into(),
            ..s.vips["havip-db"].clone()
        })
        .unwrap();
        let cases: &[(&str, &[u8], bool)] = &[
            ("/havip/v1/hosts/hv-a/ports/port-9", b"", true),
            ("/havip/v1/hosts/hv-b/ports/port-2", b"", false),
            ("/havip/v1/subnets/subnet-a", b"", true),
            ("/havip/v1/subnets/subnet-z", b"", false),
            ("/havip/v1/ports/port-2", b"", true),
            ("/havip/v1/ports/port-77", b"", false),
            ("/havip/v1/vips/havip-web", b"", true),
            ("/havip/v1/vips/havip-zz", &other_subnet, false),
            ("/havip/v1/vips/havip-new", &new_here, true),
            ("/havip/v1/acks/havip-web/hv-a", b"", false),
            ("/havip/v1/addrs/subnet-a/10.0.6.40", b"", false),
            ("/other/app", b"", false),
        ];
        for (key, value, want) in cases {
            assert_eq!(s.concerns("hv-a", key, value), *want, "{key}");
        }
    }
}
