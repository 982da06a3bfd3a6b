//! The guest kernel's modules: which files to put in the initramfs, in the
//! order `insmod` must load them.
//!
//! Debian's kernel package ships no `modules.dep` (its postinst runs
//! `depmod`, and we do not install the package), so we write one from each
//! module's own `.modinfo` section (`depends=`, which modpost computed from
//! the symbols the module uses: what depmod writes too), then resolve the
//! modules the tests need against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What the guest loads before the tests: the 9p share of the host's root
/// (virtio-pci transport), and what the lab and the tests create (veth and
/// tap ports, a bridge, TC's clsact/ingress qdisc and cls_bpf).
pub const WANTED: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "veth",
    "tun",
    "bridge",
    "sch_ingress",
    "cls_bpf",
];

/// `modules.dep` of a kernel: module path -> the paths it depends on, both
/// relative to `lib/modules/<release>/`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModulesDep {
    deps: BTreeMap<String, Vec<String>>,
}

/// A module's name as the kernel spells it: the file name without `.ko`
/// (and a compression suffix), with `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModulesDep {
    /// Parses `modules.dep` (`kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ...`).
    pub fn parse(text: &str) -> Result<Self> {
        let mut deps = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, rest) = line
                .split_once(':')
                .with_context(|| format!("modules.dep line {}: no ':' in {line:?}", n + 1))?;
            deps.insert(
                module.trim().to_string(),
                rest.split_whitespace().map(String::from).collect(),
            );
        }
        Ok(Self { deps })
    }

    /// Builds it from each module's `depends=` (module names): `modules`
    /// holds (path, depends).
    pub fn from_depends(modules: &[(String, Vec<String>)]) -> Result<Self> {
        let by_name: BTreeMap<String, &String> = modules
            .iter()
            .map(|(path, _)| (module_name(path), path))
            .collect();
        let mut deps = BTreeMap::new();
        for (path, depends) in modules {
            let paths = depends
                .iter()
                .map(|d| {
                    by_name
                        .get(&d.replace('-', "_"))
                        .map(|p| p.to_string())
                        .with_context(|| format!("{path} depends on {d}, which is not a module"))
                })
                .collect::<Result<Vec<_>>>()?;
            deps.insert(path.clone(), paths);
        }
        Ok(Self { deps })
    }

    /// The text of `modules.dep`.
    pub fn render(&self) -> String {
        self.deps
            .iter()
            .map(|(module, deps)| match deps.is_empty() {
                true => format!("{module}:\n"),
                false => format!("{module}: {}\n", deps.join(" ")),
            })
            .collect()
    }

    /// The paths to load for `wanted` (module names), every dependency
    /// before the modules that need it, each once. A name in `builtin` (the
    /// kernel's `modules.builtin`, also as names) needs nothing.
    pub fn load_order(&self, wanted: &[&str], builtin: &BTreeSet<String>) -> Result<Vec<String>> {
        let by_name: BTreeMap<String, &String> =
            self.deps.keys().map(|p| (module_name(p), p)).collect();
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            let name = name.replace('-', "_");
            if builtin.contains(&name) {
                continue;
            }
            let Some(path) = by_name.get(&name) else {
                bail!("the kernel has no module {name} (and it is not built in)");
            };
            self.visit(path, &mut done, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        path: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(path) {
            return Ok(());
        }
        if stack.iter().any(|p| p == path) {
            bail!("modules.dep has a cycle: {} -> {path}", stack.join(" -> "));
        }
        let deps = self
            .deps
            .get(path)
            .with_context(|| format!("{path} is not in modules.dep"))?;
        stack.push(path.to_string());
        for dep in deps {
            self.visit(dep, done, stack, order)?;
        }
        stack.pop();
        done.insert(path.to_string());
        order.push(path.to_string());
        Ok(())
    }
}

/// The names in `modules.builtin` (`kernel/lib/ucs2_string.ko` per line).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(module_name)
        .collect()
}

/// The `depends=` of an ELF kernel module, from its `.modinfo` section
/// (NUL-separated `key=value` strings).
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>> {
    let modinfo = elf_section(elf, ".modinfo")?.context("no .modinfo section")?;
    let depends = modinfo
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(depends)
        .split(',')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect())
}

