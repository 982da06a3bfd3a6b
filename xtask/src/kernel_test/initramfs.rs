//! The guest's initramfs: busybox, the kernel modules and an `/init` that
//! mounts the host's root (9p, read only), chroots into it to run each part
//! of the tests, reports on the serial console and powers off.

use std::fmt::Write as _;

use super::results::MARKER;

/// The 9p tags of the two shares.
pub const ROOT_TAG: &str = "hostroot";
pub const SCRATCH_TAG: &str = "scratch";
/// Where the guest's init mounts the host's root before chrooting into it.
const ROOT: &str = "/mnt/root";
/// What the host's root gets fresh (tmpfs) in the guest: it is read only.
const TMPFS_DIRS: &[&str] = &["/tmp", "/run", "/var/tmp", "/dev/shm"];
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The exit code of the guest when it could not run the tests at all.
pub const SETUP_FAILED: i32 = 125;

/// One part of the tests: a program run in the chroot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Short name, in the console markers and the summary.
    pub name: String,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
}

/// What `/init` does.
pub struct Init<'a> {
    /// Module files to `insmod`, in order, as paths in the initramfs.
    pub modules: &'a [String],
    /// The host directory shared read-write (also its path in the chroot).
    pub scratch: &'a str,
    pub parts: &'a [Part],
}

/// Quotes `word` for sh: as is when it is plain, else in single quotes.
pub fn sh_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl Init<'_> {
    /// The `/init` script (busybox sh).
    pub fn script(&self) -> String {
        let mut s = String::new();
        let say = |s: &mut String, what: &str| writeln!(s, "echo \"{MARKER}{what}\"").unwrap();
        s.push_str("#!/bin/busybox sh\n# /init of `cargo xtask kernel-test` (generated)\n");
        s.push_str("/bin/busybox mkdir -p /bin /proc /sys /dev\n");
        s.push_str("/bin/busybox --install -s /bin\nexport PATH=/bin\n");
        writeln!(
            s,
            "fail() {{ echo \"{MARKER}error: $*\"; echo \"{MARKER}exit {SETUP_FAILED}\"; \
             poweroff -f; }}"
        )
        .unwrap();
        s.push_str("mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n");
        s.push_str("mount -t devtmpfs devtmpfs /dev\n");
        say(&mut s, "uname $(uname -r)");
        for module in self.modules {
            let m = sh_quote(module);
            writeln!(s, "insmod /{m} || fail \"insmod {m}\"").unwrap();
        }
        say(&mut s, "modules loaded");
        writeln!(s, "R={ROOT}\nmkdir -p $R").unwrap();
        writeln!(
            s,
            "mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro \
             {ROOT_TAG} $R || fail \"mount the host's root (9p {ROOT_TAG})\""
        )
        .unwrap();
        for (fs, dir) in [
            ("proc", "/proc"),
            ("sysfs", "/sys"),
            ("bpf", "/sys/fs/bpf"),
            ("devtmpfs", "/dev"),
        ] {
            writeln!(
                s,
                "mount -t {fs} {fs} $R{dir} || fail \"mount {fs} on {dir}\""
            )
            .unwrap();
        }
        s.push_str("mkdir -p $R/dev/pts $R/dev/shm\n");
        s.push_str("mount -t devpts devpts $R/dev/pts || fail \"mount devpts\"\n");
        for dir in TMPFS_DIRS {
            writeln!(
                s,
                "mount -t tmpfs tmpfs $R{dir} || fail \"mount tmpfs on {dir}\""
            )
            .unwrap();
        }
        let scratch = sh_quote(self.scratch);
        writeln!(
            s,
            "mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {SCRATCH_TAG} \
             $R{scratch} || fail \"mount the scratch directory (9p {SCRATCH_TAG})\""
        )
        .unwrap();
        say(&mut s, "ready");
        s.push_str("rc=0\n");
        for part in self.parts {
            let name = &part.name;
            say(&mut s, &format!("begin {name}"));
            let mut command = format!("cd {} && exec env -i", sh_quote(&part.cwd));
            for (key, value) in [("PATH", GUEST_PATH), ("HOME", "/root"), ("TMPDIR", "/tmp")]
                .into_iter()
                .chain(part.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                write!(command, " {}", sh_quote(&format!("{key}={value}"))).unwrap();
            }
            for word in &part.argv {
                write!(command, " {}", sh_quote(word)).unwrap();
            }
            writeln!(s, "chroot $R /bin/sh -c {} 2>&1", sh_quote(&command)).unwrap();
            s.push_str("r=$?\n[ $r = 0 ] || rc=1\n");
            say(&mut s, &format!("end {name} $r"));
        }
        writeln!(s, "echo $rc > $R{scratch}/exit-code\nsync").unwrap();
        say(&mut s, "exit $rc");
        s.push_str("poweroff -f\n");
        s
    }
}

