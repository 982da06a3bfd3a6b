//! The etcd key layout (see the crate documentation for what each holds).
//! Every key is built and parsed here and nowhere else.

use std::net::IpAddr;

/// Root of every key; the version changes only with an incompatible layout.
pub const ROOT: &str = "/havip/v1";

pub fn vpc(id: &str) -> String {
    format!("{ROOT}/vpcs/{id}")
}

pub fn vpcs() -> String {
    format!("{ROOT}/vpcs/")
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

/// The schema version record ([`crate::records::SchemaVersion`]).
pub fn schema() -> String {
    format!("{ROOT}/schema")
}

/// Everything a host writes: its acks and owner reports. One prefix per
/// host, so etcd's per-range permissions can let a host write only its own.
pub fn reports(host: &str) -> String {
    format!("{ROOT}/reports/{host}/")
}

/// The reports of every host.
pub fn all_reports() -> String {
    format!("{ROOT}/reports/")
}

/// The owner of `vip` as `host` learned it.
pub fn owner_report(vip: &str, host: &str) -> String {
    format!("{ROOT}/reports/{host}/owners/{vip}")
}

/// `host`'s acknowledgement of `vip`.
pub fn ack(vip: &str, host: &str) -> String {
    format!("{ROOT}/reports/{host}/acks/{vip}")
}

/// The keys of schema version 1, read only by the migration.
pub mod v1 {
    use super::ROOT;

    pub fn owners() -> String {
        format!("{ROOT}/owners/")
    }

    pub fn acks() -> String {
        format!("{ROOT}/acks/")
    }
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

/// An EIP pool: public addresses served by one gateway.
pub fn eip_pool(id: &str) -> String {
    format!("{ROOT}/eip-pools/{id}")
}

pub fn eip_pools() -> String {
    format!("{ROOT}/eip-pools/")
}

/// An EIP (elastic, public address) of a project.
pub fn eip(id: &str) -> String {
    format!("{ROOT}/eips/{id}")
}

pub fn eips() -> String {
    format!("{ROOT}/eips/")
}

/// The claim of a public address of a pool (canonical text form, as
/// [`addr`]): one EIP per address.
pub fn eip_addr(pool: &str, ip: &IpAddr) -> String {
    format!("{ROOT}/eip-addrs/{pool}/{ip}")
}

pub fn eip_addrs(pool: &str) -> String {
    format!("{ROOT}/eip-addrs/{pool}/")
}

/// The index entry of an EIP in its project (counted for the quota).
pub fn project_eip(project: &str, eip: &str) -> String {
    format!("{ROOT}/index/project-eips/{project}/{eip}")
}

pub fn project_eips(project: &str) -> String {
    format!("{ROOT}/index/project-eips/{project}/")
}

/// The EIP associated with a VIP: one EIP per VIP.
pub fn vip_eip(vip: &str) -> String {
    format!("{ROOT}/vip-eips/{vip}")
}

pub fn vip_eips() -> String {
    format!("{ROOT}/vip-eips/")
}

/// A project's EIP quota (operator).
pub fn eip_limits(project: &str) -> String {
    format!("{ROOT}/limits/project-eips/{project}")
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
    Addr {
        subnet: &'a str,
        ip: IpAddr,
    },
    HostPort {
        host: &'a str,
        port: &'a str,
    },
    Ack {
        vip: &'a str,
        host: &'a str,
    },
    Owner {
        vip: &'a str,
        host: &'a str,
    },
    /// Schema version 1's ack key (`acks/<vip>/<host>`), before migration.
    V1Ack {
        vip: &'a str,
        host: &'a str,
    },
    /// Schema version 1's owner key (`owners/<vip>`), before migration.
    V1Owner(&'a str),
    Schema,
    OwnerEvent {
        vip: &'a str,
        revision: i64,
    },
    ProjectLimits(&'a str),
    ProjectVip {
        project: &'a str,
        vip: &'a str,
    },
    SubnetVip {
        subnet: &'a str,
        vip: &'a str,
    },
    Idempotency {
        project: &'a str,
        key: &'a str,
    },
    Ids(&'a str),
    EipPool(&'a str),
    Eip(&'a str),
    EipAddr {
        pool: &'a str,
        ip: IpAddr,
    },
    ProjectEip {
        project: &'a str,
        eip: &'a str,
    },
    VipEip(&'a str),
    EipLimits(&'a str),
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
            ["reports", host, "acks", vip] => Key::Ack { vip, host },
            ["reports", host, "owners", vip] => Key::Owner { vip, host },
            ["acks", vip, host] => Key::V1Ack { vip, host },
            ["owners", vip] => Key::V1Owner(vip),
            ["schema"] => Key::Schema,
            ["events", vip, revision] if revision.len() == 20 => Key::OwnerEvent {
                vip,
                revision: revision.parse().ok()?,
            },
            ["limits", "projects", project] => Key::ProjectLimits(project),
            ["index", "projects", project, vip] => Key::ProjectVip { project, vip },
            ["index", "subnets", subnet, vip] => Key::SubnetVip { subnet, vip },
            ["idempotency", project, key] => Key::Idempotency { project, key },
            ["ids", kind] => Key::Ids(kind),
            ["eip-pools", id] => Key::EipPool(id),
            ["eips", id] => Key::Eip(id),
            ["eip-addrs", pool, ip] => Key::EipAddr {
                pool,
                ip: ip.parse().ok()?,
            },
            ["index", "project-eips", project, eip] => Key::ProjectEip { project, eip },
            ["vip-eips", vip] => Key::VipEip(vip),
            ["limits", "project-eips", project] => Key::EipLimits(project),
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
            (
                owner_report("h", "hv"),
                Key::Owner {
                    vip: "h",
                    host: "hv",
                },
            ),
            ("/havip/v1/owners/h".into(), Key::V1Owner("h")),
            (
                "/havip/v1/acks/h/hv".into(),
                Key::V1Ack {
                    vip: "h",
                    host: "hv",
                },
            ),
            (schema(), Key::Schema),
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
            (eip_pool("pl"), Key::EipPool("pl")),
            (eip("e"), Key::Eip("e")),
            (eip_addr("pl", &ip), Key::EipAddr { pool: "pl", ip }),
            (
                project_eip("pr", "e"),
                Key::ProjectEip {
                    project: "pr",
                    eip: "e",
                },
            ),
            (vip_eip("h"), Key::VipEip("h")),
            (eip_limits("pr"), Key::EipLimits("pr")),
        ];
        for (text, key) in cases {
            assert_eq!(Key::parse(&text), Some(key), "{text}");
        }
        for bad in [
            "/havip/v1/acks/havip-1/",
            "/havip/v1/acks/havip-1/hv/x",
            "/havip/v1/reports/hv/acks/",
            "/havip/v1/reports/hv/ports/p",
            "/havip/v1/reports/hv/owners/h/x",
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
        assert!(ack("h", "hv").starts_with(&reports("hv")));
        assert!(owner_report("h", "hv").starts_with(&reports("hv")));
        assert!(reports("hv").starts_with(&all_reports()));
    }
}
