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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let listen = args.listen.unwrap_or(config.listen);
    let store = Store::connect(&config.etcd, config.limits.into())
        .await
        .with_context(|| format!("connecting to etcd at {}", config.etcd.join(",")))?;
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
