//! The README's first command ends in `cargo xtask demo`: run the demo binary as an operator
//! would and check that what it prints is what it claims (every backend used, the stopped one
//! not while it is down, used again once it is back), so the demo cannot rot unnoticed.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};

/// The spread printed under the heading that starts with `step`: backend label -> connections.
fn spread(out: &str, step: &str) -> Result<BTreeMap<String, usize>> {
    let section = out.split("\n\n").map(str::trim_start).find(|s| s.starts_with(step)).with_context(|| format!("no {step:?} in:\n{out}"))?;
    section
        .lines()
        .skip(1)
        .map(|l| {
            let mut words = l.split_whitespace();
            let label = words.next().context("empty line")?.to_string();
            let count = words.next().context("no count")?;
            Ok((label, count.parse().with_context(|| format!("count {count:?} in {l:?}"))?))
        })
        .collect()
}

#[test]
fn the_demo_spreads_connections_and_routes_around_a_stopped_backend() -> Result<()> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lb-demo")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "the demo failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let all_up = spread(&stdout, "60 new connections to")?;
    let one_down = spread(&stdout, "60 new connections after its health checks failed")?;
    let back = spread(&stdout, "60 new connections after it came back")?;
    for (name, s) in [("all up", &all_up), ("back", &back)] {
        ensure!(s.len() == 3 && s.values().all(|&n| n > 0) && s.values().sum::<usize>() == 60, "{name}: {s:?}");
    }
    ensure!(one_down.get("backend0") == Some(&0) && one_down.values().sum::<usize>() == 60, "backend0 stopped: {one_down:?}");
    ensure!(stdout.contains("lb stopped (XDP detached)"), "the demo did not stop lb cleanly:\n{stdout}");
    Ok(())
}
