//! `havipctl eip ...` and `havipctl eip-pool ...`.

use std::net::IpAddr;

use clap::Subcommand;
use havip_controller::client::Client;
use havip_controller::model::*;

#[derive(Subcommand)]
pub enum EipCmd {
    /// Allocate an EIP from a pool (the address is allocated unless given).
    Allocate {
        #[arg(long)]
        pool: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        address: Option<IpAddr>,
        /// ipv4 or ipv6 (default: IPv4 if the pool has IPv4 addresses).
        #[arg(long)]
        ip_version: Option<String>,
    },
    /// List your EIPs with their HAVIPs and those HAVIPs' masters.
    List {
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        havip: Option<String>,
    },
    /// Show one EIP.
    Show { id: String },
    /// Associate an EIP with a HAVIP of the same project and IP version.
    Associate { id: String, havip: String },
    /// Disassociate an EIP from its HAVIP (its internet traffic stops).
    Disassociate { id: String },
    /// Release EIPs (an associated one is refused: disassociate first).
    Release {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// A project's EIP quota in effect.
    Quota { project: String },
    /// Set a project's EIP quota (operator; omitted: back to the default).
    SetQuota {
        project: String,
        #[arg(long)]
        eips_per_project: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum EipPoolCmd {
    /// Create a pool of public addresses served by a gateway (operator).
    Create {
        id: String,
        /// The gateway's name (its `havip-agent gateway run --gateway`).
        #[arg(long)]
        gateway: String,
        /// A CIDR, FIRST-LAST or one address (repeatable; IPv4 and/or IPv6).
        #[arg(long = "range", required = true)]
        ranges: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the pools and their usage.
    List,
    /// Show one pool.
    Show { id: String },
    /// Delete a pool (refused while EIPs are allocated from it).
    Delete { id: String },
}

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn master_of(e: &Eip) -> String {
    e.association
        .as_ref()
        .and_then(|a| a.master.as_ref())
        .map_or("-".into(), |m| match &m.host {
            Some(h) => format!("{} on {h}", m.port),
            None => m.port.clone(),
        })
}

fn print_eips(eips: &[Eip]) {
    println!(
        "{:<21} {:<16} {:<10} {:<26} {:<22} {:<26} MASTER",
        "ID", "NAME", "STATUS", "ADDRESS", "HAVIP", "VIP"
    );
    for e in eips {
        let (havip, vip) = e
            .association
            .as_ref()
            .map_or(("-".into(), "-".into()), |a| {
                (a.havip.clone(), a.address.to_string())
            });
        println!(
            "{:<21} {:<16} {:<10} {:<26} {:<22} {:<26} {}",
            e.id,
            if e.name.is_empty() { "-" } else { &e.name },
            e.status.as_str(),
            e.address,
            havip,
            vip,
            master_of(e)
        );
    }
}

fn print_eip(e: &Eip) {
    println!("id:           {}", e.id);
    println!("name:         {}", e.name);
    println!("status:       {}", e.status.as_str());
    println!("address:      {} ({})", e.address, e.ip_version.as_str());
    println!("pool:         {} (gateway {})", e.pool, e.gateway);
    match &e.association {
        Some(a) => {
            println!(
                "havip:        {} ({}, subnet {})",
                a.havip, a.address, a.subnet
            );
            println!("master:       {}", master_of(e));
        }
        None => println!("havip:        -"),
    }
    println!("project:      {}", e.project);
    println!("created:      {}", e.created_at);
}

pub async fn run_eip(c: &Client, as_json: bool, cmd: EipCmd) -> anyhow::Result<()> {
    let show = |e: &Eip| {
        if as_json {
            json(e)
        } else {
            print_eip(e);
            Ok(())
        }
    };
    match cmd {
        EipCmd::Allocate {
            pool,
            name,
            address,
            ip_version,
        } => {
            let ip_version = ip_version
                .map(|v| serde_json::from_value(serde_json::Value::String(v)))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--ip-version is ipv4 or ipv6"))?;
            let req = AllocateEip {
                pool,
                name,
                address,
                ip_version,
            };
            show(&c.allocate_eip(&req).await?)
        }
        EipCmd::List { pool, havip } => {
            let eips = c.list_eips(&EipQuery { pool, havip }).await?;
            if as_json {
                json(&eips)
            } else {
                print_eips(&eips);
                Ok(())
            }
        }
        EipCmd::Show { id } => show(&c.get_eip(&id).await?),
        EipCmd::Associate { id, havip } => show(&c.associate_eip(&id, &havip).await?),
        EipCmd::Disassociate { id } => show(&c.disassociate_eip(&id).await?),
        EipCmd::Release { ids } => {
            let mut failed = 0;
            for id in &ids {
                match c.release_eip(id).await {
                    Ok(()) => println!("released {id}"),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{id}: {e}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} not released", ids.len());
            }
            Ok(())
        }
        EipCmd::Quota { project } => json(&c.get_eip_limits(&project).await?),
        EipCmd::SetQuota {
            project,
            eips_per_project,
        } => json(
            &c.set_eip_limits(&project, &EipLimits { eips_per_project })
                .await?,
        ),
    }
}

pub async fn run_pool(c: &Client, cmd: EipPoolCmd) -> anyhow::Result<()> {
    match cmd {
        EipPoolCmd::Create {
            id,
            gateway,
            ranges,
            description,
        } => {
            let req = CreateEipPool {
                id,
                gateway,
                ranges,
                description,
            };
            json(&c.create_eip_pool(&req).await?)
        }
        EipPoolCmd::List => {
            let pools = c.list_eip_pools().await?;
            println!(
                "{:<16} {:<12} {:>10} {:>10} RANGES",
                "ID", "GATEWAY", "ALLOCATED", "SIZE"
            );
            for p in pools {
                println!(
                    "{:<16} {:<12} {:>10} {:>10} {}",
                    p.id,
                    p.gateway,
                    p.allocated,
                    p.size,
                    p.ranges.join(",")
                );
            }
            Ok(())
        }
        EipPoolCmd::Show { id } => json(&c.get_eip_pool(&id).await?),
        EipPoolCmd::Delete { id } => {
            c.delete_eip_pool(&id).await?;
            println!("deleted {id}");
            Ok(())
        }
    }
}
