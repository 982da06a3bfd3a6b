//! The HAVIP API server: `havip-controller --config controller.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use havip_controller::config::Config;
use havip_controller::{metrics, serve_metered, tokens, Store};

/// Serves the HAVIP API from etcd.
#[derive(Parser)]
#[command(version)]
struct Args {
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
    #[command(subcommand)]
    command: Option<Command>,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let listen = args.listen.unwrap_or(config.listen);
    if let Some(Command::EtcdAuth { cert, key, action }) = args.command {
        return etcd_auth(&config, cert.zip(key), action).await;
    }
    let store = Store::connect_tls(&config.etcd, config.etcd_tls.as_ref(), config.limits.into())
        .await
        .with_context(|| format!("connecting to etcd at {}", config.etcd.join(",")))?;
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
    log::info!("serving the HAVIP API on {listen}");
    serve_metered(listener, store, tokens(&config), metrics, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving")?;
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
