//! The controller's TOML configuration.
//!
//! ```toml
//! listen = "127.0.0.1:8780"
//! etcd = ["http://127.0.0.1:2379"]
//! history_per_vip = 50  # owner changes kept per VIP (1..=10000)
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
//! [[tokens]]           # `havip-controller hash-token` prints the digest
//! token_sha256 = "4c1b0e...64 hex digits"
//! project = "proj-a"
//!
//! [[tokens]]
//! token_sha256 = "9f86d0...64 hex digits"
//! operator = true
//!
//! [tls]                # optional: serve HTTPS
//! cert = "/etc/havip/controller.crt"   # PEM chain
//! key = "/etc/havip/controller.key"    # PEM private key
//! ```
//!
//! A token given in plain (`token = "..."`, the old form) is still
//! accepted, hashed in memory, and logged as a warning at every start
//! ([`Config::plaintext_tokens`]) until it is replaced by its digest.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use havip_schema::limits::{self, Limits};

use crate::store::Scope;
use crate::tokens::{self, TokenDigest, Tokens};

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
    /// Serve HTTPS with this certificate (the `--tls-cert/--tls-key`
    /// flags override it).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Owner changes kept per VIP in etcd (older ones are deleted).
    #[serde(default = "default_history_per_vip")]
    pub history_per_vip: usize,
}

/// The API's certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    /// The token's SHA-256 digest, 64 hex digits.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The token itself (deprecated: accepted with a warning).
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub operator: bool,
}

impl TokenConfig {
    /// The token's digest, from `token_sha256` or by hashing `token`.
    fn digest(&self) -> Result<TokenDigest, String> {
        match (&self.token_sha256, &self.token) {
            (Some(hex), None) => tokens::parse_digest_hex(hex).ok_or_else(|| {
                "token_sha256 must be 64 hex digits (`havip-controller hash-token` prints them)"
                    .to_string()
            }),
            (None, Some(token)) => {
                if token.len() < 8 || token.chars().any(char::is_whitespace) {
                    return Err("a token needs at least 8 characters and no whitespace".into());
                }
                Ok(tokens::digest(token))
            }
            (Some(_), Some(_)) => Err("give token_sha256 or token, not both".into()),
            (None, None) => {
                Err("set token_sha256 = \"...\" (`havip-controller hash-token` prints it)".into())
            }
        }
    }
}

fn default_history_per_vip() -> usize {
    crate::store::DEFAULT_HISTORY_PER_VIP
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
        if !(1..=10_000).contains(&self.history_per_vip) {
            return Err("history_per_vip must be 1 to 10000".into());
        }
        if self.tokens.is_empty() {
            return Err("tokens: at least one token is needed".into());
        }
        let mut seen = HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("tokens[{i}]");
            let digest = t.digest().map_err(|m| format!("{at}: {m}"))?;
            if !seen.insert(digest) {
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

    /// The tokens, as digests, and whom each speaks for.
    pub fn tokens(&self) -> Tokens {
        Tokens::new(
            self.tokens
                .iter()
                .map(|t| {
                    let digest = t.digest().expect("validated at load");
                    let scope = match &t.project {
                        Some(p) => Scope::Project(p.clone()),
                        None => Scope::Operator,
                    };
                    (digest, scope)
                })
                .collect(),
        )
    }

    /// Which `[[tokens]]` entries give the token in plain (`tokens[i]`).
    pub fn plaintext_tokens(&self) -> Vec<String> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.token.is_some())
            .map(|(i, _)| format!("tokens[{i}]"))
            .collect()
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
        assert_eq!(c.plaintext_tokens(), ["tokens[0]", "tokens[1]"]);
        assert!(c.tls.is_none());
        assert_eq!(c.history_per_vip, 50);
    }

    #[test]
    fn hashed_tokens_and_tls() {
        let c = parse(&format!(
            r#"
etcd = ["http://127.0.0.1:2379"]
[tls]
cert = "/etc/havip/c.crt"
key = "/etc/havip/c.key"
[[tokens]]
token_sha256 = "{}"
project = "p1"
[[tokens]]
token = "tok-operator"
operator = true
"#,
            tokens::digest_hex("tok-project")
        ))
        .unwrap();
        assert_eq!(c.plaintext_tokens(), ["tokens[1]"]);
        let t = c.tokens();
        assert!(matches!(t.lookup("tok-project"), Some(Scope::Project(p)) if p == "p1"));
        assert!(matches!(t.lookup("tok-operator"), Some(Scope::Operator)));
        assert!(t.lookup("tok-other").is_none());
        assert_eq!(c.tls.unwrap().key, Path::new("/etc/havip/c.key"));
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
            ("etcd = ['x']\nhistory_per_vip = 0\ntokens = []", "history_per_vip must be 1"),
            ("etcd = ['x']\n[[tokens]]\noperator=true", "set token_sha256"),
            ("etcd = ['x']\n[[tokens]]\ntoken_sha256='abcd'\noperator=true", "64 hex digits"),
            (
                "etcd = ['x']\n[[tokens]]\ntoken_sha256='ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'\ntoken='tok-aaaaaaaa'\noperator=true",
                "not both",
            ),
            (
                // the digest of "tok-aaaaaaaa" and the token itself: the same token twice
                "etcd = ['x']\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true\n[[tokens]]\ntoken_sha256='DIGEST'\nproject='p'",
                "twice",
            ),
            ("etcd = ['x']\n[tls]\ncert='a'\n[[tokens]]\ntoken='tok-aaaaaaaa'\noperator=true", "missing field `key`"),
        ];
        let digest = tokens::digest_hex("tok-aaaaaaaa");
        for (text, want) in cases {
            let text = &text.replace("DIGEST", &digest);
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("c.toml"), "{e}");
        }
    }
}
