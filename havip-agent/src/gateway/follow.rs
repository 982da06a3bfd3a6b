//! `gateway run --etcd URL --gateway NAME`: the EIPs this gateway serves
//! and their VIPs' owners, read from etcd and followed by a watch (the
//! interfaces stay in the config file).
//!
//! What this gateway serves: every EIP record (`eips/<eip>`) whose pool's
//! gateway is NAME. An associated one is translated to its HAVIP's
//! address; one not associated is held: its traffic is dropped, counted
//! (`no_owner`), never left to the kernel. The owner of each VIP is its
//! owner record's port's MAC ([`read_owner`], then `ports/<port>`).
//!
//! Which owner wins: the datapath learns owners on the wire (GARP, NA) as
//! it always does; an owner from etcd is written into the map when its
//! record changes (a new `since`), unless the gateway saw the datapath
//! learn another owner on the wire after that `since`: the newer of the
//! two wins.
//!
//! On any change of an EIP, an owner or a port record, everything is read
//! again (at most a few keys per EIP) and applied by diff. When etcd is
//! away, the maps keep the last state and the wire keeps teaching owners.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient, WatchOptions};
use havip_schema::keys::{self, Key};
use havip_schema::owners::{current_owner, OwnerReport};
use havip_schema::records::{Eip, Owner as OwnerRecord, Port, Vip};
use log::{info, warn};
use tokio::sync::mpsc;

use super::config::{association_problem, Association};
use crate::connection::retry_delay;
use crate::etcd::decode;

/// Where the EIPs are and which gateway this is.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub endpoints: Vec<String>,
    pub gateway: String,
}

/// What etcd says this gateway serves, read at `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    pub revision: i64,
    pub associations: Vec<Association>,
    /// EIPs of this gateway with no HAVIP: dropped, counted.
    pub held: Vec<IpAddr>,
    /// VIP -> its owner's MAC and since when (the owner record's).
    pub owners: HashMap<IpAddr, ([u8; 6], DateTime<Utc>)>,
}

/// The owner of VIP `vip`, as the agents report it: the newest report of
/// the hosts of its bound ports ([`current_owner`]). The one place the
/// gateway reads owners.
pub async fn read_owner(
    kv: &mut KvClient,
    vip: &str,
) -> Result<Option<OwnerRecord>, etcd_client::Error> {
    let key = keys::vip(vip);
    let resp = kv.get(key.as_str(), None).await?;
    let Some(record) = resp
        .kvs()
        .first()
        .and_then(|kv| decode::<Vip>(&key, kv.value()))
    else {
        return Ok(None);
    };
    let hosts: HashSet<&str> = record.ports.iter().map(|b| b.host.as_str()).collect();
    let mut reports = Vec::new();
    for host in hosts {
        let key = keys::owner_report(vip, host);
        let resp = kv.get(key.as_str(), None).await?;
        if let Some(item) = resp.kvs().first() {
            if let Some(owner) = decode::<OwnerRecord>(&key, item.value()) {
                reports.push(OwnerReport {
                    host: host.to_string(),
                    owner,
                    revision: item.mod_revision(),
                });
            }
        }
    }
    Ok(current_owner(reports).map(|(o, _)| o))
}

/// Whether a change of `key` can change what a gateway serves.
pub fn concerns(key: &str) -> bool {
    matches!(
        Key::parse(key),
        Some(Key::Eip(_) | Key::Owner { .. } | Key::Port(_) | Key::Vip(_))
    )
}

/// Reads what `gateway` serves. A record that is not one, or whose EIP
/// cannot be translated (see [`association_problem`]), is logged and
/// left out; everything else is served.
pub async fn read(client: &Client, gateway: &str) -> Result<Served, etcd_client::Error> {
    let mut kv = client.kv_client();
    let resp = kv
        .get(keys::eips(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut served = Served {
        revision: resp.header().map_or(0, |h| h.revision()),
        ..Served::default()
    };
    let (mut eips, mut vips) = (HashSet::new(), HashSet::new());
    for item in resp.kvs() {
        let key = String::from_utf8_lossy(item.key()).into_owned();
        let Some(eip) = decode::<Eip>(&key, item.value()) else {
            continue;
        };
        if eip.gateway != gateway {
            continue;
        }
        if let Some(why) = eip.problem() {
            warn!(
                "gateway: EIP {} ({}): {why}; not served",
                eip.id, eip.address
            );
            continue;
        }
        let Some(vip) = &eip.havip else {
            served.held.push(eip.address);
            continue;
        };
        let a = Association {
            eip: eip.address,
            vip: vip.address,
            owner: None,
        };
        if let Some(why) = association_problem(&a, &mut eips, &mut vips) {
            warn!("gateway: EIP {}: {why}; not served", eip.id);
            continue;
        }
        served.associations.push(a);
        let Some(owner) = read_owner(&mut kv, &vip.id).await? else {
            continue;
        };
        let port_key = keys::port(&owner.port);
        let port = kv.get(port_key.as_str(), None).await?;
        if let Some(p) = port
            .kvs()
            .first()
            .and_then(|kv| decode::<Port>(&port_key, kv.value()))
        {
            served
                .owners
                .insert(vip.address, (p.mac.octets(), owner.since));
        }
    }
    served.held.retain(|e| !eips.contains(e));
    Ok(served)
}

async fn connect(opts: &FollowOptions) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    Client::connect(&opts.endpoints, Some(options)).await
}

/// Reads what the gateway serves and sends it on `tx` at start and after
/// every change that concerns it, until `tx` is closed. Reconnects when
/// etcd goes away.
pub async fn follow(opts: FollowOptions, tx: mpsc::Sender<Served>) {
    let mut failures = 0u32;
    loop {
        let result = async {
            let client = connect(&opts).await?;
            let served = read(&client, &opts.gateway).await?;
            let mut revision = served.revision;
            if tx.send(served).await.is_err() {
                return Ok(());
            }
            failures = 0;
            let mut stream = client
                .watch_client()
                .watch(
                    keys::root(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await?;
            while let Some(resp) = stream.message().await? {
                if resp.canceled() {
                    break;
                }
                let relevant = resp.events().iter().any(|e| {
                    e.kv().is_some_and(|kv| {
                        kv.mod_revision() > revision && concerns(&String::from_utf8_lossy(kv.key()))
                    })
                });
                if relevant {
                    let served = read(&client, &opts.gateway).await?;
                    revision = served.revision;
                    if tx.send(served).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Err(etcd_client::Error::WatchError("the watch ended".into()))
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                warn!("gateway: etcd: {e}; the maps keep their last state");
                tokio::time::sleep(retry_delay(failures)).await;
                info!("gateway: etcd: reading again");
            }
        }
    }
}
