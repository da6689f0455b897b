//! Every map of the program. Layouts live in lb-common; `dataplane` in lb-userspace is the only
//! userspace writer. Sizes come from lb_common::limits.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray},
};
use lb_common::{
    Backend, FlowKey, MAX_BACKENDS, MAX_INTERFACES, MAX_NAT_REVERSE, MAX_SERVICE_BACKENDS,
    MAX_SERVICES, MAX_SESSIONS, MAX_TABLE_SIZE, NatReverse, EVENT_COUNT, OUTCOME_COUNT,
    ServiceInfo, ServiceKey, Session, TABLE_BANKS, TrafficCounters,
};

/// ServiceKey (VIP, port, proto) -> ServiceInfo. Written by userspace; replaced whole to flip banks.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceInfo> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Server index tables: lookup_index(service, bank, slot) -> backend id.
/// 2 banks per service of MAX_TABLE_SIZE slots. Written by userspace into the inactive bank.
#[map]
pub static LOOKUP: Array<u32> = Array::with_max_entries(MAX_SERVICES * TABLE_BANKS * MAX_TABLE_SIZE, 0);

/// In-service lists: in_service_index(service, bank, i) -> backend id, for second choices.
/// Written by userspace into the inactive bank.
#[map]
pub static IN_SERVICE: Array<u32> =
    Array::with_max_entries(MAX_SERVICES * TABLE_BANKS * MAX_SERVICE_BACKENDS, 0);

/// Backend id -> Backend (address, port, up flag, generation). Written by userspace.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Flow (client -> VIP five-tuple) -> Session (backend id + generation). Written by this program
/// on a flow's first packet; userspace only reads (explain, status) and clears.
#[map]
pub static SESSIONS: LruHashMap<FlowKey, Session> = LruHashMap::with_max_entries(MAX_SESSIONS, 0);

/// Reply five-tuple (backend -> client) -> NatReverse (VIP:port to restore). Written by this
/// program when it records a NAT session.
#[map]
pub static NAT_REVERSE: LruHashMap<FlowKey, NatReverse> =
    LruHashMap::with_max_entries(MAX_NAT_REVERSE, 0);

/// Egress ifindex -> interface, for redirects to another interface (two-arm). Written by userspace
/// with every interface the instance is attached to.
#[map]
pub static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

/// Service id -> per-CPU packets/bytes/new sessions. Written by this program.
#[map]
pub static SERVICE_STATS: PerCpuArray<TrafficCounters> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// Backend id -> per-CPU packets/bytes/new sessions. Written by this program.
#[map]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Outcome -> per-CPU packet count (exactly one per packet). Written by this program.
#[map]
pub static PACKET_OUTCOMES: PerCpuArray<u64> = PerCpuArray::with_max_entries(OUTCOME_COUNT, 0);

/// Event -> per-CPU count (second choices, re-chosen sessions). Written by this program.
#[map]
pub static PACKET_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_COUNT, 0);

/// Benchmark only: index 0 -> the program under test, tail-called by the bench harness.
#[map]
pub static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Benchmark only: index 0 -> the pristine frame the harness restores before every run.
#[map]
pub static BENCH_FRAME: Array<crate::bench::BenchFrame> = Array::with_max_entries(1, 0);
