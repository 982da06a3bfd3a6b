//! An EIP in front of the HA pair: an internet client reaches the master
//! through the gateway's 1:1 translation, the master crashes, and the
//! client's traffic resumes through the new master; a rogue VM that claims
//! the VIP or sends from the EIP changes nothing. IPv4 and IPv6.
//!
//! ```text
//!  inet ns: 203.0.113.2, 2001:db8:1::2  (routes to the EIPs via the gateway)
//!     | gw-ext
//!  gw ns: havip-agent gateway (XDP on gw-ext and gw-int), forwarding on
//!     | gw-int 10.0.6.1, fd00:6::1      (the VMs' default gateway)
//!  the lab's hypervisor bridge br0: vm1 (master), vm2 (backup), rogue
//! ```
//!
//! Needs root, the built agent, keepalived and python3-scapy, like the
//! lab's other tests.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use havip_tests::agent::agent_bin;
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP6, VM1, VM2};
use havip_tests::netns::{command_in, Netns};
use havip_tests::rogue;

const EIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 19);
const EIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x19);
const TCP_PORT: u16 = 8080;

/// The gateway and the internet namespace, and the gateway agent.
struct Gateway {
    inet: Netns,
    /// Held: the namespace goes with the gateway.
    _ns: Netns,
    agent: Child,
    pin_dir: PathBuf,
}

impl Gateway {
    fn start(lab: &Lab) -> Result<Self> {
        let ns = Netns::new(&format!("{}-gw", lab.stem))?;
        let inet = Netns::new(&format!("{}-inet", lab.stem))?;
        // The gateway's internal side: a plain port of the hypervisor's
        // bridge (no VM port: nothing of havip's hypervisor datapath on it).
        lab.hv.ip(&[
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
        lab.hv
            .ip(&["link", "set", "gw-port", "master", "br0", "up"])?;
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
        for vm in [&lab.vm1, &lab.vm2] {
            vm.ns.ip(&["route", "add", "default", "via", "10.0.6.1"])?;
            vm.ns
                .ip(&["-6", "route", "add", "default", "via", "fd00:6::1"])?;
        }

        let config = lab.dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "external = \"gw-ext\"\ninternal = \"gw-int\"\nnetwork = 1\n\n\
                 [[eip]]\neip = \"{EIP4}\"\nvip = \"{VIP4}\"\n\n\
                 [[eip]]\neip = \"{EIP6}\"\nvip = \"{VIP6}\"\n"
            ),
        )?;
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}-gw", lab.stem));
        let log = std::fs::File::create(lab.dir.join("gateway.log"))?;
        let agent = command_in(ns.name(), &agent_bin()?)?
            .args(["gateway", "run", "--config"])
            .arg(&config)
            .arg("--pin-dir")
            .arg(&pin_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the gateway agent")?;
        let gw = Self {
            inet,
            _ns: ns,
            agent,
            pin_dir,
        };
        gw.wait(|s| s.contains("counters:"), Duration::from_secs(10))
            .context("the gateway agent did not come up")?;
        Ok(gw)
    }

