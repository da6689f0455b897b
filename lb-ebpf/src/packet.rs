//! Bounds-checked access to the frame: the verifier accepts a pointer only after it was compared
//! against data_end.

use aya_ebpf::programs::XdpContext;

/// Pointer to a `T` at `offset` bytes into the frame, if the whole `T` lies inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Reads a 16-bit field as it is on the wire (no byte swap): the raw form keys use.
#[inline(always)]
pub fn raw16(bytes: [u8; 2]) -> u16 {
    u16::from_ne_bytes(bytes)
}

#[inline(always)]
pub fn raw32(bytes: [u8; 4]) -> u32 {
    u32::from_ne_bytes(bytes)
}
