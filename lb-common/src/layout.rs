//! Keys and values of every BPF map, as both sides see them. Addresses and ports are stored as
//! they appear on the wire ("raw": network byte order bytes loaded into native integers), so the
//! XDP program never swaps bytes; userspace converts with the helpers at the bottom.

use crate::limits::{MAX_BACKENDS, MAX_SERVICES};

/// Revision of the meaning of these layouts. The map layout version that pinned maps carry
/// (lb-userspace's dataplane::layout) is this and a digest of every map's type, key and value
/// sizes, entries and flags: bump it when a layout changes meaning without changing any size
/// (fields reordered, a flag bit reused), so a running data plane is never adopted by a binary
/// that would read its maps differently.
pub const LAYOUT_REVISION: u32 = 1;

/// Address family tags used in keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// The five-tuple of a packet (plus family): what SESSIONS places and tells flows apart by (its
/// hash, lb_common::session_table). IPv4 addresses sit in word 0 with words 1..3 zero. Every
/// byte, padding included, is written, so two keys of one flow are equal byte for byte.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: [u32; 4],
    pub dst_addr: [u32; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// One side of a connection: address, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// SERVICES key: where clients send traffic.
pub type ServiceKey = Endpoint;

/// Forward by rewriting destination address/port and un-NAT the replies (else DSR: MACs only).
pub const SERVICE_F_NAT: u32 = 1 << 0;
/// The service has an overflow pool: a new flow whose choice is at its quota spills to the
/// pool's own table, the banks of service id `overflow_id` (empty while the pool is closed).
pub const SERVICE_F_OVERFLOW: u32 = 1 << 1;
/// Which packet fields feed the flow hash (`hash::flow_hash`).
pub const HASH_SRC_ADDR: u32 = 1 << 8;
pub const HASH_SRC_PORT: u32 = 1 << 9;
pub const HASH_DST_ADDR: u32 = 1 << 10;
pub const HASH_DST_PORT: u32 = 1 << 11;
pub const HASH_PROTO: u32 = 1 << 12;
pub const HASH_FIVE_TUPLE: u32 =
    HASH_SRC_ADDR | HASH_SRC_PORT | HASH_DST_ADDR | HASH_DST_PORT | HASH_PROTO;
/// Client affinity: every flow of one client address lands on one backend.
pub const HASH_SOURCE_ADDR_ONLY: u32 = HASH_SRC_ADDR;
pub const HASH_FIELDS_MASK: u32 = HASH_FIVE_TUPLE;

/// SERVICES value: what a service is. Written by userspace when the service is added or its
/// forwarding or hash key changes; flips of its tables do not touch it (see ServiceBanks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Index of this service's banks in LOOKUP / IN_SERVICE, its SERVICE_BANKS word and its
    /// SERVICE_STATS slot.
    pub id: u32,
    /// SERVICE_F_* and HASH_* bits.
    pub flags: u32,
    /// With SERVICE_F_OVERFLOW: the id whose banks hold the overflow pool's table.
    pub overflow_id: u32,
}

/// SERVICE_BANKS value (as one u64 word, `to_word`), indexed by service id: which banks of the
/// service's table and in-service list are live, and their sizes. Userspace fills the inactive
/// banks, then stores the new word into the memory-mapped map: one aligned 8-byte store is the
/// atomic switch, so a change of many services needs no syscall and no freed element per service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceBanks {
    /// Slots in the server index table (M), 1..=MAX_TABLE_SIZE.
    pub table_size: u32,
    /// Entries in the live IN_SERVICE bank; 0 means no backend can take a new flow.
    pub in_service_count: u32,
    /// Which LOOKUP bank is live (0 or 1).
    pub lookup_bank: u32,
    /// Which IN_SERVICE bank is live (0 or 1).
    pub in_service_bank: u32,
}

impl ServiceBanks {
    /// table_size in bits 0..32, in_service_count in 32..48, the banks in bits 48 and 56.
    #[inline(always)]
    pub const fn to_word(&self) -> u64 {
        self.table_size as u64
            | (self.in_service_count as u64 & 0xffff) << 32
            | (self.lookup_bank as u64 & 1) << 48
            | (self.in_service_bank as u64 & 1) << 56
    }

    #[inline(always)]
    pub const fn from_word(word: u64) -> Self {
        ServiceBanks {
            table_size: word as u32,
            in_service_count: (word >> 32) as u32 & 0xffff,
            lookup_bank: (word >> 48) as u32 & 1,
            in_service_bank: (word >> 56) as u32 & 1,
        }
    }
}
const _: () = assert!(crate::limits::MAX_SERVICE_BACKENDS <= 0xffff, "in_service_count has 16 bits");

/// A service as the packet path uses it: its SERVICES entry and its live banks, read once per
/// packet so the rest of the path sees one consistent version even if userspace flips meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: u32,
    /// SERVICE_F_* and HASH_* bits.
    pub flags: u32,
    pub table_size: u32,
    pub lookup_bank: u32,
    pub in_service_bank: u32,
    pub in_service_count: u32,
    /// ServiceEntry::overflow_id.
    pub overflow_id: u32,
}

