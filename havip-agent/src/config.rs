//! The agent's configuration file: the desired networks, ports and VIPs.
//!
//! The file is TOML; every table rejects unknown fields:
//!
//! ```toml
//! [limits]                 # optional
//! max_ports_per_vip = 3    # 1..=16 (havip_common::vip::MAX_BINDINGS), default 3
//! max_vips_per_port = 5    # >= 1, default 5
//!
//! [[networks]]
//! id = 1                   # nonzero, unique
//! name = "subnet-a"        # optional
//! cidrs = ["10.0.6.0/24", "fd00:6::/64"]
//!
//! [[ports]]
//! id = 11                  # nonzero, unique
//! name = "vm1"             # optional
//! interface = "tap-vm1"    # hypervisor-side interface, unique
//! network = 1
//! mac = "02:00:00:00:00:11"
//! ips = ["10.0.6.9", "fd00:6::9"]
//! port_security = true     # default true
//! link_local = "fe80::1"   # optional, default: EUI-64 from mac
//! link_locals = ["fe80::5:1"]  # optional: more link-locals it may use (at most 8)
//! vlans = [10, 20]         # optional: VLAN ids it may tag frames with (at most 8, 1..=4094)
//!
//! [[vips]]
//! id = 1                   # nonzero, unique
//! name = "web"             # optional
//! network = 1
//! address = "10.0.6.19"
//! ports = [11, 12]
//! hold_down_ms = 1000      # optional, 0..=3600000, default 1000 (0: no damping)
//! ```
//!
//! [`Config::parse`] checks every rule and reports every problem it finds,
//! each naming the object and the rule, so one round of edits fixes a file.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv6Addr},
    path::{Path, PathBuf},
    str::FromStr,
};

use havip_common::{
    port::{check_vlans, MAX_LINK_LOCALS},
    vip::{
        self, DEFAULT_HOLD_DOWN_MS, DEFAULT_MAX_PORTS_PER_VIP, DEFAULT_MAX_VIPS_PER_PORT,
        MAX_BINDINGS,
    },
};
use havip_schema::rules::{interface_name_problem, is_unicast, vip_address_problem};
use ipnet::IpNet;
use macaddr::MacAddr6;
use serde::Deserialize;

use crate::util::{eui64_link_local, format_mac};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.as_ref().map_or("config".to_string(), |p| p.display().to_string()))]
    Syntax {
        path: Option<PathBuf>,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{}", Invalid(path.as_deref(), problems))]
    Invalid {
        path: Option<PathBuf>,
        /// One line per broken rule, e.g. `vip 1 (web): address 10.0.9.19 is
        /// outside network 1's CIDRs 10.0.6.0/24`.
        problems: Vec<String>,
    },
}

struct Invalid<'a>(Option<&'a Path>, &'a [String]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(path, problems) = self;
        let what = path.map_or("config".to_string(), |p| p.display().to_string());
        match problems {
            [one] => write!(f, "{what}: {one}"),
            many => {
                write!(f, "{what}: {} problems:", many.len())?;
                for p in many.iter() {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// The broken rules, when the file parsed but is not valid.
    pub fn problems(&self) -> &[String] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    networks: Vec<NetworkFile>,
    #[serde(default)]
    ports: Vec<PortFile>,
    #[serde(default)]
    vips: Vec<VipFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    max_ports_per_vip: usize,
    max_vips_per_port: usize,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_ports_per_vip: DEFAULT_MAX_PORTS_PER_VIP,
            max_vips_per_port: DEFAULT_MAX_VIPS_PER_PORT,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    id: u32,
    name: Option<String>,
    cidrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortFile {
    id: u32,
    name: Option<String>,
    interface: String,
    network: u32,
    mac: String,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default = "yes")]
    port_security: bool,
    link_local: Option<String>,
    #[serde(default)]
    link_locals: Vec<String>,
    #[serde(default)]
    vlans: Vec<i64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VipFile {
    id: u32,
    name: Option<String>,
    network: u32,
    address: String,
    #[serde(default)]
    ports: Vec<u32>,
    /// The VRRP virtual router id the HA software uses for it.
    vrid: Option<i64>,
    /// Signed, so that a negative one gets its own message.
    hold_down_ms: Option<i64>,
}

// ---------------------------------------------------------------------------
// The validated model.

/// Operator limits on bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_ports_per_vip: usize,
    pub max_vips_per_port: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ports_per_vip: DEFAULT_MAX_PORTS_PER_VIP,
            max_vips_per_port: DEFAULT_MAX_VIPS_PER_PORT,
        }
    }
}

