//! Attachments that outlive the agent. Each port's XDP and TC egress
//! programs are held by bpf_links pinned under the pin dir, so the datapath
//! keeps enforcing the last state when the agent exits or crashes. A
//! starting agent adopts them: it swaps its own programs (loaded once,
//! shared by every port) into the pinned links (`bpf_link_update`), so the
//! port is never without a program. Only [`detach`] (`havip-agent detach`,
//! or `run --unpin-on-exit` at exit) takes them off.
//!
//! The layout, one directory per attached port:
//!
//! ```text
//! <pin_dir>/links/if<ifindex>-slot<slot>/xdp-generic   the XDP link (or xdp-native)
//! <pin_dir>/links/if<ifindex>-slot<slot>/tc-egress     the TCX egress link
//! <pin_dir>/links/if<ifindex>-slot<slot>/tc-moving     the same, while its netlink filter goes
//! ```
//!
//! The slot is the port's slot in `havip_ports` (where `havip_ifport`
//! points the programs for that interface): an adopting agent keeps it. The XDP mode is the
//! one the link was created in (a link cannot change it).
//!
//! TC egress may also be a cls_bpf filter on the `clsact` qdisc, at a
//! fixed priority and handle ([`NETLINK_PRIORITY`], [`NETLINK_HANDLE`]). It
//! is not a link and cannot be pinned: a port directory without `tc-egress`
//! stands for it. It is left attached at exit and replaced in place at that
//! priority and handle. It is what kernels without TCX (before 6.6) have,
//! and how every new port starts: a TCX attach waits for an RCU grace
//! period under the RTNL lock (~14 ms: 14 s for a thousand ports), a filter
//! takes well under a millisecond. With TCX wanted, [`PortLinks::hand_over`]
//! then moves each port's egress to a pinned TCX link (the link first, then
//! the filter goes: no frame meets neither), in the background. A port
//! whose filter cannot be added (an `ingress` qdisc holds clsact's place)
//! gets its TCX link at once.
//!
//! Egress is attached before XDP, on a new port and on an adopted one: a
//! port whose XDP link holds a program has its egress program too.
//!
//! One agent per pin dir: [`PinDirLock`] holds an exclusive flock(2) on the
//! pin dir itself (bpffs holds no regular files, but a directory can be
//! locked).

