//! `cargo xtask <command>`: sets up the toolchain for, builds, runs, tests and
//! benchmarks havip.
//!
//! One module per command. Every command except `setup` itself runs `setup`
//! first, which is fast when everything is installed already.

mod bench;
mod build;
mod build_ebpf;
mod fresh_check;
mod kernel_test;
mod lab;
mod package;
mod run;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

/// Set up the toolchain for, build, run, test and benchmark havip.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: the eBPF toolchain (Debian's rustc-web and
    /// LLVM 22, bpf-linker) and the tools the lab and the tests use.
    Setup(setup::Args),
    /// Build the datapath (havip-ebpf) into
    /// target/bpfel-unknown-none/release/havip-ebpf.
    BuildEbpf,
    /// Build the datapath, then the agent with the datapath embedded, and the
    /// binaries of the tests crate (the lab, the benchmarks); all in release.
    Build,
    /// Build, then run target/release/havip-agent with the given arguments.
    Run(run::Args),
    /// Build, then run the lab (target/release/havip-lab): namespaced
    /// hypervisors and VMs, printing the failover timeline.
    Lab(lab::Args),
    /// Run every test: the host tests, then the privileged tests (as root).
    Test(test::Args),
    /// Build, then run the benchmarks as root (target/release/havip-bench):
    /// the datapath's cost per packet through BPF_PROG_TEST_RUN against an
    /// empty XDP program, 64-byte UDP packets per second through the fast
    /// path against the Linux bridge alone, and the owner switch latency.
    /// Writes target/bench/report.md and target/bench/report.png.
    Bench(bench::Args),
    /// Run the README's two commands, exactly as written, in a pristine
    /// Debian 12 root (as root): the image's Debian packages from this
    /// machine's apt sources (mmdebstrap), rustup's stable bound read-only,
    /// `git archive HEAD`. Prints how long each step took and fails with the
    /// step and its error when anything is missing.
    FreshCheck(fresh_check::Args),
    /// Build the Debian packages (havip-agent; havip-controller with
    /// havipctl) into target/debian; --check installs them into a pristine
    /// Debian 12 root, verifies the units there and runs the installed agent
    /// on the lab (as root).
    Package(package::Args),
    /// Run the BPF_PROG_TEST_RUN table tests and a failover with the agent
    /// on Debian 12's own 6.1 kernel, in a QEMU guest (TCG) that shares this
    /// machine's root read only (as root). Downloads QEMU, busybox-static
    /// and the kernel package on first use; the kernel goes to
    /// target/kernel-6.1/, never into /boot.
    KernelTest(kernel_test::Args),
}

fn main() {
    util::put_cargo_bin_on_path();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args).map(drop),
        Command::BuildEbpf => setup::ensure()
            .and_then(|tc| build_ebpf::run(&tc))
            .map(drop),
        Command::Build => setup::ensure().and_then(|tc| build::run(&tc)).map(drop),
        Command::Run(args) => run::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::FreshCheck(args) => fresh_check::run(&args),
        Command::KernelTest(args) => kernel_test::run(&args),
        Command::Package(args) => package::run(&args),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(["cargo xtask"].iter().chain(args))
            .unwrap()
            .command
    }

    #[test]
    fn arguments_after_the_double_dash_go_to_the_child() {
        let Command::Run(run) = parse(&["run", "--", "run", "--config", "havip.toml"]) else {
            panic!("not run");
        };
        assert_eq!(run.args, ["run", "--config", "havip.toml"]);
        let Command::Lab(lab) = parse(&["lab", "--", "--help"]) else {
            panic!("not lab");
        };
        assert_eq!(lab.args, ["--help"]);
    }

    #[test]
    fn test_takes_host_only_and_filters() {
        let Command::Test(test) = parse(&["test", "--host-only", "--", "owner"]) else {
            panic!("not test");
        };
        assert!(test.host_only);
        assert_eq!(test.filters, ["owner"]);
        let Command::Test(test) = parse(&["test", "--", "--exact", "failover"]) else {
            panic!("not test");
        };
        assert!(!test.host_only);
        assert_eq!(test.filters, ["--exact", "failover"]);
    }

    #[test]
    fn bench_passes_its_arguments_on() {
        let Command::Bench(bench) = parse(&["bench", "--", "--rounds", "21", "--only", "cost"])
        else {
            panic!("not bench");
        };
        assert_eq!(bench.args, ["--rounds", "21", "--only", "cost"]);
        let Command::Bench(bench) = parse(&["bench"]) else {
            panic!("not bench");
        };
        assert!(bench.args.is_empty());
    }

    #[test]
    fn help_texts_are_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
