//! Atomic read-modify-write on map memory, shared by every CPU.

/// Stores `new` at `ptr` if it holds `old`, atomically on every CPU (BPF_ATOMIC | BPF_CMPXCHG);
/// true if it did. The BPF target offers Rust no atomic read-modify-write, hence the assembly.
///
/// # Safety
/// `ptr` must point to an 8-byte aligned word of a map value.
#[inline(always)]
pub unsafe fn compare_and_swap(ptr: *mut u64, old: u64, new: u64) -> bool {
    let mut seen = old;
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({ptr} + 0, r0, {new})",
            ptr = in(reg) ptr,
            new = in(reg) new,
            inout("r0") seen,
        );
    }
    seen == old
}
