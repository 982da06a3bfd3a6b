//! The `havip-agent` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use havip_agent::{
    attach::{self, PinDirLock},
    config::Config,
    daemon::{self, RunOptions, Source},
    datapath::{AttachMode, TcAttach},
    etcd::EtcdOptions,
    gateway, learned, pins, protection, shortfall, status,
};
use havip_common::maps::{DEFAULT_MAX_VIPS, MAX_MAX_VIPS, PIN_DIR};

/// The havip hypervisor agent: runs the XDP datapath that lets only the
/// bound ports of a High-Availability Virtual IP claim it, and reports who
/// owns each VIP.
#[derive(Debug, Parser)]
#[command(name = "havip-agent", version, propagate_version = true)]
#[command(
    after_help = "Logging: info for havip by default; set RUST_LOG (e.g. RUST_LOG=debug) to change it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the datapath, apply the config file (or etcd) and keep it applied.
    ///
    /// Pins the maps under --pin-dir (reusing maps already pinned there, so
    /// learned owners survive a restart), attaches XDP and TC egress to each
    /// port's interface as it appears, held by links pinned under
    /// <pin-dir>/links (a restarted agent adopts them and swaps its programs
    /// in, with no gap), and logs owner changes and rejected claims. One
    /// agent per pin dir: a second one exits 1 naming the first's pid. With --config: reloads the file on SIGHUP and when it changes;
    /// a file that does not validate is reported and the state in force is
    /// kept; exits 1 at once if the file is invalid at start. With --etcd and
    /// --host: applies this host's ports and the VIPs of their subnets as
    /// they change, acknowledges each VIP, reports the owners the datapath
    /// learns and programs the owners other hosts report; while etcd is
    /// unreachable the last state stays in force, and it reads everything
    /// again when etcd is back (or on SIGHUP). On SIGINT or SIGTERM, exits 0
    /// leaving the programs attached and the maps pinned, so the ports stay
    /// protected with the last state (a crash leaves them so too); `detach`
    /// takes them off (or --unpin-on-exit). A port whose programs cannot be
    /// attached, and a VIP or address that does not fit its map, is logged
    /// with the reason, retried, and written (with every port's protection)
    /// to /run/<pin dir name>/protection.json for `status`.
    Run {
        /// The config file (TOML: networks, ports, vips): one host on its own.
        #[arg(long, short, required_unless_present = "etcd", conflicts_with = "etcd")]
        config: Option<PathBuf>,
        /// Take this host's ports and VIPs from the controller's etcd instead
        /// (comma-separated endpoints), and report the owners learned there.
        #[arg(long, value_name = "URL", value_delimiter = ',', requires = "host")]
        etcd: Vec<String>,
        /// This hypervisor's name in the controller (with --etcd).
        #[arg(long, value_name = "NAME", requires = "etcd")]
        host: Option<String>,
        /// Reach etcd over TLS: the CA (PEM) that signed etcd's certificate
        /// (with --etcd-cert and --etcd-key).
        #[arg(long, value_name = "PEM", requires = "etcd")]
        etcd_ca: Option<PathBuf>,
        /// This host's client certificate (PEM); with etcd's
        /// --client-cert-auth its common name is the etcd user, which must
        /// be the host's name (`havip-controller etcd-auth add-host NAME`).
        #[arg(long, value_name = "PEM", requires = "etcd")]
        etcd_cert: Option<PathBuf>,
        /// The key (PEM) of --etcd-cert.
        #[arg(long, value_name = "PEM", requires = "etcd")]
        etcd_key: Option<PathBuf>,
        /// Where the agent keeps the last state it read from etcd (with
        /// --etcd), to serve it when etcd is unreachable at start.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/havip")]
        state_dir: PathBuf,
        /// Where the maps and the links are pinned (on bpffs; mounted at
        /// /sys/fs/bpf if needed).
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
        /// How XDP is attached to the ports' interfaces.
        #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
        xdp_mode: XdpModeArg,
        /// Load the datapath object from this file instead of the one built in
        /// (needed when this binary was built without one).
        #[arg(long, value_name = "PATH")]
        bpf_object: Option<PathBuf>,
        /// On exit, detach the programs from every port and remove the
        /// links, the pinned maps and the pin dir (as `detach --unpin`).
        #[arg(long)]
        unpin_on_exit: bool,
        /// How TC egress is attached: auto (a pinned TCX link where the kernel
        /// has TCX, else netlink) or netlink (a cls_bpf filter on the clsact
        /// qdisc, which a `tc qdisc del` takes off). With auto, a new port
        /// gets a filter first (in force in well under a millisecond) and
        /// then, in the background, its TCX link (each TCX attach waits ~14
        /// ms for an RCU grace period); a port whose ingress qdisc leaves no
        /// room for clsact gets its TCX link at once.
        #[arg(long, value_enum, default_value_t = TcAttachArg::Auto)]
        tc_attach: TcAttachArg,
        /// Serve Prometheus metrics on http://ADDR/metrics (e.g.
        /// 127.0.0.1:9469): each VIP's owner and counters, drops by reason,
        /// the ports' protection, reconcile errors, the etcd connection.
        /// Exits 1 at start if ADDR cannot be bound.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// How many VIPs this host holds: the size of the VIP maps (each VIP
        /// costs about 200 bytes of kernel memory per CPU, for its
        /// counters). Maps pinned with another size are carried over into
        /// maps of this one at start, with their owners and counters; a
        /// size below what the host holds is refused, and the programs in
        /// force stay.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_VIPS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MAX_VIPS)))]
        max_vips: u32,
    },
    /// Take the datapath off every port (the only way: `run` leaves it on).
    ///
    /// Detaches the programs whose links are pinned under --pin-dir (and the
    /// netlink TC filters recorded there) and removes the link pins; the maps
    /// stay, with the learned owners, unless --unpin. Refuses while an agent
    /// runs on that pin dir.
    Detach {
        /// Where the maps and links are pinned.
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
        /// Also remove the pinned maps, the pin dir and the agent's state file
        /// (/run/<pin dir name>/protection.json).
        #[arg(long)]
        unpin: bool,
    },
    /// Validate a config file: print a one-line summary, or the problems
    /// (exit status 1).
    Check {
        /// The config file to validate.
        #[arg(long, short)]
        config: PathBuf,
        /// Warn when the config holds more VIPs than this (as `run
        /// --max-vips`).
        #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_VIPS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MAX_VIPS)))]
        max_vips: u32,
    },
    /// Print each VIP's bound ports, owner and counters, the ports, and the
    /// global drop and stat counters, from the pinned maps (whether or not
    /// `run` is running), and each port protected, failed (with the reason)
    /// or absent, and the VIPs and addresses not programmed.
    ///
    /// Protection is what the agent wrote to /run/<pin dir name>/protection.json
    /// (/run/havip/protection.json for the default pin dir); without that
    /// file, a port in havip_ports is protected if its XDP link is pinned.
    Status {
        /// Where the maps are pinned.
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
        /// Also show the names of VIPs and ports from this config file (if it
        /// does not load, the status is shown without names, with a warning).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (shape documented in havip_agent::status) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Forget the IPv6 link-local the datapath learned for a port.
    ///
    /// A port may use one link-local besides its own (the EUI-64 of its MAC,
    /// or link_local) and its registered ones (link_locals): the first other
    /// one it uses that no port holds, learned and held for it (another
    /// port using it is dropped as link_local_taken) until this command, or
    /// until the port leaves the config. Afterwards the address is free and
    /// the port learns the next one it uses. Works on the pinned maps,
    /// whether or not `run` is running.
    ResetLinkLocal {
        /// The port's id (as in the config, or as `status` shows it).
        port: u32,
        /// Where the maps are pinned.
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// The agent in its EIP gateway role: public addresses (EIPs)
    /// translated 1:1 to the VIPs they are associated with, on a host
    /// between the internet and the VIPs' network.
    #[command(subcommand)]
    Gateway(GatewayCommand),
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Load the gateway's XDP programs on its two interfaces, write the
    /// config file's EIPs (or, with --etcd, those of this gateway in etcd,
    /// followed as they are associated and disassociated) into its maps
    /// and keep them so (SIGHUP reads the file again). Packets for an EIP go to the VIP's current owner, whose
    /// MAC the gateway learns from the owner's announcements (gratuitous
    /// ARP, unsolicited NA) on the internal interface; replies from the VIP
    /// leave with the EIP as source. The links stay pinned on exit: a
    /// restart or an upgrade never stops the translation.
    Run {
        /// The gateway's config file (TOML: external, internal, network,
        /// [[eip]] eip/vip; see havip_agent::gateway::config).
        #[arg(long, short)]
        config: PathBuf,
        /// Where the gateway's maps and links are pinned.
        #[arg(long, default_value = havip_agent::gateway::GATEWAY_PIN_DIR)]
        pin_dir: PathBuf,
        /// generic (the default: any interface) or native (a NIC whose
        /// driver runs XDP and takes redirects: the fastest).
        #[arg(long, value_enum, default_value_t = XdpModeArg::Generic)]
        xdp_mode: XdpModeArg,
        /// Load this datapath object instead of the one built in.
        #[arg(long)]
        bpf_object: Option<PathBuf>,
        /// Take the EIPs and their VIPs' owners from the controller's etcd
        /// (repeatable, or comma-separated) and follow them: the config
        /// file then gives the interfaces and the network only.
        #[arg(long, value_name = "URL", value_delimiter = ',', requires = "gateway")]
        etcd: Vec<String>,
        /// This gateway's name in the controller: the EIPs of the pools it
        /// serves (with --etcd).
        #[arg(long, value_name = "NAME", requires = "etcd")]
        gateway: Option<String>,
    },
    /// Print every EIP with its VIP and owner, and the gateway's counters,
    /// from the pinned maps.
    Status {
        #[arg(long, default_value = havip_agent::gateway::GATEWAY_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Take the gateway's programs off its interfaces (EIP traffic stops);
    /// with --unpin, also remove its maps.
    Detach {
        #[arg(long, default_value = havip_agent::gateway::GATEWAY_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long)]
        unpin: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum XdpModeArg {
    /// The default: native on taps (the KVM case), generic on every other
    /// port (veth).
    Auto,
    /// In the driver (XDP_FLAGS_DRV_MODE): the fastest. A redirected frame
    /// leaves its socket-buffer metadata behind, so the datapath completes
    /// the TCP/UDP checksums the VM left to the offload; larger
    /// segmentation-offload frames go by the bridge. On a veth, frames
    /// redirected to a VM are lost unless the VM's side has GRO or XDP on
    /// (`ethtool -K eth0 gro on`).
    Native,
    /// In the kernel's generic path (XDP_FLAGS_SKB_MODE): every frame
    /// keeps its socket buffer and its offload metadata; slower.
    Generic,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TcAttachArg {
    Auto,
    Netlink,
}

impl From<TcAttachArg> for TcAttach {
    fn from(m: TcAttachArg) -> Self {
        match m {
            TcAttachArg::Auto => TcAttach::Auto,
            TcAttachArg::Netlink => TcAttach::Netlink,
        }
    }
}

impl From<XdpModeArg> for AttachMode {
    fn from(m: XdpModeArg) -> Self {
        match m {
            XdpModeArg::Auto => AttachMode::Auto,
            XdpModeArg::Native => AttachMode::Native,
            XdpModeArg::Generic => AttachMode::Generic,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("havip_agent=info,havip_ebpf=info"),
    )
    .init();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors include their causes in their messages.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            config,
            etcd,
            host,
            etcd_ca,
            etcd_cert,
            etcd_key,
            state_dir,
            pin_dir,
            xdp_mode,
            bpf_object,
            unpin_on_exit,
            tc_attach,
            metrics_listen,
            max_vips,
        } => {
            let tls = havip_schema::tls::EtcdTls::from_parts(etcd_ca, etcd_cert, etcd_key)
                .map_err(anyhow::Error::msg)?;
            let source = match (config, host) {
                (Some(path), _) => Source::File(path),
                (None, Some(host)) => Source::Etcd(EtcdOptions {
                    endpoints: etcd,
                    tls,
                    cache: Some(state_dir.join(format!("etcd-snapshot-{host}.json"))),
                    host,
                }),
                (None, None) => unreachable!("clap requires --config or --etcd/--host"),
            };
            let opts = RunOptions {
                source,
                pin_dir,
                mode: xdp_mode.into(),
                tc: tc_attach.into(),
                bpf_object,
                unpin_on_exit,
                metrics_listen,
                max_vips,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
            rt.block_on(daemon::run(opts))?;
            Ok(())
        }
        Command::Detach { pin_dir, unpin } => {
            if !pin_dir.is_dir() {
                println!("nothing pinned under {}", pin_dir.display());
                return Ok(());
            }
            if !pins::is_bpffs(&pin_dir) {
                anyhow::bail!(
                    "{} is not on a bpf filesystem: not a pin dir",
                    pin_dir.display()
                );
            }
            let lock = PinDirLock::acquire(&pin_dir)?;
            let n = attach::detach(&pin_dir);
            println!(
                "detached the programs from {n} port(s) pinned under {}",
                pin_dir.display()
            );
            if unpin {
                pins::unpin(&pin_dir);
                protection::StateFile::remove(&pin_dir);
                println!("removed the pinned maps and {}", pin_dir.display());
            }
            drop(lock);
            Ok(())
        }
        Command::Gateway(GatewayCommand::Run {
            config,
            pin_dir,
            xdp_mode,
            bpf_object,
            etcd,
            gateway: name,
        }) => {
            let opts = gateway::RunOptions {
                config,
                pin_dir,
                mode: xdp_mode.into(),
                bpf_object,
                etcd: name.map(|gateway| gateway::follow::FollowOptions {
                    endpoints: etcd,
                    gateway,
                }),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(rt.block_on(gateway::run(opts))?)
        }
        Command::Gateway(GatewayCommand::Status { pin_dir }) => {
            print!("{}", gateway::status(&pin_dir)?);
            Ok(())
        }
        Command::Gateway(GatewayCommand::Detach { pin_dir, unpin }) => {
            let n = gateway::detach(&pin_dir, unpin);
            println!(
                "detached {n} gateway program(s) pinned under {}",
                pin_dir.display()
            );
            Ok(())
        }
        Command::Check { config, max_vips } => {
            let c = Config::load(&config)?;
            println!("{}: ok: {}", config.display(), c.summary());
            for warning in shortfall::over_capacity(&c, max_vips) {
                eprintln!("{}: warning: {warning}", config.display());
            }
            Ok(())
        }
        Command::ResetLinkLocal { port, pin_dir } => {
            match learned::forget_pinned(&pin_dir, port)? {
                Some(a) => println!(
                    "port {port}: forgot its learned link-local {} (network {})",
                    std::net::Ipv6Addr::from(a.addr),
                    a.network
                ),
                None => println!("port {port}: no learned link-local"),
            }
            Ok(())
        }
        Command::Status {
            pin_dir,
            config,
            json,
        } => {
            // The names are a convenience: a file that does not load (an
            // edit in progress) must not hide the datapath's state.
            let config = config.and_then(|p| match Config::load(&p) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("warning: showing no names: {e}");
                    None
                }
            });
            let report = status::read(&pin_dir, config.as_ref())?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text(config.as_ref()));
            }
            Ok(())
        }
    }
}
