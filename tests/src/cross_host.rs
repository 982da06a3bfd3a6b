//! A failover across hypervisors, watched from the wire and from etcd.
//!
//! ```text
//!   hv-a: vm1 (keepalived MASTER), client      hv-b: vm2 (BACKUP), rogue
//! ```
//!
//! Both agents read etcd ([`crate::fabric`]). When the master goes, vm2's
//! GARP for the VIP is seen on its hypervisor port (tcpdump on tap-vm2),
//! hv-b's agent writes the owner record to etcd (seen by an
//! [`OwnerWatch`]), and hv-a follows (vm2 its remote owner). The rogue sits
//! beside the new master, so a flood of its frames lands on the host whose
//! agent has to report.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::capture::Capture;
use crate::etcd_watch::{OwnerSeen, OwnerWatch};
use crate::fabric::{port_id, Fabric};
use crate::keepalived::{self, Keepalived, Role};
use crate::lab::{Vm, VmSpec, CLIENT, ECHO_PORT, ROGUE, VIP4, VIP6, VM1, VM2};
use crate::probe::EchoServer;
use crate::wait::{self, now_us};

/// The two keepalived VMs: (role, its host).
const PAIR: [(&VmSpec, &str); 2] = [(&VM1, "hv-a"), (&VM2, "hv-b")];

/// How the master goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// keepalived SIGKILLed and the VM's NIC down: the backup takes over
    /// after three missed adverts.
    Crash,
    /// keepalived stopped (SIGTERM): it says goodbye (priority 0) and the
    /// backup takes over at once; it comes back as the backup.
    Stop,
}

/// One failover as the wire and etcd saw it.
#[derive(Clone, Debug)]
pub struct Handover {
    /// The new master's role and host.
    pub to: &'static str,
    pub host: &'static str,
    /// When the old master was told to go.
    pub at_us: i64,
    /// The new master's first GARP for VIP4 on its hypervisor port.
    pub garp_us: i64,
    /// The owner record naming the new master, as etcd delivered it.
    pub etcd: OwnerSeen,
}

impl Handover {
    /// From the GARP on the wire to the record in etcd, in µs.
    pub fn report_delay_us(&self) -> f64 {
        (self.etcd.at_us - self.garp_us) as f64
    }
}

/// The fabric, the HA pair on two hosts, and the watches.
pub struct CrossHost {
    /// The controller's ids of VIP4 and VIP6.
    pub vips: [String; 2],
    /// Which of [`PAIR`] is the master now.
    pub master: usize,
    keepalived: [Option<Keepalived>; 2],
    pub owners: OwnerWatch,
    claims: [Capture; 2],
    _echo: [EchoServer; 2],
    // Last: the agents and namespaces go after what runs in them.
    pub fabric: Fabric,
}

impl CrossHost {
    /// Builds the fabric, starts both agents, creates the VIPs bound to vm1
    /// and vm2 (available on both hosts), starts the echo services and the
    /// keepalived pair, and returns once etcd names vm1 the owner.
    pub fn build() -> Result<Self> {
        let mut f = Fabric::build(&[("hv-a", &[VM1, CLIENT]), ("hv-b", &[VM2, ROGUE])])?;
        for h in ["hv-a", "hv-b"] {
            f.host_mut(h).start_agent()?;
        }
        let owners = OwnerWatch::start(&f.ctl)?;
        let mut vips = Vec::new();
        for (name, addr) in [("web-v4", IpAddr::V4(VIP4)), ("web-v6", IpAddr::V6(VIP6))] {
            let id = f.create_vip(name, addr, &[&VM1, &VM2])?;
            f.wait_status(&id, "available", Duration::from_secs(20))?;
            vips.push(id);
        }
        let vips: [String; 2] = vips.try_into().expect("two VIPs");
        let claims = [
            Capture::start(&f.host("hv-a").ns, VM1.tap, Some("in"), "arp")?,
            Capture::start(&f.host("hv-b").ns, VM2.tap, Some("in"), "arp")?,
        ];
        let both = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        let echo = [
            EchoServer::start(f.vm("vm1"), &both, ECHO_PORT)?,
            EchoServer::start(f.vm("vm2"), &both, ECHO_PORT)?,
        ];
        let started = now_us();
        let (master, backup) = keepalived::start_pair(&f.dir, f.vm("vm1"), f.vm("vm2"))?;
        owners.wait_for(&vips[0], &port_id(&VM1), started, Duration::from_secs(10))?;
        Ok(Self {
            vips,
            master: 0,
            keepalived: [Some(master), Some(backup)],
            owners,
            claims,
            _echo: echo,
            fabric: f,
        })
    }