    fn status(&self) -> Result<String> {
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

    fn wait(&self, ok: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
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
    fn owner_line(&self, eip: IpAddr) -> Result<String> {
        let s = self.status()?;
        s.lines()
            .find(|l| l.trim_start().starts_with(&format!("{eip} ->")))
            .map(str::to_owned)
            .with_context(|| format!("{eip} not in the gateway's status:\n{s}"))
    }

    fn counter(&self, name: &str) -> Result<u64> {
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
struct Probes {
    replies: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Probes {
    fn start(inet: &Netns, eip: IpAddr) -> Result<Self> {
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

    fn wait_reply_from(&self, who: &str, after: Instant, timeout: Duration) -> Result<Instant> {
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

    fn replies_from_since(&self, who: &str, after: Instant) -> usize {
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

/// A TCP server on the VIP in `vm`, answering each connection with its
/// role after reading to the end.
fn tcp_server(vm: &havip_tests::lab::Vm, vip: IpAddr) -> Result<Child> {
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET6 if ':' in '{vip}' else socket.AF_INET)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.setsockopt(socket.IPPROTO_IP, 15, 1)\n\
         s.bind(('{vip}', {TCP_PORT})); s.listen(8)\n\
         while True:\n\
         \x20   c,_=s.accept(); n=0\n\
         \x20   while True:\n\
         \x20       d=c.recv(65536)\n\
         \x20       if not d: break\n\
         \x20       n+=len(d)\n\
         \x20   c.sendall(('{role} %d' % n).encode()); c.close()\n",
        role = vm.role()
    );
    Ok(vm
        .ns
        .cmd("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The TCP servers, killed with the test.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP exchange from the internet to `eip`: `len` bytes up, the
/// server's answer back.
fn tcp_exchange(inet: &Netns, eip: IpAddr, len: usize) -> Result<String> {
    inet.spawn_thread("eip-tcp", move || -> Result<String> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(eip, TCP_PORT), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&vec![b'x'; len])?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("the TCP client panicked"))??
}

/// The rogue takes the EIPs as its own addresses and sends from them to
/// the internet client.
fn send_from_eips(rogue: &havip_tests::lab::Vm) -> Result<()> {
    rogue
        .ns
        .ip(&["addr", "add", &format!("{EIP4}/32"), "dev", "eth0"])?;
    rogue.ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{EIP6}/128"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    rogue
        .ns
        .ip(&["route", "add", "default", "via", "10.0.6.1"])?;
    rogue
        .ns
        .ip(&["-6", "route", "add", "default", "via", "fd00:6::1"])?;
    let script = format!(
        "import socket\n\
         for fam, src, dst in ((socket.AF_INET, '{EIP4}', '203.0.113.2'), (socket.AF_INET6, '{EIP6}', '2001:db8:1::2')):\n\
         \x20   s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((src, 0))\n\
         \x20   for _ in range(5): s.sendto(b'rogue', (dst, {ECHO_PORT}))\n"
    );
    rogue.ns.exec("/usr/bin/python3", &["-c", &script])?;
    Ok(())
}

fn ping(inet: &Netns, eip: IpAddr) -> Result<()> {
    let out = inet
        .cmd("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "1", &eip.to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "ping {eip} through the gateway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

#[test]
fn eip_traffic_follows_the_master_and_a_rogue_changes_nothing() -> Result<()> {
    let mut lab = Lab::build()?;
    lab.start_agent()?;
    // The gateway first: it learns the owner from the master's first
    // announcements.
    let gw = Gateway::start(&lab)?;
    let mut ha = HaPair::start(&lab)?;
    let eips = [IpAddr::V4(EIP4), IpAddr::V6(EIP6)];
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    for eip in eips {
        gw.wait(
            |s| {
                s.contains(&format!("{eip} ->"))
                    && s.lines()
                        .any(|l| l.contains(&format!("{eip} ->")) && l.contains(&VM1.mac_str()))
            },
            Duration::from_secs(10),
        )
        .with_context(|| format!("the gateway did not learn vm1 as the owner of {eip}"))?;
    }
    let _servers = Servers(vec![
        tcp_server(&lab.vm1, vips[0])?,
        tcp_server(&lab.vm1, vips[1])?,
        tcp_server(&lab.vm2, vips[0])?,
        tcp_server(&lab.vm2, vips[1])?,
    ]);
    std::thread::sleep(Duration::from_millis(500));

    // TCP (a megabyte up: segmentation offload frames too), UDP and ping
    // reach the master through each EIP.
    let start = Instant::now();
    let probes: Vec<Probes> = eips
        .iter()
        .map(|e| Probes::start(&gw.inet, *e))
        .collect::<Result<_>>()?;
    for (eip, p) in eips.iter().zip(&probes) {
        p.wait_reply_from("vm1", start, Duration::from_secs(5))
            .with_context(|| format!("gateway:\n{}", gw.status().unwrap_or_default()))?;
        ping(&gw.inet, *eip)?;
        let answer = tcp_exchange(&gw.inet, *eip, 1 << 20)?;
        ensure!(
            answer == format!("vm1 {}", 1 << 20),
            "TCP through {eip}: {answer:?}"
        );
    }
    ensure!(gw.counter("translated_in")? > 0 && gw.counter("translated_out")? > 0);

    // A rogue VM claims both VIPs and sends from the EIPs: the hypervisor
    // drops it all, and the gateway's owners stay vm1's.
    let mut attack = rogue::Attack::default();
    rogue::scapy_claims(&lab.rogue, VIP4, VIP6, 5, &mut attack)?;
    send_from_eips(&lab.rogue)?;
    std::thread::sleep(Duration::from_millis(300));
    for eip in eips {
        let line = gw.owner_line(eip)?;
        ensure!(
            line.contains(&VM1.mac_str()),
            "after the rogue's claims: {line}"
        );
    }

    // The master crashes: the backup announces, the gateway learns it, and
    // the internet's traffic resumes through vm2.
    let crash = Instant::now();
    ha.master.crash(&lab.vm1)?;
    for (eip, p) in eips.iter().zip(&probes) {
        let resumed = p.wait_reply_from("vm2", crash, Duration::from_secs(15))?;
        println!(
            "{eip}: replies from vm2 {:?} after the crash",
            resumed - crash
        );
        ensure!(gw.owner_line(*eip)?.contains(&VM2.mac_str()));
        ping(&gw.inet, *eip)?;
        let answer = tcp_exchange(&gw.inet, *eip, 1 << 20)?;
        ensure!(
            answer == format!("vm2 {}", 1 << 20),
            "TCP through {eip} after the failover: {answer:?}"
        );
    }
    let settled = Instant::now() + Duration::from_millis(200);
    std::thread::sleep(Duration::from_millis(500));
    for p in &probes {
        ensure!(
            p.replies_from_since("vm1", settled) == 0,
            "vm1 still answers after it crashed"
        );
        ensure!(p.replies_from_since("vm2", settled) > 0);
    }
    drop(probes);
    drop(gw);
    Ok(())
}
