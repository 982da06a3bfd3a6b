//! XDP programs of two instructions, `r0 = ACTION; exit`, loaded with a raw
//! bpf(BPF_PROG_LOAD): the empty program the datapath's cost is measured
//! against (`XDP_PASS`), and the drop sink that ends the benchmark traffic
//! at a receiving VM (`XDP_DROP`).
//!
//! The program is pinned for a moment in a directory of its own on bpffs so
//! that aya can open it ([`Xdp::from_pin`]): test runs and attachments then
//! go through the same aya calls as the datapath's.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use aya::programs::{Xdp, XdpMode};
use aya_obj::programs::XdpAttachType;

use crate::cleanup::{self, Resource, Token};
use crate::netns::Netns;

/// Numbers the pin directories of this process.
static NEXT_PIN: AtomicU32 = AtomicU32::new(0);

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// BPF_ALU64 | BPF_MOV | BPF_K: `dst = imm`.
const MOV64_IMM: u8 = 0xb7;
/// BPF_JMP | BPF_EXIT.
const EXIT: u8 = 0x95;

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to the expected
/// attach type; the kernel takes the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_OBJ_PIN.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// A loaded `r0 = action; exit` XDP program, pinned until dropped, from
/// which any number of aya [`Xdp`] handles can be opened.
pub struct ConstantXdp {
    pin: PathBuf,
    _fd: OwnedFd,
    dir: Option<Token>,
}

impl ConstantXdp {
    /// Loads the program that returns `action` to every frame, named `name`
    /// (at most 15 bytes, as the kernel wants).
    pub fn load(name: &str, action: u32) -> Result<Self> {
        crate::agent::ensure_bpffs()?;
        let insns: [[u8; 8]; 2] = [instruction(MOV64_IMM, action as i32), instruction(EXIT, 0)];
        let license = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..ProgLoadAttr::default()
        };
        for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        let fd = bpf(BPF_PROG_LOAD, &mut attr).with_context(|| {
            format!("BPF_PROG_LOAD of the {name} program (r0 = {action}; exit)")
        })?;
        // SAFETY: BPF_PROG_LOAD returned a new fd, which we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };

        // A directory of this load's own: programs of the same name may be
        // loaded more than once (in labs of different sections).
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/havip-bench-{}-{}-{name}",
            std::process::id(),
            NEXT_PIN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let token = cleanup::register(Resource::Dir(dir.clone()));
        let pin = dir.join("prog");
        let path = CString::new(pin.as_os_str().as_bytes())?;
        let mut attr = ObjPinAttr {
            pathname: path.as_ptr() as u64,
            bpf_fd: fd.as_raw_fd() as u32,
            ..ObjPinAttr::default()
        };
        bpf(BPF_OBJ_PIN, &mut attr).with_context(|| format!("pin at {}", pin.display()))?;
        Ok(Self {
            pin,
            _fd: fd,
            dir: Some(token),
        })
    }

    /// A new aya handle on the program (its own fd).
    pub fn open(&self) -> Result<Xdp> {
        open_pinned(&self.pin)
    }

    /// Attaches the program, in the driver (native XDP), to `dev` inside
    /// `ns`. It stays attached while the returned handle lives.
    pub fn attach_in(&self, ns: &Netns, dev: &str) -> Result<Xdp> {
        self.attach_in_mode(ns, dev, XdpMode::Driver)
    }

    /// [`ConstantXdp::attach_in`] in `mode` (driver or generic).
    pub fn attach_in_mode(&self, ns: &Netns, dev: &str, mode: XdpMode) -> Result<Xdp> {
        let pin = self.pin.clone();
        let dev = dev.to_owned();
        let what = format!("attach {} to {dev} in {}", self.pin.display(), ns.name());
        ns.spawn_thread("attach-xdp", move || -> Result<Xdp> {
            let mut prog = open_pinned(&pin)?;
            // The interface index is looked up in this thread's namespace,
            // and the link is created there.
            prog.attach(&dev, mode)?;
            Ok(prog)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("{what}: thread panicked"))??
        .with_context(|| what.clone())
    }
}

impl Drop for ConstantXdp {
    fn drop(&mut self) {
        if let Some(t) = self.dir.take() {
            cleanup::release(t);
        }
    }
}

fn open_pinned(pin: &Path) -> Result<Xdp> {
    Xdp::from_pin(pin, XdpAttachType::Interface)
        .with_context(|| format!("open the program pinned at {}", pin.display()))
}

/// One eBPF instruction with r0 as destination: opcode, registers, offset 0,
/// immediate.
fn instruction(opcode: u8, imm: i32) -> [u8; 8] {
    let mut insn = [0u8; 8];
    insn[0] = opcode;
    insn[4..].copy_from_slice(&imm.to_le_bytes());
    insn
}

/// bpf(2) with an attribute struct; returns what the call returns (a new
/// fd for BPF_PROG_LOAD, 0 for BPF_OBJ_PIN).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly laid out bpf_attr prefix of the
    // size we pass; the pointers inside it outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}
