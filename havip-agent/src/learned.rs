//! Learned link-locals: the one IPv6 link-local each port may hold besides
//! its own and the registered ones, learned by the datapath when the port
//! first uses it (havip-ebpf's `link_local.rs`): `havip_lladdrs` (address
//! -> port id) and `havip_llports` (port id -> address), both pinned, so a
//! learned link-local stays across agent restarts. A port holds it until:
//! - `havip-agent reset-link-local <port id>` forgets it ([`forget_pinned`]);
//! - the port leaves the config (or moves to another network);
//! - the address becomes a fixed or registered address of a port (which
//!   then holds it).
//!
//! The last two are [`keeps`], applied on every reconcile.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError};
use havip_common::{maps, NetworkAddr};

use crate::desired::Desired;

/// Errors of the learned link-locals' maps.
#[derive(Debug, thiserror::Error)]
pub enum LearnedError {
    #[error("{}: {source}", path.display())]
    Map {
        path: std::path::PathBuf,
        #[source]
        source: MapError,
    },
}

/// The two maps the datapath learns link-locals into.
pub struct LearnedMaps {
    addrs: BpfHashMap<MapData, NetworkAddr, u32>,
    ports: BpfHashMap<MapData, u32, NetworkAddr>,
}

impl LearnedMaps {
    /// From the maps of a loaded object (`havip_lladdrs`, `havip_llports`).
    pub fn new(addrs: Map, ports: Map) -> Result<Self, MapError> {
        Ok(Self {
            addrs: addrs.try_into()?,
            ports: ports.try_into()?,
        })
    }

    /// From the maps pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Self, LearnedError> {
        let open = |name: &str| {
            let path = pin_dir.join(name);
            MapData::from_pin(&path)
                .map(Map::HashMap)
                .map_err(|source| LearnedError::Map { path, source })
        };
        let (addrs, ports) = (open(maps::LL_ADDRS)?, open(maps::LL_PORTS)?);
        Self::new(addrs, ports).map_err(|source| LearnedError::Map {
            path: pin_dir.join(maps::LL_ADDRS),
            source,
        })
    }

    /// Port id -> the link-local it learned.
    pub fn all(&self) -> Result<BTreeMap<u32, NetworkAddr>, MapError> {
        self.ports.iter().collect()
    }

    /// Forgets the link-local `port_id` learned, if any: the address first
    /// (free for whoever uses it next), then the port's place (it may learn
    /// again).
    pub fn forget(&mut self, port_id: u32) -> Result<Option<NetworkAddr>, MapError> {
        let addr = match self.ports.get(&port_id, 0) {
            Ok(a) => a,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        if self.addrs.get(&addr, 0).ok() == Some(port_id) {
            ignore_missing(self.addrs.remove(&addr))?;
        }
        ignore_missing(self.ports.remove(&port_id))?;
        Ok(Some(addr))
    }

    /// Forgets every learned link-local `desired` does not keep, and any
    /// address whose port holds another (left by a learning cut short).
    /// Returns what was forgotten.
    pub fn forget_stale(&mut self, desired: &Desired) -> Result<Vec<(u32, NetworkAddr)>, MapError> {
        let mut gone = Vec::new();
        for (port_id, addr) in self.all()? {
            if !keeps(desired, port_id, &addr) {
                self.forget(port_id)?;
                gone.push((port_id, addr));
            }
        }
        let held = self.all()?;
        let orphans: Vec<(NetworkAddr, u32)> = self
            .addrs
            .iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(addr, port_id)| held.get(port_id) != Some(addr))
            .collect();
        for (addr, _) in orphans {
            ignore_missing(self.addrs.remove(&addr))?;
        }
        Ok(gone)
    }
}

fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        r => r,
    }
}

/// Whether port `port_id` keeps the link-local `addr` it learned: the port
/// is still configured here, in that network, and no port has the address
/// as a fixed or registered one.
pub fn keeps(desired: &Desired, port_id: u32, addr: &NetworkAddr) -> bool {
    let network = desired
        .port_interfaces
        .get(&port_id)
        .and_then(|name| desired.ports.get(name))
        .map(|p| p.network);
    network == Some(addr.network) && !desired.addrs.contains_key(addr)
}

/// `havip-agent reset-link-local`: forgets the link-local port `port_id`
/// learned, in the maps pinned under `pin_dir` (whether or not an agent
/// runs there). Returns it, if there was one.
pub fn forget_pinned(pin_dir: &Path, port_id: u32) -> Result<Option<NetworkAddr>, LearnedError> {
    LearnedMaps::open(pin_dir)?
        .forget(port_id)
        .map_err(|source| LearnedError::Map {
            path: pin_dir.join(maps::LL_PORTS),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_link_local_goes_with_its_port_or_to_a_registration() {
        let config = r#"
[[networks]]
id = 1
cidrs = ["fd00:6::/64"]

[[ports]]
id = 11
interface = "tap-vm1"
network = 1
mac = "02:00:00:00:00:11"
link_locals = ["fe80::5:11"]
"#;
        let d = Desired::from_config(&config.parse().unwrap());
        let ll = |n: u32, last: u8| {
            let mut a = [0u8; 16];
            a[0] = 0xfe;
            a[1] = 0x80;
            a[15] = last;
            NetworkAddr::v6(n, a)
        };
        assert!(keeps(&d, 11, &ll(1, 0x77)));
        // Another network than the port's, a port gone.
        assert!(!keeps(&d, 11, &ll(2, 0x77)));
        assert!(!keeps(&d, 12, &ll(1, 0x77)));
        // Registered (for this port or another): the registration holds it.
        let mut registered = ll(1, 0x11);
        registered.addr[13] = 5;
        assert!(!keeps(&d, 11, &registered));
        // The port's own EUI-64 link-local too.
        let eui64: std::net::Ipv6Addr = "fe80::ff:fe00:11".parse().unwrap();
        assert!(!keeps(&d, 11, &NetworkAddr::v6(1, eui64.octets())));
    }
}