use std::{
    fmt,
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{qdisc_add_clsact, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        xdp::XdpLink,
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    util::KernelVersion,
    Ebpf,
};
use havip_common::maps::{TC_EGRESS_PROGRAM, XDP_PROGRAM};
use log::{debug, info, warn};

use crate::{
    qdisc, sys,
    util::{self, ifname_of},
};

/// The directory under the pin dir that holds the ports' links.
pub const LINKS_DIR: &str = "links";
/// The pin of a port's TCX egress link.
const TC_PIN: &str = "tc-egress";
/// Where [`PortLinks::hand_over`] pins a TCX egress link until the port's
/// netlink filter is gone; then it is renamed [`TC_PIN`]. A port directory
/// holding it was left in the middle of that: its filter may be there too.
const TC_MOVING: &str = "tc-moving";
/// The priority of the netlink TC egress filter (lower runs first).
pub const NETLINK_PRIORITY: u16 = 0x4856;
/// The handle of the netlink TC egress filter.
pub const NETLINK_HANDLE: TcHandle = TcHandle::new(0, 0x4856);

/// Errors of attaching, adopting and detaching.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "pin dir {} is in use by another havip-agent{}: stop it first, or use another --pin-dir",
        pin_dir.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { pin_dir: PathBuf, pid: Option<u32> },
    #[error("the datapath object has no program {0}")]
    MissingProgram(&'static str),
    #[error("{what}: {source}")]
    Program {
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error("{what}: {source}")]
    Link {
        what: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("cannot pin {}: {source}", path.display())]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error(
        "TC egress on {interface} through netlink: its ingress place holds an `{kind}` \
         qdisc, not clsact (a filter there would run on frames from the VM); \
         TCX (kernel 6.6 or later) needs no qdisc"
    )]
    NoClsact { interface: String, kind: String },
    #[error("TC egress on {interface}: cannot tell its qdiscs: {source}")]
    Qdisc {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("TC egress on {interface} through netlink: {source}")]
    Netlink {
        interface: String,
        #[source]
        source: aya::programs::tc::TcError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AttachError + '_ {
    move |source| AttachError::Io {
        path: path.to_owned(),
        source,
    }
}

fn prog_err(what: impl Into<String>) -> impl FnOnce(ProgramError) -> AttachError {
    let what = what.into();
    move |source| AttachError::Program { what, source }
}

/// XDP attach mode, as the operator names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native on taps, generic on every other kind of port (veth).
    #[default]
    Auto,
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the kernel's generic path (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl AttachMode {
    /// The mode for the port on `interface`: `Auto` is native on a tap
    /// (driver `tun`) and generic elsewhere. On a tap, native XDP forwards
    /// without a socket buffer, and the datapath completes the checksums
    /// the VM left to the offload. A frame redirected natively into a veth
    /// is lost unless the VM's side has GRO or XDP on (`veth_xdp_xmit`),
    /// which the hypervisor cannot see from its side; generic keeps every
    /// veth working.
    pub fn for_interface(self, interface: &str) -> AttachMode {
        match self {
            Self::Auto => match util::driver_of(interface) {
                Ok(driver) if driver == "tun" => Self::Native,
                Ok(_) => Self::Generic,
                Err(e) => {
                    warn!("{interface}: cannot tell its driver ({e}): attaching in generic mode");
                    Self::Generic
                }
            },
            mode => mode,
        }
    }

    pub fn xdp(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Auto | Self::Generic => XdpMode::Skb,
        }
    }

    /// The pin name of an XDP link in this mode.
    fn pin_name(self) -> String {
        format!("xdp-{self}")
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// How TC egress is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcAttach {
    /// TCX (a pinned link) where the kernel has it (6.6 and later, or an
    /// attach that works), else netlink.
    #[default]
    Auto,
    /// A cls_bpf filter on the clsact qdisc, as on kernels without TCX.
    Netlink,
}

impl TcAttach {
    /// Whether TCX is worth trying.
    pub fn tcx(self) -> bool {
        self == Self::Auto
            && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
    }
}

/// How a port's TC egress program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// A TCX link, pinned.
    Tcx,
    /// A netlink filter at [`NETLINK_PRIORITY`]/[`NETLINK_HANDLE`].
    Netlink,
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcx => "tcx",
            Self::Netlink => "netlink",
        })
    }
}

/// A port's attachment as pinned: where its links are and what they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLinks {
    pub ifindex: u32,
    /// The port's slot in `havip_ports`.
    pub slot: u32,
    /// The XDP mode (never `Auto`).
    pub mode: AttachMode,
    pub egress: Egress,
    dir: PathBuf,
}

