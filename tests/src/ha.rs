//! The HA pair of the guide: keepalived MASTER in vm1, BACKUP in vm2, and a
//! UDP echo service on both VIPs in each, so the client can tell who answers.

use std::net::IpAddr;

use anyhow::Result;

use crate::keepalived::{self, Flavour, Keepalived};
use crate::lab::{Lab, ECHO_PORT, VIP4, VIP6};
use crate::probe::EchoServer;

/// vm1 and vm2 running keepalived and the echo service; stopped on drop.
pub struct HaPair {
    pub master: Keepalived,
    pub backup: Keepalived,
    _echo: [EchoServer; 2],
}

impl HaPair {
    /// Starts the echo services and keepalived in vm1 (MASTER, 110) and vm2
    /// (BACKUP, 100); returns once vm1 holds both VIPs.
    pub fn start(lab: &Lab) -> Result<Self> {
        Self::start_flavour(lab, Flavour::Unicast)
    }

    /// [`HaPair::start`], keepalived configured in `flavour`; returns once
    /// vm1 holds the flavour's VIPs.
    pub fn start_flavour(lab: &Lab, flavour: Flavour) -> Result<Self> {
        let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        let echo = [
            EchoServer::start(&lab.vm1, &vips, ECHO_PORT)?,
            EchoServer::start(&lab.vm2, &vips, ECHO_PORT)?,
        ];
        let (master, backup) =
            keepalived::start_pair_flavour(lab.dir(), (&lab.vm1, &lab.vm2), flavour)?;
        Ok(Self {
            master,
            backup,
            _echo: echo,
        })
    }
}
