//! The README's first command ends in `cargo xtask demo`: run the demo binary as an operator
//! would and check that what it prints is what it claims (every primary backend used, the
//! stopped one not while it is down, used again once it is back; the overflow backend only
//! while the pool is open, and then with the primaries held to their quota; across a restart of
//! lb, held connections answer and the pool stays open), so the demo cannot rot unnoticed.

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
    let open = spread(&stdout, "60 new connections with the overflow pool open")?;
    let primaries = ["backend0", "backend1", "backend2"];
    for (name, s) in [("all up", &all_up), ("back", &back)] {
        let primaries_used = primaries.iter().all(|p| s.get(*p).is_some_and(|&n| n > 0));
        ensure!(s.len() == 4 && primaries_used && s.values().sum::<usize>() == 60, "{name}: {s:?}");
    }
    for (name, s) in [("all up", &all_up), ("one down", &one_down), ("back", &back)] {
        ensure!(s.get("backend3") == Some(&0), "{name}: the closed overflow pool took flows: {s:?}");
    }
    ensure!(one_down.get("backend0") == Some(&0) && one_down.values().sum::<usize>() == 60, "backend0 stopped: {one_down:?}");
    // Open: the primaries take at most their quota (5 a second each, plus a burst of one) in the
    // time 60 connections take; the overflow backend takes the rest.
    ensure!(open.get("backend3").is_some_and(|&n| n >= 30) && open.values().sum::<usize>() == 60, "pool open: {open:?}");
    ensure!(stdout.contains("overflow pool open (manual: demo)"), "the demo did not open the pool:\n{stdout}");
    // The restart: every held connection answered while no lb ran and after; the new lb
    // adopted the data plane and the open pool, which still takes what the quotas leave.
    ensure!(stdout.contains("10 of 10 held connections answered after the restart"), "held connections across the restart:\n{stdout}");
    ensure!(stdout.contains("the overflow pool after the restart: \"open\""), "the pool after the restart:\n{stdout}");
    let restarted = spread(&stdout, "60 new connections after the restart")?;
    ensure!(restarted.get("backend3").is_some_and(|&n| n >= 30) && restarted.values().sum::<usize>() == 60, "after the restart: {restarted:?}");
    ensure!(stdout.contains("lb detached (XDP removed"), "the demo did not detach lb cleanly:\n{stdout}");
    Ok(())
}
