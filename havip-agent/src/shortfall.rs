//! What the datapath could not put in force, and why: VIPs and fixed
//! addresses that found no room (a full map, no free VIP slot) or whose
//! write failed. A reconcile writes everything else all the same; each
//! shortfall is logged when it starts and when it ends, and reported
//! (`havip-agent status`, the controller's acks) until a reconcile finds
//! room for it.

use std::{collections::BTreeMap, net::IpAddr};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError},
    Pod,
};
use havip_common::maps::{MAX_ADDRS, MAX_PORTS};
use log::{info, warn};

use crate::config::Config;

/// What of `config` one host cannot hold (more ports, VIPs or fixed
/// addresses than its maps have room for, with room for `max_vips` VIPs):
/// what `check` warns of, before the agent finds out by not programming
/// the rest.
pub fn over_capacity(config: &Config, max_vips: u32) -> Vec<String> {
    // Each port's own link-local and its registered ones are fixed
    // addresses too.
    let addrs: usize = config
        .ports
        .values()
        .map(|p| p.ips.len() + 1 + p.link_locals.len())
        .sum();
    [
        ("port(s)", config.ports.len(), MAX_PORTS),
        ("vip(s)", config.vips.len(), max_vips),
        ("fixed address(es)", addrs, MAX_ADDRS),
    ]
    .into_iter()
    .filter(|(_, n, max)| *n > *max as usize)
    .map(|(what, n, max)| {
        format!(
            "{n} {what}, more than this host's datapath holds ({max}): {} would not be \
             programmed",
            n - max as usize
        )
    })
    .collect()
}

/// The VIPs and addresses of the desired state that are not in the maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unprogrammed {
    /// vip id -> why it is not in `havip_vips`.
    pub vips: BTreeMap<u32, String>,
    /// (port id, fixed address) -> why it is not in `havip_addrs`.
    pub addrs: BTreeMap<(u32, IpAddr), String>,
}

impl Unprogrammed {
    pub fn is_empty(&self) -> bool {
        self.vips.is_empty() && self.addrs.is_empty()
    }

    /// Logs what changed from `before` to `self`: a warning for each VIP or
    /// address that is newly not programmed (with its reason), a line for
    /// each that is programmed again. Nothing when nothing changed, so a
    /// reconcile on every link event does not repeat itself.
    pub fn log_changes(&self, before: &Self, config: &Config) {
        for (id, why) in &self.vips {
            if before.vips.get(id) != Some(why) {
                warn!("{}: not programmed: {why}", config.vip_label(*id));
            }
        }
        for id in before.vips.keys().filter(|id| !self.vips.contains_key(id)) {
            if config.vips.contains_key(id) {
                info!("{}: programmed now", config.vip_label(*id));
            }
        }
        for ((port, ip), why) in &self.addrs {
            if before.addrs.get(&(*port, *ip)) != Some(why) {
                warn!(
                    "{}: address {ip} not programmed: {why}",
                    config.port_label(*port)
                );
            }
        }
        for (port, ip) in before.addrs.keys().filter(|k| !self.addrs.contains_key(k)) {
            if config.ports.contains_key(port) {
                info!("{}: address {ip} programmed now", config.port_label(*port));
            }
        }
    }
}

/// Why an entry of `map` could not be written: a full hash map says so by
/// name (the kernel's E2BIG reads "argument list too long").
pub fn insert_failure(map: &'static str, max_entries: u32, e: &MapError) -> String {
    match e {
        MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG) => {
            format!("{map} is full (this host holds at most {max_entries})")
        }
        // Its own message names the call only.
        MapError::SyscallError(s) => format!("{map}: cannot insert: {}", s.io_error),
        e => format!("{map}: cannot insert: {e}"),
    }
}

/// Inserts each of `entries` into `map`; the ones that could not be, with
/// the error. One that does not fit stops none of the others.
pub fn insert_each<K: Pod, V: Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    entries: &[(K, V)],
) -> Vec<(K, MapError)> {
    entries
        .iter()
        .filter_map(|(k, v)| map.insert(k, v, 0).err().map(|e| (*k, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_larger_than_the_maps_is_named_per_map() {
        const MAX_VIPS: u32 = 64;
        let mut c = Config::default();
        assert!(over_capacity(&c, MAX_VIPS).is_empty());
        for id in 1..=MAX_VIPS + 2 {
            c.vips.insert(
                id,
                crate::config::VipConfig {
                    id,
                    name: None,
                    network: 1,
                    address: std::net::Ipv4Addr::from(0x0a00_0000 + id).into(),
                    ports: vec![],
                    vrid: None,
                    hold_down_ms: 0,
                },
            );
        }
        assert!(over_capacity(&c, MAX_VIPS + 2).is_empty());
        assert_eq!(
            over_capacity(&c, MAX_VIPS),
            vec![format!(
                "{} vip(s), more than this host's datapath holds ({MAX_VIPS}): 2 would not be \
                 programmed",
                MAX_VIPS + 2
            )]
        );
    }

    #[test]
    fn a_full_map_is_named_as_such() {
        let e2big = MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
        });
        let eperm = MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(
            insert_failure("havip_vips", 4096, &e2big),
            "havip_vips is full (this host holds at most 4096)"
        );
        let other = insert_failure("havip_addrs", 8192, &eperm);
        assert!(
            other.starts_with("havip_addrs: cannot insert: Operation not permitted"),
            "{other}"
        );
    }
}
