//! Link options for the datapath object.
//!
//! bpf-linker asks LLVM by default to expand only `memcpy` itself
//! (`--bpf-expand-memcpy-in-order`), which leaves every `memset` (zeroing
//! a `NetworkAddr`'s padding, a fresh `VipCounters`) as a call to a
//! byte-at-a-time loop the verifier walks byte by byte, on every path that
//! reaches it. Without it, LLVM expands these into plain stores.
fn main() {
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
