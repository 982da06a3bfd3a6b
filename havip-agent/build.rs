//! Finds the datapath object to embed in the agent.
//!
//! `HAVIP_EBPF_OBJECT=/path/to/havip-ebpf` selects one; otherwise the object
//! `cargo xtask build` leaves at `../target/bpfel-unknown-none/release/havip-ebpf`
//! is used if it exists. With an object, `havip_embedded_object` is set and
//! `HAVIP_EBPF_OBJECT_PATH` names it; without one the agent still builds (so
//! `cargo check`/`clippy` need no BPF toolchain) and `run` needs --bpf-object.

use std::{env, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(havip_embedded_object)");
    println!("cargo::rerun-if-env-changed=HAVIP_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = match env::var_os("HAVIP_EBPF_OBJECT") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "HAVIP_EBPF_OBJECT={} is not a file",
                p.display()
            );
            Some(p)
        }
        None => {
            let release = manifest.join("../target/bpfel-unknown-none/release");
            let p = release.join("havip-ebpf");
            if p.is_file() {
                Some(p)
            } else {
                // Rerun once the eBPF build produces something, without
                // rerunning on every build before that.
                let watch = [release.as_path(), release.parent().unwrap()]
                    .into_iter()
                    .find(|d| d.is_dir());
                match watch {
                    Some(d) => println!("cargo::rerun-if-changed={}", d.display()),
                    None => println!("cargo::rerun-if-changed=build.rs"),
                }
                None
            }
        }
    };
    if let Some(p) = object {
        let p = p.canonicalize().expect("object path resolves");
        println!("cargo::rerun-if-changed={}", p.display());
        println!("cargo::rustc-cfg=havip_embedded_object");
        println!("cargo::rustc-env=HAVIP_EBPF_OBJECT_PATH={}", p.display());
    }
}
