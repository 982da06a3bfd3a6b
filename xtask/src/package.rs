//! `cargo xtask package`: the Debian packages, built with dpkg-deb from the
//! release build (the agent with the datapath object embedded):
//!
//! - `havip-agent`: `/usr/bin/havip-agent`, its systemd unit, the default
//!   `/etc/havip/agent.toml` and `/etc/default/havip-agent` (conffiles), a
//!   man page made of its `--help`;
//! - `havip-controller`: `/usr/bin/havip-controller` and `havipctl`, its
//!   unit, `/etc/havip/controller.toml` and `/etc/default/havip-controller`
//!   (conffiles), their man pages.
//!
//! The files besides the binaries are in `packaging/`. `Depends` comes from
//! `dpkg-shlibdeps`. The agent's maintainer scripts restart it on upgrade
//! (the new agent adopts the pinned programs: no protection gap) and take
//! the datapath off on removal.
//!
//! `--check` (as root) then installs both with apt into a pristine
//! Debian 12 root (mmdebstrap's minbase with systemd, kept as
//! target/package-check/pristine.tar), where `systemd-analyze verify` must
//! accept the units and the installed binaries must answer, and runs the
//! installed agent on the lab (the `installed_agent` test, under the unit's
//! capability bounding set).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::build::{self, Artifacts};
use crate::util::{self, say};
use crate::{fresh_check, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Where the .deb files go [default: target/debian].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Then install them into a pristine Debian 12 root, verify the units
    /// there and run the installed agent on the lab (as root).
    #[arg(long)]
    check: bool,
}

/// One file of a package: where it comes from, where it goes, its mode.
struct File {
    from: PathBuf,
    to: &'static str,
    mode: u32,
}

struct Package {
    name: &'static str,
    description: &'static str,
    files: Vec<File>,
    /// The binaries that get a man page (section 8), from their `--help`.
    man_pages: Vec<(&'static str, PathBuf)>,
    /// Under packaging/<name>/: postinst, prerm, postrm.
    scripts: bool,
    /// Besides the shared libraries' packages.
    depends: &'static [&'static str],
}

fn packaging(path: &str) -> PathBuf {
    util::workspace_root().join("packaging").join(path)
}

fn file(from: PathBuf, to: &'static str, mode: u32) -> File {
    File { from, to, mode }
}

fn packages(a: &Artifacts) -> Vec<Package> {
    let ctl = |name: &str| a.controller_bin_dir.join(name);
    vec![
        Package {
            name: "havip-agent",
            description:
                "HAVIP hypervisor agent: the XDP/TC datapath for High-Availability Virtual IPs\n \
                the agent loads the datapath (built in), lets only the bound ports of a\n \
                VIP claim it, and keeps the programs attached across restarts and upgrades.",
            files: vec![
                file(a.agent.clone(), "usr/bin/havip-agent", 0o755),
                file(
                    packaging("havip-agent/havip-agent.service"),
                    "lib/systemd/system/havip-agent.service",
                    0o644,
                ),
                file(
                    packaging("havip-agent/agent.toml"),
                    "etc/havip/agent.toml",
                    0o644,
                ),
                file(
                    packaging("havip-agent/default"),
                    "etc/default/havip-agent",
                    0o644,
                ),
            ],
            man_pages: vec![("havip-agent", a.agent.clone())],
            scripts: true,
            // /bin/kill, the unit's ExecReload.
            depends: &["procps"],
        },
        Package {
            name: "havip-controller",
            description: "HAVIP API server on etcd, and havipctl\n \
                havip-controller serves the HAVIP API (VPCs, subnets, ports, VIPs) from\n \
                etcd; havipctl is its command-line client.",
            files: vec![
                file(ctl("havip-controller"), "usr/bin/havip-controller", 0o755),
                file(ctl("havipctl"), "usr/bin/havipctl", 0o755),
                file(
                    packaging("havip-controller/havip-controller.service"),
                    "lib/systemd/system/havip-controller.service",
                    0o644,
                ),
                // Its tokens are secrets: root's alone.
                file(
                    packaging("havip-controller/controller.toml"),
                    "etc/havip/controller.toml",
                    0o600,
                ),
                file(
                    packaging("havip-controller/default"),
                    "etc/default/havip-controller",
                    0o644,
                ),
            ],
            man_pages: vec![
                ("havip-controller", ctl("havip-controller")),
                ("havipctl", ctl("havipctl")),
            ],
            scripts: true,
            depends: &[],
        },
    ]
}

