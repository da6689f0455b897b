//! `cargo xtask fuzz [FRAMES] [SEED]`: one round of the packet-path fuzzer (lb_tests::fuzz).
//! Defaults: 10,000,000 frames, a seed from the clock (printed, to replay a failure).
//! `cargo xtask fuzz replay HEX`: one frame, with the outcome the program counted.

use anyhow::Result;

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("replay") {
        let frame = std::env::args().nth(2).unwrap_or_default();
        println!("{}", lb_tests::fuzz::replay(&frame)?);
        return Ok(());
    }
    let frames: u64 = std::env::args().nth(1).map(|s| s.replace('_', "").parse()).transpose()?.unwrap_or(10_000_000);
    let seed: u64 = match std::env::args().nth(2) {
        Some(s) => s.parse()?,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64,
    };
    println!("fuzzing the packet path: {frames} frames, seed {seed}");
    let report = lb_tests::fuzz::run(frames, seed)?;
    println!("{report}");
    Ok(())
}
