//! A real Prometheus server (Debian's `prometheus`, which `cargo xtask
//! setup` installs) scraping havip's metrics endpoints every second, in a
//! network namespace, and queried through its HTTP API (`/api/v1/query`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::cleanup::{self, Resource, Token};
use crate::netns::{self, Netns};
use crate::{cmd, fabric, wait};

/// How often the server scrapes (and evaluates).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// A running server; stopped on drop.
pub struct Prometheus {
    ns: String,
    /// `ip:port` of its web API in `ns`.
    listen: String,
    log: std::path::PathBuf,
    process: Option<Token>,
}

/// One result of an instant query: the series' labels and its value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// The scrape config: one job per `(job, targets)`.
pub fn config(jobs: &[(&str, Vec<String>)]) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: {0}s\n  evaluation_interval: {0}s\n  scrape_timeout: {0}s\nscrape_configs:\n",
        SCRAPE_INTERVAL.as_secs()
    );
    for (job, targets) in jobs {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        out.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ));
    }
    out
}

impl Prometheus {
    /// Starts prometheus in `ns` on `listen` (`ip:port`), with its config and
    /// data under `dir`, scraping `jobs`; returns once it is ready.
    pub fn start(
        ns: &Netns,
        listen: &str,
        dir: &Path,
        jobs: &[(&str, Vec<String>)],
    ) -> Result<Self> {
        let bin = cmd::which("prometheus")
            .context("prometheus is not installed (`cargo xtask setup` installs Debian's)")?;
        let conf = dir.join("prometheus.yml");
        std::fs::write(&conf, config(jobs))?;
        let data = dir.join("prometheus-data");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log)?;
        let mut c = netns::command_in(ns.name(), &bin)?;
        c.arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = c.spawn().context("start prometheus")?;
        let process = cleanup::register(Resource::Process {
            name: "prometheus".into(),
            child,
            group: false,
            grace: Duration::from_secs(5),
        });
        let server = Self {
            ns: ns.name().to_owned(),
            listen: listen.to_owned(),
            log,
            process: Some(process),
        };
        wait::until(Duration::from_secs(30), "prometheus to be ready", || {
            Ok(server
                .get("/-/ready")
                .is_ok_and(|(status, _)| status == 200))
        })
        .with_context(|| server.log_tail())?;
        Ok(server)
    }

    fn get(&self, path_and_query: &str) -> Result<(u16, String)> {
        let url = format!("http://{}{path_and_query}", self.listen);
        let handle = netns::spawn_thread_in(&self.ns, "prometheus-query", move || {
            fabric::http("GET", &url, None, None)
        })?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("query thread panicked"))??
    }

    /// The instant query `expr`'s vector result.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", encode(expr)))?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("prometheus answered {status}: {body}"))?;
        ensure!(
            status == 200 && v["status"] == "success",
            "query {expr}: {status} {body}"
        );
        let Some(result) = v["data"]["result"].as_array() else {
            bail!("query {expr}: no vector in {body}");
        };
        result
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .with_context(|| format!("query {expr}: no value in {r}"))?;
                Ok(Sample {
                    labels: r["metric"].as_object().cloned().unwrap_or_default(),
                    value,
                })
            })
            .collect()
    }

    /// Waits until `expr` gives a result `check` accepts; that result.
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        check: impl Fn(&[Sample]) -> bool,
    ) -> Result<Vec<Sample>> {
        let mut last = Vec::new();
        let found = wait::until(timeout, &format!("prometheus: {expr}"), || {
            last = self.query(expr)?;
            Ok(check(&last))
        });
        found.with_context(|| format!("last result: {last:?}\n{}", self.log_tail()))?;
        Ok(last)
    }

    /// The health of each scrape target (`/api/v1/targets`): (job, url, health).
    pub fn targets(&self) -> Result<Vec<(String, String, String)>> {
        let (_, body) = self.get("/api/v1/targets")?;
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                    s("scrapeUrl"),
                    s("health"),
                )
            })
            .collect())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} (tail) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(t) = self.process.take() {
            cleanup::release(t);
        }
    }
}

/// Percent-encodes a query parameter's value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"sum(x{vip="a b"})"#),
            "sum%28x%7Bvip%3D%22a%20b%22%7D%29"
        );
    }

    #[test]
    fn the_config_scrapes_every_target_each_second() {
        let c = config(&[(
            "agents",
            vec!["10.0.0.1:9469".into(), "10.0.0.2:9469".into()],
        )]);
        assert!(c.contains("scrape_interval: 1s"), "{c}");
        assert!(
            c.contains("targets: ['10.0.0.1:9469', '10.0.0.2:9469']"),
            "{c}"
        );
    }
}