impl PortLinks {
    /// The directory of the port's links.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn xdp_pin(&self) -> PathBuf {
        self.dir.join(self.mode.pin_name())
    }

    fn tc_pin(&self) -> PathBuf {
        self.dir.join(TC_PIN)
    }

    /// Attaches `ebpf`'s programs (loaded for `mode`) to `interface`, the
    /// port at `slot`, and pins their links under `pin_dir`.
    pub fn attach(
        ebpf: &mut Ebpf,
        pin_dir: &Path,
        (ifindex, interface): (u32, &str),
        slot: u32,
        mode: AttachMode,
        tc: TcAttach,
    ) -> Result<Self, AttachError> {
        let dir = pin_dir
            .join(LINKS_DIR)
            .join(format!("if{ifindex}-slot{slot}"));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut links = Self {
            ifindex,
            slot,
            mode,
            egress: Egress::Tcx,
            dir,
        };
        match attach_tc(ebpf, &links.tc_pin(), interface, tc) {
            Ok(egress) => links.egress = egress,
            Err(e) => {
                links.remove_pins();
                return Err(e);
            }
        }
        if let Err(e) = links.attach_xdp(ebpf) {
            // Nothing half attached stays behind.
            if links.egress == Egress::Netlink {
                detach_netlink(interface);
            }
            links.remove_pins();
            return Err(e);
        }
        Ok(links)
    }

    /// Moves TC egress from its netlink filter to a pinned TCX link
    /// (`ebpf`'s program): the link is attached before the filter goes.
    /// `Ok(false)` when the kernel has no TCX for the interface: the filter
    /// stays. On an error, too.
    pub fn hand_over(&mut self, ebpf: &mut Ebpf, interface: &str) -> Result<bool, AttachError> {
        if self.egress == Egress::Tcx {
            return Ok(true);
        }
        if !attach_tcx(ebpf, &self.dir.join(TC_MOVING), interface)? {
            return Ok(false);
        }
        self.egress = Egress::Tcx;
        self.finish_move(interface)?;
        Ok(true)
    }

    /// The end of a move to TCX (see [`TC_MOVING`]): the filter goes, then
    /// the link takes its usual pin.
    fn finish_move(&self, interface: &str) -> Result<(), AttachError> {
        let moving = self.dir.join(TC_MOVING);
        if !moving.exists() {
            return Ok(());
        }
        detach_netlink(interface);
        std::fs::rename(&moving, self.tc_pin()).map_err(io_err(&moving))
    }

    fn attach_xdp(&self, ebpf: &mut Ebpf) -> Result<(), AttachError> {
        let prog = xdp_program(ebpf)?;
        let id = prog
            .attach_to_if_index(self.ifindex, self.mode.xdp())
            .map_err(prog_err(format!("cannot attach XDP ({} mode)", self.mode)))?;
        let link = prog.take_link(id).map_err(prog_err("XDP link"))?;
        let fd = FdLink::try_from(link).map_err(|source| AttachError::Link {
            what: "XDP attached without a bpf_link (a kernel before 5.9?)".into(),
            source,
        })?;
        pin(fd, &self.xdp_pin())
    }

    /// Swaps `ebpf`'s programs (loaded for `mode`) into the pinned links
    /// (egress first, then XDP); a netlink filter is replaced in place
    /// ([`PortLinks::hand_over`] moves it to TCX later). With another XDP
    /// mode, re-attaches XDP in that mode (a link cannot change mode: a
    /// short gap). On an error, what was attached stays so (see
    /// [`PortLinks::is_live`]).
    pub fn adopt(
        &mut self,
        ebpf: &mut Ebpf,
        interface: &str,
        mode: AttachMode,
    ) -> Result<(), AttachError> {
        match self.egress {
            Egress::Tcx => {
                // An agent stopped in the middle of a move left it.
                self.finish_move(interface)?;
                let pinned = open_pin(&self.tc_pin())?;
                let link =
                    SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| {
                        AttachError::Link {
                            what: format!("{} is not a TCX link", self.tc_pin().display()),
                            source,
                        }
                    })?;
                let prog = egress_program(ebpf)?;
                let id = prog
                    .attach_to_link(link)
                    .map_err(prog_err("cannot replace the TC egress program in its link"))?;
                drop(prog.take_link(id).map_err(prog_err("TC egress link"))?);
            }
            Egress::Netlink => attach_netlink(egress_program(ebpf)?, interface)?,
        }
        if mode == self.mode {
            let pinned = open_pin(&self.xdp_pin())?;
            let link =
                XdpLink::try_from(FdLink::from(pinned)).map_err(|source| AttachError::Link {
                    what: format!("{} is not an XDP link", self.xdp_pin().display()),
                    source,
                })?;
            let prog = xdp_program(ebpf)?;
            let id = prog
                .attach_to_link(link)
                .map_err(prog_err("cannot replace the XDP program in its link"))?;
            // The pin holds the link; our fd may go.
            drop(prog.take_link(id).map_err(prog_err("XDP link"))?);
        } else {
            warn!(
                "{interface}: XDP was attached in {} mode, {mode} is wanted: re-attaching it",
                self.mode
            );
            unpin_link(&self.xdp_pin());
            self.mode = mode;
            self.attach_xdp(ebpf)?;
        }
        Ok(())
    }

    /// Takes the port's programs off its interface (if it still exists)
    /// and removes its pins.
    pub fn detach(self) {
        // A filter may be there beside a TCX link (see `adopt`).
        if let Some(interface) = ifname_of(self.ifindex) {
            detach_netlink(&interface);
        }
        self.remove_pins();
    }

    fn remove_pins(&self) {
        unpin_link(&self.xdp_pin());
        unpin_link(&self.tc_pin());
        // Pins of another mode, or left by hand.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                unpin_link(&e.path());
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!("cannot remove {}: {e}", self.dir.display());
            }
        }
    }

    /// Whether the XDP link is still attached to its interface (a link
    /// whose interface went away stays pinned, defunct).
    pub fn is_live(&self) -> bool {
        link_info(&self.xdp_pin())
            .is_ok_and(|i| i.link_type == BPF_LINK_TYPE_XDP && i.ifindex == self.ifindex)
    }
}

