//! HTTPS for the API (rustls with the ring provider, served by
//! axum-server): the certificate and key are PEM files; a client that
//! speaks plain HTTP to the TLS port gets `400` with a body saying so
//! instead of a bare TLS alert.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
#[error("TLS certificate {cert} / key {key}: {source}")]
pub struct TlsError {
    cert: String,
    key: String,
    source: io::Error,
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-HTTP caller of the TLS port reads.
fn plain_http_answer() -> Vec<u8> {
    let body = "this port serves HTTPS: use https:// (havipctl --ca-cert FILE for a private CA)\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Loads the certificate chain and private key (PEM).
pub async fn load(cert: &Path, key: &Path) -> Result<RustlsConfig, TlsError> {
    // Once per process; a second install (tests) finds it done.
    let _ = rustls::crypto::ring::default_provider().install_default();
    RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|source| TlsError {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            source,
        })
}

/// The acceptor: plain-HTTP callers are answered and dropped, the rest go
/// through the TLS handshake.
pub fn acceptor(config: RustlsConfig) -> RustlsAcceptor<RefusePlainHttp> {
    RustlsAcceptor::new(config).acceptor(RefusePlainHttp)
}

/// Peeks at a connection's first byte: a TLS handshake passes, anything
/// else (`GET ...`) is answered with 400 and closed.
#[derive(Clone, Copy, Debug)]
pub struct RefusePlainHttp;

impl<S: Send + 'static> Accept<TcpStream, S> for RefusePlainHttp {
    type Stream = TcpStream;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, S)>> + Send>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        Box::pin(async move {
            let mut first = [0u8; 1];
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.peek(&mut first))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake"))??;
            if n == 1 && first[0] != TLS_HANDSHAKE {
                let _ = stream.write_all(&plain_http_answer()).await;
                let _ = stream.shutdown().await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP on the TLS port",
                ));
            }
            Ok((stream, service))
        })
    }
}
