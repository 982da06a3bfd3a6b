//! `cargo xtask setup`: installs what is missing, one step at a time.
//!
//! Two ways to build the datapath are recognised (see
//! shared/notes/bpf-toolchain.md):
//! - upstream: a rustup nightly with the `rust-src` component and a
//!   `bpf-linker` on PATH; the eBPF crate is built with `-Z build-std=core`.
//! - Debian (the default): Debian 12's rustc-web 1.96 on LLVM 22, a prebuilt
//!   `core` for bpfel-unknown-none, and bpf-linker 0.13.0 built against
//!   Debian's LLVM 22.
//!
//! Detection only reads the dpkg database and the file system, so a second
//! run does nothing and takes well under a second.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{self, say};

/// Debian packages for the Debian toolchain: rustc-web and cargo-web (1.96 on
/// LLVM 22), the prebuilt `core` for BPF, and what bpf-linker links against.
pub const TOOLCHAIN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];

/// Debian packages the lab and the tests use, whichever toolchain builds,
/// what the controller needs (`protoc` and the well-known `.proto` files
/// its etcd client is built from, and the real etcd its tests start), the
/// font the benchmark chart's text is drawn with, and the Prometheus server
/// the metrics test scrapes the agents and the controller with.
///
/// Everything is installed with `--no-install-recommends`, so a package
/// that another one only recommends is named here itself: `libprotobuf-dev`
/// (google/protobuf/*.proto) is only a recommendation of
/// `protobuf-compiler`.
pub const TOOL_PACKAGES: &[&str] = &[
    "bpftool",
    "protobuf-compiler",
    "libprotobuf-dev",
    "etcd-server",
    "keepalived",
    "arping",
    "ndisc6",
    "tcpdump",
    "python3-scapy",
    "iproute2",
    "iputils-ping",
    "procps",
    "psmisc",
    "fonts-dejavu-core",
    "prometheus",
    "chromium",
    "chromium-driver",
    "fonts-wqy-microhei",
];

/// A file the build, the lab or the tests use, and the package that brings
/// it. A package counts as installed only when its files are there: the
/// check after installing names the file and the package, so a package
/// missing from the lists above (or a file that only another package's
/// recommendation brought, as `libprotobuf-dev` once was) fails here, on
/// the first run, and not deep in a build.
pub struct RequiredFile {
    pub path: &'static str,
    pub package: &'static str,
    pub used_by: &'static str,
}

const fn file(path: &'static str, package: &'static str, used_by: &'static str) -> RequiredFile {
    RequiredFile {
        path,
        package,
        used_by,
    }
}

/// What the Debian toolchain must leave on the machine.
pub const TOOLCHAIN_FILES: &[RequiredFile] = &[
    file("/usr/bin/rustc", "rustc-web", "the datapath's build"),
    file("/usr/bin/cargo", "cargo-web", "the datapath's build"),
    file(
        "/usr/lib/rustlib/bpfel-unknown-none/lib",
        "libstd-rust-web-dev-bpf",
        "the datapath's build (a prebuilt core)",
    ),
    file(
        "/usr/lib/llvm-22/bin/llvm-config",
        "llvm-22-dev",
        "bpf-linker's build",
    ),
];

/// What the tools must leave on the machine, whichever toolchain builds.
pub const TOOL_FILES: &[RequiredFile] = &[
    file("/usr/sbin/bpftool", "bpftool", "the tests"),
    file(
        "/usr/bin/protoc",
        "protobuf-compiler",
        "the etcd client's build",
    ),
    file(
        "/usr/include/google/protobuf/descriptor.proto",
        "libprotobuf-dev",
        "the etcd client's build (protoc's well-known types)",
    ),
    file("/usr/bin/etcd", "etcd-server", "the controller's tests"),
    file(
        "/usr/sbin/keepalived",
        "keepalived",
        "the lab and the tests",
    ),
    file("/usr/sbin/arping", "arping", "the lab and the tests"),
    file("/usr/bin/ndisc6", "ndisc6", "the tests"),
    file("/usr/bin/tcpdump", "tcpdump", "the lab and the tests"),
    file(
        "/usr/lib/python3/dist-packages/scapy/all.py",
        "python3-scapy",
        "the rogue VM of the lab and the tests",
    ),
    file("/usr/bin/ip", "iproute2", "the lab and the tests"),
    file("/usr/bin/ping", "iputils-ping", "the tests"),
    file("/usr/sbin/sysctl", "procps", "the lab and the tests"),
    file("/usr/bin/killall", "psmisc", "the lab's cleanup"),
    file(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "fonts-dejavu-core",
        "the benchmark chart",
    ),
    file(
        "/usr/bin/prometheus",
        "prometheus",
        "the metrics test (a real Prometheus server)",
    ),
    file(
        "/usr/bin/chromium",
        "chromium",
        "the console test (a real headless browser)",
    ),
    file(
        "/usr/bin/chromedriver",
        "chromium-driver",
        "the console test (WebDriver)",
    ),
    file(
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "fonts-wqy-microhei",
        "the console test's screenshots (the console's Chinese labels)",
    ),
];