/// A network (VPC subnet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: u32,
    pub name: Option<String>,
    pub cidrs: Vec<IpNet>,
}

/// A VM port on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub id: u32,
    pub name: Option<String>,
    /// Hypervisor-side interface name.
    pub interface: String,
    pub network: u32,
    pub mac: [u8; 6],
    /// Fixed addresses, each inside one of the network's CIDRs.
    pub ips: Vec<IpAddr>,
    pub port_security: bool,
    /// Given, or derived from `mac` (EUI-64).
    pub link_local: Ipv6Addr,
    /// More link-locals the port may use (registered for it; at most
    /// [`MAX_LINK_LOCALS`]).
    pub link_locals: Vec<Ipv6Addr>,
    /// VLAN ids the port may tag frames with (at most
    /// [`havip_common::port::MAX_VLANS`]).
    pub vlans: Vec<u16>,
}

/// A HAVIP and the ports that may claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    pub id: u32,
    pub name: Option<String>,
    pub network: u32,
    pub address: IpAddr,
    /// Bound port ids, in file order.
    pub ports: Vec<u32>,
    /// The VRRP virtual router id (1-255) its HA software uses, when given:
    /// its bound ports may send from that VRID's virtual MAC only (without
    /// it, from any virtual MAC of the VIP's family).
    pub vrid: Option<u8>,
    /// Split-brain damping: a claim by another port within this long of
    /// the last owner change waits for its end (see
    /// [`havip_common::Vip::hold_down_ms`]).
    pub hold_down_ms: u32,
}

/// The desired state of a host: its networks, ports and VIPs, keyed by id.
/// Both sources produce it: a file that passed every rule, or this host's
/// share of etcd (see `etcd::to_config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The binding limits a file was checked against; `None` for a state
    /// from etcd, whose controller enforces them.
    pub limits: Option<Limits>,
    pub networks: BTreeMap<u32, Network>,
    pub ports: BTreeMap<u32, PortConfig>,
    pub vips: BTreeMap<u32, VipConfig>,
}

impl FromStr for Config {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, None)
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses and validates TOML text; `path` only labels errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.map(Path::to_owned),
            source: Box::new(e),
        })?;
        validate(file).map_err(|problems| ConfigError::Invalid {
            path: path.map(Path::to_owned),
            problems,
        })
    }

    /// A one-line summary, as printed by `havip-agent check`.
    pub fn summary(&self) -> String {
        let bindings: usize = self.vips.values().map(|v| v.ports.len()).sum();
        let limits = match &self.limits {
            Some(l) => format!(
                "limits: {} port(s) per vip, {} vip(s) per port",
                l.max_ports_per_vip, l.max_vips_per_port
            ),
            None => "limits: the controller's".to_string(),
        };
        format!(
            "{} network(s), {} port(s), {} vip(s), {} binding(s); {limits}",
            self.networks.len(),
            self.ports.len(),
            self.vips.len(),
            bindings,
        )
    }

    /// `"vip 1 (web)"` or `"vip 1"`.
    pub fn vip_label(&self, id: u32) -> String {
        label(
            "vip",
            id,
            self.vips.get(&id).and_then(|v| v.name.as_deref()),
        )
    }

    /// `"port 11 (vm1)"` or `"port 11"`.
    pub fn port_label(&self, id: u32) -> String {
        label(
            "port",
            id,
            self.ports.get(&id).and_then(|p| p.name.as_deref()),
        )
    }
}

