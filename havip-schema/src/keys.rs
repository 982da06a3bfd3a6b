//! The etcd key layout (see the crate documentation for what each holds).
//! Every key is built and parsed here and nowhere else.

use std::net::IpAddr;

/// Root of every key; the version changes only with an incompatible layout.
pub const ROOT: &str = "/havip/v1";

pub fn vpc(id: &str) -> String {
    format!("{ROOT}/vpcs/{id}")
}

pub fn subnet(id: &str) -> String {
    format!("{ROOT}/subnets/{id}")
}

pub fn subnets() -> String {
    format!("{ROOT}/subnets/")
}

pub fn port(id: &str) -> String {
    format!("{ROOT}/ports/{id}")
}

pub fn ports() -> String {
    format!("{ROOT}/ports/")
}

pub fn vip(id: &str) -> String {
    format!("{ROOT}/vips/{id}")
}

pub fn vips() -> String {
    format!("{ROOT}/vips/")
}

/// Address claims of a subnet. IPv6 addresses are written in their
/// canonical (RFC 5952) text form, so one address has one key.
pub fn addr(subnet: &str, ip: &IpAddr) -> String {
    format!("{ROOT}/addrs/{subnet}/{ip}")
}

pub fn addrs(subnet: &str) -> String {
    format!("{ROOT}/addrs/{subnet}/")
}

pub fn host_port(host: &str, port: &str) -> String {
    format!("{ROOT}/hosts/{host}/ports/{port}")
}

pub fn host_ports(host: &str) -> String {
    format!("{ROOT}/hosts/{host}/ports/")
}

pub fn owner(vip: &str) -> String {
    format!("{ROOT}/owners/{vip}")
}

pub fn owners() -> String {
    format!("{ROOT}/owners/")
}

pub fn ack(vip: &str, host: &str) -> String {
    format!("{ROOT}/acks/{vip}/{host}")
}

pub fn acks_of(vip: &str) -> String {
    format!("{ROOT}/acks/{vip}/")
}

pub fn acks() -> String {
    format!("{ROOT}/acks/")
}

/// One owner change of `vip`, named by the etcd revision of the owner
/// report it came from (zero-padded, so keys sort in time order).
pub fn owner_event(vip: &str, revision: i64) -> String {
    format!("{ROOT}/events/{vip}/{revision:020}")
}

/// The owner changes of `vip`.
pub fn owner_events_of(vip: &str) -> String {
    format!("{ROOT}/events/{vip}/")
}

pub fn project_limits(project: &str) -> String {
    format!("{ROOT}/limits/projects/{project}")
}

/// The index entry of a VIP in its project (counted for the quota).
pub fn project_vip(project: &str, vip: &str) -> String {
    format!("{ROOT}/index/projects/{project}/{vip}")
}

pub fn project_vips(project: &str) -> String {
    format!("{ROOT}/index/projects/{project}/")
}

/// The index entry of a VIP in its subnet (counted for the quota).
pub fn subnet_vip(subnet: &str, vip: &str) -> String {
    format!("{ROOT}/index/subnets/{subnet}/{vip}")
}

pub fn subnet_vips(subnet: &str) -> String {
    format!("{ROOT}/index/subnets/{subnet}/")
}

/// A create's idempotency key, per project.
pub fn idempotency(project: &str, key: &str) -> String {
    format!("{ROOT}/idempotency/{project}/{key}")
}

/// The counter of the datapath ids of `kind`.
pub fn ids(kind: crate::records::IdKind) -> String {
    format!("{ROOT}/ids/{}", kind.as_str())
}

/// Everything under the root (for the watch and the corrupt-record scan).
pub fn root() -> String {
    format!("{ROOT}/")
}