/// The files `toolchain` needs.
pub fn wanted_files(toolchain: Toolchain) -> Vec<&'static RequiredFile> {
    let tools = TOOL_FILES.iter();
    match toolchain {
        Toolchain::Upstream => tools.collect(),
        Toolchain::Debian => TOOLCHAIN_FILES.iter().chain(tools).collect(),
    }
}

/// The files of `toolchain` that `exists` does not find.
fn missing_files(
    toolchain: Toolchain,
    exists: impl Fn(&Path) -> bool,
) -> Vec<&'static RequiredFile> {
    wanted_files(toolchain)
        .into_iter()
        .filter(|f| !exists(Path::new(f.path)))
        .collect()
}

fn describe_missing(files: &[&RequiredFile]) -> String {
    files
        .iter()
        .map(|f| format!("{} (package {}, for {})", f.path, f.package, f.used_by))
        .collect::<Vec<_>>()
        .join("; ")
}

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

#[derive(clap::Args)]
pub struct Args {
    /// Only print what is installed and what would be installed.
    #[arg(long)]
    dry_run: bool,
}

/// How the datapath gets built on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup nightly with rust-src, `-Z build-std=core`.
    Upstream,
    /// Debian's /usr/bin/cargo and /usr/bin/rustc (1.96, LLVM 22).
    Debian,
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Toolchain::Upstream => "upstream (rustup nightly with rust-src, -Z build-std=core)",
            Toolchain::Debian => "Debian (/usr/bin/rustc 1.96 on LLVM 22, prebuilt core)",
        })
    }
}

/// What is on this machine, as far as setup cares.
#[derive(Debug, Default)]
pub struct Facts {
    /// Which of the packages we asked about are installed.
    pub installed: BTreeSet<String>,
    /// `bpf-linker` on PATH or in ~/.cargo/bin.
    pub bpf_linker: Option<PathBuf>,
    /// A rustup `nightly` toolchain that has the rust-src component.
    pub nightly_with_rust_src: bool,
}

/// What setup has to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub toolchain: Toolchain,
    pub missing_packages: Vec<&'static str>,
    pub build_bpf_linker: bool,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.missing_packages.is_empty() && !self.build_bpf_linker
    }
}

/// Upstream when it is complete, else Debian.
pub fn choose_toolchain(facts: &Facts) -> Toolchain {
    if facts.nightly_with_rust_src && facts.bpf_linker.is_some() {
        Toolchain::Upstream
    } else {
        Toolchain::Debian
    }
}

/// The Debian packages a toolchain needs: the upstream one brings its own
/// compiler, so it only needs the tools.
pub fn wanted_packages(toolchain: Toolchain) -> Vec<&'static str> {
    match toolchain {
        Toolchain::Upstream => TOOL_PACKAGES.to_vec(),
        Toolchain::Debian => [TOOLCHAIN_PACKAGES, TOOL_PACKAGES].concat(),
    }
}

pub fn plan(facts: &Facts) -> Plan {
    plan_for(choose_toolchain(facts), facts)
}

/// What is missing for `toolchain`. The check after installing uses it with
/// the toolchain already chosen, so that it does not switch toolchains.
fn plan_for(toolchain: Toolchain, facts: &Facts) -> Plan {
    Plan {
        toolchain,
        missing_packages: wanted_packages(toolchain)
            .into_iter()
            .filter(|p| !facts.installed.contains(*p))
            .collect(),
        build_bpf_linker: facts.bpf_linker.is_none(),
    }
}

/// Without root nothing can be installed with apt: say what is missing and how
/// to install it. (bpf-linker needs no root: it goes to ~/.cargo/bin.)
pub fn check_can_install(plan: &Plan, root: bool) -> Result<()> {
    if root || plan.missing_packages.is_empty() {
        return Ok(());
    }
    let packages = plan.missing_packages.join(" ");
    bail!(
        "missing Debian packages: {packages}\n\
         installing them needs root; run as root either `cargo xtask setup` or\n  \
         apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages}"
    )
}