/// A cpio archive in the "newc" format, which the kernel unpacks as the
/// initramfs. Entries are added parents first.
#[derive(Default)]
pub struct Cpio {
    data: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, 0o040755, 2, &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) {
        self.entry(path, 0o100000 | mode, 1, contents);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, &[]);
        self.data
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, contents: &[u8]) {
        self.next_inode += 1;
        let name = path.trim_start_matches('/');
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            contents.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            write!(HexInto(&mut self.data), "{field:08X}").expect("writing to a Vec");
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

struct HexInto<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for HexInto<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<Part> {
        vec![Part {
            name: "datapath".into(),
            cwd: "/w/tests".into(),
            env: vec![("HAVIP_EBPF_OBJECT".into(), "/w/target/obj".into())],
            argv: vec![
                "/w/target/release/deps/datapath-1".into(),
                "--test-threads=1".into(),
            ],
        }]
    }

    #[test]
    fn init_loads_modules_in_order_mounts_then_runs_each_part() {
        let modules = [
            "lib/modules/a.ko".to_string(),
            "lib/modules/b.ko".to_string(),
        ];
        let parts = parts();
        let script = Init {
            modules: &modules,
            scratch: "/w/target/kernel-test/run-1",
            parts: &parts,
        }
        .script();
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        let pos = |needle: &str| {
            script
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in\n{script}"))
        };
        assert!(pos("insmod /lib/modules/a.ko") < pos("insmod /lib/modules/b.ko"));
        assert!(pos("insmod /lib/modules/b.ko") < pos(" hostroot $R "));
        assert!(pos(" hostroot $R ") < pos("mount -t bpf bpf $R/sys/fs/bpf"));
        assert!(pos("mount -t tmpfs tmpfs $R/tmp") < pos("havip-kernel-test: ready"));
        assert!(pos("scratch $R/w/target/kernel-test/run-1") < pos("ready"));
        let run = "chroot $R /bin/sh -c 'cd /w/tests && exec env -i \
                   PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                   HOME=/root TMPDIR=/tmp HAVIP_EBPF_OBJECT=/w/target/obj \
                   /w/target/release/deps/datapath-1 --test-threads=1' 2>&1";
        assert!(pos("echo \"havip-kernel-test: begin datapath\"") < pos(run));
        assert!(pos(run) < pos("echo \"havip-kernel-test: end datapath $r\""));
        assert!(pos("end datapath") < pos("echo $rc > $R/w/target/kernel-test/run-1/exit-code"));
        assert!(pos("exit-code") < pos("echo \"havip-kernel-test: exit $rc\""));
        assert!(script.trim_end().ends_with("poweroff -f"));
    }

    #[test]
    fn a_setup_step_that_fails_reports_and_powers_off() {
        let script = Init {
            modules: &[],
            scratch: "/s",
            parts: &[],
        }
        .script();
        assert!(script.contains(
            "fail() { echo \"havip-kernel-test: error: $*\"; echo \"havip-kernel-test: exit 125\"; poweroff -f; }"
        ));
        assert!(script.contains("|| fail \"mount the host's root (9p hostroot)\""));
    }

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(sh_quote("--test-threads=1"), "--test-threads=1");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn cpio_newc_entries_are_padded_and_end_with_the_trailer() {
        let mut cpio = Cpio::default();
        cpio.dir("/bin");
        cpio.file("init", 0o755, b"#!x\n\n");
        let data = cpio.finish();
        // 110-byte header + "bin\0" = 114, padded to 116.
        assert_eq!(&data[..6], b"070701");
        assert_eq!(&data[6..14], b"00000001");
        assert_eq!(&data[14..22], b"000041ED");
        assert_eq!(&data[110..114], b"bin\0");
        let second = &data[116..];
        assert_eq!(&second[14..22], b"000081ED");
        assert_eq!(&second[54..62], b"00000005"); // file size
        assert_eq!(&second[94..102], b"00000005"); // name size, with its NUL
        assert_eq!(&second[110..115], b"init\0");
        // 115 padded to 116, then the contents, padded to 4.
        assert_eq!(&second[116..121], b"#!x\n\n");
        let trailer = &second[124..];
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert!(data.len().is_multiple_of(4));
    }
}
