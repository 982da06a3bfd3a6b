//! The etcd key layout (see the crate documentation for what each holds).
//! Every key is built here and nowhere else.

use std::net::IpAddr;

/// Root of every key; the version changes only with an incompatible layout.
pub const ROOT: &str = "/havip/v1";

pub fn vpc(id: &str) -> String {
    format!("{ROOT}/vpcs/{id}")
}

pub fn subnet(id: &str) -> String {
    format!("{ROOT}/subnets/{id}")
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

pub fn project_limits(project: &str) -> String {
    format!("{ROOT}/limits/projects/{project}")
}

/// `(vip, host)` of an ack key.
pub fn parse_ack(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix("/acks/")?;
    let (vip, host) = rest.split_once('/')?;
    (!vip.is_empty() && !host.is_empty() && !host.contains('/')).then_some((vip, host))
}

/// The last segment of a key.
pub fn last_segment(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn layout() {
        let ip: std::net::IpAddr = "FD00:0:0:0::1".parse().unwrap();
        assert_eq!(super::addr("s1", &ip), "/havip/v1/addrs/s1/fd00::1");
        assert_eq!(
            super::parse_ack("/havip/v1/acks/havip-1/hv-a"),
            Some(("havip-1", "hv-a"))
        );
        assert_eq!(super::parse_ack("/havip/v1/acks/havip-1/"), None);
        assert_eq!(
            super::host_port("hv-a", "p1"),
            "/havip/v1/hosts/hv-a/ports/p1"
        );
    }
}