impl ServiceInfo {
    #[inline(always)]
    pub const fn new(entry: ServiceEntry, banks: ServiceBanks) -> Self {
        ServiceInfo {
            id: entry.id,
            flags: entry.flags,
            overflow_id: entry.overflow_id,
            table_size: banks.table_size,
            lookup_bank: banks.lookup_bank,
            in_service_bank: banks.in_service_bank,
            in_service_count: banks.in_service_count,
        }
    }

    pub const fn entry(&self) -> ServiceEntry {
        ServiceEntry { id: self.id, flags: self.flags, overflow_id: self.overflow_id }
    }

    pub const fn banks(&self) -> ServiceBanks {
        ServiceBanks {
            table_size: self.table_size,
            in_service_count: self.in_service_count,
            lookup_bank: self.lookup_bank,
            in_service_bank: self.in_service_bank,
        }
    }
}

/// Backend may receive packets (healthy). Cleared when health checks fail or it is removed.
pub const BACKEND_F_UP: u8 = 1 << 0;
/// The backend has a new-session quota (its NEW_SESSION_QUOTAS entry): a new flow it is chosen
/// for must be admitted by it (lb_common::quota), else it is at its quota.
pub const BACKEND_F_PACED: u8 = 1 << 1;
/// The control plane measured the backend at a quota it enforces itself (max_sessions,
/// max_bytes_per_sec): it takes no new flow while another choice has room.
pub const BACKEND_F_FULL: u8 = 1 << 2;

/// BACKENDS value, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u32; 4],
    /// Raw (network order) port; NAT rewrites the destination port to it.
    pub port: u16,
    pub family: u8,
    /// BACKEND_F_* bits.
    pub flags: u8,
    /// Bumped whenever the id is given to another backend, so old sessions cannot follow it.
    pub generation: u32,
}

/// The flow's client sent a TCP FIN or RST: the connection is ending. Its packets still go to
/// the recorded backend, but it no longer counts as active (a draining backend may leave).
pub const SESSION_F_CLOSING: u8 = 1 << 0;
/// The flow is forwarded by NAT (its service's forwarding when it was recorded).
pub const SESSION_F_NAT: u8 = 1 << 1;
/// Recorded at the flow's first packet (a SYN, or any packet of a flow without a record); no
/// later packet of the client has confirmed it yet. Anyone can send one packet from a spoofed
/// address (a SYN or ACK flood never gets further), so such a record may never displace a
/// confirmed one (lb_common::session_table::victim_rank). The client's next packet clears it.
pub const SESSION_F_UNCONFIRMED: u8 = 1 << 2;

/// Where a flow was sent (in its SESSIONS slot): the backend, and all a later packet of the flow needs
/// to follow it without the SERVICES lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Below MAX_BACKENDS.
    pub backend_id: u16,
    /// `generation_tag(Backend::generation)` when the session was recorded.
    pub generation: u16,
    /// `ServiceInfo::id` of the service the flow was addressed to (for its counters); below
    /// MAX_SERVICES.
    pub service_id: u8,
    /// SESSION_F_* bits.
    pub flags: u8,
}
const _: () = assert!(MAX_BACKENDS <= 1 << 16 && MAX_SERVICES <= 1 << 8 && size_of::<Session>() == 6);

/// What a session keeps of its backend's generation: the low 16 bits. A record outliving 65,536
/// reuses of its backend's id would follow the id's new backend; records idle for a minute
/// give way to new flows long before.
#[inline(always)]
pub const fn generation_tag(generation: u32) -> u16 {
    generation as u16
}

impl Session {
    /// Whether the session names `backend` (the id's current holder, as BACKENDS has it).
    #[inline(always)]
    pub const fn names(&self, backend: &Backend) -> bool {
        self.generation == generation_tag(backend.generation)
    }

    pub const fn is_closing(&self) -> bool {
        self.flags & SESSION_F_CLOSING != 0
    }

    pub const fn is_nat(&self) -> bool {
        self.flags & SESSION_F_NAT != 0
    }

    pub const fn is_unconfirmed(&self) -> bool {
        self.flags & SESSION_F_UNCONFIRMED != 0
    }

    /// A connection that is live: its handshake completed (a real client) and not closing.
    pub const fn is_active(&self) -> bool {
        self.flags & (SESSION_F_CLOSING | SESSION_F_UNCONFIRMED) == 0
    }
}

/// NAT services one backend endpoint may serve (NAT_REPLIES holds this many VIPs per key).
pub const NAT_REPLY_VIPS: usize = 4;

/// A service address a NAT backend's replies may have to appear to come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatVip {
    pub addr: [u32; 4],
    pub port: u16,
    pub _pad: u16,
}

