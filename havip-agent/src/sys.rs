//! The few bpf(2) commands aya 0.14 does not expose: pinned objects and
//! links ([`obj_get`], [`link_detach`], [`link_info`]) and map elements as
//! bytes ([`MapFd`]), for maps whose shape is known only at run time (an
//! older datapath's, being migrated).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `BPF_F_LOCK`: a map element read or written under its `bpf_spin_lock`.
pub const F_LOCK: u64 = 4;

/// `union bpf_attr`, large enough for the commands used here.
#[repr(C, align(8))]
struct Attr([u32; 32]);

impl Attr {
    fn new() -> Self {
        Self([0; 32])
    }

    /// Puts a pointer (or any u64) at the 8-aligned word `at` (in u32s).
    fn set_u64(&mut self, at: usize, v: u64) {
        self.0[at] = v as u32;
        self.0[at + 1] = (v >> 32) as u32;
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded bpf_attr of the given size
    // for `cmd`; the kernel reads (and writes through the pointers it
    // holds) only within the bounds the caller sized them for.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens the object pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = Attr::new();
    attr.set_u64(0, c.as_ptr() as u64);
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn link_detach(fd: &OwnedFd) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.0[0] = fd.as_raw_fd() as u32;
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// What the kernel says about a pinned link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// `enum bpf_link_type`.
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// The interface it is attached to (0: detached, its interface gone).
    pub ifindex: u32,
}

pub fn link_info(fd: &OwnedFd) -> io::Result<LinkInfo> {
    // struct bpf_link_info: type, id, prog_id, then a union (8-aligned)
    // whose xdp and tcx members start with the ifindex.
    let mut info = [0u32; 32];
    let mut attr = Attr::new();
    attr.0[0] = fd.as_raw_fd() as u32;
    attr.0[1] = std::mem::size_of_val(&info) as u32;
    attr.set_u64(2, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LinkInfo {
        link_type: info[0],
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    })
}

/// A map opened by its pin, its elements read and written as bytes. The
/// caller sizes the buffers: the key size, and the value size (for a
/// per-CPU map, the value rounded up to 8 bytes, once per possible CPU).
pub struct MapFd(OwnedFd);

impl MapFd {
    pub fn open(path: &Path) -> io::Result<Self> {
        obj_get(path).map(Self)
    }

    /// `struct { u32 map_fd; u64 key; u64 value_or_next_key; u64 flags; }`
    fn elem_attr(&self, key: *const u8, value: *const u8, flags: u64) -> Attr {
        let mut attr = Attr::new();
        attr.0[0] = self.0.as_raw_fd() as u32;
        attr.set_u64(2, key as u64);
        attr.set_u64(4, value as u64);
        attr.set_u64(6, flags);
        attr
    }

    /// The value at `key` into `value`; `false` when there is none.
    pub fn lookup(&self, key: &[u8], value: &mut [u8], flags: u64) -> io::Result<bool> {
        let mut attr = self.elem_attr(key.as_ptr(), value.as_mut_ptr(), flags);
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `value` at `key` (`BPF_ANY`, or'ed with `flags`).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
        let mut attr = self.elem_attr(key.as_ptr(), value.as_ptr(), flags);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }

    /// Every key of a hash map, in the kernel's order.
    pub fn keys(&self, key_size: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; key_size];
            let prev = keys.last().map_or(std::ptr::null(), |k| k.as_ptr());
            let mut attr = self.elem_attr(prev, next.as_mut_ptr(), 0);
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(_) => keys.push(next),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(e) => return Err(e),
            }
        }
    }
}
