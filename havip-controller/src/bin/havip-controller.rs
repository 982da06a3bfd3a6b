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

/// Without a command: serve (migrating the store first).
#[derive(clap::Subcommand)]
enum Command {
    /// Move a store of an older schema version (acks at acks/<vip>/<host>,
    /// owners at owners/<vip>) to this one (both under reports/<host>/),
    /// then exit. Idempotent; the server also does it at start.
    Migrate,
    /// Set up etcd's users and roles (etcd run with --client-cert-auth:
    /// a certificate's common name is its user). Idempotent.
    EtcdAuth {
        /// The admin's certificate (CN root once auth is on) instead of
        /// the config's [etcd_tls] cert (needs --key; the config's CA).
        #[arg(long, value_name = "PEM", requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "PEM", requires = "cert")]
        key: Option<PathBuf>,
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Read a token from stdin (one line) and print its SHA-256 digest, for
    /// `token_sha256 = "..."` in the config:
    /// `openssl rand -hex 24 | tee token | havip-controller hash-token`.
    HashToken,
}

#[derive(clap::Subcommand)]
enum AuthAction {
    /// Create the users root and the controller's (role havip-controller:
    /// read and write /havip/v1/), then enable auth.
    Init {
        /// The controller's etcd user: its certificate's common name.
        #[arg(long, default_value = "controller")]
        controller_user: String,
    },
    /// Create host NAME's user (its certificate's common name) and role
    /// havip-host-NAME: read /havip/v1/, write only /havip/v1/reports/NAME/.
    AddHost { name: String },
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
    if let Some(Command::EtcdAuth { cert, key, action }) = args.command {
        return etcd_auth(&config, cert.zip(key), action).await;
    }
    let store = Store::connect_tls(&config.etcd, config.etcd_tls.as_ref(), config.limits.into())
        .await
        .with_context(|| format!("connecting to etcd at {}", config.etcd.join(",")))?
        .with_history_per_vip(config.history_per_vip);
    let migrated = store.migrate().await.context("migrating the store")?;
    if !migrated.kept.is_empty() {
        log::error!(
            "migrate: {} old-layout keys could not be moved: {}",
            migrated.kept.len(),
            migrated.kept.join(", ")
        );
    }
    if let Some(Command::Migrate) = args.command {
        println!(
            "schema version {} -> {}: {} acks and {} owner reports moved, {} keys kept",
            migrated.from,
            havip_schema::SCHEMA_VERSION,
            migrated.acks,
            migrated.owners,
            migrated.kept.len()
        );
        return Ok(());
    }
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

async fn etcd_auth(
    config: &Config,
    identity: Option<(PathBuf, PathBuf)>,
    action: AuthAction,
) -> anyhow::Result<()> {
    use havip_controller::etcd_auth;
    let mut tls = config.etcd_tls.clone();
    if let Some((cert, key)) = identity {
        let ca = tls
            .as_ref()
            .map(|t| t.ca.clone())
            .context("--cert needs the config's [etcd_tls] ca")?;
        tls = Some(havip_schema::tls::EtcdTls { ca, cert, key });
    }
    let mut client = havip_controller::store::etcd_client(&config.etcd, tls.as_ref())
        .await
        .with_context(|| format!("connecting to etcd at {}", config.etcd.join(",")))?;
    match action {
        AuthAction::Init { controller_user } => {
            etcd_auth::init(&mut client, &controller_user).await?;
            println!(
                "etcd auth on: users root and {controller_user} (role {})",
                etcd_auth::CONTROLLER_ROLE
            );
        }
        AuthAction::AddHost { name } => {
            etcd_auth::add_host(&mut client, &name).await?;
            println!(
                "host {name}: user {name}, role {}",
                etcd_auth::host_role(&name)
            );
        }
    }
    Ok(())
}