/// NAT_REPLIES value, keyed by a backend's Endpoint: the VIPs of the NAT services it serves.
/// A reply is rewritten to the first VIP whose session (client -> VIP) names this backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatReplyVips {
    /// Entries of `vips` in use, 1..=NAT_REPLY_VIPS.
    pub count: u32,
    pub vips: [NatVip; NAT_REPLY_VIPS],
}

/// ROUTES and REPLY_ROUTES value (per CPU): where the last bpf_fib_lookup towards address `to`
/// said to send its frames. Written only by the XDP program; valid while `expires_ns` (the
/// program's tick clock, lb-ebpf packet::now_ns) is ahead, for packets to `to` (of `family`)
/// arriving on `ingress`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedRoute {
    pub expires_ns: u64,
    pub ingress: u32,
    pub egress: u32,
    pub to: [u32; 4],
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Packets, bytes and new sessions of one service or backend (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    pub packets: u64,
    pub bytes: u64,
    pub new_sessions: u64,
}

/// Largest frame the benchmark harness can restore.
pub const BENCH_FRAME_MAX: usize = 256;

/// BENCH_FRAME value (benchmark only): the frame the harness writes back before every run, so
/// each of BPF_PROG_TEST_RUN's repeats sees the same input (the kernel reuses one buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BenchFrame {
    /// Bytes of `bytes` in use; must equal the test-run input's length.
    pub len: u32,
    /// If non-zero: offset of 4 bytes overwritten with `iteration >> runs_per_flow_log2`, so
    /// every run (or every 2^runs_per_flow_log2 runs) is a new flow.
    pub vary_offset: u32,
    /// Runs so far (written by the harness).
    pub iteration: u32,
    /// Each flow is stamped on 2^this consecutive runs (1: a packet and the flow's next one,
    /// which confirms its record).
    pub runs_per_flow_log2: u32,
    pub bytes: [u8; BENCH_FRAME_MAX],
}

/// Raw form of an IPv4 address as keys store it.
pub const fn addr_v4(octets: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(octets), 0, 0, 0]
}

/// Raw form of an IPv6 address as keys store it.
pub const fn addr_v6(octets: [u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            octets[4 * i],
            octets[4 * i + 1],
            octets[4 * i + 2],
            octets[4 * i + 3],
        ]);
        i += 1;
    }
    out
}

/// Raw form of a port as keys store it.
pub const fn port_raw(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

/// Host-order port from its raw form.
pub const fn port_host(raw: u16) -> u16 {
    u16::from_be_bytes(raw.to_ne_bytes())
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) plain data with every bit pattern valid.
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Endpoint {}
    unsafe impl aya::Pod for ServiceEntry {}
    unsafe impl aya::Pod for crate::quota::NewSessionQuota {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for Session {}
    unsafe impl aya::Pod for NatReplyVips {}
    unsafe impl aya::Pod for TrafficCounters {}
    unsafe impl aya::Pod for CachedRoute {}
    unsafe impl aya::Pod for BenchFrame {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<ServiceEntry>(), 12);
        assert_eq!(size_of::<Backend>(), 24);
        assert_eq!(size_of::<Session>(), 6);
        assert_eq!(size_of::<NatVip>(), 20);
        assert_eq!(size_of::<NatReplyVips>(), 4 + 20 * NAT_REPLY_VIPS);
        assert_eq!(size_of::<TrafficCounters>(), 24);
        assert_eq!(size_of::<CachedRoute>(), 48);
    }

    #[test]
    fn raw_forms_are_wire_order() {
        let a = addr_v4([10, 0, 0, 1]);
        assert_eq!(a[0].to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(port_raw(80).to_ne_bytes(), [0, 80]);
        assert_eq!(port_host(port_raw(8080)), 8080);
        let v6 = addr_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(v6[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(v6[3].to_ne_bytes(), [0, 0, 0, 1]);
    }

    #[test]
    fn a_service_banks_word_holds_every_field_at_its_limit() {
        use crate::limits::{MAX_SERVICE_BACKENDS, MAX_TABLE_SIZE};
        for banks in [
            ServiceBanks { table_size: MAX_TABLE_SIZE, in_service_count: MAX_SERVICE_BACKENDS, lookup_bank: 1, in_service_bank: 0 },
            ServiceBanks { table_size: 1, in_service_count: 0, lookup_bank: 0, in_service_bank: 1 },
            ServiceBanks { table_size: u32::MAX, in_service_count: 0xffff, lookup_bank: 1, in_service_bank: 1 },
            ServiceBanks::default(),
        ] {
            assert_eq!(ServiceBanks::from_word(banks.to_word()), banks);
        }
        let info = ServiceInfo { id: 3, flags: SERVICE_F_NAT, table_size: 7, lookup_bank: 1, in_service_bank: 0, in_service_count: 2, overflow_id: 5 };
        assert_eq!(ServiceInfo::new(info.entry(), info.banks()), info);
    }
}
