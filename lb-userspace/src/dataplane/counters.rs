//! Reads the per-CPU counters and sums them over CPUs.

use aya::maps::{MapData, PerCpuArray};
use lb_common::{Event, Outcome, TrafficCounters};
use serde::{Deserialize, Serialize};

use super::Dataplane;

/// Packets, bytes and new sessions, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_sessions: u64,
}

fn traffic(map: &PerCpuArray<MapData, TrafficCounters>, index: u32) -> Counters {
    let mut sum = Counters::default();
    if let Ok(per_cpu) = map.get(&index, 0) {
        for c in per_cpu.iter() {
            sum.packets += c.packets;
            sum.bytes += c.bytes;
            sum.new_sessions += c.new_sessions;
        }
    }
    sum
}

fn count(map: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    map.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

impl Dataplane {
    pub fn service_counters(&self, service_id: u32) -> Counters {
        traffic(&self.service_stats, service_id)
    }

    pub fn backend_counters(&self, backend_id: u32) -> Counters {
        traffic(&self.backend_stats, backend_id)
    }

    /// Packets per outcome (verdict and reason), every outcome listed.
    pub fn outcomes(&self) -> Vec<(Outcome, u64)> {
        Outcome::ALL.iter().map(|&o| (o, count(&self.outcomes, o as u32))).collect()
    }

    pub fn outcome(&self, outcome: Outcome) -> u64 {
        count(&self.outcomes, outcome as u32)
    }

    pub fn events(&self) -> Vec<(Event, u64)> {
        Event::ALL.iter().map(|&e| (e, count(&self.events, e as u32))).collect()
    }

    pub fn event(&self, event: Event) -> u64 {
        count(&self.events, event as u32)
    }
}
