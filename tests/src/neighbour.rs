//! A VM's neighbour table (`ip neigh` on its eth0), and asking for an
//! address's link-layer address outside the kernel's cache: arping for
//! IPv4, ndisc6 for IPv6. The client uses them to see which MAC it is told
//! for the VIP, and who tells it.

use std::net::IpAddr;

use anyhow::{bail, Result};

use crate::lab::Vm;

/// One entry of a VM's neighbour table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The link-layer address, when the entry has one.
    pub lladdr: Option<String>,
    /// The NUD state as `ip neigh` prints it: PERMANENT, REACHABLE, STALE...
    pub state: String,
}

/// `vm`'s entry for `addr` on eth0, if it has one.
pub fn show(vm: &Vm, addr: IpAddr) -> Result<Option<Neighbour>> {
    let out = vm
        .ns
        .ip(&["neigh", "show", &addr.to_string(), "dev", "eth0"])?;
    // "10.0.6.19 lladdr 02:00:00:00:00:11 PERMANENT" (the dev is implied).
    let Some(line) = out.lines().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let lladdr = words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|m| m.to_ascii_lowercase());
    let state = words.last().copied().unwrap_or_default().to_owned();
    Ok(Some(Neighbour { lladdr, state }))
}

/// Pins `vm`'s entry for `addr` to `mac` (a static entry: the kernel
/// neither probes nor updates it, whatever is announced).
pub fn pin(vm: &Vm, addr: IpAddr, mac: &str) -> Result<()> {
    vm.ns.ip(&[
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    match show(vm, addr)? {
        Some(n) if n.lladdr.as_deref() == Some(mac) && n.state == "PERMANENT" => Ok(()),
        other => bail!(
            "{}: pinned {addr} to {mac}, but the entry is {other:?}",
            vm.role()
        ),
    }
}

/// Forgets every learned entry on `vm`'s eth0, both families (static
/// entries stay).
pub fn flush(vm: &Vm) -> Result<()> {
    for family in ["-4", "-6"] {
        vm.ns.ip(&[family, "neigh", "flush", "dev", "eth0"])?;
    }
    Ok(())
}

/// Asks for `addr`'s link-layer address from `vm`'s eth0, outside the
/// kernel's cache: `count` ARP requests with arping (IPv4), or Neighbor
/// Solicitations with ndisc6 (IPv6, up to `count` attempts, every answer
/// to the first one collected). Returns the MAC each answer named, in
/// order; empty when nobody answered.
pub fn resolve(vm: &Vm, addr: IpAddr, count: u32) -> Result<Vec<String>> {
    let addr_s = addr.to_string();
    let count_s = count.to_string();
    let (program, args): (&str, Vec<&str>) = match addr {
        // -w: give up after 2 s; -W: 0.2 s between requests.
        IpAddr::V4(_) => (
            "arping",
            vec![
                "-c", &count_s, "-i", "eth0", "-W", "0.2", "-w", "2", &addr_s,
            ],
        ),
        // -m: wait for every answer (a second responder would show);
        // -w: 1 s for them; -r: attempts until the first.
        IpAddr::V6(_) => (
            "ndisc6",
            vec!["-n", "-m", "-r", &count_s, "-w", "1000", &addr_s, "eth0"],
        ),
    };
    let out = vm.ns.cmd(program).args(&args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Both exit non-zero when nobody answered: only a failure to run is
    // an error.
    if out.status.code().is_none_or(|c| c > 2) {
        bail!(
            "{program} {} in {} failed ({}): {}",
            args.join(" "),
            vm.role(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let macs = stdout
        .lines()
        .filter_map(|l| match addr {
            // "60 bytes from 02:00:00:00:00:11 (10.0.6.19): index=0 time=..."
            IpAddr::V4(_) => l
                .split_once(" bytes from ")
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            // "Target link-layer address: 02:00:00:00:00:11"
            IpAddr::V6(_) => l
                .trim()
                .strip_prefix("Target link-layer address:")
                .map(str::trim),
        })
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(macs)
}
