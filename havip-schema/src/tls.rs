//! How every havip etcd client (controller, agent, gateway) proves who it
//! is: TLS with the etcd CA and a client certificate, whose common name
//! etcd (`--client-cert-auth`) takes as the user name (`controller`, or
//! the host's name for an agent; see README, "etcd security").

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};

/// PEM files: the CA that signed etcd's certificate, and this client's
/// certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("etcd TLS: cannot read {}: {source}", path.display())]
pub struct TlsError {
    path: PathBuf,
    source: std::io::Error,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        path: path.to_owned(),
        source,
    })
}

impl EtcdTls {
    /// The three options together, or none of them; half a set is a
    /// mistake, told by name.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, String> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(EtcdTls { ca, cert, key })),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    ("CA", ca.is_none()),
                    ("cert", cert.is_none()),
                    ("key", key.is_none()),
                ]
                .into_iter()
                .filter_map(|(n, m)| m.then_some(n))
                .collect();
                Err(format!(
                    "etcd TLS needs the CA, the client certificate and its key; missing: {}",
                    missing.join(", ")
                ))
            }
        }
    }

    /// `options` with this TLS (the files are read now).
    pub fn apply(&self, options: ConnectOptions) -> Result<ConnectOptions, TlsError> {
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        Ok(options.with_tls(tls))
    }
}

/// `options` with `tls` if any.
pub fn connect_options(
    tls: Option<&EtcdTls>,
    options: ConnectOptions,
) -> Result<ConnectOptions, TlsError> {
    match tls {
        Some(t) => t.apply(options),
        None => Ok(options),
    }
}