fn label(kind: &str, id: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{kind} {id} ({n})"),
        None => format!("{kind} {id}"),
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate(file: File) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let mut config = Config::default();

    // --- limits
    let l = &file.limits;
    if !(1..=MAX_BINDINGS).contains(&l.max_ports_per_vip) {
        problems.push(format!(
            "limits: max_ports_per_vip = {} must be between 1 and {MAX_BINDINGS}",
            l.max_ports_per_vip
        ));
    }
    if l.max_vips_per_port == 0 {
        problems.push("limits: max_vips_per_port must be at least 1".to_string());
    }
    let limits = Limits {
        max_ports_per_vip: l.max_ports_per_vip,
        max_vips_per_port: l.max_vips_per_port,
    };
    config.limits = Some(limits);

    // --- networks
    for n in file.networks {
        let who = label("network", n.id, n.name.as_deref());
        if n.id == 0 {
            problems.push(format!("{who}: id must be nonzero"));
        }
        if config.networks.contains_key(&n.id) {
            problems.push(format!("{who}: duplicate network id {}", n.id));
            continue;
        }
        if n.cidrs.is_empty() {
            problems.push(format!("{who}: needs at least one CIDR in cidrs"));
        }
        let mut cidrs: Vec<IpNet> = Vec::new();
        for c in &n.cidrs {
            match c.parse::<IpNet>() {
                Err(_) => problems.push(format!("{who}: {c:?} is not a CIDR (like 10.0.6.0/24)")),
                Ok(net) if net.trunc() != net => problems.push(format!(
                    "{who}: CIDR {c} has host bits set (did you mean {}?)",
                    net.trunc()
                )),
                Ok(net) => {
                    if let Some(other) = cidrs.iter().find(|o| o.contains(&net) || net.contains(*o))
                    {
                        problems.push(format!("{who}: CIDR {net} overlaps CIDR {other}"));
                    } else {
                        cidrs.push(net);
                    }
                }
            }
        }
        config.networks.insert(
            n.id,
            Network {
                id: n.id,
                name: n.name,
                cidrs,
            },
        );
    }

    // --- ports
    let mut interfaces: HashMap<String, u32> = HashMap::new();
    // (network, address) -> port id holding it.
    let mut fixed: HashMap<(u32, IpAddr), u32> = HashMap::new();
    for p in file.ports {
        let who = label("port", p.id, p.name.as_deref());
        if p.id == 0 {
            problems.push(format!("{who}: id must be nonzero"));
        }
        if config.ports.contains_key(&p.id) {
            problems.push(format!("{who}: duplicate port id {}", p.id));
            continue;
        }
        if let Some(why) = interface_name_problem(&p.interface) {
            problems.push(format!("{who}: interface {:?} {why}", p.interface));
        } else if let Some(other) = interfaces.get(&p.interface) {
            problems.push(format!(
                "{who}: interface {} is already used by port {other}",
                p.interface
            ));
        } else {
            interfaces.insert(p.interface.clone(), p.id);
        }
        let network = config.networks.get(&p.network);
        if network.is_none() {
            problems.push(format!("{who}: unknown network {}", p.network));
        }
        let mac = match p.mac.parse::<MacAddr6>() {
            Err(_) => {
                problems.push(format!(
                    "{who}: mac {:?} is not a MAC address (like 02:00:00:00:00:11)",
                    p.mac
                ));
                [0; 6]
            }
            Ok(m) if m.is_nil() || m.is_multicast() => {
                problems.push(format!(
                    "{who}: mac {} is not a unicast MAC address",
                    format_mac(&m.into_array())
                ));
                [0; 6]
            }
            Ok(m) => m.into_array(),
        };
        let mut ips = Vec::new();
        for ip in &p.ips {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                problems.push(format!("{who}: {ip:?} in ips is not an IP address"));
                continue;
            };
            if !is_unicast(&addr) {
                problems.push(format!("{who}: ip {addr} is not a unicast address"));
                continue;
            }
            if let Some(net) = network {
                if !net.cidrs.iter().any(|c| c.contains(&addr)) {
                    problems.push(format!(
                        "{who}: ip {addr} is outside network {}'s CIDRs {}",
                        net.id,
                        join(&net.cidrs)
                    ));
                    continue;
                }
            }
            match hold(&mut fixed, (p.network, addr), p.id, "ip") {
                Ok(()) => ips.push(addr),
                Err(why) => problems.push(format!("{who}: {why}")),
            }
        }
        // A port's link-locals are its fixed addresses too.
        let (link_local, link_locals) = port_link_locals(&who, &p, &mac, &mut problems);
        for a in std::iter::once(&link_local).chain(&link_locals) {
            let key = (p.network, IpAddr::V6(*a));
            if let Err(why) = hold(&mut fixed, key, p.id, "link-local") {
                problems.push(format!("{who}: {why}"));
            }
        }
        let vlans = match check_vlans(&p.vlans) {
            Ok(ids) => ids[..p.vlans.len()].to_vec(),
            Err(why) => {
                problems.push(format!("{who}: {why}"));
                Vec::new()
            }
        };
        config.ports.insert(
            p.id,
            PortConfig {
                id: p.id,
                name: p.name,
                interface: p.interface,
                network: p.network,
                mac,
                ips,
                port_security: p.port_security,
                link_local,
                link_locals,
                vlans,
            },
        );
    }

    // --- vips
    let mut vip_addrs: HashMap<(u32, IpAddr), u32> = HashMap::new();
    let mut vips_of_port: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for v in file.vips {
        let who = label("vip", v.id, v.name.as_deref());
        if v.id == 0 {
            problems.push(format!("{who}: id must be nonzero"));
        }
        if config.vips.contains_key(&v.id) {
            problems.push(format!("{who}: duplicate vip id {}", v.id));
            continue;
        }
        let network = config.networks.get(&v.network);
        if network.is_none() {
            problems.push(format!("{who}: unknown network {}", v.network));
        }
        let address = match v.address.parse::<IpAddr>() {
            Err(_) => {
                problems.push(format!(
                    "{who}: address {:?} is not an IP address",
                    v.address
                ));
                None
            }
            Ok(a) if !is_unicast(&a) => {
                problems.push(format!("{who}: address {a} is not a unicast address"));
                None
            }
            Ok(a) if vip_address_problem(&a).is_some() => {
                let why = vip_address_problem(&a).unwrap_or_default();
                problems.push(format!("{who}: address {why}"));
                None
            }
            Ok(a) => Some(a),
        };
        if let Some(addr) = address {
            if let Some(net) = network {
                if !net.cidrs.iter().any(|c| c.contains(&addr)) {
                    problems.push(format!(
                        "{who}: address {addr} is outside network {}'s CIDRs {}",
                        net.id,
                        join(&net.cidrs)
                    ));
                }
            }
            if let Some(port) = fixed.get(&(v.network, addr)) {
                problems.push(format!(
                    "{who}: address {addr} is port {port}'s fixed IP in network {}",
                    v.network
                ));
            }
            if let Some(other) = vip_addrs.get(&(v.network, addr)) {
                problems.push(format!(
                    "{who}: address {addr} is already vip {other}'s in network {}",
                    v.network
                ));
            } else {
                vip_addrs.insert((v.network, addr), v.id);
            }
        }
        let mut seen = HashSet::new();
        for &port_id in &v.ports {
            if !seen.insert(port_id) {
                problems.push(format!("{who}: port {port_id} is listed twice in ports"));
                continue;
            }
            match config.ports.get(&port_id) {
                None => problems.push(format!("{who}: unknown port {port_id}")),
                Some(p) if p.network != v.network => problems.push(format!(
                    "{who}: port {port_id} is in network {}, not in the vip's network {}",
                    p.network, v.network
                )),
                Some(_) => vips_of_port.entry(port_id).or_default().push(v.id),
            }
        }
        if v.ports.len() > limits.max_ports_per_vip {
            problems.push(format!(
                "{who}: {} ports bound, more than max_ports_per_vip = {}",
                v.ports.len(),
                limits.max_ports_per_vip
            ));
        }
        let vrid = match v.vrid {
            None => None,
            Some(n) => match u8::try_from(n) {
                Ok(n) if n != 0 => Some(n),
                _ => {
                    problems.push(format!("{who}: vrid {n} is not a VRRP router id (1-255)"));
                    None
                }
            },
        };
        let hold_down_ms = vip::hold_down_ms(v.hold_down_ms.unwrap_or(DEFAULT_HOLD_DOWN_MS.into()))
            .unwrap_or_else(|e| {
                problems.push(format!("{who}: {e}"));
                DEFAULT_HOLD_DOWN_MS
            });
        config.vips.insert(
            v.id,
            VipConfig {
                id: v.id,
                name: v.name,
                network: v.network,
                address: address.unwrap_or(IpAddr::V4([0; 4].into())),
                ports: v.ports,
                vrid,
                hold_down_ms,
            },
        );
    }
    for (port_id, vips) in &vips_of_port {
        if vips.len() > limits.max_vips_per_port {
            problems.push(format!(
                "{}: bound to {} vips ({}), more than max_vips_per_port = {}",
                config.port_label(*port_id),
                vips.len(),
                join(vips),
                limits.max_vips_per_port
            ));
        }
    }

    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Gives `address` (in its network) to `port` if no port holds it yet; else
