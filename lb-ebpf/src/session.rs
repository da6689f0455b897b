//! Step 3: session forwarding records. A known flow keeps its backend across table changes as
//! long as that backend is up; NAT replies are matched to their flow through the same record. A
//! client's FIN/RST marks the record closing, so userspace can tell ended flows from live ones.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use lb_common::{
    BACKEND_F_UP, Backend, FlowKey, SESSION_F_CLOSING, SESSION_F_NAT, SESSION_WAYS, ServiceInfo,
    SERVICE_F_NAT, Session, SessionBucket, SessionSlot, session_bucket, session_check, session_clock,
    session_hash,
};

use crate::maps::{BACKENDS, SESSIONS};

/// Where a flow goes and how: from its session record, or chosen for it now.
pub struct Assignment {
    pub service_id: u32,
    pub nat: bool,
    pub backend_id: u32,
    pub backend: Backend,
    /// Chosen now: the session is to be recorded.
    pub new: bool,
}

impl Assignment {
    #[inline(always)]
    pub fn new(svc: &ServiceInfo, backend_id: u32, backend: Backend) -> Self {
        Assignment { service_id: svc.id, nat: svc.flags & SERVICE_F_NAT != 0, backend_id, backend, new: true }
    }
}

pub enum Lookup {
    /// The flow's backend is still up: keep using it. The record says all the packet needs, so
    /// a known flow skips the SERVICES lookup.
    Hit(Assignment),
    /// The flow had a backend that is down or whose id now names another backend.
    Stale,
    Miss,
}

/// A flow and its SESSIONS hash, computed once per packet.
pub struct Flow<'a> {
    pub key: &'a FlowKey,
    pub hash: u32,
}

impl<'a> Flow<'a> {
    #[inline(always)]
    pub fn new(key: &'a FlowKey) -> Self {
        Flow { key, hash: session_hash(key) }
    }
}

#[inline(always)]
pub fn lookup(flow: &Flow) -> Lookup {
    let Some(slot) = find(flow) else {
        return Lookup::Miss;
    };
    let session = unsafe { (*slot).session };
    let now = clock();
    unsafe {
        // One write a second at most: a busy flow does not keep dirtying its cache line.
        if (*slot).seen != now {
            (*slot).seen = now;
        }
    }
    let backend_id = session.backend_id;
    match usable_backend(backend_id) {
        Some(backend) if backend.generation == session.generation => Lookup::Hit(Assignment {
            service_id: session.service_id as u32,
            nat: session.is_nat(),
            backend_id,
            backend,
            new: false,
        }),
        _ => Lookup::Stale,
    }
}

/// The backend with this id, if it is up.
#[inline(always)]
pub fn usable_backend(id: u32) -> Option<Backend> {
    let b = BACKENDS.get(id)?;
    if b.flags & BACKEND_F_UP == 0 {
        return None;
    }
    Some(*b)
}

#[inline(always)]
pub fn record(flow: &Flow, to: &Assignment) {
    let session = Session {
        backend_id: to.backend_id,
        generation: to.backend.generation,
        service_id: to.service_id as u16,
        flags: if to.nat { SESSION_F_NAT } else { 0 },
    };
    let Some(bucket) = SESSIONS.get_ptr_mut(session_bucket(flow.hash)) else {
        return;
    };
    let now = clock();
    let slot = unsafe { &mut (*bucket).slots[victim(&*bucket, flow.key, now)] };
    // The check goes last: until it is written, a reader on another CPU sees no session here.
    slot.flow = *flow.key;
    slot.session = session;
    slot.seen = now;
    slot.check = session_check(flow.hash, &session);
}

/// The slot a new record of `flow` takes: its own old record, else an empty slot, else the
/// slot of a closing flow, else the one seen longest ago.
#[inline(always)]
fn victim(bucket: &SessionBucket, flow: &FlowKey, now: u32) -> usize {
    let mut victim = 0;
    let mut best = 0u32;
    for i in 0..SESSION_WAYS {
        let slot = &bucket.slots[i];
        if same_flow(&slot.flow, flow) {
            return i;
        }
        let score = if slot.check == 0 {
            u32::MAX
        } else {
            let idle = now.wrapping_sub(slot.seen).min(CLOSING_BONUS - 1);
            if slot.session.is_closing() { idle | CLOSING_BONUS } else { idle }
        };
        if score > best || i == 0 {
            victim = i;
            best = score;
        }
    }
    victim
}

/// Ranks a closing flow's slot above every open flow's for reuse.
const CLOSING_BONUS: u32 = 1 << 30;

/// The slot holding `flow`'s whole record, if any.
#[inline(always)]
fn find(flow: &Flow) -> Option<*mut SessionSlot> {
    let bucket = SESSIONS.get_ptr_mut(session_bucket(flow.hash))?;
    for i in 0..SESSION_WAYS {
        let slot = unsafe { &mut (*bucket).slots[i] };
        if same_flow(&slot.flow, flow.key) && slot.check == session_check(flow.hash, &slot.session) {
            return Some(slot);
        }
    }
    None
}

/// Compares two flows as five 8-byte words (FlowKey is 8-byte aligned, every byte written).
#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let a = unsafe { &*(a as *const FlowKey as *const [u64; 5]) };
    let b = unsafe { &*(b as *const FlowKey as *const [u64; 5]) };
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

#[inline(always)]
fn clock() -> u32 {
    session_clock(unsafe { bpf_ktime_get_coarse_ns() })
}

/// Marks the flow's record as closing (once: later FINs and RSTs find it marked).
#[inline(always)]
pub fn mark_closing(flow: &Flow) {
    if let Some(slot) = find(flow) {
        let slot = unsafe { &mut *slot };
        if !slot.session.is_closing() {
            slot.session.flags |= SESSION_F_CLOSING;
            slot.check = session_check(flow.hash, &slot.session);
        }
    }
}

/// Whether the flow's record sends it to the backend at `addr`:`port` (raw forms): a packet
/// from there to the client is a reply of this flow. Up or not: a backend's last replies may
/// follow its removal.
#[inline(always)]
pub fn sent_to(flow: &FlowKey, addr: &[u32; 4], port: u16) -> bool {
    let Some(slot) = find(&Flow::new(flow)) else {
        return false;
    };
    let session = unsafe { (*slot).session };
    BACKENDS.get(session.backend_id).is_some_and(|b| {
        b.generation == session.generation && b.port == port && b.addr == *addr
    })
}
