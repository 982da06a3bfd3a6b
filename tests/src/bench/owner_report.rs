//! How soon etcd hears of a new owner while a rogue floods: keepalived
//! hands VIP4 back and forth between vm1 (hv-a) and vm2 (hv-b, beside the
//! flooding rogue) ([`crate::cross_host`]); each time, the delay from the
//! new master's first GARP on its hypervisor port (tcpdump's kernel
//! timestamp) to etcd's watch delivering the owner record that names it.
//! Failovers to vm2 are reported by the agent of the flooded host; those
//! to vm1, by the quiet one.

use std::time::Duration;

use anyhow::Result;

use crate::agent::Status;
use crate::bench::Options;
use crate::cross_host::{CrossHost, Departure};
use crate::flood::{self, Flood, Rejections};
use crate::lab::{CLIENT, ROGUE, VM2};

/// Quiet time between two failovers (keepalived's backup settles).
const PAUSE: Duration = Duration::from_secs(1);

/// The delays, µs.
pub struct Measured {
    /// New owner on the flooded host (vm2 on hv-b).
    pub flooded_us: Vec<f64>,
    /// New owner on the other host (vm1 on hv-a).
    pub quiet_us: Vec<f64>,
    pub rejections: Vec<Rejections>,
}

fn flooded_host(x: &CrossHost) -> Result<Status> {
    x.fabric.host("hv-b").agent()?.status()
}

pub fn measure(opts: &Options) -> Result<Measured> {
    let mut x = CrossHost::build()?;
    let before = flooded_host(&x)?;
    let kinds = flood::rogue_frames(&ROGUE, &VM2, &CLIENT);
    let mut flood = Flood::start(x.vm("rogue"), kinds, opts.flood_rate)?;
    let (mut flooded_us, mut quiet_us) = (Vec::new(), Vec::new());
    for i in 0..opts.failovers {
        std::thread::sleep(PAUSE);
        let h = x.hand_over(Departure::Stop)?;
        if i % 10 == 9 {
            eprintln!(
                "havip-bench: owner reports: {} of {} failovers",
                i + 1,
                opts.failovers
            );
        }
        match h.host {
            "hv-b" => flooded_us.push(h.report_delay_us()),
            _ => quiet_us.push(h.report_delay_us()),
        }
    }
    flood.stop();
    let after = flooded_host(&x)?;
    Ok(Measured {
        flooded_us,
        quiet_us,
        rejections: flood.rejections(&before, &after),
    })
}
