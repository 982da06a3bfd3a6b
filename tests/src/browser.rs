//! A real headless browser in a network namespace: Debian's `chromium`
//! driven through `chromedriver` (WebDriver) with `fantoccini`.
//!
//! chromedriver (and the chromium it starts) run in the namespace, as a
//! process group released by the cleanup registry. The WebDriver client
//! runs on a tokio runtime whose worker threads were started in that
//! namespace (threads keep their creator's namespace), so its sockets reach
//! chromedriver's loopback there. [`Browser::run`] runs one async step of a
//! test on that runtime; the test itself stays synchronous, between steps it
//! can crash a master or call the API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::cleanup::{self, Resource, Token};
use crate::netns::{self, Netns};
use crate::{cmd, wait};

/// chromedriver's port on the namespace's loopback.
const DRIVER_PORT: u16 = 9515;
/// The flags chromium needs as root in a test: no sandbox, no GPU, nothing
/// that calls outside this machine.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1600,1300",
    "--lang=zh-CN",
];

/// Where a test's screenshots go: `target/test-artifacts/<name>/`.
pub fn artifacts_dir(name: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// A browser session (a fresh profile, downloads into `downloads`).
pub struct Browser {
    client: Client,
    rt: tokio::runtime::Runtime,
    pub downloads: PathBuf,
    pub shots: PathBuf,
    driver: Option<Token>,
}

impl Browser {
    /// Starts chromedriver in `ns` and opens a session; the profile and
    /// the downloads live under `dir`, the screenshots in `shots`. `origin`
    /// (the plain-HTTP server under test) counts as secure: chromium holds
    /// a download from an insecure origin for the user's approval.
    pub fn start(ns: &Netns, origin: &str, dir: &Path, shots: PathBuf) -> Result<Self> {
        cmd::require_tools(&["chromium", "chromedriver"])?;
        let driver_bin = cmd::which("chromedriver").context("chromedriver")?;
        let chromium = cmd::which("chromium").context("chromium")?;
        let profile = dir.join("chromium-profile");
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&profile)?;
        std::fs::create_dir_all(&downloads)?;
        let log = std::fs::File::create(dir.join("chromedriver.log"))?;
        let mut c = netns::command_in(ns.name(), &driver_bin)?;
        c.arg(format!("--port={DRIVER_PORT}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().context("start chromedriver")?;
        let driver = cleanup::register(Resource::Process {
            name: "chromedriver".into(),
            child,
            group: true,
            grace: Duration::from_secs(5),
        });

        // The runtime's workers start on a thread that joined `ns`.
        let rt = ns
            .spawn_thread("webdriver-rt", || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("the runtime thread panicked"))???;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!(
            "--unsafely-treat-insecure-origin-as-secure={origin}"
        ));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        let url = format!("http://127.0.0.1:{DRIVER_PORT}");
        let client = rt
            .block_on(rt.spawn(async move {
                let started = Instant::now();
                loop {
                    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                    match ClientBuilder::new(connector)
                        .capabilities(caps.clone())
                        .connect(&url)
                        .await
                    {
                        Ok(c) => return Ok(c),
                        Err(e) if started.elapsed() < Duration::from_secs(30) => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(anyhow::Error::from(e).context("WebDriver session")),
                    }
                }
            }))
            .context("the session task")??;
        Ok(Self {
            client,
            rt,
            downloads,
            shots,
            driver: Some(driver),
        })
    }

    /// Runs one async step with the session.
    pub fn run<T, F>(&self, step: impl FnOnce(Client) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let fut = step(self.client.clone());
        self.rt
            .block_on(self.rt.spawn(fut))
            .context("a browser step panicked")?
    }

    /// A screenshot of the page as `<shots>/<name>.png`.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let path = self.shots.join(format!("{name}.png"));
        let png = self.run(|c| async move { anyhow::Ok(c.screenshot().await?) })?;
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Waits until a file named `name` is fully downloaded; its path.
    pub fn wait_download(&self, name: &str, timeout: Duration) -> Result<PathBuf> {
        let path = self.downloads.join(name);
        let partial = self.downloads.join(format!("{name}.crdownload"));
        wait::until(timeout, &format!("the download of {name}"), || {
            Ok(path.is_file() && !partial.exists())
        })
        .with_context(|| {
            format!(
                "downloads: {:?}",
                std::fs::read_dir(&self.downloads).map(|d| d
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>())
            )
        })?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self
            .rt
            .block_on(self.rt.spawn(async move { client.close().await }));
        if let Some(t) = self.driver.take() {
            cleanup::release(t);
        }
    }
}

/// The text of the first element matching `css`, if any (read in the page,
/// so an element the app just re-rendered is never stale).
pub async fn text(c: &Client, css: &str) -> Result<Option<String>> {
    let v = c
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await?;
    Ok(v.as_str().map(str::to_owned))
}

/// A value computed by `script` in the page (its `return`).
pub async fn eval(c: &Client, script: &str, args: Vec<Value>) -> Result<Value> {
    Ok(c.execute(script, args).await?)
}

/// Waits until the text of `css` satisfies `ok`; the text.
pub async fn wait_text(
    c: &Client,
    css: &str,
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> Result<String> {
    let started = Instant::now();
    let mut last = None;
    loop {
        last = text(c, css).await?.or(last);
        if let Some(t) = &last {
            if ok(t) {
                return Ok(t.clone());
            }
        }
        if started.elapsed() > timeout {
            bail!("{css}: still {last:?} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` as a user would (scrolled to, not covered),
/// finding it again if the app re-rendered it meanwhile.
pub async fn click(c: &Client, css: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..20 {
        match c.find(Locator::Css(css)).await {
            Ok(e) => match e.click().await {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            },
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    bail!("click {css}: {last:?}")
}

/// Replaces the contents of the input `css` with `value`, typed.
pub async fn type_into(c: &Client, css: &str, value: &str) -> Result<()> {
    let e = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no {css}"))?;
    e.clear().await?;
    e.send_keys(value).await?;
    Ok(())
}

/// Waits for an element matching `css`.
pub async fn wait_for(c: &Client, css: &str, timeout: Duration) -> Result<()> {
    c.wait()
        .at_most(timeout)
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no {css} within {timeout:?}"))?;
    Ok(())
}

/// Chooses the option `value` of the `<select>` `css`, as a user would.
pub async fn select(c: &Client, css: &str, value: &str) -> Result<()> {
    c.find(Locator::Css(css))
        .await
        .with_context(|| format!("no {css}"))?
        .select_by_value(value)
        .await
        .with_context(|| format!("{css}: choose {value}"))?;
    Ok(())
}
