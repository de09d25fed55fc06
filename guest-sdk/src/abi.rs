//! The guest side of the ABI that every module carries (docs/ABI.md): the
//! version export, the allocator export the host writes arguments through,
//! and packing (pointer, length) pairs into the u64 handlers return.

use alloc::vec::Vec;

use crate::response::Response;

pub use house_abi::ABI_VERSION;

#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn house_abi_version() -> i32 {
    ABI_VERSION
}

/// Where the host writes an argument block of up to `house_args_size`
/// bytes, without calling `house_alloc` first (docs/ABI.md, "Exports"). In
/// `.bss`: zero bytes in the module, and only the page a call's arguments
/// land on is ever written.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
static mut house_args: [u8; house_abi::ARGS_BUFFER_BYTES] = [0; house_abi::ARGS_BUFFER_BYTES];

/// The size of `house_args`, read by the host at load.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
static house_args_size: u32 = house_abi::ARGS_BUFFER_BYTES as u32;

/// Memory for the host to write `size` bytes of arguments into. Never freed:
/// the instance lives for one request.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn house_alloc(size: u32) -> u32 {
    let buf: Vec<u8> = Vec::with_capacity(size as usize);
    leak(buf).0
}

/// Leaks `buf` and returns its (pointer, length) in guest memory.
fn leak(buf: Vec<u8>) -> (u32, u32) {
    let buf = core::mem::ManuallyDrop::new(buf);
    (buf.as_ptr() as usize as u32, buf.len() as u32)
}

/// Packs a pointer and a length as the ABI returns them: length high.
pub fn pack((ptr, len): (u32, u32)) -> u64 {
    (u64::from(len) << 32) | u64::from(ptr)
}

/// A static text (a manifest) as a packed pointer/length.
pub fn text(s: &'static str) -> u64 {
    pack((s.as_ptr() as usize as u32, s.len() as u32))
}

/// Encodes a handler's response as the response block.
pub fn respond(r: Response) -> u64 {
    pack(leak(r.encode()))
}
