//! The controller's TOML configuration.
//!
//! ```toml
//! listen = "127.0.0.1:8780"
//! etcd = ["http://127.0.0.1:2379"]
//!
//! [etcd_tls]          # optional: TLS with a client certificate (CN = etcd user)
//! ca = "/etc/havip/etcd-ca.pem"
//! cert = "/etc/havip/controller.pem"
//! key = "/etc/havip/controller-key.pem"
//!
//! [limits]            # defaults; operators change them per project or VIP
//! ports_per_vip = 3   # at most 16, what the datapath holds
//! vips_per_port = 5
//! vips_per_project = 100
//! vips_per_subnet = 50
//!
//! [[tokens]]
//! token = "a-long-random-secret"
//! project = "proj-a"
//!
//! [[tokens]]
//! token = "another-long-random-secret"
//! operator = true
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use havip_schema::limits::{self, Limits};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// TLS to etcd with a client certificate (`[etcd_tls]`: `ca`, `cert`,
    /// `key`, PEM files); its common name is the controller's etcd user.
    #[serde(default)]
    pub etcd_tls: Option<havip_schema::tls::EtcdTls>,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub tokens: Vec<TokenConfig>,
}

/// The default limits (the schema's defaults where not given).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_ports_per_vip")]
    pub ports_per_vip: u32,
    #[serde(default = "default_vips_per_port")]
    pub vips_per_port: u32,
    #[serde(default = "default_vips_per_project")]
    pub vips_per_project: u32,
    #[serde(default = "default_vips_per_subnet")]
    pub vips_per_subnet: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Limits::default().into()
    }
}

impl From<Limits> for LimitsConfig {
    fn from(l: Limits) -> Self {
        LimitsConfig {
            ports_per_vip: l.ports_per_vip,
            vips_per_port: l.vips_per_port,
            vips_per_project: l.vips_per_project,
            vips_per_subnet: l.vips_per_subnet,
        }
    }
}

impl From<LimitsConfig> for Limits {
    fn from(l: LimitsConfig) -> Self {
        Limits {
            ports_per_vip: l.ports_per_vip,
            vips_per_port: l.vips_per_port,
            vips_per_project: l.vips_per_project,
            vips_per_subnet: l.vips_per_subnet,
        }
    }
}

/// A bearer token: either a project's or the operator's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub operator: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8780))
}

fn default_ports_per_vip() -> u32 {
    limits::DEFAULT_PORTS_PER_VIP
}

fn default_vips_per_port() -> u32 {
    limits::DEFAULT_VIPS_PER_PORT
}

fn default_vips_per_project() -> u32 {
    limits::DEFAULT_VIPS_PER_PROJECT
}

fn default_vips_per_subnet() -> u32 {
    limits::DEFAULT_VIPS_PER_SUBNET
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err("etcd: at least one endpoint is needed".into());
        }
        Limits::from(self.limits)
            .check()
            .map_err(|e| format!("limits: {e}"))?;
        if self.tokens.is_empty() {
            return Err("tokens: at least one token is needed".into());
        }
        let mut seen = HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("tokens[{i}]");
            if t.token.len() < 8 || t.token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "{at}: a token needs at least 8 characters and no whitespace"
                ));
            }
            if !seen.insert(&t.token) {
                return Err(format!("{at}: the same token is given twice"));
            }
            match (&t.project, t.operator) {
                (Some(_), true) => {
                    return Err(format!(
                        "{at}: a token is either a project's or the operator's, not both"
                    ))
                }
                (None, false) => {
                    return Err(format!("{at}: set project = \"...\" or operator = true"))
                }
                (Some(p), false) => {
                    havip_schema::rules::check_id("project", p).map_err(|e| format!("{at}: {e}"))?
                }
                (None, true) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("c.toml"), text)
    }

    #[test]
    fn good_config() {
        let c = parse(
            r#"
etcd = ["http://127.0.0.1:2379"]
[[tokens]]
token = "tok-aaaaaaaa"
project = "p1"
[[tokens]]
token = "tok-operator"
operator = true
"#,
        )
        .unwrap();
        assert_eq!(c.limits.ports_per_vip, 3);
        assert_eq!(c.limits.vips_per_port, 5);
        assert_eq!(c.limits.vips_per_project, 100);
        assert_eq!(c.limits.vips_per_subnet, 50);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8780");
    }

    #[test]
    fn bad_configs_say_why() {
        let cases = [
            ("etcd = []\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true", "at least one endpoint"),
            ("etcd = ['x']\ntokens = []", "at least one token"),
            ("etcd = ['x']\n[[tokens]]\ntoken='short'\noperator=true", "at least 8"),
            ("etcd = ['x']\n[[tokens]]\ntoken='tok-aaaaaaaa'", "set project"),
            (
                "etcd = ['x']\n[[tokens]]\ntoken='tok-aaaaaaaa'\nproject='p'\noperator=true",
                "not both",
            ),
            (
                "etcd = ['x']\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true\n[[tokens]]\ntoken='tok-aaaaaaaa'\nproject='p'",
                "twice",
            ),
            ("etcd = ['x']\nlisten = 'nope'\ntokens = []", "not valid"),
            (
                "etcd = ['x']\n[limits]\nports_per_vip = 5000\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true",
                "the datapath holds at most 16 ports per VIP",
            ),
            (
                "etcd = ['x']\n[limits]\nvips_per_subnet = 0\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true",
                "vips_per_subnet must be at least 1",
            ),
            ("etcd = ['x']\ncolour = 1\ntokens = []", "unknown field"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("c.toml"), "{e}");
        }
    }
}
