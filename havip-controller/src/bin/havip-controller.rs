//! The HAVIP API server: `havip-controller --config controller.toml`, and
//! `havip-controller hash-token` (a token on stdin → its digest for the
//! config).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use havip_controller::config::Config;
use havip_controller::{metrics, serve_metered, serve_tls, tls, tokens, Store};

/// Serves the HAVIP API from etcd (HTTPS when given a certificate). SIGTERM
/// or SIGINT stops it cleanly: no new connections, the requests in flight
/// finish, then it exits 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config: listen address, etcd endpoints, tokens, default limits.
    #[arg(
        long,
        short,
        env = "HAVIP_CONFIG",
        default_value = "/etc/havip/controller.toml"
    )]
    config: PathBuf,
    /// Overrides `listen` of the config.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on http://ADDR/metrics (requests by route
    /// and status, their latency, HAVIPs by status, the ack reconciler's
    /// lag), on a listener of their own. Exits 1 at start if ADDR cannot be
    /// bound.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key;
    /// overrides `[tls] cert` of the config).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (with --tls-cert).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Read a token from stdin (one line) and print its SHA-256 digest, for
    /// `token_sha256 = "..."` in the config:
    /// `openssl rand -hex 24 | tee token | havip-controller hash-token`.
    HashToken,
}

/// Reads one token from stdin and prints its digest.
fn hash_token() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the token from stdin")?;
    let token = line.trim_end_matches(['\n', '\r']);
    if token.len() < 8 || token.chars().any(char::is_whitespace) {
        anyhow::bail!("a token needs at least 8 characters and no whitespace");
    }
    println!("{}", havip_controller::tokens::digest_hex(token));
    Ok(())
}

/// Completes at the first SIGTERM or SIGINT.
async fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log::info!("{name}: finishing the requests in flight, then exiting");
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Some(Command::HashToken) = args.command {
        return hash_token();
    }
    let config = Config::load(&args.config)?;
    let plain = config.plaintext_tokens();
    if !plain.is_empty() {
        log::warn!(
            "{}: {} give the token in plain; replace each `token = ...` by \
             `token_sha256 = ...` (`havip-controller hash-token` prints it)",
            args.config.display(),
            plain.join(", ")
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key, &config.tls) {
        (Some(cert), Some(key), _) => Some(tls::load(cert, key).await?),
        (_, _, Some(t)) => Some(tls::load(&t.cert, &t.key).await?),
        _ => None,
    };

    let listen = args.listen.unwrap_or(config.listen);
    let store = Store::connect(&config.etcd, config.limits.into())
        .await
        .with_context(|| format!("connecting to etcd at {}", config.etcd.join(",")))?
        .with_history_per_vip(config.history_per_vip);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let metrics = std::sync::Arc::<metrics::ControllerMetrics>::default();
    if let Some(addr) = args.metrics_listen {
        let bound = metrics::serve(addr, metrics.clone(), store.clone()).await?;
        log::info!("serving metrics on http://{bound}/metrics");
    }
    let stop = stop_signal().await?;
    match tls {
        None => {
            log::info!("serving the HAVIP API on http://{listen}");
            serve_metered(listener, store, tokens(&config), metrics, stop).await
        }
        Some(tls) => {
            log::info!("serving the HAVIP API on https://{listen}");
            serve_tls(listener, tls, store, tokens(&config), metrics, stop).await
        }
    }
    .context("serving")?;
    log::info!("stopped");
    Ok(())
}
