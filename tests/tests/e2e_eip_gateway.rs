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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use havip_tests::eip_gateway::{Eips, Gateway, Probes};
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP6, VM1, VM2};
use havip_tests::netns::Netns;
use havip_tests::rogue;

const EIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 19);
const EIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x19);
const TCP_PORT: u16 = 8080;

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
    let gw = Gateway::start(
        (&lab.hv, "br0"),
        (&lab.stem, &lab.dir),
        &[&lab.vm1, &lab.vm2],
        Eips::File(vec![(EIP4.into(), VIP4.into()), (EIP6.into(), VIP6.into())]),
    )?;
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
