//! `havipctl`: the HAVIP API from a shell.
//!
//! ```text
//! export HAVIP_URL=http://127.0.0.1:8780 HAVIP_TOKEN=...
//! havipctl create --name web --subnet sn-1 [--address 10.0.6.19] [--port p1 --port p2]
//! havipctl list [--query web] [--status available] [--subnet sn-1] [--vm vm-1]
//! havipctl show ID | bind ID PORT... | unbind ID PORT... | set-ports ID [PORT...]
//! havipctl rename ID NAME | describe ID TEXT | delete ID... | export --format xlsx -o havips.xlsx
//! havipctl eip allocate --pool POOL [--address IP] | associate EIP HAVIP | disassociate EIP | release EIP
//! havipctl eip-pool create POOL --gateway GW --range 198.51.100.0/28 [--range 2001:db8::/120]
//! ```

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use havip_controller::client::Client;
use havip_controller::model::*;

#[path = "havipctl_cmds/eip.rs"]
mod eip;

#[derive(Parser)]
#[command(version, about = "Manage high-availability virtual IPs (HAVIP)")]
struct Args {
    /// Controller URL.
    #[arg(
        long,
        env = "HAVIP_URL",
        default_value = "http://127.0.0.1:8780",
        global = true
    )]
    url: String,
    /// Bearer token (a project's, or the operator's).
    #[arg(long, env = "HAVIP_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// controller URL (besides
    /// the system's CAs), e.g. the private CA that signed its certificate.
    #[arg(long, env = "HAVIP_CA_CERT", value_name = "PEM", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a HAVIP (the address is allocated unless given).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        subnet: String,
        #[arg(long)]
        address: Option<IpAddr>,
        #[arg(long, value_enum)]
        ip_version: Option<Version>,
        #[arg(long)]
        description: Option<String>,
        /// Port to bind right away (repeatable).
        #[arg(long = "port")]
        ports: Vec<String>,
        /// The VRRP virtual router id (1-255) of its HA software, when that
        /// sends from virtual MACs (keepalived's use_vmac): the bound ports
        /// may then use that VRID's virtual MAC only.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        vrid: Option<u8>,
        /// Split-brain hold-down in ms: another port's claim within it of
        /// an owner change waits for its end (0: none; default 1000).
        #[arg(long, allow_negative_numbers = true)]
        hold_down_ms: Option<i64>,
        /// Makes the create safe to retry: a retry with the same token
        /// within 24 hours answers the first create's HAVIP.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// List HAVIPs, newest first.
    List {
        /// Fuzzy search in name, description, id and address.
        #[arg(long, short)]
        query: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        subnet: Option<String>,
        /// Only VIPs bound to a port of this VM.
        #[arg(long)]
        vm: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
    },
    /// Show one HAVIP.
    Show { id: String },
    /// A HAVIP's failover history: its owner changes, newest first (from
    /// which port, VM and host to which; hosts for operator tokens only).
    Events { id: String },
    /// Bind ports to a HAVIP.
    Bind {
        id: String,
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Unbind ports from a HAVIP.
    Unbind {
        id: String,
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Make exactly these ports the bound ones (none: unbind all).
    SetPorts { id: String, ports: Vec<String> },
    /// Rename a HAVIP.
    Rename { id: String, name: String },
    /// Change a HAVIP's description.
    Describe { id: String, description: String },
    /// Set the VRRP virtual router id (1-255) its HA software uses; 0
    /// removes it (any virtual MAC of the VIP's family).
    Vrid { id: String, vrid: u8 },
    /// Set a HAVIP's split-brain hold-down in ms (0..=3600000; 0: none).
    SetHoldDown {
        id: String,
        #[arg(allow_negative_numbers = true)]
        hold_down_ms: i64,
    },
    /// Delete HAVIPs (several ids: one result each).
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Download all your HAVIPs as xlsx or csv.
    Export {
        #[arg(long, value_enum, default_value_t = Format::Xlsx)]
        format: Format,
        /// Output file ("-" for stdout).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Limits (setting them needs an operator token).
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// Register networks and ports (operator; normally orchestration does).
    #[command(subcommand)]
    Register(RegisterCmd),
    /// List the stored records that cannot be read (operator).
    CorruptRecords,
    /// EIPs: allocate, associate with a HAVIP, disassociate, release.
    #[command(subcommand)]
    Eip(eip::EipCmd),
    /// EIP pools of public addresses (creating and deleting: operator).
    #[command(subcommand)]
    EipPool(eip::EipPoolCmd),
}

#[derive(Subcommand)]
enum LimitsCmd {
    /// Limits in effect for a project.
    Show { project: String },
    /// Set a project's limits (omitted: back to the default).
    SetProject {
        project: String,
        #[arg(long)]
        ports_per_vip: Option<u32>,
        #[arg(long)]
        vips_per_port: Option<u32>,
        #[arg(long)]
        vips_per_project: Option<u32>,
        #[arg(long)]
        vips_per_subnet: Option<u32>,
    },
    /// Set one HAVIP's ports-per-VIP limit (omitted: the project's).
    SetVip {
        id: String,
        #[arg(long)]
        ports_per_vip: Option<u32>,
    },
    /// Set one port's VIPs-per-port limit (omitted: the project's).
    SetPort {
        id: String,
        #[arg(long)]
        vips_per_port: Option<u32>,
    },
}

#[derive(Subcommand)]
enum RegisterCmd {
    /// Register (or update) a VPC of a project.
    Vpc {
        /// The VPC's id.
        id: String,
        /// The project that owns it.
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Register (or update) a subnet of a VPC, with an IPv4 and/or IPv6 CIDR.
    Subnet {
        /// The subnet's id.
        id: String,
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        cidr_v4: Option<ipnet::Ipv4Net>,
        #[arg(long)]
        cidr_v6: Option<ipnet::Ipv6Net>,
        /// The IPv4 gateway (default: the first host address; none in /31, /32).
        #[arg(long)]
        gateway_v4: Option<std::net::Ipv4Addr>,
        /// The IPv6 gateway (default: the first host address; none in /127, /128).
        #[arg(long)]
        gateway_v6: Option<std::net::Ipv6Addr>,
        /// Addresses no HAVIP gets: FIRST-LAST or one address (repeatable).
        #[arg(long)]
        reserved: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Register (or update) a VM's port, with the hypervisor and interface
    /// it is on.
    Port {
        /// The port's id.
        id: String,
        /// The VM the port belongs to.
        #[arg(long)]
        vm: String,
        #[arg(long)]
        subnet: String,
        #[arg(long)]
        mac: String,
        /// A fixed address of the port (repeatable), inside the subnet.
        #[arg(long = "ip")]
        fixed_ips: Vec<IpAddr>,
        /// The hypervisor the port is on (its agent's --host).
        #[arg(long)]
        host: String,
        /// The port's interface on that hypervisor (its tap or veth).
        #[arg(long)]
        interface: String,
        /// A VLAN id the VM may tag frames with (repeatable, at most 8, each
        /// 1 to 4094; untagged frames need none).
        #[arg(long = "vlan")]
        vlans: Vec<i64>,
        /// An IPv6 link-local (fe80::/10) the VM may use besides the EUI-64
        /// of its MAC (repeatable, at most 8).
        #[arg(long = "link-local")]
        link_locals: Vec<std::net::Ipv6Addr>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Version {
    Ipv4,
    Ipv6,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Xlsx,
    Csv,
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn ports_of(v: &Havip) -> String {
    if v.ports.is_empty() {
        return "-".into();
    }
    v.ports
        .iter()
        .map(|b| format!("{}({})", b.port, b.vm))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_table(vips: &[Havip]) {
    println!(
        "{:<22} {:<20} {:<10} {:<16} {:<26} {:<12} PORTS",
        "ID", "NAME", "STATUS", "SUBNET", "ADDRESS", "MASTER"
    );
    for v in vips {
        println!(
            "{:<22} {:<20} {:<10} {:<16} {:<26} {:<12} {}",
            v.id,
            v.name,
            v.status.as_str(),
            v.subnet,
            v.address,
            v.master.as_ref().map_or("-", |m| m.port.as_str()),
            ports_of(v)
        );
    }
}

/// `port(vm)@host`, what is known of one side of an owner change.
fn owner_side(s: &havip_controller::history::OwnerSide) -> String {
    let mut out = s.port.clone();
    if let Some(vm) = &s.vm {
        out += &format!("({vm})");
    }
    if let Some(host) = &s.host {
        out += &format!("@{host}");
    }
    out
}

fn print_owner_changes(e: &havip_controller::history::OwnerChanges) {
    println!("{:<32} {:<36} TO", "AT", "FROM");
    for c in &e.events {
        println!(
            "{:<32} {:<36} {}",
            c.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            c.from.as_ref().map_or("-".to_string(), owner_side),
            owner_side(&c.to)
        );
    }
    println!("({} owner changes of {})", e.events.len(), e.havip);
}

fn print_vip(v: &Havip) {
    println!("id:           {}", v.id);
    println!("name:         {}", v.name);
    println!("description:  {}", v.description);
    println!("status:       {}", v.status.as_str());
    if let Some(r) = &v.status_reason {
        println!("reason:       {r}");
    }
    println!("network:      intranet, vpc {} subnet {}", v.vpc, v.subnet);
    println!("address:      {} ({})", v.address, v.ip_version.as_str());
    println!("ports:        {}", ports_of(v));
    if let Some(vrid) = v.vrid {
        println!("vrid:         {vrid} (virtual MACs of that VRID only)");
    }
    if !v.pending_ports.is_empty() {
        println!("waiting for:  {}", v.pending_ports.join(", "));
    }
    if let Some(hosts) = v.pending_hosts.as_ref().filter(|h| !h.is_empty()) {
        println!("their hosts:  {}", hosts.join(", "));
    }
    match &v.master {
        Some(m) => println!(
            "master:       port {}{} since {}",
            m.port,
            m.host
                .as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default(),
            m.since
        ),
        None => println!("master:       -"),
    }
    if let Some(e) = &v.eip {
        println!("eip:          {} ({})", e.address, e.id);
    }
    println!("project:      {}", v.project);
    println!("created:      {}", v.created_at);
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = match &args.ca_cert {
        None => Client::new(&args.url, args.token.clone()),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            Client::with_ca_pem(&args.url, args.token.clone(), &pem)
                .with_context(|| format!("the CA certificate {}", path.display()))?
        }
    };
    let show = |v: &Havip| -> anyhow::Result<()> {
        if args.json {
            print_json(v)
        } else {
            print_vip(v);
            Ok(())
        }
    };
    match args.cmd {
        Cmd::Create {
            name,
            subnet,
            address,
            ip_version,
            description,
            ports,
            vrid,
            hold_down_ms,
            client_token,
        } => {
            let req = CreateHavip {
                name,
                description,
                network_type: None,
                subnet,
                ip_version: ip_version.map(|v| match v {
                    Version::Ipv4 => IpVersion::Ipv4,
                    Version::Ipv6 => IpVersion::Ipv6,
                }),
                address,
                ports,
                vrid,
                hold_down_ms,
                client_token,
            };
            show(&c.create_havip(&req).await?)?;
        }
        Cmd::List {
            query,
            status,
            subnet,
            vm,
            page,
            page_size,
        } => {
            let q = ListQuery {
                q: query,
                status: status.map(|s| s.parse()).transpose()?,
                subnet,
                vm,
                page: Some(page),
                page_size: Some(page_size),
                ..ListQuery::default()
            };
            let p = c.list_havips(&q).await?;
            if args.json {
                print_json(&p)?;
            } else {
                print_table(&p.items);
                println!("({} of {}, page {})", p.items.len(), p.total, p.page);
            }
        }
        Cmd::Show { id } => show(&c.get_havip(&id).await?)?,
        Cmd::Events { id } => {
            let e = c.owner_changes(&id).await?;
            if args.json {
                print_json(&e)?;
            } else {
                print_owner_changes(&e);
            }
        }
        Cmd::Bind { id, ports } => show(&c.bind(&id, &ports).await?)?,
        Cmd::Unbind { id, ports } => {
            let mut last = None;
            for p in &ports {
                last = Some(c.unbind(&id, p).await?);
            }
            show(&last.expect("ports is not empty"))?;
        }
        Cmd::SetPorts { id, ports } => show(&c.replace_ports(&id, &ports).await?)?,
        Cmd::Rename { id, name } => {
            let req = UpdateHavip {
                name: Some(name),
                ..UpdateHavip::default()
            };
            show(&c.update_havip(&id, &req).await?)?;
        }
        Cmd::Describe { id, description } => {
            let req = UpdateHavip {
                description: Some(description),
                ..UpdateHavip::default()
            };
            show(&c.update_havip(&id, &req).await?)?;
        }
        Cmd::Vrid { id, vrid } => {
            let req = UpdateHavip {
                vrid: Some(vrid),
                ..UpdateHavip::default()
            };
            show(&c.update_havip(&id, &req).await?)?;
        }
        Cmd::SetHoldDown { id, hold_down_ms } => {
            let req = UpdateHavip {
                hold_down_ms: Some(hold_down_ms),
                ..UpdateHavip::default()
            };
            show(&c.update_havip(&id, &req).await?)?;
        }
        Cmd::Delete { ids } => {
            let r = c.batch_delete(&ids).await?;
            if args.json {
                print_json(&r)?;
            }
            let mut failed = 0;
            for item in &r.results {
                match &item.error {
                    None if !args.json => println!("deleted {}", item.id),
                    None => {}
                    Some(e) => {
                        failed += 1;
                        eprintln!("{}: {} ({})", item.id, e.message, e.code);
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} not deleted", r.results.len());
            }
        }
        Cmd::Export { format, output } => {
            let format = match format {
                Format::Xlsx => ExportFormat::Xlsx,
                Format::Csv => ExportFormat::Csv,
            };
            let bytes = c.export(format).await?;
            if output.as_os_str() == "-" {
                std::io::stdout().write_all(&bytes)?;
            } else {
                std::fs::write(&output, &bytes)
                    .with_context(|| format!("writing {}", output.display()))?;
                eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
            }
        }
        Cmd::Limits(cmd) => match cmd {
            LimitsCmd::Show { project } => print_json(&c.get_project_limits(&project).await?)?,
            LimitsCmd::SetProject {
                project,
                ports_per_vip,
                vips_per_port,
                vips_per_project,
                vips_per_subnet,
            } => {
                let req = ProjectLimits {
                    ports_per_vip,
                    vips_per_port,
                    vips_per_project,
                    vips_per_subnet,
                };
                print_json(&c.set_project_limits(&project, &req).await?)?;
            }
            LimitsCmd::SetVip { id, ports_per_vip } => {
                show(&c.set_vip_limits(&id, &VipLimits { ports_per_vip }).await?)?
            }
            LimitsCmd::SetPort { id, vips_per_port } => print_json(
                &c.set_port_limits(&id, &PortLimits { vips_per_port })
                    .await?,
            )?,
        },
        Cmd::Register(cmd) => match cmd {
            RegisterCmd::Vpc { id, project, name } => {
                print_json(&c.put_vpc(&id, &PutVpc { project, name }).await?)?
            }
            RegisterCmd::Subnet {
                id,
                vpc,
                cidr_v4,
                cidr_v6,
                gateway_v4,
                gateway_v6,
                reserved,
                name,
            } => {
                let req = PutSubnet {
                    vpc,
                    name,
                    cidr_v4,
                    cidr_v6,
                    gateway_v4,
                    gateway_v6,
                    reserved,
                };
                print_json(&c.put_subnet(&id, &req).await?)?;
            }
            RegisterCmd::Port {
                id,
                vm,
                subnet,
                mac,
                fixed_ips,
                host,
                interface,
                vlans,
                link_locals,
            } => {
                let req = PutPort {
                    vm,
                    subnet,
                    mac,
                    fixed_ips,
                    host,
                    interface,
                    vlans,
                    link_locals,
                };
                print_json(&c.put_port(&id, &req).await?)?;
            }
        },
        Cmd::CorruptRecords => print_json(&c.corrupt_records().await?)?,
        Cmd::Eip(cmd) => eip::run_eip(&c, args.json, cmd).await?,
        Cmd::EipPool(cmd) => eip::run_pool(&c, cmd).await?,
    }
    Ok(())
}
