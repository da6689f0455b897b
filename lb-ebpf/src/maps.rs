//! Every map of the program. Layouts live in lb-common; `dataplane` in lb-userspace is the only
//! userspace writer. Sizes come from lb_common::limits.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray, ProgramArray},
};
use lb_common::{
    Backend, CachedRoute, EVENT_COUNT, Endpoint, FILTER_WORDS, MAX_BACKENDS,
    MAX_INTERFACES, MAX_NAT_ENDPOINTS, MAX_SERVICE_BACKENDS, MAX_SERVICES,
    MAX_TABLE_SIZE, NatReplyVips, NewSessionQuota, OUTCOME_COUNT, REPLY_ROUTE_SLOTS, DEFAULT_SESSION_BUCKETS, ServiceEntry, ServiceKey, SessionBucket, TABLE_BANKS,
    TrafficCounters,
};

/// Bitmap of FILTER_SLOTS bits (u64 words): bit filter_slot(VIP, port, proto) is set for every
/// service, so most other packets are passed without a hash lookup. Written by userspace, which
/// sets a bit before the service's SERVICES entry and clears it after.
#[map]
pub static SERVICE_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// Bitmap like SERVICE_FILTER over the Endpoints of NAT backends (NAT_REPLIES keys), tested
/// with a packet's source, so only packets that may be NAT replies pay for the hash lookup.
/// Written by userspace, which sets a bit before the NAT_REPLIES entry and clears it after.
#[map]
pub static NAT_REPLY_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// ServiceKey (VIP, port, proto) -> ServiceEntry (id, flags). Written by userspace when a
/// service is added, removed or changes forwarding or hash key.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Service id -> ServiceBanks word (ServiceBanks::to_word): the service's live table and
/// in-service banks and their sizes. Written by userspace with one 8-byte store through a memory
/// mapping (hence mmapable): that store flips the service to the banks it has just filled.
#[map]
pub static SERVICE_BANKS: Array<u64> = Array::with_max_entries(MAX_SERVICES, BPF_F_MMAPABLE);

/// Server index tables: lookup_index(service, bank, slot) -> backend id.
/// 2 banks per service of MAX_TABLE_SIZE slots. Written by userspace into the inactive bank,
/// through a memory mapping (hence mmapable).
#[map]
pub static LOOKUP: Array<u32> =
    Array::with_max_entries(MAX_SERVICES * TABLE_BANKS * MAX_TABLE_SIZE, BPF_F_MMAPABLE);

/// In-service lists: in_service_index(service, bank, i) -> backend id, for second choices.
/// Written by userspace into the inactive bank.
#[map]
pub static IN_SERVICE: Array<u32> =
    Array::with_max_entries(MAX_SERVICES * TABLE_BANKS * MAX_SERVICE_BACKENDS, 0);

/// Backend id -> Backend (address, port, up/paced/full flags, generation). Written by userspace.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Backend id -> NewSessionQuota: the pace of its `max_new_sessions_per_sec` (all zero: none;
/// BACKEND_F_PACED says whether to look). Written by userspace.
#[map]
pub static NEW_SESSION_QUOTAS: Array<NewSessionQuota> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Backend id -> the theoretical arrival time (ns) of its next new session (lb_common::quota):
/// one word every CPU moves with compare-and-swap. Written by this program only.
#[map]
pub static NEW_SESSION_PACE: Array<u64> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Bucket index (session_bucket of the flow's hash) -> SessionBucket: where each flow (client
/// -> VIP five-tuple) was sent. Written by this program only: a flow's first packet records it,
/// the client's FIN/RST marks it closing (see lb_common::session_table). Userspace maps it
/// (BPF_F_MMAPABLE) to read it (explain, status, drains) and clears it in tests. NAT replies
/// find their VIP by it. Sized by the loader from `[sessions] capacity` (buckets of 256 B; the
/// default 2^18 buckets are 64 MiB), which passes the matching SESSION_BUCKET_MASK.
#[map]
pub static SESSIONS: Array<SessionBucket> = Array::with_max_entries(DEFAULT_SESSION_BUCKETS, BPF_F_MMAPABLE);

/// Endpoint of a NAT backend (address, port, protocol) -> NatReplyVips: the VIPs its replies
/// may have to come from. Written by userspace with the backends of NAT services. The session
/// record (client -> VIP) confirms a reply, so a NAT flow costs no second per-flow record.
#[map]
pub static NAT_REPLIES: HashMap<Endpoint, NatReplyVips> =
    HashMap::with_max_entries(MAX_NAT_ENDPOINTS, 0);

/// Backend id -> per-CPU CachedRoute: bpf_fib_lookup's answer towards the backend, reused for
/// ROUTE_CACHE_NS. Written by this program only.
#[map]
pub static ROUTES: PerCpuArray<CachedRoute> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// reply_route_slot(client address) -> per-CPU CachedRoute towards that client, for NAT
/// replies (a direct-mapped cache: the entry says which client it is for). Written by this
/// program only.
#[map]
pub static REPLY_ROUTES: PerCpuArray<CachedRoute> = PerCpuArray::with_max_entries(REPLY_ROUTE_SLOTS, 0);

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
