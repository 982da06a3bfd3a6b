//! The EIP gateway of the e2e tests: a gateway namespace whose internal
//! side is a port of a bridge (the lab's hypervisor bridge, or the
//! fabric's), an "internet" namespace behind its external side, the
//! gateway agent (EIPs from its config file or from etcd), and UDP probes
//! from the internet to an EIP.
//!
//! ```text
//!  inet ns: 203.0.113.2, 2001:db8:1::2  (routes to the EIPs via the gateway)
//!     | gw-ext
//!  gw ns: havip-agent gateway (XDP on gw-ext and gw-int), forwarding on
//!     | gw-int 10.0.6.1, fd00:6::1      (the VMs' default gateway)
//!  a bridge with the VMs' network
//! ```

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::agent::agent_bin;
use crate::lab::{Vm, ECHO_PORT};
use crate::netns::{command_in, Netns};

/// Where the gateway takes its EIPs from.
pub enum Eips {
    /// `[[eip]]` entries of its config file: (EIP, VIP).
    File(Vec<(IpAddr, IpAddr)>),
    /// `--etcd URL --gateway NAME`; `reach` is an address (CIDR) for the
    /// internal side on the bridge's network to reach etcd by.
    Etcd {
        url: String,
        name: String,
        reach: String,
    },
}