/// The ports whose links are pinned under `pin_dir` (none if it has no
/// `links` directory). Entries that do not parse are reported and left.
pub fn pinned(pin_dir: &Path) -> Vec<PortLinks> {
    let root = pin_dir.join(LINKS_DIR);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((ifindex, slot)) = parse_port_dir(&name) else {
            warn!("{}: not a port's links directory; ignored", dir.display());
            continue;
        };
        let mode = [AttachMode::Generic, AttachMode::Native]
            .into_iter()
            .find(|m| dir.join(m.pin_name()).exists());
        let Some(mode) = mode else {
            debug!("{}: no XDP link pinned", dir.display());
            // Not live (see `is_live`): an adopting agent removes it, and
            // `detach` with the others (a netlink filter included).
            found.push(PortLinks {
                ifindex,
                slot,
                mode: AttachMode::Generic,
                egress: Egress::Netlink,
                dir,
            });
            continue;
        };
        let egress = if dir.join(TC_PIN).exists() || dir.join(TC_MOVING).exists() {
            Egress::Tcx
        } else {
            Egress::Netlink
        };
        found.push(PortLinks {
            ifindex,
            slot,
            mode,
            egress,
            dir,
        });
    }
    found.sort_by_key(|p| p.ifindex);
    found
}

/// `if7-slot2` -> (7, 2).
fn parse_port_dir(name: &str) -> Option<(u32, u32)> {
    let (ifx, slot) = name.strip_prefix("if")?.split_once("-slot")?;
    Some((ifx.parse().ok()?, slot.parse().ok()?))
}

/// Takes every program pinned under `pin_dir` off its interface and removes
/// the link pins; returns how many ports it detached.
pub fn detach(pin_dir: &Path) -> usize {
    let ports = pinned(pin_dir);
    let n = ports.len();
    for p in ports {
        info!(
            "detaching XDP ({} mode) and TC egress ({}) from ifindex {} (slot {})",
            p.mode, p.egress, p.ifindex, p.slot
        );
        p.detach();
    }
    let root = pin_dir.join(LINKS_DIR);
    if let Err(e) = std::fs::remove_dir(&root) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!("cannot remove {}: {e}", root.display());
        }
    }
    n
}

