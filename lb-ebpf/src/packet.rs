//! Bounds-checked access to the frame: the verifier accepts a pointer only after it was compared
//! against data_end.

use aya_ebpf::{helpers::generated::bpf_jiffies64, programs::XdpContext};

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

/// Loads the wire-order word at `offset` bytes past `base` with one instruction. Header fields
/// are not word-aligned in the frame (the IP header starts at byte 14), but x86-64 and arm64
/// load unaligned words natively and the verifier allows it there, while a byte-wise
/// `read_unaligned` costs four loads and three shifts per field.
///
/// # Safety
/// `base + offset .. + 4` must lie inside a range already checked against data_end.
#[inline(always)]
pub unsafe fn load32(base: *const u8, offset: usize) -> u32 {
    unsafe { (base.add(offset) as *const u32).read() }
}

/// Like `load32`, for a 16-bit field.
///
/// # Safety
/// As `load32`, for 2 bytes.
#[inline(always)]
pub unsafe fn load16(base: *const u8, offset: usize) -> u16 {
    unsafe { (base.add(offset) as *const u16).read() }
}

/// Stores a wire-order word at `offset` bytes past `base` with one instruction (see `load32`).
///
/// # Safety
/// `base + offset .. + 4` must lie inside a range already checked against data_end.
#[inline(always)]
pub unsafe fn store32(base: *mut u8, offset: usize, value: u32) {
    unsafe { (base.add(offset) as *mut u32).write(value) }
}

/// Like `store32`, for a 16-bit field.
///
/// # Safety
/// As `store32`, for 2 bytes.
#[inline(always)]
pub unsafe fn store16(base: *mut u8, offset: usize, value: u16) {
    unsafe { (base.add(offset) as *mut u16).write(value) }
}

/// Nanoseconds per kernel tick (1e9 / CONFIG_HZ). A read-only global: the loader (userspace
/// `dataplane::clock`) sets it from the resolution of CLOCK_MONOTONIC_COARSE before loading;
/// the default (HZ=250) is never meant to be used.
#[unsafe(no_mangle)]
static NS_PER_JIFFY: u64 = 4_000_000;

/// The packet clock in nanoseconds, with the resolution of a kernel tick (1-10 ms): enough for
/// the route caches (ROUTE_CACHE_NS) and the session table's ~1 s clock. Read once per service
/// packet by the pipeline. The verifier inlines bpf_jiffies64 into one load, while
/// bpf_ktime_get_coarse_ns stays a helper call, which cost ~8 ns a packet here (the call's
/// return goes through the kernel's return-thunk mitigation).
#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_jiffies64() * core::ptr::read_volatile(&NS_PER_JIFFY) }
}
