//! How long building one service's server index table takes, per scheduler and backend count,
//! beside the Maglev paper's figure (NSDI'16: 1.8 ms for 65537 slots and 1000 backends).
//! `lb-bench` prints it; only the pure `lb::hashing::build_table` is timed.

use std::time::{Duration, Instant};

use lb::hashing::{DEFAULT_RING_POINTS, Scheduler, TableBackend, build_table};

/// Slots of every benchmarked table: the default and largest size, the paper's M.
pub const TABLE_SIZE: u32 = 65537;
pub const BACKEND_COUNTS: [usize; 3] = [10, 100, 1000];
/// Builds timed per row; the median is reported, so one slow run (a page fault, another
/// process on the core) does not move it.
pub const RUNS: usize = 20;
const PAPER_BACKENDS: usize = 1000;
const PAPER_BUILD: Duration = Duration::from_micros(1800);

/// One scheduler at one backend count.
#[derive(Debug, Clone)]
pub struct TableBenchRow {
    pub scheduler: &'static str,
    pub backends: usize,
    pub table_size: u32,
    pub runs: usize,
    pub median: Duration,
    pub fastest: Duration,
}

/// Times `RUNS` builds of every scheduler at every count of `BACKEND_COUNTS`.
pub fn run() -> Vec<TableBenchRow> {
    run_with(RUNS)
}

/// As `run`, with `runs` builds per row (at least one).
pub fn run_with(runs: usize) -> Vec<TableBenchRow> {
    let schedulers = [
        ("maglev", Scheduler::Maglev),
        (
            "ring",
            Scheduler::Ring {
                points_per_weight: DEFAULT_RING_POINTS,
            },
        ),
    ];
    schedulers
        .iter()
        .flat_map(|(name, scheduler)| {
            BACKEND_COUNTS
                .iter()
                .map(move |&n| measure(name, scheduler, n, runs.max(1)))
        })
        .collect()
}

fn measure(name: &'static str, scheduler: &Scheduler, n: usize, runs: usize) -> TableBenchRow {
    let backends: Vec<TableBackend> = (0..n)
        .map(|i| TableBackend {
            id: i as u32,
            weight: 1,
            name: format!("10.0.{}.{}:80", i / 256, i % 256),
        })
        .collect();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(build_table(scheduler, &backends, TABLE_SIZE));
            start.elapsed()
        })
        .collect();
    times.sort();
    TableBenchRow {
        scheduler: name,
        backends: n,
        table_size: TABLE_SIZE,
        runs,
        median: times[runs / 2],
        fastest: times[0],
    }
}

/// Prints `rows` as a table, the paper's figure beside the row it compares with.
pub fn print(rows: &[TableBenchRow]) {
    let runs = rows.first().map_or(RUNS, |r| r.runs);
    println!(
        "table build: median and fastest of {runs} runs; ring at {DEFAULT_RING_POINTS} points per weight"
    );
    println!(
        "{:<8} {:>8} {:>7} {:>11} {:>11} {:>14}",
        "", "backends", "slots", "median ms", "fastest ms", "Maglev paper"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for row in rows {
        let compares =
            (row.scheduler, row.backends, row.table_size) == ("maglev", PAPER_BACKENDS, TABLE_SIZE);
        let paper = if compares {
            format!("{:.3}", ms(PAPER_BUILD))
        } else {
            String::new()
        };
        println!(
            "{:<8} {:>8} {:>7} {:>11.3} {:>11.3} {:>14}",
            row.scheduler,
            row.backends,
            row.table_size,
            ms(row.median),
            ms(row.fastest),
            paper
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_scheduler_and_count() {
        // Times are never asserted: only that every combination was measured.
        let rows = run_with(1);
        let shape: Vec<(&str, usize)> = rows.iter().map(|r| (r.scheduler, r.backends)).collect();
        assert_eq!(
            shape,
            [
                ("maglev", 10),
                ("maglev", 100),
                ("maglev", 1000),
                ("ring", 10),
                ("ring", 100),
                ("ring", 1000)
            ]
        );
        assert!(
            rows.iter()
                .all(|r| r.table_size == TABLE_SIZE && r.median >= r.fastest)
        );
        print(&rows);
    }
}