/// why not (`what`: how the address is named).
fn hold(
    held: &mut HashMap<(u32, IpAddr), u32>,
    address: (u32, IpAddr),
    port: u32,
    what: &str,
) -> Result<(), String> {
    let (network, addr) = address;
    match held.get(&address) {
        Some(&other) if other == port => Err(format!("{what} {addr} is listed twice")),
        Some(&other) => Err(format!(
            "{what} {addr} is already port {other}'s in network {network}"
        )),
        None => {
            held.insert(address, port);
            Ok(())
        }
    }
}

/// A port's own link-local (given, or the EUI-64 of its MAC) and the ones
/// registered for it, each an IPv6 link-local (fe80::/10).
fn port_link_locals(
    who: &str,
    p: &PortFile,
    mac: &[u8; 6],
    problems: &mut Vec<String>,
) -> (Ipv6Addr, Vec<Ipv6Addr>) {
    let mut parse = |field: &str, s: &str| match s.parse::<Ipv6Addr>() {
        Ok(a) if a.is_unicast_link_local() => Some(a),
        Ok(a) => {
            problems.push(format!(
                "{who}: {field} {a} is not an IPv6 link-local address (fe80::/10)"
            ));
            None
        }
        Err(_) => {
            problems.push(format!("{who}: {field} {s:?} is not an IPv6 address"));
            None
        }
    };
    let own = match &p.link_local {
        None => eui64_link_local(mac),
        Some(s) => parse("link_local", s).unwrap_or(Ipv6Addr::UNSPECIFIED),
    };
    let registered: Vec<Ipv6Addr> = p
        .link_locals
        .iter()
        .filter_map(|s| parse("link_local in link_locals", s))
        .collect();
    if p.link_locals.len() > MAX_LINK_LOCALS {
        problems.push(format!(
            "{who}: {} link-locals in link_locals, at most {MAX_LINK_LOCALS} are allowed per port",
            p.link_locals.len()
        ));
    }
    (own, registered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[limits]
max_ports_per_vip = 3
max_vips_per_port = 5

[[networks]]
id = 1
name = "subnet-a"
cidrs = ["10.0.6.0/24", "fd00:6::/64"]

[[networks]]
id = 2
cidrs = ["10.0.7.0/24"]

[[ports]]
id = 11
name = "vm1"
interface = "tap-vm1"
network = 1
mac = "02:00:00:00:00:11"
ips = ["10.0.6.9", "fd00:6::9"]

[[ports]]
id = 12
name = "vm2"
interface = "tap-vm2"
network = 1
mac = "02:00:00:00:00:12"
ips = ["10.0.6.10"]
port_security = false
link_local = "fe80::12"

[[ports]]
id = 21
interface = "tap-vm3"
network = 2
mac = "02:00:00:00:00:21"
ips = ["10.0.7.9"]

[[vips]]
id = 1
name = "web"
network = 1
address = "10.0.6.19"
ports = [11, 12]

[[vips]]
id = 2
network = 1
address = "fd00:6::19"
ports = [11]
"#;

    #[test]
    fn good_file() {
        let c: Config = GOOD.parse().unwrap();
        assert_eq!(c.limits, Some(Limits::default()));
        assert_eq!(c.networks.len(), 2);
        assert_eq!(c.ports.len(), 3);
        assert_eq!(c.vips[&1].ports, vec![11, 12]);
        assert_eq!(c.vips[&1].hold_down_ms, DEFAULT_HOLD_DOWN_MS);
        let no_damping = GOOD.replacen("ports = [11, 12]", "ports = [11, 12]\nhold_down_ms = 0", 1);
        assert_eq!(
            no_damping.parse::<Config>().unwrap().vips[&1].hold_down_ms,
            0
        );
        assert_eq!(c.vips[&1].address, "10.0.6.19".parse::<IpAddr>().unwrap());
        let vm1 = &c.ports[&11];
        assert!(vm1.port_security);
        assert_eq!(vm1.mac, [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(
            vm1.link_local,
            "fe80::ff:fe00:11".parse::<Ipv6Addr>().unwrap()
        );
        let vm2 = &c.ports[&12];
        assert!(!vm2.port_security);
        assert_eq!(vm2.link_local, "fe80::12".parse::<Ipv6Addr>().unwrap());
        assert_eq!(c.vip_label(1), "vip 1 (web)");
        assert_eq!(c.vip_label(2), "vip 2");
        assert!(c
            .summary()
            .starts_with("2 network(s), 3 port(s), 2 vip(s), 3 binding(s)"));
    }

    #[test]
    fn empty_file_is_valid_and_uses_default_limits() {
        let c: Config = "".parse().unwrap();
        assert_eq!(
            c,
            Config {
                limits: Some(Limits::default()),
                ..Config::default()
            }
        );
        let limits = c.limits.unwrap();
        assert_eq!(limits.max_ports_per_vip, 3);
        assert_eq!(limits.max_vips_per_port, 5);
    }

    /// Applies `edit` to GOOD and expects exactly one problem containing
    /// `expect`.
    fn expect_problem(name: &str, edited: &str, expect: &str) {
        match edited.parse::<Config>() {
            Ok(_) => panic!("case {name:?}: accepted, expected {expect:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(expect),
                    "case {name:?}: error {msg:?} does not contain {expect:?}"
                );
            }
        }
    }

    #[test]
    fn each_rule_is_enforced() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (case, replace this in GOOD, with this, expected message part)
            (
                "max_ports_per_vip zero",
                "max_ports_per_vip = 3",
                "max_ports_per_vip = 0",
                "limits: max_ports_per_vip = 0 must be between 1 and 16",
            ),
            (
                "max_ports_per_vip above MAX_BINDINGS",
                "max_ports_per_vip = 3",
                "max_ports_per_vip = 17",
                "max_ports_per_vip = 17 must be between 1 and 16",
            ),
            (
                "max_vips_per_port zero",
                "max_vips_per_port = 5",
                "max_vips_per_port = 0",
                "limits: max_vips_per_port must be at least 1",
            ),
            (
                "unknown field in limits",
                "max_vips_per_port = 5",
                "max_vips_per_port = 5\nmax_vips = 2",
                "unknown field `max_vips`",
            ),
            (
                "unknown top-level table",
                "[limits]",
                "[extra]\nx = 1\n[limits]",
                "unknown field `extra`",
            ),
            (
                "unknown field in a port",
                "port_security = false",
                "port_security = false\nsecurity = true",
                "unknown field `security`",
            ),
            ("network id zero", "id = 2\ncidrs", "id = 0\ncidrs", "network 0: id must be nonzero"),
            (
                "duplicate network id",
                "id = 2\ncidrs",
                "id = 1\ncidrs",
                "network 1: duplicate network id 1",
            ),
            (
                "network without cidrs",
                "cidrs = [\"10.0.7.0/24\"]",
                "cidrs = []",
                "network 2: needs at least one CIDR",
            ),
            (
                "bad cidr",
                "\"10.0.7.0/24\"",
                "\"10.0.7.0/33\"",
                "network 2: \"10.0.7.0/33\" is not a CIDR",
            ),
            (
                "cidr with host bits",
                "\"10.0.7.0/24\"",
                "\"10.0.7.1/24\"",
                "CIDR 10.0.7.1/24 has host bits set (did you mean 10.0.7.0/24?)",
            ),
            (
                "overlapping cidrs",
                "\"10.0.7.0/24\"]",
                "\"10.0.7.0/24\", \"10.0.7.128/25\"]",
                "network 2: CIDR 10.0.7.128/25 overlaps CIDR 10.0.7.0/24",
            ),
            ("port id zero", "id = 21", "id = 0", "port 0: id must be nonzero"),
            ("duplicate port id", "id = 21", "id = 12", "port 12: duplicate port id 12"),
            (
                "duplicate interface",
                "interface = \"tap-vm3\"",
                "interface = \"tap-vm1\"",
                "port 21: interface tap-vm1 is already used by port 11",
            ),
            (
                "interface name too long",
                "interface = \"tap-vm3\"",
                "interface = \"tap-0123456789abc\"",
                "port 21: interface \"tap-0123456789abc\" is longer than 15 bytes",
            ),
            (
                "interface name with slash",
                "interface = \"tap-vm3\"",
                "interface = \"tap/vm3\"",
                "port 21: interface \"tap/vm3\" contains '/'",
            ),
            (
                "port in unknown network",
                "network = 2\nmac",
                "network = 9\nmac",
                "port 21: unknown network 9",
            ),
            (
                "bad mac",
                "\"02:00:00:00:00:21\"",
                "\"02:00:00:00:21\"",
                "port 21: mac \"02:00:00:00:21\" is not a MAC address",
            ),
            (
                "multicast mac",
                "\"02:00:00:00:00:21\"",
                "\"01:00:5e:00:00:21\"",
                "port 21: mac 01:00:5e:00:00:21 is not a unicast MAC address",
            ),
            (
                "bad ip",
                "ips = [\"10.0.7.9\"]",
                "ips = [\"10.0.7.x\"]",
                "port 21: \"10.0.7.x\" in ips is not an IP address",
            ),
            (
                "port ip outside cidrs",
                "ips = [\"10.0.7.9\"]",
                "ips = [\"10.0.8.9\"]",
                "port 21: ip 10.0.8.9 is outside network 2's CIDRs 10.0.7.0/24",
            ),
            (
                "port ip not unicast",
                "ips = [\"10.0.7.9\"]",
                "ips = [\"10.0.7.255\", \"255.255.255.255\"]",
                "port 21: ip 255.255.255.255 is not a unicast address",
            ),
            (
                "port ip used by another port",
                "ips = [\"10.0.6.10\"]",
                "ips = [\"10.0.6.9\"]",
                "port 12 (vm2): ip 10.0.6.9 is already port 11's in network 1",
            ),
            (
                "port ip listed twice",
                "ips = [\"10.0.7.9\"]",
                "ips = [\"10.0.7.9\", \"10.0.7.9\"]",
                "port 21: ip 10.0.7.9 is listed twice",
            ),
            (
                "link_local not link-local",
                "link_local = \"fe80::12\"",
                "link_local = \"fd00:6::12\"",
                "port 12 (vm2): link_local fd00:6::12 is not an IPv6 link-local address",
            ),
            (
                "link_local not an address",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::zz\"",
                "port 12 (vm2): link_local \"fe80::zz\" is not an IPv6 address",
            ),
            (
                "registered link-local not link-local",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nlink_locals = [\"fe80::5\", \"fd00:6::5\"]",
                "port 12 (vm2): link_local in link_locals fd00:6::5 is not an IPv6 link-local \
                 address (fe80::/10)",
            ),
            (
                "registered link-local is another port's own",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nlink_locals = [\"fe80::ff:fe00:11\"]",
                "port 12 (vm2): link-local fe80::ff:fe00:11 is already port 11's in network 1",
            ),
            (
                "link-local registered on two ports",
                "ips = [\"10.0.6.9\", \"fd00:6::9\"]",
                "ips = [\"10.0.6.9\", \"fd00:6::9\"]\nlink_locals = [\"fe80::12\"]",
                "port 12 (vm2): link-local fe80::12 is already port 11's in network 1",
            ),
            (
                "link-local listed twice",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nlink_locals = [\"fe80::12\"]",
                "port 12 (vm2): link-local fe80::12 is listed twice",
            ),
            (
                "too many registered link-locals",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nlink_locals = [\"fe80::1:1\", \"fe80::1:2\", \
                 \"fe80::1:3\", \"fe80::1:4\", \"fe80::1:5\", \"fe80::1:6\", \"fe80::1:7\", \
                 \"fe80::1:8\", \"fe80::1:9\"]",
                "port 12 (vm2): 9 link-locals in link_locals, at most 8 are allowed per port",
            ),
            (
                "too many VLANs",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nvlans = [1, 2, 3, 4, 5, 6, 7, 8, 9]",
                "port 12 (vm2): 9 VLANs in vlans, at most 8 are allowed per port",
            ),
            (
                "VLAN id 4095",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nvlans = [10, 4095]",
                "port 12 (vm2): vlan 4095 in vlans is not a VLAN id (1 to 4094)",
            ),
            (
                "VLAN id 0",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nvlans = [0]",
                "port 12 (vm2): vlan 0 in vlans is the priority tag",
            ),
            (
                "VLAN listed twice",
                "link_local = \"fe80::12\"",
                "link_local = \"fe80::12\"\nvlans = [10, 10]",
                "port 12 (vm2): vlan 10 is listed twice in vlans",
            ),
            ("vip id zero", "id = 2\nnetwork = 1", "id = 0\nnetwork = 1", "vip 0: id must be nonzero"),
            (
                "vrid zero",
                "id = 2\nnetwork = 1",
                "id = 2\nvrid = 0\nnetwork = 1",
                "vip 2: vrid 0 is not a VRRP router id (1-255)",
            ),
            (
                "vrid too large",
                "id = 2\nnetwork = 1",
                "id = 2\nvrid = 256\nnetwork = 1",
                "vip 2: vrid 256 is not a VRRP router id (1-255)",
            ),
            (
                "duplicate vip id",
                "id = 2\nnetwork = 1",
                "id = 1\nnetwork = 1",
                "vip 1: duplicate vip id 1",
            ),
            (
                "vip in unknown network",
                "network = 1\naddress = \"fd00:6::19\"",
                "network = 7\naddress = \"fd00:6::19\"",
                "vip 2: unknown network 7",
            ),
            (
                "vip address not an address",
                "address = \"fd00:6::19\"",
                "address = \"fd00:6::zz\"",
                "vip 2: address \"fd00:6::zz\" is not an IP address",
            ),
            (
                "vip address outside cidrs",
                "address = \"10.0.6.19\"",
                "address = \"10.0.9.19\"",
                "vip 1 (web): address 10.0.9.19 is outside network 1's CIDRs 10.0.6.0/24, fd00:6::/64",
            ),
            (
                "vip address is a fixed ip",
                "address = \"10.0.6.19\"",
                "address = \"10.0.6.10\"",
                "vip 1 (web): address 10.0.6.10 is port 12's fixed IP in network 1",
            ),
            (
                "vip address is another vip's",
                "address = \"fd00:6::19\"",
                "address = \"10.0.6.19\"",
                "vip 2: address 10.0.6.19 is already vip 1's in network 1",
            ),
            (
                "vip binds unknown port",
                "ports = [11, 12]",
                "ports = [11, 13]",
                "vip 1 (web): unknown port 13",
            ),
            (
                "vip binds port of another network",
                "ports = [11, 12]",
                "ports = [11, 21]",
                "vip 1 (web): port 21 is in network 2, not in the vip's network 1",
            ),
            (
                "vip binds a port twice",
                "ports = [11, 12]",
                "ports = [11, 11]",
                "vip 1 (web): port 11 is listed twice in ports",
            ),
            (
                "too many ports per vip",
                "max_ports_per_vip = 3",
                "max_ports_per_vip = 1",
                "vip 1 (web): 2 ports bound, more than max_ports_per_vip = 1",
            ),
            (
                "too many vips per port",
                "max_vips_per_port = 5",
                "max_vips_per_port = 1",
                "port 11 (vm1): bound to 2 vips (1, 2), more than max_vips_per_port = 1",
            ),
            (
                "negative hold-down",
                "ports = [11, 12]",
                "ports = [11, 12]\nhold_down_ms = -1",
                "vip 1 (web): hold_down_ms = -1 must be between 0 (no damping) and 3600000 (an hour)",
            ),
            (
                "hold-down over an hour",
                "ports = [11, 12]",
                "ports = [11, 12]\nhold_down_ms = 3600001",
                "vip 1 (web): hold_down_ms = 3600001 must be between 0",
            ),
            (
                "missing required field",
                "interface = \"tap-vm3\"\n",
                "",
                "missing field `interface`",
            ),
        ];
        for (name, from, to, expect) in cases {
            assert!(GOOD.contains(from), "case {name:?}: {from:?} not in GOOD");
            expect_problem(name, &GOOD.replacen(from, to, 1), expect);
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = GOOD
            .replacen("address = \"10.0.6.19\"", "address = \"10.0.9.19\"", 1)
            .replacen("ports = [11, 12]", "ports = [11, 13]", 1);
        let err = text.parse::<Config>().unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
        assert!(err
            .to_string()
            .starts_with("config: 2 problems:\n  - vip 1 (web)"));
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = Config::parse("[[ports]\n", Some(Path::new("/etc/havip.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().starts_with("/etc/havip.toml: "), "{err}");
    }

    #[test]
    fn same_address_in_two_networks_is_fine() {
        let text = r#"
[[networks]]
id = 1
cidrs = ["10.0.6.0/24"]
[[networks]]
id = 2
cidrs = ["10.0.6.0/24"]
[[ports]]
id = 1
interface = "a"
network = 1
mac = "02:00:00:00:00:01"
ips = ["10.0.6.9"]
[[ports]]
id = 2
interface = "b"
network = 2
mac = "02:00:00:00:00:02"
ips = ["10.0.6.9"]
[[vips]]
id = 1
network = 1
address = "10.0.6.19"
[[vips]]
id = 2
network = 2
address = "10.0.6.19"
"#;
        let c: Config = text.parse().unwrap();
        assert!(c.vips[&1].ports.is_empty());
    }
}
