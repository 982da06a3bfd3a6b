//! Every managed port `protected`, `failed` with a reason, or `absent` (its
//! interface does not exist here), and the VIPs and addresses that are not
//! programmed, with theirs: what the running agent knows, for `havip-agent
//! status`, which runs in another process.
//!
//! The agent writes it, whenever it changes, to `protection.json` in its
//! runtime dir, `/run/` + the pin dir's name: `/run/havip/protection.json`
//! for the default pin dir `/sys/fs/bpf/havip` (bpffs holds no regular
//! files, so the file sits beside the pin dir, not in it). It stays when the
//! agent exits (the programs stay in force too); `--unpin-on-exit` and
//! `detach --unpin` remove it. Without it, `status` tells from the pinned
//! maps and links what it can: a port in `havip_ports` with its XDP link
//! pinned is protected.

use std::{
    io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{attach::LINKS_DIR, config::Config, datapath::Datapath};

/// The state file's name in the runtime dir.
pub const FILE: &str = "protection.json";

/// The runtime dir of the agent on `pin_dir`: `/run/<pin dir name>`.
pub fn run_dir(pin_dir: &Path) -> PathBuf {
    let name = pin_dir.file_name().unwrap_or("havip".as_ref());
    Path::new("/run").join(name)
}

/// Where the agent on `pin_dir` writes its [`Protection`].
pub fn state_file(pin_dir: &Path) -> PathBuf {
    run_dir(pin_dir).join(FILE)
}

/// What a port's programs do for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// Its XDP and TC egress programs are attached.
    Protected,
    /// Its interface exists but has no programs (see the reason).
    Failed,
    /// Its interface does not exist on this host (yet): nothing to protect.
    Absent,
}

impl PortState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::Failed => "failed",
            Self::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortProtection {
    pub port_id: u32,
    pub name: Option<String>,
    pub interface: String,
    pub state: PortState,
    pub reason: Option<String>,
}

/// A VIP, or a port's fixed address, that is not programmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotProgrammed {
    /// The VIP's id, or the port's whose fixed address it is.
    pub id: u32,
    pub name: Option<String>,
    pub address: String,
    pub reason: String,
}

/// What the desired state's source could not turn into the datapath's:
/// for etcd, records that do not read or do not hold. Each is `(id, name,
/// reason)`, by datapath id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceProblems {
    pub ports: Vec<(u32, String, String)>,
    pub vips: Vec<(u32, String, String)>,
}

/// What the agent has in force, as it wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub agent_pid: u32,
    pub written_unix_ms: u64,
    /// Every port of the desired state, by id.
    pub ports: Vec<PortProtection>,
    pub vips_not_programmed: Vec<NotProgrammed>,
    /// By port id.
    pub addrs_not_programmed: Vec<NotProgrammed>,
    /// How many protected ports' TC egress is a netlink filter the agent
    /// is still to move to a TCX link (see [`crate::attach`]).
    #[serde(default)]
    pub egress_handover: usize,
}

impl Protection {
    /// What `dp` has in force now, and what its source could not program.
    /// A port or VIP whose new record is bad but whose last good one stays
    /// in force says so in its reason.
    pub fn of(dp: &Datapath, source: &SourceProblems) -> Self {
        let config = dp.config();
        let protected = dp.protected_ports();
        let ports = config
            .ports
            .values()
            .map(|p| {
                let (state, reason) = match dp.unprotected_ports().get(&p.id) {
                    _ if protected.contains(&p.id) => (PortState::Protected, None),
                    Some(why) => (PortState::Failed, Some(why.clone())),
                    None => (
                        PortState::Absent,
                        Some(format!("no interface {} on this host", p.interface)),
                    ),
                };
                PortProtection {
                    port_id: p.id,
                    name: p.name.clone(),
                    interface: p.interface.clone(),
                    state,
                    reason,
                }
            })
            .collect();
        let mut ports: Vec<PortProtection> = ports;
        for (id, name, why) in &source.ports {
            match ports.iter_mut().find(|p| p.port_id == *id) {
                Some(p) => {
                    let kept = format!("{why}; its last valid record stays in force");
                    p.reason = Some(
                        p.reason
                            .take()
                            .map_or(kept.clone(), |r| format!("{r}; {kept}")),
                    );
                }
                None => ports.push(PortProtection {
                    port_id: *id,
                    name: Some(name.clone()),
                    interface: "?".into(),
                    state: PortState::Failed,
                    reason: Some(why.clone()),
                }),
            }
        }
        ports.sort_by_key(|p| p.port_id);
        let unprogrammed = dp.unprogrammed();
        let mut vips_not_programmed: Vec<NotProgrammed> = unprogrammed
            .vips
            .iter()
            .filter_map(|(id, why)| {
                let v = config.vips.get(id)?;
                Some(NotProgrammed {
                    id: *id,
                    name: v.name.clone(),
                    address: v.address.to_string(),
                    reason: why.clone(),
                })
            })
            .collect();
        for (id, name, why) in &source.vips {
            let kept = config.vips.get(id);
            vips_not_programmed.push(NotProgrammed {
                id: *id,
                name: Some(name.clone()),
                address: kept.map_or("?".into(), |v| v.address.to_string()),
                reason: match kept {
                    Some(_) => format!("{why}; its last valid record stays in force"),
                    None => why.clone(),
                },
            });
        }
        vips_not_programmed.sort_by_key(|v| v.id);
        let addrs_not_programmed = unprogrammed
            .addrs
            .iter()
            .map(|((port, ip), why)| NotProgrammed {
                id: *port,
                name: config.ports.get(port).and_then(|p| p.name.clone()),
                address: ip.to_string(),
                reason: why.clone(),
            })
            .collect();
        Self {
            agent_pid: std::process::id(),
            written_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            ports,
            vips_not_programmed,
            addrs_not_programmed,
            egress_handover: dp.egress_handover_pending(),
        }
    }