/// A key of the layout, parsed. Segments are never empty and hold no `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Vpc(&'a str),
    Subnet(&'a str),
    Port(&'a str),
    Vip(&'a str),
    Addr { subnet: &'a str, ip: IpAddr },
    HostPort { host: &'a str, port: &'a str },
    Ack { vip: &'a str, host: &'a str },
    Owner(&'a str),
    OwnerEvent { vip: &'a str, revision: i64 },
    ProjectLimits(&'a str),
    ProjectVip { project: &'a str, vip: &'a str },
    SubnetVip { subnet: &'a str, vip: &'a str },
    Idempotency { project: &'a str, key: &'a str },
    Ids(&'a str),
}

impl<'a> Key<'a> {
    /// The key `key` is, if it is one of the layout.
    pub fn parse(key: &'a str) -> Option<Key<'a>> {
        let rest = key.strip_prefix(ROOT)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(match parts.as_slice() {
            ["vpcs", id] => Key::Vpc(id),
            ["subnets", id] => Key::Subnet(id),
            ["ports", id] => Key::Port(id),
            ["vips", id] => Key::Vip(id),
            ["addrs", subnet, ip] => Key::Addr {
                subnet,
                ip: ip.parse().ok()?,
            },
            ["hosts", host, "ports", port] => Key::HostPort { host, port },
            ["acks", vip, host] => Key::Ack { vip, host },
            ["owners", vip] => Key::Owner(vip),
            ["events", vip, revision] if revision.len() == 20 => Key::OwnerEvent {
                vip,
                revision: revision.parse().ok()?,
            },
            ["limits", "projects", project] => Key::ProjectLimits(project),
            ["index", "projects", project, vip] => Key::ProjectVip { project, vip },
            ["index", "subnets", subnet, vip] => Key::SubnetVip { subnet, vip },
            ["idempotency", project, key] => Key::Idempotency { project, key },
            ["ids", kind] => Key::Ids(kind),
            _ => return None,
        })
    }
}

/// `(vip, host)` of an ack key.
pub fn parse_ack(key: &str) -> Option<(&str, &str)> {
    match Key::parse(key)? {
        Key::Ack { vip, host } => Some((vip, host)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_keys_parse_back() {
        let ip: IpAddr = "FD00:0:0:0::1".parse().unwrap();
        assert_eq!(addr("s1", &ip), "/havip/v1/addrs/s1/fd00::1");
        let cases: Vec<(String, Key)> = vec![
            (vpc("v"), Key::Vpc("v")),
            (subnet("s"), Key::Subnet("s")),
            (port("p"), Key::Port("p")),
            (vip("h"), Key::Vip("h")),
            (addr("s", &ip), Key::Addr { subnet: "s", ip }),
            (
                host_port("hv", "p"),
                Key::HostPort {
                    host: "hv",
                    port: "p",
                },
            ),
            (
                ack("h", "hv"),
                Key::Ack {
                    vip: "h",
                    host: "hv",
                },
            ),
            (owner("h"), Key::Owner("h")),
            (
                owner_event("h", 42),
                Key::OwnerEvent {
                    vip: "h",
                    revision: 42,
                },
            ),
            (project_limits("pr"), Key::ProjectLimits("pr")),
            (
                project_vip("pr", "h"),
                Key::ProjectVip {
                    project: "pr",
                    vip: "h",
                },
            ),
            (
                subnet_vip("s", "h"),
                Key::SubnetVip {
                    subnet: "s",
                    vip: "h",
                },
            ),
            (
                idempotency("pr", "k"),
                Key::Idempotency {
                    project: "pr",
                    key: "k",
                },
            ),
        ];
        for (text, key) in cases {
            assert_eq!(Key::parse(&text), Some(key), "{text}");
        }
        for bad in [
            "/havip/v1/acks/havip-1/",
            "/havip/v1/acks/havip-1/hv/x",
            "/havip/v2/vips/a",
            "/havip/v1/vips/",
            "/havip/v1/addrs/s/not-an-ip",
            "/havip/v1/hosts/hv/ports/",
            "/havip/v1/events/h/42",
            "/havip/v1/events/h/0000000000000000004x",
        ] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_ack(&ack("h", "hv")), Some(("h", "hv")));
    }
}
