//! Sizes of every map. Changing one changes the kernel's memory use: the figures are in comments.

/// Services (VIP, port, protocol) one instance can serve. Also the number of table pairs.
pub const MAX_SERVICES: u32 = 64;
// Session records carry the service id in 16 bits.
const _: () = assert!(MAX_SERVICES <= 1 << 16);
/// Backends over all services; a backend id indexes BACKENDS and BACKEND_STATS.
pub const MAX_BACKENDS: u32 = 4096;
/// Largest server index table (slots) a service may use; its table size M is at most this.
/// Two banks per service, in 8-byte array elements: 64 * 2 * 65537 * 8 B = 67 MiB of LOOKUP.
pub const MAX_TABLE_SIZE: u32 = 65537;
/// Default table size M (a prime, so Maglev permutations cover every slot).
pub const DEFAULT_TABLE_SIZE: u32 = 65537;
/// Backends one service may hold in its in-service list.
pub const MAX_SERVICE_BACKENDS: u32 = 1024;
/// Session forwarding records (SESSIONS) when the config sets no `[sessions] capacity`:
/// 2^18 buckets of 4 slots of 16 B, 16 MiB (see session_table).
pub const DEFAULT_SESSION_CAPACITY: u32 = 1 << 20;
/// Smallest and largest `[sessions] capacity` (powers of two): 16 KiB and 256 MiB of SESSIONS.
pub const MIN_SESSION_CAPACITY: u32 = 1 << 10;
pub const MAX_SESSION_CAPACITY: u32 = 1 << 24;
/// Backend endpoints of NAT services (NAT_REPLIES keys): one per backend at most.
pub const MAX_NAT_ENDPOINTS: u32 = MAX_BACKENDS;
/// Interfaces the program may redirect to (two-arm set-ups), indexed by ifindex.
pub const MAX_INTERFACES: u32 = 256;

/// Slots of the per-CPU cache of routes towards clients (REPLY_ROUTES), for NAT replies: a
/// client address owns slot `reply_route_slot(addr)`; two clients sharing one take turns.
pub const REPLY_ROUTE_SLOTS: u32 = 4096;

/// The REPLY_ROUTES slot of a client address.
#[inline(always)]
pub fn reply_route_slot(addr: &[u32; 4]) -> u32 {
    crate::filter::filter_slot(addr, 0, 0) % REPLY_ROUTE_SLOTS
}

/// How long a cached route (ROUTES, REPLY_ROUTES) is trusted before bpf_fib_lookup is asked again:
/// a changed neighbour or route towards a backend or client is followed within this time.
pub const ROUTE_CACHE_NS: u64 = 100_000_000;

/// Banks of LOOKUP and IN_SERVICE a service may point at; userspace fills the inactive one and
/// flips the service's SERVICE_BANKS word (`ServiceBanks`) in one store.
pub const TABLE_BANKS: u32 = 2;

/// Index of slot `slot` of bank `bank` of service `service_id` in LOOKUP.
#[inline(always)]
pub const fn lookup_index(service_id: u32, bank: u32, slot: u32) -> u32 {
    (service_id * TABLE_BANKS + bank) * MAX_TABLE_SIZE + slot
}

/// Index of entry `i` of bank `bank` of service `service_id`'s in-service list in IN_SERVICE.
#[inline(always)]
pub const fn in_service_index(service_id: u32, bank: u32, i: u32) -> u32 {
    (service_id * TABLE_BANKS + bank) * MAX_SERVICE_BACKENDS + i
}
