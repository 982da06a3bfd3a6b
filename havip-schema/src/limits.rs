//! The limits a project's HAVIPs live within, their defaults (defined here
//! once), and the most the datapath can hold.

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// The most ports one VIP can have bound: what a datapath VIP entry holds.
pub const MAX_PORTS_PER_VIP: u32 = havip_common::vip::MAX_BINDINGS as u32;
/// The product's default: a VIP binds at most 3 ports.
pub const DEFAULT_PORTS_PER_VIP: u32 = havip_common::vip::DEFAULT_MAX_PORTS_PER_VIP as u32;
/// The product's default: a port carries at most 5 VIPs.
pub const DEFAULT_VIPS_PER_PORT: u32 = havip_common::vip::DEFAULT_MAX_VIPS_PER_PORT as u32;
/// The product's default: a project holds at most 100 HAVIPs.
pub const DEFAULT_VIPS_PER_PROJECT: u32 = 100;
/// The product's default: a subnet holds at most 50 HAVIPs (the per-subnet
/// quota of the CTyun guide).
pub const DEFAULT_VIPS_PER_SUBNET: u32 = 50;
/// A project holds at most 20 EIPs unless an operator sets another quota.
pub const DEFAULT_EIPS_PER_PROJECT: u32 = 20;
/// The highest any count limit may be set to.
pub const MAX_LIMIT: u32 = 10_000;

/// A project's limits as stored (`limits/projects/<project>`); `None` means
/// the controller's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectLimits {
    #[serde(default)]
    pub ports_per_vip: Option<u32>,
    #[serde(default)]
    pub vips_per_port: Option<u32>,
    #[serde(default)]
    pub vips_per_project: Option<u32>,
    #[serde(default)]
    pub vips_per_subnet: Option<u32>,
}

/// Limits in effect (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub ports_per_vip: u32,
    pub vips_per_port: u32,
    pub vips_per_project: u32,
    pub vips_per_subnet: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ports_per_vip: DEFAULT_PORTS_PER_VIP,
            vips_per_port: DEFAULT_VIPS_PER_PORT,
            vips_per_project: DEFAULT_VIPS_PER_PROJECT,
            vips_per_subnet: DEFAULT_VIPS_PER_SUBNET,
        }
    }
}

impl Limits {
    /// `p`'s own limits where it has them, these elsewhere.
    pub fn with(&self, p: &ProjectLimits) -> Limits {
        Limits {
            ports_per_vip: p.ports_per_vip.unwrap_or(self.ports_per_vip),
            vips_per_port: p.vips_per_port.unwrap_or(self.vips_per_port),
            vips_per_project: p.vips_per_project.unwrap_or(self.vips_per_project),
            vips_per_subnet: p.vips_per_subnet.unwrap_or(self.vips_per_subnet),
        }
    }

    /// Each limit is at least 1, ports per VIP at most what the datapath
    /// holds, the others at most [`MAX_LIMIT`].
    pub fn check(&self) -> Result<(), Invalid> {
        check("ports_per_vip", Some(self.ports_per_vip))?;
        check("vips_per_port", Some(self.vips_per_port))?;
        check("vips_per_project", Some(self.vips_per_project))?;
        check("vips_per_subnet", Some(self.vips_per_subnet))
    }
}

impl ProjectLimits {
    pub fn check(&self) -> Result<(), Invalid> {
        check("ports_per_vip", self.ports_per_vip)?;
        check("vips_per_port", self.vips_per_port)?;
        check("vips_per_project", self.vips_per_project)?;
        check("vips_per_subnet", self.vips_per_subnet)
    }
}

/// One limit `what` set to `v` (`None`: back to the default).
pub fn check(what: &str, v: Option<u32>) -> Result<(), Invalid> {
    let max = if what == "ports_per_vip" {
        MAX_PORTS_PER_VIP
    } else {
        MAX_LIMIT
    };
    match v {
        Some(0) => Err(Invalid(format!("{what} must be at least 1"))),
        Some(n) if n > max && what == "ports_per_vip" => Err(Invalid(format!(
            "ports_per_vip = {n}: the datapath holds at most {max} ports per VIP"
        ))),
        Some(n) if n > max => Err(Invalid(format!("{what} = {n} must be at most {max}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert!(Limits::default().check().is_ok());
        let e = check("ports_per_vip", Some(5000)).unwrap_err();
        assert!(e.0.contains("at most 16 ports per VIP"), "{e}");
        assert!(check("ports_per_vip", Some(16)).is_ok());
        assert!(check("vips_per_subnet", Some(0))
            .unwrap_err()
            .0
            .contains("at least 1"));
        assert!(check("vips_per_subnet", Some(10_001)).is_err());
        let p = ProjectLimits {
            vips_per_subnet: Some(2),
            ..ProjectLimits::default()
        };
        assert_eq!(Limits::default().with(&p).vips_per_subnet, 2);
        assert_eq!(
            Limits::default().with(&p).vips_per_project,
            DEFAULT_VIPS_PER_PROJECT
        );
    }
}