/// `cargo xtask setup`.
pub fn run(args: &Args) -> Result<Toolchain> {
    let facts = probe()?;
    let plan = plan(&facts);
    if args.dry_run {
        print_dry_run(&facts, &plan);
        return Ok(plan.toolchain);
    }
    install(&plan)?;
    Ok(plan.toolchain)
}

/// The first step of every other command.
pub fn ensure() -> Result<Toolchain> {
    run(&Args { dry_run: false })
}

fn install(plan: &Plan) -> Result<()> {
    check_can_install(plan, util::is_root())?;
    if !plan.missing_packages.is_empty() {
        say!(
            "installing Debian packages: {} (first use)",
            plan.missing_packages.join(" ")
        );
        let started = Instant::now();
        util::run(&mut apt_get_update())?;
        util::run(&mut apt_get_install(&plan.missing_packages))?;
        util::timing("Debian packages", started);
    }
    // Before the long bpf-linker build: a missing file fails now.
    let missing = missing_files(plan.toolchain, Path::exists);
    if !missing.is_empty() {
        bail!(
            "not on this machine although setup has run: {}",
            describe_missing(&missing)
        );
    }
    if plan.build_bpf_linker {
        say!(
            "building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 into {} (first use, 1 to 3 minutes)",
            util::cargo_bin_dir().display()
        );
        let started = Instant::now();
        util::run(&mut cargo_install_bpf_linker())?;
        util::timing("bpf-linker", started);
    }

    // Check that the steps did what they promised.
    let after = probe()?;
    let still = plan_for(plan.toolchain, &after);
    if !still.missing_packages.is_empty() {
        bail!(
            "still not installed after apt-get: {}",
            still.missing_packages.join(" ")
        );
    }
    let Some(linker) = after.bpf_linker else {
        bail!(
            "bpf-linker is still not on PATH nor in {}",
            util::cargo_bin_dir().display()
        );
    };
    if plan.is_empty() {
        say!(
            "setup: everything is installed ({} Debian packages, bpf-linker at {})",
            wanted_packages(plan.toolchain).len(),
            linker.display()
        );
    }
    say!("eBPF toolchain: {}", plan.toolchain);
    Ok(())
}

fn print_dry_run(facts: &Facts, plan: &Plan) {
    let all = [TOOLCHAIN_PACKAGES, TOOL_PACKAGES].concat();
    let (present, absent): (Vec<&str>, Vec<&str>) =
        all.iter().partition(|p| facts.installed.contains(**p));
    say!("dry run: reporting only, installing nothing");
    say!("Debian packages installed: {}", none_if_empty(&present));
    say!("Debian packages not installed: {}", none_if_empty(&absent));
    match &facts.bpf_linker {
        Some(path) => say!("bpf-linker: {}", path.display()),
        None => say!("bpf-linker: not found"),
    }
    say!(
        "rustup nightly with rust-src: {}",
        if facts.nightly_with_rust_src {
            "yes"
        } else {
            "no"
        }
    );
    say!("eBPF toolchain: {}", plan.toolchain);
    if plan.is_empty() {
        say!("would do nothing");
        return;
    }
    if let Err(err) = check_can_install(plan, util::is_root()) {
        say!("would fail: {err:#}");
        return;
    }
    if !plan.missing_packages.is_empty() {
        say!("would run: {}", util::describe(&apt_get_update()));
        say!(
            "would run: {}",
            util::describe(&apt_get_install(&plan.missing_packages))
        );
    }
    if plan.build_bpf_linker {
        say!("would run: {}", util::describe(&cargo_install_bpf_linker()));
    }
}

fn none_if_empty(words: &[&str]) -> String {
    if words.is_empty() {
        "(none)".into()
    } else {
        words.join(" ")
    }
}

/// Installs what one command needs beside setup's own packages, on its
/// first use, and says so: each `(package, file)` whose package is not
/// installed; then checks every file is there.
pub(crate) fn ensure_packages(for_what: &str, packages: &[(&str, &str)]) -> Result<()> {
    let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
    let installed = installed_packages(&names)?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| !installed.contains(*p))
        .collect();
    if !missing.is_empty() {
        say!(
            "installing Debian packages for {for_what}: {} (first use)",
            missing.join(" ")
        );
        let started = Instant::now();
        util::run(&mut apt_get_update())?;
        util::run(&mut apt_get_install(&missing))?;
        util::timing(&format!("{for_what}: packages"), started);
    }
    for (package, file) in packages {
        if !Path::new(file).exists() {
            bail!("{file} (package {package}) is missing although {package} is installed");
        }
    }
    Ok(())
}