    pub fn vm(&self, role: &str) -> &Vm {
        self.fabric.vm(role)
    }

    /// The master goes (`how`); returns once the other VM's GARP was seen
    /// and etcd names it the owner of VIP4. After a [`Departure::Stop`] the
    /// old master comes back as the backup.
    pub fn hand_over(&mut self, how: Departure) -> Result<Handover> {
        let (old, new) = (self.master, 1 - self.master);
        let (new_spec, host) = PAIR[new];
        let old_vm = self.fabric.vm(PAIR[old].0.role);
        let mut leaving = self.keepalived[old]
            .take()
            .context("the master's keepalived is not running")?;
        let at_us = now_us();
        match how {
            Departure::Crash => leaving.crash(old_vm)?,
            Departure::Stop => leaving.stop(),
        }
        let etcd = self
            .owners
            .wait_for(
                &self.vips[0],
                &port_id(new_spec),
                at_us,
                Duration::from_secs(15),
            )
            .with_context(|| format!("after {:?} of {}", how, PAIR[old].0.role))?;
        let mac = new_spec.mac_str();
        let vip = VIP4.to_string();
        let garp_us = self.claims[new]
            .frames()
            .into_iter()
            .find(|f| f.at_us >= at_us && f.is_garp_for(&vip) && f.src_mac() == Some(&mac))
            .map(|f| f.at_us)
            .with_context(|| format!("no GARP from {} on {}", new_spec.role, new_spec.tap))?;
        self.master = new;
        if how == Departure::Stop {
            let new_vm = self.fabric.vm(new_spec.role);
            keepalived::wait_master(new_vm, Duration::from_secs(5))?;
            let back = Keepalived::start_in(&self.fabric.dir, old_vm, new_vm, Role::Backup)?;
            self.keepalived[old] = Some(back);
        }
        Ok(Handover {
            to: new_spec.role,
            host,
            at_us,
            garp_us,
            etcd,
        })
    }

    /// Waits until the host of the old master programs the new one as
    /// remote owner of VIP4; when it was seen so (µs).
    pub fn wait_followed(&self, timeout: Duration) -> Result<i64> {
        let (new_spec, new_host) = PAIR[self.master];
        let other = PAIR[1 - self.master].1;
        let port = self
            .fabric
            .host(new_host)
            .agent()?
            .status()?
            .port_on(new_spec.tap)?;
        wait::until(
            timeout,
            &format!("{other} to follow {}", new_spec.role),
            || {
                let s = self.fabric.host(other).agent()?.status()?;
                Ok(s.vip_at(&VIP4.to_string())?
                    .owner
                    .as_ref()
                    .is_some_and(|o| o.port_id == port && o.ifindex == 0))
            },
        )?;
        Ok(now_us())
    }

    /// Checks the backup came up as backup: it holds no VIP.
    pub fn ensure_backup_quiet(&self) -> Result<()> {
        let backup = self.fabric.vm(PAIR[1 - self.master].0.role);
        ensure!(
            !backup.has_address(IpAddr::V4(VIP4))?,
            "{} holds the VIP as backup",
            backup.role()
        );
        Ok(())
    }
}
