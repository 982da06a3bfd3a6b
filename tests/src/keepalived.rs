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

/// How keepalived is configured: as the HA guide says, or as people run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// The guide's (15.6.1): unicast VRRP between the two VMs, both VIPs.
    Unicast,
    /// keepalived's default: multicast VRRP to 224.0.0.18, both VIPs.
    Multicast,
    /// `use_vmac`: the master speaks from 00:00:5e:00:01:VRID on a
    /// macvlan holding the IPv4 VIP (multicast VRRPv2).
    VirtualMac,
    /// VRRPv3 for the IPv6 VIP alone, multicast to ff02::12 from the
    /// interface's link-local.
    Ipv6,
}

impl Flavour {
    /// The VIPs the master holds.
    pub fn vips(self) -> Vec<IpAddr> {
        match self {
            Flavour::Unicast | Flavour::Multicast => vec![VIP4.into(), VIP6.into()],
            Flavour::VirtualMac => vec![VIP4.into()],
            Flavour::Ipv6 => vec![VIP6.into()],
        }
    }
}

/// keepalived.conf for `vm` with `peer` as its unicast peer (the guide's).
pub fn config(vm: &Vm, peer: &Vm, role: Role) -> String {
    config_for(vm, peer, role, Flavour::Unicast)
}

/// keepalived.conf for `vm`, its peer `peer`, in `flavour`.
pub fn config_for(vm: &Vm, peer: &Vm, role: Role, flavour: Flavour) -> String {
    let auth = "    authentication {\n        auth_type PASS\n        auth_pass havip\n    }\n";
    let both = format!(
        "    virtual_ipaddress {{\n        {VIP4}/24 dev eth0\n    }}\n    \
         virtual_ipaddress_excluded {{\n        {VIP6}/64 dev eth0\n    }}\n"
    );
    let body = match flavour {
        Flavour::Unicast => format!(
            "{auth}    unicast_src_ip {}\n    unicast_peer {{\n        {}\n    }}\n{both}",
            vm.spec.ipv4, peer.spec.ipv4
        ),
        Flavour::Multicast => format!("{auth}{both}"),
        Flavour::VirtualMac => {
            format!("{auth}    use_vmac\n    virtual_ipaddress {{\n        {VIP4}/24\n    }}\n")
        }
        Flavour::Ipv6 => {
            format!("    version 3\n    virtual_ipaddress {{\n        {VIP6}/64 dev eth0\n    }}\n")
        }
    };
    format!(
        r#"! Configuration File for keepalived (havip lab, {name}, {flavour:?})
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
{body}}}
"#,
        name = vm.role(),
        state = role.state(),
        prio = role.priority(),
        vrid = VIRTUAL_ROUTER_ID,
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
        Self::start_flavour(dir, vm, peer, (role, Flavour::Unicast))
    }

    /// [`Keepalived::start_in`], configured in `flavour`.
    pub fn start_flavour(
        dir: &Path,
        vm: &Vm,
        peer: &Vm,
        (role, flavour): (Role, Flavour),
    ) -> Result<Self> {
        let name = vm.role();
        let conf = dir.join(format!("keepalived-{name}.conf"));
        std::fs::write(&conf, config_for(vm, peer, role, flavour))?;
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
    wait_holds(vm, &Flavour::Unicast.vips(), timeout)
}

/// Waits until `vm` holds `vips` (keepalived made it MASTER).
pub fn wait_holds(vm: &Vm, vips: &[IpAddr], timeout: Duration) -> Result<()> {
    wait::until(
        timeout,
        &format!("{} to hold the VIPs (keepalived MASTER)", vm.role()),
        || {
            for vip in vips {
                if !vm.has_address(*vip)? {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
}

/// Starts keepalived in `vm1` (MASTER) and, once it holds the VIPs, in `vm2`
/// (BACKUP), and returns once that is settled: vm1 holds both VIPs and vm2
/// none, twice half a second apart. (Started together, both may be master
/// for a moment, and the backup's announcements can come last.)
pub fn start_pair(dir: &Path, vm1: &Vm, vm2: &Vm) -> Result<(Keepalived, Keepalived)> {
    start_pair_flavour(dir, (vm1, vm2), Flavour::Unicast)
}

/// [`start_pair`], keepalived configured in `flavour`.
pub fn start_pair_flavour(
    dir: &Path,
    (vm1, vm2): (&Vm, &Vm),
    flavour: Flavour,
) -> Result<(Keepalived, Keepalived)> {
    let vips = flavour.vips();
    let master = Keepalived::start_flavour(dir, vm1, vm2, (Role::Master, flavour))?;
    if let Err(e) = wait_holds(vm1, &vips, Duration::from_secs(15)) {
        anyhow::bail!(
            "{e:#}\n--- keepalived {} ---\n{}",
            vm1.role(),
            master.log_text()
        );
    }
    let backup = Keepalived::start_flavour(dir, vm2, vm1, (Role::Backup, flavour))?;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(500));
        let vm2_holds = vips
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
        wait_holds(vm1, &vips, Duration::from_secs(5))?;
    }
    Ok((master, backup))
}