pub(crate) fn apt_get_update() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(["-q", "update"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn apt_get_install(packages: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(["-q", "install", "-y", "--no-install-recommends"])
        // Keep changed config files without asking (there is nobody to ask).
        .args(["-o", "Dpkg::Options::=--force-confdef"])
        .args(["-o", "Dpkg::Options::=--force-confold"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    cmd
}

/// bpf-linker against Debian's LLVM 22, exactly as the notes say: without
/// LLVM_PREFIX the link fails with `unable to find library -lLLVM`.
fn cargo_install_bpf_linker() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env(
            "PATH",
            util::path_with_first(&Path::new(LLVM_PREFIX).join("bin")),
        )
        // Build in a temporary directory, with no flags meant for other builds.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    cmd
}

fn probe() -> Result<Facts> {
    let all = [TOOLCHAIN_PACKAGES, TOOL_PACKAGES].concat();
    Ok(Facts {
        installed: installed_packages(&all)?,
        bpf_linker: find_bpf_linker(),
        nightly_with_rust_src: nightly_with_rust_src(),
    })
}

/// Asks dpkg (not apt) which of `packages` are installed: one quick call.
pub(crate) fn installed_packages(packages: &[&str]) -> Result<BTreeSet<String>> {
    // dpkg-query exits 1 when some package is unknown; its stdout still lists
    // the known ones, which is all we need.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query: setup supports Debian 12 only")?;
    Ok(parse_dpkg_query(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_dpkg_query(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package.to_string())
        .collect()
}

fn find_bpf_linker() -> Option<PathBuf> {
    which::which("bpf-linker").ok().or_else(|| {
        let path = util::cargo_bin_dir().join("bpf-linker");
        path.is_file().then_some(path)
    })
}

/// A rustup `nightly` whose sysroot holds the library sources (rust-src).
fn nightly_with_rust_src() -> bool {
    let Ok(rustup) = which::which("rustup") else {
        return false;
    };
    let Ok(output) = Command::new(rustup)
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("RUSTUP_TOOLCHAIN")
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout);
    output.status.success() && has_rust_src(Path::new(sysroot.trim()))
}

fn has_rust_src(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(installed: &[&str], bpf_linker: bool, nightly_with_rust_src: bool) -> Facts {
        Facts {
            installed: installed.iter().map(|p| p.to_string()).collect(),
            bpf_linker: bpf_linker.then(|| PathBuf::from("/root/.cargo/bin/bpf-linker")),
            nightly_with_rust_src,
        }
    }

    fn everything() -> Vec<&'static str> {
        [TOOLCHAIN_PACKAGES, TOOL_PACKAGES].concat()
    }

    #[test]
    fn fresh_machine_gets_the_debian_toolchain_and_every_package() {
        // CI: rustup stable, gcc and python3 only.
        let plan = plan(&facts(&[], false, false));
        assert_eq!(plan.toolchain, Toolchain::Debian);
        assert_eq!(plan.missing_packages, everything());
        assert!(plan.build_bpf_linker);
    }

    #[test]
    fn set_up_machine_needs_nothing() {
        let plan = plan(&facts(&everything(), true, false));
        assert_eq!(plan.toolchain, Toolchain::Debian);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn only_what_is_missing_is_installed() {
        let mut installed = everything();
        installed.retain(|p| *p != "iputils-ping" && *p != "llvm-22-dev");
        let plan = plan(&facts(&installed, true, false));
        assert_eq!(plan.missing_packages, ["llvm-22-dev", "iputils-ping"]);
        assert!(!plan.build_bpf_linker);
    }

    #[test]
    fn upstream_setup_is_used_when_nightly_has_rust_src_and_bpf_linker_exists() {
        let plan = plan(&facts(&[], true, true));
        assert_eq!(plan.toolchain, Toolchain::Upstream);
        assert_eq!(plan.missing_packages, TOOL_PACKAGES, "no Debian toolchain");
        assert!(!plan.build_bpf_linker);
    }

    #[test]
    fn nightly_without_bpf_linker_is_not_the_upstream_setup() {
        let plan = plan(&facts(&[], false, true));
        assert_eq!(plan.toolchain, Toolchain::Debian);
        assert!(plan.build_bpf_linker);
    }

    #[test]
    fn nightly_without_rust_src_is_not_the_upstream_setup() {
        // This machine kind: nightly 1.97 without rust-src, bpf-linker built.
        let plan = plan(&facts(&[], true, false));
        assert_eq!(plan.toolchain, Toolchain::Debian);
        assert!(!plan.build_bpf_linker);
        assert_eq!(plan.missing_packages, everything());
    }

    #[test]
    fn without_root_missing_packages_fail_naming_them_and_the_command() {
        let plan = plan(&facts(&[], true, false));
        let err = check_can_install(&plan, false).unwrap_err().to_string();
        assert!(
            err.contains("missing Debian packages: rustc-web cargo-web"),
            "{err}"
        );
        assert!(
            err.contains("apt-get install -y --no-install-recommends rustc-web"),
            "{err}"
        );
        assert!(err.contains("root"), "{err}");
        assert!(check_can_install(&plan, true).is_ok());
    }

    #[test]
    fn without_root_only_bpf_linker_missing_is_fine() {
        let plan = plan(&facts(&everything(), false, false));
        assert!(check_can_install(&plan, false).is_ok());
    }

    #[test]
    fn after_installing_the_check_keeps_the_chosen_toolchain() {
        // Debian was chosen; if an upstream setup appeared meanwhile, the
        // Debian packages must still be there.
        let after = facts(TOOL_PACKAGES, true, true);
        let plan = plan_for(Toolchain::Debian, &after);
        assert_eq!(plan.toolchain, Toolchain::Debian);
        assert_eq!(plan.missing_packages, TOOLCHAIN_PACKAGES);
    }

    #[test]
    fn every_required_file_comes_from_a_package_setup_installs() {
        for toolchain in [Toolchain::Debian, Toolchain::Upstream] {
            let packages = wanted_packages(toolchain);
            for f in wanted_files(toolchain) {
                assert!(
                    packages.contains(&f.package),
                    "{} comes from {}, which setup does not install for {toolchain}",
                    f.path,
                    f.package
                );
            }
        }
    }

    #[test]
    fn a_missing_file_is_named_with_its_package() {
        // protoc is there, the well-known .proto files are not: what a
        // machine had when protobuf-compiler was installed without its
        // recommendations.
        let missing = missing_files(Toolchain::Debian, |p| {
            !p.starts_with("/usr/include/google/protobuf")
        });
        assert_eq!(missing.len(), 1);
        let text = describe_missing(&missing);
        assert_eq!(
            text,
            "/usr/include/google/protobuf/descriptor.proto (package libprotobuf-dev, \
             for the etcd client's build (protoc's well-known types))"
        );
        assert!(missing_files(Toolchain::Debian, |_| true).is_empty());
        assert!(
            missing_files(Toolchain::Upstream, |p| !p.starts_with("/usr/bin/rustc")).is_empty(),
            "the upstream toolchain does not need Debian's rustc"
        );
    }

    #[test]
    fn dpkg_query_output_counts_only_installed_packages() {
        let output = "bpftool\tinstall ok installed\n\
                      keepalived\tdeinstall ok config-files\n\
                      tcpdump\tunknown ok not-installed\n\
                      arping\tinstall ok installed\n";
        let installed = parse_dpkg_query(output);
        assert_eq!(
            installed,
            BTreeSet::from(["arping".into(), "bpftool".into()])
        );
    }

    #[test]
    fn bpf_linker_is_built_against_llvm_22_as_the_notes_say() {
        let cmd = cargo_install_bpf_linker();
        let described = util::describe(&cmd);
        assert!(
            described.contains("LLVM_PREFIX=/usr/lib/llvm-22"),
            "{described}"
        );
        assert!(
            described.ends_with(
                "cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22"
            ),
            "{described}"
        );
        let path = cmd
            .get_envs()
            .find(|(k, _)| *k == "PATH")
            .unwrap()
            .1
            .unwrap();
        assert!(path.to_string_lossy().starts_with("/usr/lib/llvm-22/bin:"));
    }

    #[test]
    fn apt_runs_without_questions() {
        let described = util::describe(&apt_get_install(&["keepalived"]));
        assert!(described.starts_with(
            "DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends"
        ));
        assert!(described.ends_with(" keepalived"));
    }
}
