//! What an agent left attached, as the kernel tells it: the links pinned
//! under its pin dir (bpftool), the XDP program on each interface (`ip -d
//! link`), TC egress filters (`tc`) and TCX programs (BPF_PROG_QUERY).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::Agent;
use crate::cmd;

/// What bpftool says about a pinned link.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    pub ifindex: u32,
}

impl Agent {
    /// The links pinned under the pin dir, by pin path below `links/`
    /// (`if7-slot2/xdp-generic`), as bpftool reads them.
    pub fn links(&self) -> Result<BTreeMap<String, LinkInfo>> {
        let root = self.pin_dir.join("links");
        let mut links = BTreeMap::new();
        let Ok(ports) = std::fs::read_dir(&root) else {
            return Ok(links);
        };
        for port in ports {
            let port = port?.path();
            for pin in std::fs::read_dir(&port)? {
                let pin = pin?.path();
                let path = pin.to_string_lossy().into_owned();
                let json = cmd::run("bpftool", &["-j", "link", "show", "pinned", &path])?;
                let mut v: serde_json::Value = serde_json::from_str(&json)
                    .with_context(|| format!("parse bpftool's {json}"))?;
                if let Some(first) = v.as_array().and_then(|a| a.first()) {
                    v = first.clone();
                }
                let info: LinkInfo =
                    serde_json::from_value(v).with_context(|| format!("bpftool's {json}"))?;
                let name = pin.strip_prefix(&root).unwrap_or(&pin);
                links.insert(name.to_string_lossy().into_owned(), info);
            }
        }
        Ok(links)
    }

    /// The XDP program id on `tap` (`ip -d link`: `prog/xdp id N`), if any.
    pub fn xdp_prog_id(&self, tap: &str) -> Result<Option<u32>> {
        let out = cmd::run("ip", &["-n", &self.hv, "-d", "link", "show", "dev", tap])?;
        Ok(xdp_prog_in(&out))
    }

    /// The TC egress filters on `tap` (`tc filter show dev TAP egress`),
    /// one line per filter: TCX programs are not among them.
    pub fn tc_egress_filters(&self, tap: &str) -> Result<Vec<String>> {
        let out = cmd::run(
            "tc",
            &["-n", &self.hv, "filter", "show", "dev", tap, "egress"],
        )?;
        Ok(out
            .lines()
            .filter(|l| l.contains(" bpf ") && l.contains("handle"))
            .map(str::to_owned)
            .collect())
    }

    /// The ids of the TCX egress programs on `tap` (BPF_PROG_QUERY from a
    /// thread in the hypervisor: bpftool 7.1 does not know TCX).
    pub fn tcx_egress_ids(&self, tap: &str) -> Result<Vec<u32>> {
        let path = format!("/run/netns/{}", self.hv);
        let ns = File::open(&path).with_context(|| format!("open {path}"))?;
        let tap = tap.to_owned();
        let query = std::thread::spawn(move || -> Result<Vec<u32>> {
            use std::os::fd::AsRawFd as _;
            // SAFETY: plain syscall on a valid fd; affects only this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            let (_, progs) = aya::programs::SchedClassifier::query_tcx(
                &tap,
                aya::programs::TcAttachType::Egress,
            )
            .with_context(|| format!("query the TCX egress programs of {tap}"))?;
            Ok(progs.iter().map(|p| p.id()).collect())
        });
        query
            .join()
            .map_err(|_| anyhow::anyhow!("the TCX query thread panicked"))?
    }

    /// Whether an XDP program is attached to `tap` in the hypervisor.
    pub fn xdp_attached(&self, tap: &str) -> Result<bool> {
        let out = cmd::run("ip", &["-n", &self.hv, "-d", "link", "show", "dev", tap])?;
        Ok(shows_xdp(&out))
    }

    /// The interfaces of the hypervisor with an XDP program attached, from
    /// one `ip -d -o link show` (one process however many ports).
    pub fn xdp_attached_all(&self) -> Result<BTreeSet<String>> {
        Ok(xdp_programs(&self.hv)?
            .into_iter()
            .filter_map(|(name, prog)| prog.is_some().then_some(name))
            .collect())
    }
}

/// Whether `ip -d link show` output shows an XDP program.
fn shows_xdp(out: &str) -> bool {
    out.split_whitespace()
        .any(|w| w == "xdp" || w.starts_with("prog/xdp") || w == "xdpgeneric")
}

/// The XDP program id `ip -d link show` output names (`prog/xdp id N`).
fn xdp_prog_in(out: &str) -> Option<u32> {
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(3)
        .find(|w| w[0].starts_with("prog/xdp") && w[1] == "id")
        .and_then(|w| w[2].parse().ok())
}

/// Every interface of namespace `ns` and the id of its XDP program, if it
/// has one, from one `ip -d -o link show` (a line per interface).
pub fn xdp_programs(ns: &str) -> Result<BTreeMap<String, Option<u32>>> {
    let out = cmd::run("ip", &["-n", ns, "-d", "-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            // "7: tap-vm1@if2: <...> ... prog/xdp id 42 ..."
            let name = line.split_whitespace().nth(1)?.trim_end_matches(':');
            let name = name.split('@').next()?.to_owned();
            let prog = match xdp_prog_in(line) {
                Some(id) => Some(id),
                None if shows_xdp(line) => Some(0),
                None => None,
            };
            Some((name, prog))
        })
        .collect())
}
