//! The port table: one entry per VM port this host attaches to.

/// Port security is enforced on this port (the default).
pub const PORT_SECURITY: u32 = 1;

/// A VM port, keyed by the ifindex of its hypervisor-side interface.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Port {
    /// Stable port id (the controller's, or the config file's).
    pub port_id: u32,
    /// Network id the port lives in.
    pub network: u32,
    /// The only source MAC the VM may use when port security is on.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// [`PORT_SECURITY`] or 0.
    pub flags: u32,
    /// The port's IPv6 link-local address, allowed as a source.
    pub link_local: [u8; 16],
}

impl Port {
    #[inline(always)]
    pub fn security(&self) -> bool {
        self.flags & PORT_SECURITY != 0
    }
}