/// Attaches TC egress to a new port: a netlink filter (fast; see the
/// module docs), or, where the filter cannot go and TCX is wanted, a pinned
/// TCX link.
fn attach_tc(
    ebpf: &mut Ebpf,
    pin_path: &Path,
    interface: &str,
    tc: TcAttach,
) -> Result<Egress, AttachError> {
    match attach_netlink(egress_program(ebpf)?, interface) {
        Ok(()) => Ok(Egress::Netlink),
        Err(e) if tc.tcx() => {
            info!("{e}: attaching TC egress by TCX");
            if attach_tcx(ebpf, pin_path, interface)? {
                Ok(Egress::Tcx)
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// Attaches TC egress by a TCX link, pinned at `pin_path`; `Ok(false)` if
/// the kernel has no TCX for the interface.
fn attach_tcx(ebpf: &mut Ebpf, pin_path: &Path, interface: &str) -> Result<bool, AttachError> {
    let prog = egress_program(ebpf)?;
    match prog.attach_with_options(
        interface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(id) => {
            let link = prog.take_link(id).map_err(prog_err("TC egress link"))?;
            let fd = FdLink::try_from(link).map_err(|source| AttachError::Link {
                what: "TCX egress link".into(),
                source,
            })?;
            pin(fd, pin_path)?;
            Ok(true)
        }
        Err(e) if matches!(os_error(&e), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
            info!("{interface}: no TCX ({e})");
            Ok(false)
        }
        Err(e) => Err(prog_err("cannot attach TC egress (TCX)")(e)),
    }
}

/// The netlink filter, on the clsact qdisc (created if missing): replaced in
/// place if ours is there, else created. Either way it stays attached when
/// the program instance goes (it is not a link).
fn attach_netlink(prog: &mut SchedClassifier, interface: &str) -> Result<(), AttachError> {
    let netlink = |source| AttachError::Netlink {
        interface: interface.to_owned(),
        source,
    };
    match qdisc_add_clsact(interface) {
        Ok(()) => debug!("{interface}: added the clsact qdisc"),
        Err(aya::programs::tc::TcError::NetlinkError(e))
            if e.raw_os_error() == Some(libc::EEXIST) =>
        {
            // Something holds the place: clsact, or an `ingress` qdisc
            // that would take the filter on its ingress hook.
            let ifindex = util::ifindex_of(interface).unwrap_or(0);
            let kind = qdisc::ingress_kind(ifindex).map_err(|source| AttachError::Qdisc {
                interface: interface.to_owned(),
                source,
            })?;
            if let Some(kind) = kind.filter(|k| k != "clsact") {
                return Err(AttachError::NoClsact {
                    interface: interface.to_owned(),
                    kind,
                });
            }
        }
        Err(e) => return Err(netlink(e)),
    }
    let ours = SchedClassifierLink::attached(
        interface,
        TcAttachType::Egress,
        NETLINK_PRIORITY,
        NETLINK_HANDLE,
        None,
    )
    .map_err(|e| netlink(e.into()))?;
    let id = match prog.attach_to_link(ours) {
        Ok(id) => {
            debug!("{interface}: TC egress replaced in place");
            id
        }
        Err(e) if os_error(&e) == Some(libc::ENOENT) => prog
            .attach_with_options(
                interface,
                TcAttachType::Egress,
                TcAttachOptions::Netlink(NlOptions {
                    priority: NETLINK_PRIORITY,
                    handle: NETLINK_HANDLE,
                    classid: None,
                }),
            )
            .map_err(prog_err("cannot attach TC egress (netlink)"))?,
        Err(e) => return Err(prog_err("cannot replace TC egress (netlink)")(e)),
    };
    let link = prog.take_link(id).map_err(prog_err("TC egress link"))?;
    // Dropping it would delete the filter: it must outlive us.
    std::mem::forget(link);
    Ok(())
}

/// Deletes our netlink filter from `interface` (if it is there).
fn detach_netlink(interface: &str) {
    // A link made from the filter's coordinates deletes it when dropped.
    match SchedClassifierLink::attached(
        interface,
        TcAttachType::Egress,
        NETLINK_PRIORITY,
        NETLINK_HANDLE,
        None,
    ) {
        Ok(link) => drop(link),
        Err(e) => debug!("{interface}: {e}"),
    }
}

/// The errno behind an attach error, if there is one.
fn os_error(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::NetlinkError(n) => n.raw_os_error(),
        ProgramError::TcError(aya::programs::tc::TcError::NetlinkError(n)) => n.raw_os_error(),
        ProgramError::TcError(aya::programs::tc::TcError::IoError(e)) => e.raw_os_error(),
        ProgramError::IOError(e) => e.raw_os_error(),
        _ => None,
    }
}

pub(crate) fn pin(link: FdLink, path: &Path) -> Result<(), AttachError> {
    // A pin left by a crash before the adoption would make BPF_OBJ_PIN fail.
    unpin_link(path);
    link.pin(path).map(drop).map_err(|source| AttachError::Pin {
        path: path.to_owned(),
        source,
    })
}

fn open_pin(path: &Path) -> Result<PinnedLink, AttachError> {
    PinnedLink::from_pin(path).map_err(|source| AttachError::Link {
        what: format!("cannot open pinned link {}", path.display()),
        source,
    })
}

/// Detaches the link pinned at `path` (BPF_LINK_DETACH: also if another
/// process holds it open) and removes the pin.
pub(crate) fn unpin_link(path: &Path) {
    match sys::obj_get(path) {
        Ok(fd) => {
            if let Err(e) = sys::link_detach(&fd) {
                debug!("{}: BPF_LINK_DETACH: {e}", path.display());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => debug!("{}: BPF_OBJ_GET: {e}", path.display()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => debug!("unpinned {}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!("cannot unpin {}: {e}", path.display()),
    }
}

/// `enum bpf_link_type`'s XDP.
const BPF_LINK_TYPE_XDP: u32 = 6;

pub use crate::sys::LinkInfo;

/// [`LinkInfo`] of the XDP or TCX link pinned at `path`.
pub fn link_info(path: &Path) -> io::Result<LinkInfo> {
    let fd = sys::obj_get(path)?;
    sys::link_info(&fd)
}

/// One agent per pin dir: an exclusive flock(2) on the directory, held for
/// as long as this lives.
#[derive(Debug)]
pub struct PinDirLock {
    _dir: File,
}

impl PinDirLock {
    /// Locks `pin_dir` (which must exist), or says who holds it.
    pub fn acquire(pin_dir: &Path) -> Result<Self, AttachError> {
        let dir = File::open(pin_dir).map_err(io_err(pin_dir))?;
        // SAFETY: flock(2) on an fd we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(AttachError::Locked {
                    pin_dir: pin_dir.to_owned(),
                    pid: lock_holder(&dir),
                });
            }
            return Err(io_err(pin_dir)(e));
        }
        Ok(Self { _dir: dir })
    }
}

/// The pid holding a flock on `file`, from /proc/locks
/// (`1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF`).
fn lock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = file.metadata().ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // A blocked waiter's line has "->" after the number.
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// The datapath's TC egress program in a loaded object.
pub fn egress_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, AttachError> {
    ebpf.program_mut(TC_EGRESS_PROGRAM)
        .ok_or(AttachError::MissingProgram(TC_EGRESS_PROGRAM))?
        .try_into()
        .map_err(prog_err(format!("{TC_EGRESS_PROGRAM}: not a TC program")))
}

/// The datapath's XDP program in a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, AttachError> {
    ebpf.program_mut(XDP_PROGRAM)
        .ok_or(AttachError::MissingProgram(XDP_PROGRAM))?
        .try_into()
        .map_err(prog_err(format!("{XDP_PROGRAM}: not an XDP program")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_dirs_name_the_ifindex_and_the_slot() {
        assert_eq!(parse_port_dir("if7-slot2"), Some((7, 2)));
        assert_eq!(parse_port_dir("if12-slot1023"), Some((12, 1023)));
        for bad in ["7-slot2", "if7", "if7-slot", "ifx-slot2", "if7-slot2x", ""] {
            assert_eq!(parse_port_dir(bad), None, "{bad}");
        }
    }
}
