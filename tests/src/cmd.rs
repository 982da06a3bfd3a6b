//! Running commands: output on success, an error carrying stderr otherwise,
//! and the preconditions of every privileged test (root, tools on PATH).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `cmd`, returns its stdout; fails with the command line and stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a program with arguments; see [`output`].
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    output(Command::new(program).args(args))
}

/// The command line, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Fails unless running as root: the lab creates namespaces and loads BPF.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the havip lab and e2e tests need root (network namespaces, XDP, bpffs); run them as root, e.g. `sudo -E cargo test -p havip-tests -- --test-threads=1`");
    }
    Ok(())
}

/// The tools the lab drives.
pub const TOOLS: &[&str] = &["ip", "keepalived", "arping", "tcpdump", "sysctl"];

/// Fails with one clear message naming every missing tool.
pub fn require_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {} (install with `apt-get install -y keepalived arping ndisc6 tcpdump python3-scapy iproute2`, or `cargo xtask setup`)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Everything the lab needs: root, the tools, and a python3 with scapy.
pub fn require_lab_prerequisites() -> Result<()> {
    require_root()?;
    require_tools(TOOLS)?;
    scapy_python()?;
    Ok(())
}

/// Finds `program` on PATH (or in the sbin directories, which a sudo PATH
/// may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A python3 that can `import scapy` (Debian's python3-scapy installs into
/// /usr/bin/python3, which a pyenv shim earlier on PATH may hide).
pub fn scapy_python() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HAVIP_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push("/usr/bin/python3".into());
    candidates.extend(which("python3"));
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import scapy.all"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(py);
        }
    }
    bail!("no python3 with scapy found (apt-get install -y python3-scapy, or set HAVIP_PYTHON)")
}