/// The gateway and the internet namespace, and the gateway agent.
pub struct Gateway {
    pub inet: Netns,
    /// Held: the namespace goes with the gateway.
    _ns: Netns,
    agent: Child,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts a gateway on `bridge` of `bridge_ns`, with `vms`' default
    /// routes through it; `stem` and `dir` name and keep its things.
    pub fn start(
        (bridge_ns, bridge): (&Netns, &str),
        (stem, dir): (&str, &Path),
        vms: &[&Vm],
        eips: Eips,
    ) -> Result<Self> {
        let ns = Netns::new(&format!("{stem}-gw"))?;
        let inet = Netns::new(&format!("{stem}-inet"))?;
        // The gateway's internal side: a plain port of the bridge (no VM
        // port: nothing of havip's hypervisor datapath on it).
        bridge_ns.ip(&[
            "link",
            "add",
            "gw-port",
            "type",
            "veth",
            "peer",
            "name",
            "gw-int",
            "netns",
            ns.name(),
        ])?;
        bridge_ns.ip(&["link", "set", "gw-port", "master", bridge, "up"])?;
        ns.ip(&[
            "link",
            "add",
            "gw-ext",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            inet.name(),
        ])?;
        for (n, dev, v4, v6) in [
            (&ns, "gw-int", "10.0.6.1/24", "fd00:6::1/64"),
            (&ns, "gw-ext", "203.0.113.1/24", "2001:db8:1::1/64"),
            (&inet, "eth0", "203.0.113.2/24", "2001:db8:1::2/64"),
        ] {
            n.ip(&["addr", "add", v4, "dev", dev])?;
            n.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"])?;
            n.ip(&["link", "set", dev, "up"])?;
        }
        ns.ip(&["link", "set", "lo", "up"])?;
        inet.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.1"])?;
        inet.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:100::/64",
            "via",
            "2001:db8:1::1",
        ])?;
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for vm in vms {
            vm.ns
                .ip(&["route", "replace", "default", "via", "10.0.6.1"])?;
            vm.ns
                .ip(&["-6", "route", "replace", "default", "via", "fd00:6::1"])?;
        }

        let config = dir.join("gateway.toml");
        let mut text = "external = \"gw-ext\"\ninternal = \"gw-int\"\nnetwork = 1\n".to_string();
        let mut args: Vec<String> = Vec::new();
        match &eips {
            Eips::File(pairs) => {
                for (eip, vip) in pairs {
                    text += &format!("\n[[eip]]\neip = \"{eip}\"\nvip = \"{vip}\"\n");
                }
            }
            Eips::Etcd { url, name, reach } => {
                ns.ip(&["addr", "add", reach, "dev", "gw-int"])?;
                args.extend([
                    "--etcd".into(),
                    url.clone(),
                    "--gateway".into(),
                    name.clone(),
                ]);
            }
        }
        std::fs::write(&config, text)?;
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{stem}-gw"));
        let log = dir.join("gateway.log");
        let log_file = std::fs::File::create(&log)?;
        let agent = command_in(ns.name(), &agent_bin()?)?
            .args(["gateway", "run", "--config"])
            .arg(&config)
            .arg("--pin-dir")
            .arg(&pin_dir)
            .args(&args)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start the gateway agent")?;
        let gw = Self {
            inet,
            _ns: ns,
            agent,
            pin_dir,
            log,
        };
        gw.wait(|s| s.contains("counters:"), Duration::from_secs(10))
            .context("the gateway agent did not come up")?;
        Ok(gw)
    }

    /// The gateway agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Result<String> {
        let out = std::process::Command::new(agent_bin()?)
            .args(["gateway", "status", "--pin-dir"])
            .arg(&self.pin_dir)
            .output()?;
        ensure!(
            out.status.success(),
            "gateway status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    pub fn wait(&self, ok: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let s = self.status().unwrap_or_default();
            if ok(&s) {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                bail!("gateway status after {timeout:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `havip-agent gateway status`'s line for `eip`.
    pub fn owner_line(&self, eip: IpAddr) -> Result<String> {
        let s = self.status()?;
        s.lines()
            .find(|l| l.trim_start().starts_with(&format!("{eip} ->")))
            .map(str::to_owned)
            .with_context(|| format!("{eip} not in the gateway's status:\n{s}"))
    }

    pub fn counter(&self, name: &str) -> Result<u64> {
        let s = self.status()?;
        s.lines()
            .filter_map(|l| l.trim().rsplit_once(' '))
            .find(|(n, _)| n.trim_start_matches("drop ") == name)
            .and_then(|(_, v)| v.parse().ok())
            .with_context(|| format!("no counter {name} in:\n{s}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        if let Ok(bin) = agent_bin() {
            let _ = std::process::Command::new(bin)
                .args(["gateway", "detach", "--unpin", "--pin-dir"])
                .arg(&self.pin_dir)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// UDP probes from the internet to an EIP, every 10 ms: who answered when.
pub struct Probes {
    replies: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Probes {
    pub fn start(inet: &Netns, eip: IpAddr) -> Result<Self> {
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (replies.clone(), stop.clone());
        inet.spawn_thread("eip-probes", move || -> Result<()> {
            let bind: SocketAddr = if eip.is_ipv4() {
                "0.0.0.0:0".parse()?
            } else {
                "[::]:0".parse()?
            };
            let sock = UdpSocket::bind(bind)?;
            sock.set_read_timeout(Some(Duration::from_millis(10)))?;
            let mut buf = [0u8; 256];
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let _ = sock.send_to(b"probe", SocketAddr::new(eip, ECHO_PORT));
                    next += Duration::from_millis(10);
                }
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                    r.lock().unwrap().push((Instant::now(), text));
                }
            }
            Ok(())
        })?;
        Ok(Self { replies, stop })
    }

    pub fn wait_reply_from(&self, who: &str, after: Instant, timeout: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            if let Some((t, _)) = self
                .replies
                .lock()
                .unwrap()
                .iter()
                .find(|(t, text)| *t >= after && text.contains(who))
            {
                return Ok(*t);
            }
            if start.elapsed() > timeout {
                let replies = self.replies.lock().unwrap();
                let seen: Vec<String> = replies
                    .iter()
                    .rev()
                    .take(5)
                    .map(|(_, t)| t.clone())
                    .collect();
                bail!(
                    "no reply from {who} through the EIP within {timeout:?} ({} replies, the last: {seen:?})",
                    replies.len()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn replies_from_since(&self, who: &str, after: Instant) -> usize {
        self.replies
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, text)| *t >= after && text.contains(who))
            .count()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
