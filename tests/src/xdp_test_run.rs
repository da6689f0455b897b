//! Running the XDP program on one frame with BPF_PROG_TEST_RUN (inside a `FibBed`, so that
//! bpf_fib_lookup has routes and neighbours), and the verdict numbers it answers with.

use anyhow::{Context, Result, bail};
use aya::programs::{TestRun, TestRunOptions, TestRunResult, Xdp};
use lb::balancer::Balancer;
use lb_common::Outcome;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub fn verdict_name(v: u32) -> &'static str {
    match v {
        XDP_ABORTED => "ABORTED",
        XDP_DROP => "DROP",
        XDP_PASS => "PASS",
        XDP_TX => "TX",
        XDP_REDIRECT => "REDIRECT",
        _ => "?",
    }
}

/// The verdict an outcome implies (lb_common::Outcome::verdict, as a number).
pub fn verdict_of(outcome: Outcome) -> u32 {
    match outcome.verdict() {
        "pass" => XDP_PASS,
        "drop" => XDP_DROP,
        "tx" => XDP_TX,
        _ => XDP_REDIRECT,
    }
}

/// Runs `program` `repeat` times on `frame` as if it arrived on `ingress_ifindex`; the frame
/// the program leaves is written to the start of `out` (`data_size_out` bytes of it).
pub fn run_xdp(program: &Xdp, ingress_ifindex: u32, frame: &[u8], out: &mut [u8], repeat: u32) -> Result<TestRunResult> {
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    // The kernel wants data_end == the input's size (data = 0: no metadata in front); with
    // zero it runs the program on an empty frame.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(out),
        ctx_in: Some(&ctx),
        repeat,
        ..Default::default()
    };
    program.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN on a {}-byte frame", frame.len()))
}

/// What came back from one BPF_PROG_TEST_RUN.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub verdict: u32,
    /// The frame as the program left it.
    pub output: Vec<u8>,
}

/// Runs the balancer's XDP program once on `frame` as if it arrived on `ingress_ifindex`.
pub fn test_run(lb: &mut Balancer, ingress_ifindex: u32, frame: &[u8]) -> Result<RunResult> {
    let mut out = vec![0u8; 512];
    let result = run_xdp(lb.dataplane_mut().program(), ingress_ifindex, frame, &mut out, 1)?;
    let size = result.data_size_out as usize;
    if size > out.len() {
        bail!("test run returned {size} bytes of data into a {}-byte buffer", out.len());
    }
    out.truncate(size);
    Ok(RunResult { verdict: result.return_value, output: out })
}
