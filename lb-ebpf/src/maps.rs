//! Every map of the program. Layouts live in lb-common; `dataplane` in lb-userspace is the only
//! userspace writer. Sizes come from lb_common::limits. Maps are declared with BTF types, so
//! `bpftool map dump` prints their keys and values by field.

/// BPF_F_MMAPABLE as the BTF map definitions take their flags.
const MMAPABLE: usize = BPF_F_MMAPABLE as usize;

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    btf_maps::{Array, DevMapHash, HashMap, PerCpuArray, ProgramArray},
    macros::btf_map,
};
use lb_common::{
    Backend, CachedRoute, EVENT_COUNT, Endpoint, FILTER_WORDS, MAX_BACKENDS,
    MAX_INTERFACES, MAX_NAT_ENDPOINTS, MAX_SERVICE_BACKENDS, MAX_SERVICES,
    MAX_TABLE_SIZE, NatReplyVips, NewSessionQuota, OUTCOME_COUNT, REPLY_ROUTE_SLOTS, DEFAULT_SESSION_BUCKETS, ServiceEntry, ServiceKey, SessionBucket, TABLE_BANKS,
    TrafficCounters,
};

/// A bitmap of FILTER_SLOTS bits in u64 words (SERVICE_FILTER, NAT_REPLY_FILTER).
pub type FilterBitmap = Array<u64, { FILTER_WORDS as usize }, 0>;

/// Bitmap of FILTER_SLOTS bits (u64 words): bit filter_slot(VIP, port, proto) is set for every
/// service, so most other packets are passed without a hash lookup. Written by userspace, which
/// sets a bit before the service's SERVICES entry and clears it after.
#[btf_map]
pub static SERVICE_FILTER: FilterBitmap = Array::new();

/// Bitmap like SERVICE_FILTER over the Endpoints of NAT backends (NAT_REPLIES keys), tested
/// with a packet's source, so only packets that may be NAT replies pay for the hash lookup.
/// Written by userspace, which sets a bit before the NAT_REPLIES entry and clears it after.
#[btf_map]
pub static NAT_REPLY_FILTER: FilterBitmap = Array::new();

/// ServiceKey (VIP, port, proto) -> ServiceEntry (id, flags). Written by userspace when a
/// service is added, removed or changes forwarding or hash key.
#[btf_map]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry, { MAX_SERVICES as usize }, 0> = HashMap::new();

/// Service id -> ServiceBanks word (ServiceBanks::to_word): the service's live table and
/// in-service banks and their sizes. Written by userspace with one 8-byte store through a memory
/// mapping (hence mmapable): that store flips the service to the banks it has just filled.
#[btf_map]
pub static SERVICE_BANKS: Array<u64, { MAX_SERVICES as usize }, MMAPABLE> = Array::new();

/// Server index tables: lookup_index(service, bank, slot) -> backend id.
/// 2 banks per service of MAX_TABLE_SIZE slots. Written by userspace into the inactive bank,
/// through a memory mapping (hence mmapable).
#[btf_map]
pub static LOOKUP: Array<u32, { (MAX_SERVICES * TABLE_BANKS * MAX_TABLE_SIZE) as usize }, MMAPABLE> = Array::new();

/// In-service lists: in_service_index(service, bank, i) -> backend id, for second choices.
/// Written by userspace into the inactive bank.
#[btf_map]
pub static IN_SERVICE: Array<u32, { (MAX_SERVICES * TABLE_BANKS * MAX_SERVICE_BACKENDS) as usize }, 0> = Array::new();

/// Backend id -> Backend (address, port, up/paced/full flags, generation). Written by userspace.
#[btf_map]
pub static BACKENDS: Array<Backend, { MAX_BACKENDS as usize }, 0> = Array::new();

/// Backend id -> NewSessionQuota: the pace of its `max_new_sessions_per_sec` (all zero: none;
/// BACKEND_F_PACED says whether to look). Written by userspace.
#[btf_map]
pub static NEW_SESSION_QUOTAS: Array<NewSessionQuota, { MAX_BACKENDS as usize }, 0> = Array::new();