    /// Whether `self` says what `other` says (when written aside).
    pub fn same_as(&self, other: &Self) -> bool {
        self.ports == other.ports
            && self.vips_not_programmed == other.vips_not_programmed
            && self.addrs_not_programmed == other.addrs_not_programmed
            && self.egress_handover == other.egress_handover
    }

    /// Writes `self` to `path` (aside, then renamed over: a reader never
    /// sees half of it).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// The state written at `path`, if there is one.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What the pinned links under `pin_dir` say, with no agent's word:
    /// each port in `havip_ports` (`(slot, port id, ifindex, interface)`)
    /// is protected if its XDP link is pinned, else failed; a port of
    /// `config` that is not there is failed (not in the datapath).
    pub fn from_pins(
        pin_dir: &Path,
        in_ports_map: &[(u32, u32, u32, Option<String>)],
        config: Option<&Config>,
    ) -> Vec<PortProtection> {
        let name = |id: u32| {
            config
                .and_then(|c| c.ports.get(&id))
                .and_then(|p| p.name.clone())
        };
        let mut ports: Vec<PortProtection> = in_ports_map
            .iter()
            .map(|(slot, port_id, ifindex, interface)| {
                let dir = pin_dir
                    .join(LINKS_DIR)
                    .join(format!("if{ifindex}-slot{slot}"));
                let xdp_pinned = std::fs::read_dir(&dir).is_ok_and(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| e.file_name().to_string_lossy().starts_with("xdp-"))
                });
                let (state, reason) = if xdp_pinned {
                    (PortState::Protected, None)
                } else {
                    let why = format!("no XDP link pinned in {}", dir.display());
                    (PortState::Failed, Some(why))
                };
                PortProtection {
                    port_id: *port_id,
                    name: name(*port_id),
                    interface: interface
                        .clone()
                        .unwrap_or_else(|| format!("ifindex {ifindex}")),
                    state,
                    reason,
                }
            })
            .collect();
        for p in config.map(|c| c.ports.values()).into_iter().flatten() {
            if !ports.iter().any(|q| q.port_id == p.id) {
                ports.push(PortProtection {
                    port_id: p.id,
                    name: p.name.clone(),
                    interface: p.interface.clone(),
                    state: PortState::Failed,
                    reason: Some("not in the datapath (havip_ports)".into()),
                });
            }
        }
        ports.sort_by_key(|p| p.port_id);
        ports
    }
}

/// The agent's side: writes its [`Protection`] to the state file whenever
/// what it says changes.
pub struct StateFile {
    path: PathBuf,
    written: Option<Protection>,
    failing: bool,
}

impl StateFile {
    pub fn new(pin_dir: &Path) -> Self {
        Self {
            path: state_file(pin_dir),
            written: None,
            failing: false,
        }
    }

    /// Writes what `dp` has in force (and what `source` could not program),
    /// if it changed since the last write.
    pub fn update(&mut self, dp: &Datapath, source: &SourceProblems) {
        let now = Protection::of(dp, source);
        if self.written.as_ref().is_some_and(|w| w.same_as(&now)) {
            return;
        }
        match now.write(&self.path) {
            Ok(()) => {
                self.failing = false;
                self.written = Some(now);
            }
            // Once, not at every change.
            Err(e) if !self.failing => {
                self.failing = true;
                log::warn!(
                    "cannot write {}: {e}; `havip-agent status` tells protection from the pinned links only",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }

    /// Removes the state file and the runtime dir (with the pins).
    pub fn remove(pin_dir: &Path) {
        let path = state_file(pin_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => log::debug!("removed {}", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
        }
        let _ = std::fs::remove_dir(run_dir(pin_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_dir_is_named_after_the_pin_dir() {
        let cases = [
            ("/sys/fs/bpf/havip", "/run/havip/protection.json"),
            (
                "/sys/fs/bpf/havip-test-7-0",
                "/run/havip-test-7-0/protection.json",
            ),
            ("/sys/fs/bpf/havip/", "/run/havip/protection.json"),
        ];
        for (pin_dir, want) in cases {
            assert_eq!(state_file(Path::new(pin_dir)), Path::new(want), "{pin_dir}");
        }
    }

    #[test]
    fn the_state_reads_back_and_only_changes_count() {
        let dir = std::env::temp_dir().join(format!("havip-protection-{}", std::process::id()));
        let path = dir.join(FILE);
        assert_eq!(Protection::read(&path).unwrap(), None, "no file: no state");
        let p = Protection {
            agent_pid: 7,
            written_unix_ms: 1,
            ports: vec![PortProtection {
                port_id: 12,
                name: Some("vm2".into()),
                interface: "tap-vm2".into(),
                state: PortState::Failed,
                reason: Some("tap-vm2: another XDP program is attached".into()),
            }],
            vips_not_programmed: vec![],
            addrs_not_programmed: vec![],
            egress_handover: 0,
        };
        p.write(&path).unwrap();
        let back = Protection::read(&path).unwrap().unwrap();
        assert_eq!(back, p);
        let later = Protection {
            written_unix_ms: 2,
            ..p.clone()
        };
        assert!(later.same_as(&p), "the time alone is no change");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Protection::read(&path).is_err(), "a torn file is an error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
