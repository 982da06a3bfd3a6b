//! The gateway's config file: its two interfaces, the network behind the
//! internal one, and the EIPs with their VIPs.
//!
//! ```toml
//! external = "eth1"    # towards the internet: havip_gw_in runs here
//! internal = "eth0"    # on the VIPs' network: havip_gw_out runs here
//! network = 1          # the network id of the VIPs behind `internal`
//! max_eips = 4096      # optional; the size of the gateway's maps
//!
//! [[eip]]
//! eip = "198.51.100.19"
//! vip = "10.0.6.19"
//! # owner = "02:00:00:00:00:0b"   # optional: the owner until one is learned
//! ```

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use havip_common::maps::DEFAULT_MAX_EIPS;
use macaddr::MacAddr6;
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GatewayConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct File {
    external: String,
    internal: String,
    network: u32,
    #[serde(default = "default_max_eips")]
    max_eips: u32,
    #[serde(default)]
    eip: Vec<EipFile>,
}

fn default_max_eips() -> u32 {
    DEFAULT_MAX_EIPS
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct EipFile {
    eip: IpAddr,
    vip: IpAddr,
    #[serde(default)]
    owner: Option<String>,
}

/// One EIP and the VIP it is translated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Association {
    pub eip: IpAddr,
    pub vip: IpAddr,
    /// The owner's MAC to use until the gateway learns one.
    pub owner: Option<[u8; 6]>,
}

/// A checked gateway config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    pub external: String,
    pub internal: String,
    pub network: u32,
    pub max_eips: u32,
    pub associations: Vec<Association>,
    /// EIPs this gateway holds without a VIP (from etcd: allocated, not
    /// associated): their packets are dropped, counted.
    pub held: Vec<IpAddr>,
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, GatewayConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| GatewayConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            Invalid::Toml(source) => GatewayConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            Invalid::Rule(what) => GatewayConfigError::Invalid {
                path: path.to_owned(),
                what,
            },
        })
    }

    fn parse(text: &str) -> Result<Self, Invalid> {
        let file: File = toml::from_str(text).map_err(Invalid::Toml)?;
        let rule = |what: String| Err(Invalid::Rule(what));
        if file.external == file.internal {
            return rule(format!(
                "external and internal are both {:?}: the gateway needs two interfaces",
                file.external
            ));
        }
        if file.network == 0 {
            return rule(
                "network 0 is the EIPs' own: give the VIPs' network id (1 or more)".into(),
            );
        }
        if file.max_eips == 0 || file.max_eips > 1 << 20 {
            return rule(format!("max_eips {} is not in 1..=1048576", file.max_eips));
        }
        if file.eip.len() > file.max_eips as usize {
            return rule(format!(
                "{} EIPs, more than max_eips ({})",
                file.eip.len(),
                file.max_eips
            ));
        }
        let (mut eips, mut vips) = (HashSet::new(), HashSet::new());
        let mut associations = Vec::with_capacity(file.eip.len());
        for e in &file.eip {
            let a = Association {
                eip: e.eip,
                vip: e.vip,
                owner: None,
            };
            if let Some(why) = association_problem(&a, &mut eips, &mut vips) {
                return rule(why);
            }
            let owner = match &e.owner {
                None => None,
                Some(text) => Some(
                    text.parse::<MacAddr6>()
                        .map_err(|_| {
                            Invalid::Rule(format!("owner {text:?} of EIP {}: not a MAC", e.eip))
                        })?
                        .into_array(),
                ),
            };
            associations.push(Association { owner, ..a });
        }
        Ok(Self {
            external: file.external,
            internal: file.internal,
            network: file.network,
            max_eips: file.max_eips,
            associations,
            held: Vec::new(),
        })
    }
}

