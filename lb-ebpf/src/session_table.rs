//! The mechanics of SESSIONS (layout and rules in lb_common::session_table): find a flow's
//! slot, store a record, keep `seen` and `check` right. What a record means is session.rs's.

use lb_common::{
    DEFAULT_SESSION_BUCKETS, FlowKey, SESSION_WAYS, Session, SessionBucket, SessionSlot, session_check,
    session_clock, session_hash, victim_rank,
};

use crate::maps::SESSIONS;

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

/// SESSIONS's buckets less one (their count is a power of two). A read-only global: the loader
/// (userspace `dataplane`) sets it with the size it gives SESSIONS, from `[sessions] capacity`.
#[unsafe(no_mangle)]
static SESSION_BUCKET_MASK: u32 = DEFAULT_SESSION_BUCKETS - 1;

/// The flow's bucket: lb_common::session_bucket with the loaded table's size.
#[inline(always)]
fn bucket_of(flow: &Flow) -> u32 {
    flow.hash & unsafe { core::ptr::read_volatile(&SESSION_BUCKET_MASK) }
}

/// Records `session` for `flow` in the slot `victim` picks; false if no slot may be taken.
#[inline(always)]
pub fn store(flow: &Flow, session: &Session, now_ns: u64) -> bool {
    let Some(bucket) = SESSIONS.get_ptr_mut(bucket_of(flow)) else {
        return false;
    };
    let now = session_clock(now_ns);
    let Some(i) = victim(unsafe { &*bucket }, flow.key, now) else {
        return false;
    };
    let slot = unsafe { &mut (*bucket).slots[i] };
    // The check goes last: until it is written, a reader on another CPU sees no session here.
    slot.flow = *flow.key;
    slot.session = *session;
    slot.seen = now;
    slot.check = session_check(flow.hash, session);
    true
}

/// Notes that a packet of the slot's flow passed now. One write a second at most: a busy flow
/// does not keep dirtying its cache line.
#[inline(always)]
pub fn touch(slot: &mut SessionSlot, now_ns: u64) {
    let now = session_clock(now_ns);
    if slot.seen != now {
        slot.seen = now;
    }
}

/// Ticks of the session clock since the slot's flow was last seen.
#[inline(always)]
pub fn idle(slot: &SessionSlot, now_ns: u64) -> u32 {
    session_clock(now_ns).wrapping_sub(slot.seen)
}

/// Sets `set` and clears `clear` (SESSION_F_* bits) in the record held by `slot` (found by
/// `find` for a flow of hash `hash`). Writes only if that changes something.
#[inline(always)]
pub fn change_flags(slot: &mut SessionSlot, hash: u32, set: u16, clear: u16) {
    let flags = (slot.session.flags | set) & !clear;
    if flags != slot.session.flags {
        slot.session.flags = flags;
        slot.check = session_check(hash, &slot.session);
    }
}

/// Empties the slot: its flow is over.
#[inline(always)]
pub fn forget(slot: &mut SessionSlot) {
    slot.check = 0;
}

/// The slot a new record of `flow` takes: its own old record, else the one
/// lb_common::victim_rank ranks first; None if it may take none.
#[inline(always)]
fn victim(bucket: &SessionBucket, flow: &FlowKey, now: u32) -> Option<usize> {
    let mut victim = None;
    let mut best = 0u32;
    for i in 0..SESSION_WAYS {
        let slot = &bucket.slots[i];
        if same_flow(&slot.flow, flow) {
            return Some(i);
        }
        // A slot whose check is 0 is empty; a torn one (check not 0, contents racing) ranks as
        // its contents say: the race's winner will rewrite it anyway.
        let held = if slot.check == 0 { None } else { Some(&slot.session) };
        if let Some(rank) = victim_rank(held, now.wrapping_sub(slot.seen)) {
            if victim.is_none() || rank > best {
                victim = Some(i);
                best = rank;
            }
        }
    }
    victim
}

/// The slot holding `flow`'s whole record, if any.
#[inline(always)]
pub fn find(flow: &Flow) -> Option<*mut SessionSlot> {
    let bucket = SESSIONS.get_ptr_mut(bucket_of(flow))?;
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

