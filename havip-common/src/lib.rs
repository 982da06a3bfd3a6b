//! Types shared by the havip datapath (`havip-ebpf`) and its agent
//! (`havip-agent`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so the eBPF side and
//! userspace agree byte for byte and `bpftool map dump` prints field names
//! from BTF. With the `user` feature each map type implements `aya::Pod`.
#![no_std]

pub mod addr;
pub mod counters;
pub mod event;
pub mod gateway;
pub mod maps;
pub mod owner;
pub mod port;
pub mod vip;
pub mod vmac;

pub use addr::NetworkAddr;
pub use counters::{DropReason, Stat, VipCounters};
pub use event::{Event, EventKind};
pub use owner::{Owner, BPF_F_LOCK};
pub use port::Port;
pub use vip::{Vip, VipHint};
pub use vmac::VirtualMac;

/// Implements `aya::Pod` for the userspace side of a shared type.
#[cfg(feature = "user")]
macro_rules! impl_pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: `#[repr(C)]`, `Copy`, no implicit padding, and every bit
            // pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )*
    };
}

#[cfg(feature = "user")]
impl_pod!(
    NetworkAddr,
    Port,
    Vip,
    VipHint,
    Owner,
    Event,
    VipCounters,
    VirtualMac,
    gateway::GatewayConf,
    gateway::GatewayOwner
);