pub fn run(args: &Args) -> Result<()> {
    if args.check && !util::is_root() {
        bail!("`cargo xtask package --check` installs into a root with chroot: run it as root");
    }
    let toolchain = setup::ensure()?;
    let artifacts = build::run(&toolchain)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| util::target_dir().join("debian"));
    let debs = build_all(&artifacts, &out)?;
    if args.check {
        check(&artifacts, &debs)?;
    }
    Ok(())
}

/// `--check` on what `cargo xtask test` built: the packages into
/// target/debian, installed and checked.
pub fn check_built(artifacts: &Artifacts) -> Result<()> {
    let debs = build_all(artifacts, &util::target_dir().join("debian"))?;
    check(artifacts, &debs)
}

/// Builds every package into `out`; the .deb paths.
pub fn build_all(artifacts: &Artifacts, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = util::output(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();
    let mut debs = Vec::new();
    for p in packages(artifacts) {
        let stage = util::target_dir().join("debian-stage").join(p.name);
        if stage.exists() {
            std::fs::remove_dir_all(&stage)?;
        }
        stage_files(&p, &stage)?;
        let deb = out.join(format!("{}_{version}_{arch}.deb", p.name));
        write_control(&p, &stage, version, arch)?;
        util::run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zxz", "--build"])
                .arg(&stage)
                .arg(&deb),
        )?;
        say!("built {}", deb.display());
        debs.push(deb);
    }
    Ok(debs)
}

