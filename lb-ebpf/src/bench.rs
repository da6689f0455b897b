//! Benchmark harness (never attached to an interface). BPF_PROG_TEST_RUN repeats a program on
//! one buffer without resetting it, so a rewriting program would see its own output from the
//! second run on. The harness copies the pristine frame back, optionally stamps the run number
//! into it (a new flow every run), then tail-calls the program under test. Its own cost is
//! measured by tail-calling `lb_bench_null` instead, and subtracted.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_store_bytes,
    macros::xdp,
    programs::XdpContext,
};
pub use lb_common::BenchFrame;
use lb_common::BENCH_FRAME_MAX;

use crate::maps::{BENCH_FRAME, BENCH_TARGET};

#[xdp]
pub fn lb_bench_harness(ctx: XdpContext) -> u32 {
    let Some(frame) = BENCH_FRAME.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let frame = unsafe { &mut *frame };
    if frame.len == 0 || frame.len as usize > BENCH_FRAME_MAX {
        return xdp_action::XDP_ABORTED;
    }
    // Written so the verifier can see 1 <= len <= BENCH_FRAME_MAX (a plain range check gets
    // folded by LLVM into one wrapping compare it cannot follow).
    let len = (frame.len.wrapping_sub(1) & (BENCH_FRAME_MAX as u32 - 1)) + 1;
    let mut failed = unsafe {
        bpf_xdp_store_bytes(ctx.ctx, 0, frame.bytes.as_mut_ptr() as *mut _, len)
    } != 0;
    if frame.vary_offset != 0 {
        let mut stamp = (frame.iteration >> (frame.runs_per_flow_log2 & 31)).to_ne_bytes();
        failed |= unsafe {
            bpf_xdp_store_bytes(ctx.ctx, frame.vary_offset, stamp.as_mut_ptr() as *mut _, 4)
        } != 0;
    }
    if failed {
        return xdp_action::XDP_ABORTED;
    }
    frame.iteration = frame.iteration.wrapping_add(1);
    unsafe { BENCH_TARGET.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Stands in for the program under test when measuring the harness itself.
#[xdp]
pub fn lb_bench_null(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}
