//! keepalived in a VM, configured as in the HA guide (15.6.1): unicast VRRP
//! between the two VMs, `nopreempt`, `advert_int 1`, `auth_type PASS`, the
//! VIP as `virtual_ipaddress`.
//!
//! keepalived 2.2.7 wants all `virtual_ipaddress` entries of one instance in
//! one family; the IPv6 VIP goes into `virtual_ipaddress_excluded` of the
//! same instance, so both VIPs move together and keepalived announces both
//! (GARP for the IPv4 VIP, unsolicited NA for the IPv6 one).

use std::fs::File;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cleanup::{self, Resource, Token};
use crate::lab::{Lab, Vm, VIP4, VIP6};
use crate::wait;

/// The VRRP role a VM starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `state MASTER`, priority 110 (the guide's HAVIP-01).
    Master,
    /// `state BACKUP`, priority 100.
    Backup,
}

impl Role {
    fn state(self) -> &'static str {
        match self {
            Role::Master => "MASTER",
            Role::Backup => "BACKUP",
        }
    }

    fn priority(self) -> u8 {
        match self {
            Role::Master => 110,
            Role::Backup => 100,
        }
    }
}

/// `virtual_router_id` of the lab's instance (the guide's).
pub const VIRTUAL_ROUTER_ID: u8 = 111;

/// keepalived.conf for `vm` with `peer` as its unicast peer.
pub fn config(vm: &Vm, peer: &Vm, role: Role) -> String {
    format!(
        r#"! Configuration File for keepalived (havip lab, {name})
global_defs {{
    router_id {name}
    script_user root
    enable_script_security
}}
vrrp_instance VI_HAVIP {{
    state {state}
    nopreempt
    advert_int 1
    priority {prio}
    interface eth0
    virtual_router_id {vrid}
    authentication {{
        auth_type PASS
        auth_pass havip
    }}
    unicast_src_ip {src}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip4}/24 dev eth0
    }}
    virtual_ipaddress_excluded {{
        {vip6}/64 dev eth0
    }}
}}
"#,
        name = vm.role(),
        state = role.state(),
        prio = role.priority(),
        vrid = VIRTUAL_ROUTER_ID,
        src = vm.spec.ipv4,
        peer = peer.spec.ipv4,
        vip4 = VIP4,
        vip6 = VIP6,
    )
}

/// A keepalived (parent + VRRP child, one process group) in a VM.
pub struct Keepalived {
    pub vm: &'static str,
    pub conf: PathBuf,
    pub log: PathBuf,
    pid: u32,
    token: Option<Token>,
}

impl Keepalived {
    /// Starts keepalived in `vm` with `peer` as unicast peer.
    pub fn start(lab: &Lab, vm: &Vm, peer: &Vm, role: Role) -> Result<Self> {
        Self::start_in(lab.dir(), vm, peer, role)
    }

    /// [`Keepalived::start`] with its files in `dir`.
    pub fn start_in(dir: &Path, vm: &Vm, peer: &Vm, role: Role) -> Result<Self> {
        let name = vm.role();
        let conf = dir.join(format!("keepalived-{name}.conf"));
        std::fs::write(&conf, config(vm, peer, role))?;
        let log = dir.join(format!("keepalived-{name}.log"));
        let log_file = File::create(&log)?;
        let pid_file = |what: &str| dir.join(format!("keepalived-{name}{what}.pid"));
        let mut c = vm.ns.cmd("keepalived");
        c.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(pid_file(""))
            .arg("--vrrp_pid")
            .arg(pid_file("-vrrp"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        let child = c.spawn().context("start keepalived")?;
        let pid = child.id();
        let token = Some(cleanup::register(Resource::Process {
            name: format!("keepalived ({name})"),
            child,
            group: true,
            grace: Duration::from_secs(5),
        }));
        Ok(Self {
            vm: name,
            conf,
            log,
            pid,
            token,
        })
    }

    /// The VM crashes: SIGKILL to keepalived (parent and VRRP child; it
    /// cannot remove the VIP or say goodbye), and the VM's NIC goes down.
    pub fn crash(&mut self, vm: &Vm) -> Result<()> {
        cleanup::signal(self.pid, true, libc::SIGKILL);
        vm.pull_the_plug()?;
        self.stop();
        Ok(())
    }

    /// Graceful stop: SIGTERM; keepalived removes the VIPs and sends a
    /// priority-0 advert so the backup takes over at once.
    pub fn stop(&mut self) {
        if let Some(t) = self.token.take() {
            cleanup::release(t);
        }
    }

    /// Whether keepalived is still running.
    pub fn running(&self) -> bool {
        self.token
            .and_then(|t| cleanup::with_child(t, |c| matches!(c.try_wait(), Ok(None))))
            .unwrap_or(false)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `vm` holds both VIPs (keepalived made it MASTER).
pub fn wait_master(vm: &Vm, timeout: Duration) -> Result<()> {
    wait::until(
        timeout,
        &format!("{} to hold the VIPs (keepalived MASTER)", vm.role()),
        || Ok(vm.has_address(VIP4.into())? && vm.has_address(VIP6.into())?),
    )
}

/// Starts keepalived in `vm1` (MASTER) and, once it holds the VIPs, in `vm2`
/// (BACKUP), and returns once that is settled: vm1 holds both VIPs and vm2
/// none, twice half a second apart. (Started together, both may be master
/// for a moment, and the backup's announcements can come last.)
pub fn start_pair(dir: &Path, vm1: &Vm, vm2: &Vm) -> Result<(Keepalived, Keepalived)> {
    let master = Keepalived::start_in(dir, vm1, vm2, Role::Master)?;
    if let Err(e) = wait_master(vm1, Duration::from_secs(15)) {
        anyhow::bail!(
            "{e:#}\n--- keepalived {} ---\n{}",
            vm1.role(),
            master.log_text()
        );
    }
    let backup = Keepalived::start_in(dir, vm2, vm1, Role::Backup)?;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(500));
        let vm2_holds = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)]
            .iter()
            .map(|vip| vm2.has_address(*vip))
            .collect::<Result<Vec<_>>>()?;
        if vm2_holds.contains(&true) {
            anyhow::bail!(
                "{} took a VIP as BACKUP\n--- keepalived {} ---\n{}",
                vm2.role(),
                vm2.role(),
                backup.log_text()
            );
        }
        wait_master(vm1, Duration::from_secs(5))?;
    }
    Ok((master, backup))
}