/// Backend id -> the theoretical arrival time (ns) of its next new session (lb_common::quota):
/// one word every CPU moves with compare-and-swap. Written by this program only.
#[btf_map]
pub static NEW_SESSION_PACE: Array<u64, { MAX_BACKENDS as usize }, 0> = Array::new();

/// Bucket index (session_bucket of the flow's hash) -> SessionBucket: where each flow (client
/// -> VIP five-tuple) was sent. Written by this program only: a flow's first packet records it,
/// the client's FIN/RST marks it closing (see lb_common::session_table). Userspace maps it
/// (BPF_F_MMAPABLE) to read it (explain, status, drains) and clears it in tests. NAT replies
/// find their VIP by it. Sized by the loader from `[sessions] capacity` (buckets of 64 B; the
/// default 2^18 buckets are 16 MiB), which passes the matching SESSION_BUCKET_MASK.
#[btf_map]
pub static SESSIONS: Array<SessionBucket, { DEFAULT_SESSION_BUCKETS as usize }, MMAPABLE> = Array::new();

/// Endpoint of a NAT backend (address, port, protocol) -> NatReplyVips: the VIPs its replies
/// may have to come from. Written by userspace with the backends of NAT services. The session
/// record (client -> VIP) confirms a reply, so a NAT flow costs no second per-flow record.
#[btf_map]
pub static NAT_REPLIES: HashMap<Endpoint, NatReplyVips, { MAX_NAT_ENDPOINTS as usize }, 0> = HashMap::new();

/// Backend id -> per-CPU CachedRoute: bpf_fib_lookup's answer towards the backend, reused for
/// ROUTE_CACHE_NS. Written by this program only.
#[btf_map]
pub static ROUTES: PerCpuArray<CachedRoute, { MAX_BACKENDS as usize }, 0> = PerCpuArray::new();

/// reply_route_slot(client address) -> per-CPU CachedRoute towards that client, for NAT
/// replies (a direct-mapped cache: the entry says which client it is for). Written by this
/// program only.
#[btf_map]
pub static REPLY_ROUTES: PerCpuArray<CachedRoute, { REPLY_ROUTE_SLOTS as usize }, 0> = PerCpuArray::new();

/// Egress ifindex -> interface, for redirects to another interface (two-arm). Written by userspace
/// with every interface the instance is attached to.
#[btf_map]
pub static EGRESS: DevMapHash<{ MAX_INTERFACES as usize }, 0> = DevMapHash::new();

/// Service id -> per-CPU packets/bytes/new sessions. Written by this program.
#[btf_map]
pub static SERVICE_STATS: PerCpuArray<TrafficCounters, { MAX_SERVICES as usize }, 0> = PerCpuArray::new();

/// Backend id -> per-CPU packets/bytes/new sessions. Written by this program.
#[btf_map]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters, { MAX_BACKENDS as usize }, 0> = PerCpuArray::new();

/// Outcome -> per-CPU packet count (exactly one per packet). Written by this program.
#[btf_map]
pub static PACKET_OUTCOMES: PerCpuArray<u64, { OUTCOME_COUNT as usize }, 0> = PerCpuArray::new();

/// Event -> per-CPU count (second choices, re-chosen sessions). Written by this program.
#[btf_map]
pub static PACKET_EVENTS: PerCpuArray<u64, { EVENT_COUNT as usize }, 0> = PerCpuArray::new();

/// Benchmark only: index 0 -> the program under test, tail-called by the bench harness.
#[btf_map]
pub static BENCH_TARGET: ProgramArray<1, 0> = ProgramArray::new();

/// Benchmark only: index 0 -> the pristine frame the harness restores before every run.
#[btf_map]
pub static BENCH_FRAME: Array<crate::bench::BenchFrame, 1, 0> = Array::new();