/// The bytes of the section `name` of a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    let u16_at = |off: usize| -> Result<usize> {
        let b = elf.get(off..off + 2).context("ELF file truncated")?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |off: usize| -> Result<usize> {
        let b = elf.get(off..off + 4).context("ELF file truncated")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let u64_at = |off: usize| -> Result<usize> {
        let b = elf.get(off..off + 8).context("ELF file truncated")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        bail!("not a little-endian ELF64 file (a compressed module?)");
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let section = |i: usize| -> Result<(usize, usize, usize)> {
        let h = shoff + i * shentsize;
        // sh_name, sh_offset, sh_size
        Ok((u32_at(h)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?))
    };
    let (_, names_off, names_size) = section(shstrndx)?;
    let names = elf
        .get(names_off..names_off + names_size)
        .context("ELF section names out of the file")?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let this = names
            .get(name_off..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if this == name.as_bytes() {
            return elf
                .get(off..off + size)
                .map(Some)
                .context("ELF section out of the file");
        }
    }
    Ok(None)
}

/// Writes `modules.dep` for the kernel whose modules are in `dir`
/// (`lib/modules/<release>/`) unless it is there, and returns it.
pub fn ensure_modules_dep(dir: &Path) -> Result<ModulesDep> {
    let file = dir.join("modules.dep");
    if let Ok(text) = std::fs::read_to_string(&file) {
        return ModulesDep::parse(&text);
    }
    let mut modules = Vec::new();
    for path in walk_modules(&dir.join("kernel"))? {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let rel = path
            .strip_prefix(dir)
            .expect("walked below dir")
            .to_string_lossy()
            .into_owned();
        let depends = modinfo_depends(&bytes).with_context(|| format!("module {rel}"))?;
        modules.push((rel, depends));
    }
    let dep = ModulesDep::from_depends(&modules)?;
    std::fs::write(&file, dep.render())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(dep)
}

fn walk_modules(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "ko") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/veth.ko:
";

    #[test]
    fn dependencies_load_first_and_once() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let order = dep
            .load_order(&["bridge", "9p", "veth", "stp"], &BTreeSet::new())
            .unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/net/9p/9pnet.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/fscache/fscache.ko",
                "kernel/fs/9p/9p.ko",
                "kernel/drivers/net/veth.ko",
            ]
        );
    }

    #[test]
    fn built_in_modules_need_no_file_and_unknown_ones_fail() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let builtin = parse_builtin("kernel/net/sched/sch_ingress.ko\nkernel/lib/ucs2_string.ko\n");
        assert_eq!(
            dep.load_order(&["sch_ingress", "veth"], &builtin).unwrap(),
            ["kernel/drivers/net/veth.ko"]
        );
        let err = dep.load_order(&["cls_bpf"], &builtin).unwrap_err();
        assert!(err.to_string().contains("no module cls_bpf"), "{err}");
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let dep = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        let err = dep.load_order(&["a"], &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn names_use_underscores_and_drop_the_suffix() {
        assert_eq!(module_name("kernel/net/9p/9pnet_virtio.ko"), "9pnet_virtio");
        assert_eq!(module_name("kernel/drivers/x/snd-hda.ko.xz"), "snd_hda");
        assert_eq!(module_name("tun.ko"), "tun");
    }

    #[test]
    fn modules_dep_is_written_from_each_modules_depends() {
        let modules = vec![
            ("kernel/net/802/stp.ko".to_string(), vec!["llc".to_string()]),
            ("kernel/net/llc/llc.ko".to_string(), vec![]),
        ];
        let dep = ModulesDep::from_depends(&modules).unwrap();
        let text = dep.render();
        assert_eq!(
            text,
            "kernel/net/802/stp.ko: kernel/net/llc/llc.ko\nkernel/net/llc/llc.ko:\n"
        );
        assert_eq!(ModulesDep::parse(&text).unwrap(), dep);
        let missing = vec![("a.ko".to_string(), vec!["nope".to_string()])];
        assert!(ModulesDep::from_depends(&missing).is_err());
    }

    /// A minimal ELF64 file with a `.modinfo` section.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        let names_off = elf.len();
        elf.extend_from_slice(names);
        let shoff = elf.len();
        let section = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(section(0, 0, 0));
        elf.extend(section(1, modinfo_off, modinfo.len()));
        elf.extend(section(10, names_off, names.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn depends_come_from_the_modinfo_section() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=virtio,9pnet,virtio_ring\0name=x\0");
        assert_eq!(
            modinfo_depends(&elf).unwrap(),
            ["virtio", "9pnet", "virtio_ring"]
        );
        let elf = elf_with_modinfo(b"license=GPL\0depends=\0");
        assert!(modinfo_depends(&elf).unwrap().is_empty());
        assert!(modinfo_depends(b"\x28\xb5\x2f\xfd compressed").is_err());
    }
}