/// What keeps `a` from being translated beside the EIPs and VIPs seen so
/// far (which it joins when it can be): two families, an address no
/// packet has, an EIP given twice, a VIP with two EIPs, an address that
/// is both an EIP and a VIP.
pub fn association_problem(
    a: &Association,
    eips: &mut HashSet<IpAddr>,
    vips: &mut HashSet<IpAddr>,
) -> Option<String> {
    if a.eip.is_ipv4() != a.vip.is_ipv4() {
        return Some(format!(
            "EIP {} and VIP {}: not one family (1:1 translation keeps it)",
            a.eip, a.vip
        ));
    }
    for (what, addr) in [("EIP", a.eip), ("VIP", a.vip)] {
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || is_broadcast(addr)
        {
            return Some(format!("{what} {addr} cannot be translated"));
        }
    }
    if eips.contains(&a.eip) {
        return Some(format!("EIP {} is given twice", a.eip));
    }
    if vips.contains(&a.vip) {
        return Some(format!("VIP {} has two EIPs", a.vip));
    }
    if let Some(both) = [a.eip, a.vip]
        .into_iter()
        .find(|x| eips.contains(x) || vips.contains(x) || a.eip == a.vip)
    {
        return Some(format!("{both} is both an EIP and a VIP"));
    }
    eips.insert(a.eip);
    vips.insert(a.vip);
    None
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast())
}

enum Invalid {
    Toml(toml::de::Error),
    Rule(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
external = "ext0"
internal = "int0"
network = 1

[[eip]]
eip = "198.51.100.19"
vip = "10.0.6.19"
owner = "02:00:00:00:00:0b"

[[eip]]
eip = "2001:db8:100::19"
vip = "fd00:6::19"
"#;

    fn error_of(text: &str) -> String {
        match GatewayConfig::parse(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(Invalid::Toml(e)) => e.to_string(),
            Err(Invalid::Rule(what)) => what,
        }
    }

    #[test]
    fn a_config_gives_its_associations() {
        let Ok(c) = GatewayConfig::parse(GOOD) else {
            panic!("refused")
        };
        assert_eq!(c.max_eips, DEFAULT_MAX_EIPS);
        assert_eq!(c.associations.len(), 2);
        assert_eq!(c.associations[0].owner, Some([2, 0, 0, 0, 0, 0x0b]));
        assert_eq!(c.associations[1].owner, None);
        assert_eq!(
            c.associations[1].vip,
            "fd00:6::19".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let cases: [(&str, &str); 9] = [
            ("int0", "both \"int0\""),
            ("", "not one family"),
            ("", "given twice"),
            ("", "has two EIPs"),
            ("", "cannot be translated"),
            ("", "not a MAC"),
            ("", "both an EIP and a VIP"),
            ("", "unknown field"),
            ("", "network 0"),
        ];
        let head = |external: &str| {
            format!("external = \"{external}\"\ninternal = \"int0\"\nnetwork = 1\n")
        };
        let eip = |e: &str, v: &str| format!("[[eip]]\neip = \"{e}\"\nvip = \"{v}\"\n");
        let texts = [
            head(cases[0].0),
            head("ext0") + &eip("198.51.100.19", "fd00:6::19"),
            head("ext0") + &eip("198.51.100.19", "10.0.6.19") + &eip("198.51.100.19", "10.0.6.20"),
            head("ext0") + &eip("198.51.100.19", "10.0.6.19") + &eip("198.51.100.20", "10.0.6.19"),
            head("ext0") + &eip("0.0.0.0", "10.0.6.19"),
            head("ext0") + &eip("198.51.100.19", "10.0.6.19") + "owner = \"nope\"\n",
            head("ext0") + &eip("10.0.6.20", "10.0.6.19") + &eip("198.51.100.1", "10.0.6.20"),
            head("ext0") + "colour = 1\n",
            head("ext0").replace("network = 1", "network = 0"),
        ];
        for (text, (_, expected)) in texts.iter().zip(cases) {
            let error = error_of(text);
            assert!(
                error.contains(expected),
                "{text}\n-> {error}\n(expected {expected:?})"
            );
        }
    }
}