fn stage_files(p: &Package, stage: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for f in &p.files {
        let to = stage.join(f.to);
        std::fs::create_dir_all(to.parent().expect("a path in the package"))?;
        std::fs::copy(&f.from, &to)
            .with_context(|| format!("cannot copy {} into the package", f.from.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(f.mode))?;
    }
    let man = stage.join("usr/share/man/man8");
    std::fs::create_dir_all(&man)?;
    for (name, bin) in &p.man_pages {
        let page = man_page(name, bin)?;
        let path = man.join(format!("{name}.8"));
        std::fs::write(&path, page)?;
        util::run(Command::new("gzip").args(["-9n", "-f"]).arg(&path))?;
    }
    let doc = stage.join("usr/share/doc").join(p.name);
    std::fs::create_dir_all(&doc)?;
    std::fs::copy(
        util::workspace_root().join("README.md"),
        doc.join("README.md"),
    )?;
    Ok(())
}

/// `bin --help`, and each subcommand's, as a man page.
fn man_page(name: &str, bin: &Path) -> Result<String> {
    let help = |args: &[&str]| util::output(Command::new(bin).args(args));
    let top = help(&["--help"])?;
    let summary = top.lines().next().unwrap_or(name).trim().to_owned();
    let mut page = format!(
        ".TH {} 8 \"\" \"havip {}\" \"havip\"\n.SH NAME\n{name} \\- {}\n.SH DESCRIPTION\n.nf\n{}\n.fi\n",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION"),
        roff(&summary),
        roff(&top)
    );
    for sub in subcommands(&top) {
        let text = help(&[&sub, "--help"])?;
        page.push_str(&format!(
            ".SH \"{} {}\"\n.nf\n{}\n.fi\n",
            name.to_uppercase(),
            sub.to_uppercase(),
            roff(&text)
        ));
    }
    Ok(page)
}

/// The subcommands a clap `--help` lists under `Commands:` (not `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Text in a man page's no-fill block: backslashes and leading dots escaped.
fn roff(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_control(p: &Package, stage: &Path, version: &str, arch: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let binaries: Vec<PathBuf> = p
        .files
        .iter()
        .filter(|f| f.to.starts_with("usr/bin/"))
        .map(|f| stage.join(f.to))
        .collect();
    let mut depends = vec![shlibs_depends(&binaries)?];
    depends.extend(p.depends.iter().map(|d| d.to_string()));
    let depends = depends.join(", ");
    let size_kb = dir_size(stage)? / 1024;
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: {}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: havip <havip@localhost>\n\
             Installed-Size: {size_kb}\nDepends: {depends}\nSection: net\nPriority: optional\n\
             Description: {}\n",
            p.name, p.description
        ),
    )?;
    let conffiles: Vec<String> = p
        .files
        .iter()
        .filter(|f| f.to.starts_with("etc/"))
        .map(|f| format!("/{}\n", f.to))
        .collect();
    std::fs::write(debian.join("conffiles"), conffiles.concat())?;
    if p.scripts {
        for script in ["postinst", "prerm", "postrm"] {
            let from = packaging(&format!("{}/{script}", p.name));
            let to = debian.join(script);
            std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// The `Depends` of `binaries` by dpkg-shlibdeps (which wants a
/// debian/control to sit beside).
fn shlibs_depends(binaries: &[PathBuf]) -> Result<String> {
    let dir = util::target_dir().join("debian-stage/shlibdeps");
    std::fs::create_dir_all(dir.join("debian"))?;
    std::fs::write(
        dir.join("debian/control"),
        "Source: havip\n\nPackage: havip\nArchitecture: any\n",
    )?;
    let out = util::output(
        Command::new("dpkg-shlibdeps")
            .args(["-O", "--ignore-missing-info"])
            .args(binaries)
            .current_dir(&dir),
    )?;
    let depends = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps gave no shlibs:Depends: {out}"))?;
    Ok(depends.trim().to_owned())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A pristine Debian 12 root: minbase, systemd (for `systemd-analyze`)
/// and man-db (which `systemd-analyze verify` checks `Documentation=` with).
const ROOT_PACKAGES: &[&str] = &["systemd", "man-db"];

fn check(artifacts: &Artifacts, debs: &[PathBuf]) -> Result<()> {
    setup::ensure_packages("the package check", fresh_check::HOST_PACKAGES)?;
    let dir = util::target_dir().join("package-check");
    std::fs::create_dir_all(&dir)?;
    let tar = dir.join(format!("pristine-minbase-{}.tar", ROOT_PACKAGES.join("-")));
    if !tar.is_file() {
        say!("building a pristine Debian 12 root (minbase, systemd) for the packages");
        let partial = dir.join("pristine.tar.partial");
        fresh_check::mmdebstrap_tar(
            &partial,
            &dir.join("mmdebstrap.log"),
            "minbase",
            ROOT_PACKAGES,
        )?;
        std::fs::rename(&partial, &tar)?;
    }
    fresh_check::enter_private_mount_namespace()?;
    let root = dir.join("root");
    fresh_check::remove_root(&root)?;
    std::fs::create_dir_all(&root)?;
    util::run(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&root),
    )?;
    let result = check_in(&root, artifacts, debs);
    let removed = fresh_check::remove_root(&root);
    result.and(removed)
}

fn chroot(root: &Path, args: &[&str]) -> Result<String> {
    util::output(
        Command::new("chroot")
            .arg(root)
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .arg("DEBIAN_FRONTEND=noninteractive")
            .args(args),
    )
}

fn check_in(root: &Path, artifacts: &Artifacts, debs: &[PathBuf]) -> Result<()> {
    let r = |p: &str| root.join(p).to_string_lossy().into_owned();
    // The root a mount point of its own, so one recursive unmount takes
    // everything off.
    fresh_check::mount(&["--bind", &r(""), &r("")])?;
    fresh_check::mount(&["-t", "proc", "proc", &r("proc")])?;
    let mut inside = Vec::new();
    for deb in debs {
        let name = deb.file_name().context("a .deb file name")?;
        std::fs::copy(deb, root.join("tmp").join(name))?;
        inside.push(format!("/tmp/{}", name.to_string_lossy()));
    }
    // apt, as an operator installs a .deb: its Depends from Debian.
    fresh_check::machine_settings(root)?;
    chroot(root, &["apt-get", "-q", "update"])?;
    let mut install = vec!["apt-get", "-q", "install", "-y", "--no-install-recommends"];
    install.extend(inside.iter().map(String::as_str));
    say!("package check: apt-get install {}", inside.join(" "));
    chroot(root, &install)?;

    for (package, conffiles) in [
        (
            "havip-agent",
            &["/etc/havip/agent.toml", "/etc/default/havip-agent"][..],
        ),
        (
            "havip-controller",
            &[
                "/etc/havip/controller.toml",
                "/etc/default/havip-controller",
            ][..],
        ),
    ] {
        let listed = chroot(root, &["dpkg-query", "-W", "-f", "${Conffiles}", package])?;
        for c in conffiles {
            ensure!(
                listed
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(*c)),
                "{package}: {c} is not a conffile: {listed}"
            );
        }
    }
    say!("package check: systemd-analyze verify");
    let verify = Command::new("chroot")
        .arg(root)
        .args(["systemd-analyze", "verify"])
        .args([
            "/lib/systemd/system/havip-agent.service",
            "/lib/systemd/system/havip-controller.service",
        ])
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let complaints: Vec<&str> = said.lines().filter(|l| l.contains("havip")).collect();
    ensure!(
        verify.status.success() && complaints.is_empty(),
        "systemd-analyze verify refuses the units: {said}"
    );
    // Symlinks to /lib/... in the root: not followed from here.
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    let enabled = |unit: &str| wants.join(unit).symlink_metadata().is_ok();
    ensure!(
        enabled("havip-agent.service"),
        "the agent's unit is not enabled after the install"
    );
    ensure!(
        !enabled("havip-controller.service"),
        "the controller's unit is enabled before it has a token"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let tokens = root.join("etc/havip/controller.toml");
        let mode = std::fs::metadata(&tokens)?.permissions().mode() & 0o777;
        ensure!(
            mode == 0o600,
            "{} is {mode:o}: its tokens must be root's alone",
            tokens.display()
        );
    }
    let check = chroot(
        root,
        &["havip-agent", "check", "--config", "/etc/havip/agent.toml"],
    )?;
    say!("package check: {}", check.trim());
    for bin in ["havip-controller", "havipctl"] {
        chroot(root, &[bin, "--version"])?;
    }
    for page in ["havip-agent", "havip-controller", "havipctl"] {
        let path = root.join(format!("usr/share/man/man8/{page}.8.gz"));
        ensure!(path.is_file(), "no man page {}", path.display());
    }

    // The installed agent on the lab, with the unit's capabilities only.
    say!("package check: the installed agent on the lab");
    let agent = root.join("usr/bin/havip-agent");
    util::run(
        build::host_cargo(&artifacts.ebpf_object)
            .args([
                "test",
                "--release",
                "-p",
                "havip-tests",
                "--test",
                "installed_agent",
            ])
            .env("HAVIP_AGENT_BIN", &agent)
            // The datapath built into the installed binary, not the file.
            .env("HAVIP_AGENT_EMBEDDED_OBJECT", "1"),
    )?;
    say!("package check: passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_are_read_from_clap_help() {
        let help = "The agent.\n\nUsage: havip-agent <COMMAND>\n\nCommands:\n  run     Load\n  status  Print\n  help    Print this\n\nOptions:\n  -h, --help  Print help\n";
        assert_eq!(subcommands(help), ["run", "status"]);
    }

    #[test]
    fn roff_escapes_backslashes_and_leading_dots() {
        assert_eq!(roff(".x\na\\b"), "\\&.x\na\\eb");
    }

    #[test]
    fn every_packaged_file_exists_and_etc_files_are_conffiles() {
        let a = Artifacts {
            ebpf_object: PathBuf::new(),
            agent: PathBuf::from("/nonexistent/havip-agent"),
            controller_bin_dir: PathBuf::from("/nonexistent"),
            lab: None,
            bench: None,
        };
        for p in packages(&a) {
            for f in p.files.iter().filter(|f| !f.to.starts_with("usr/bin/")) {
                assert!(f.from.is_file(), "{}: {}", p.name, f.from.display());
            }
            for script in ["postinst", "prerm", "postrm"] {
                assert!(packaging(&format!("{}/{script}", p.name)).is_file());
            }
        }
    }
}
