//! The mechanics of SESSIONS (layout and rules in lb_common::session_table): find a flow's
//! slot, store a record, keep `seen` and `check` right. What a record means is session.rs's.

use lb_common::{
    DEFAULT_SESSION_BUCKETS, FlowKey, SESSION_WAYS, Session, SessionBucket, SessionSlot, session_check,
    session_clock, session_hash,
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

/// Records `session` for `flow` in the slot `victim` picks.
#[inline(always)]
pub fn store(flow: &Flow, session: &Session, now_ns: u64) {
    let Some(bucket) = SESSIONS.get_ptr_mut(bucket_of(flow)) else {
        return;
    };
    let now = session_clock(now_ns);
    let slot = unsafe { &mut (*bucket).slots[victim(&*bucket, flow.key, now)] };
    // The check goes last: until it is written, a reader on another CPU sees no session here.
    slot.flow = *flow.key;
    slot.session = *session;
    slot.seen = now;
    slot.check = session_check(flow.hash, session);
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

/// Sets `flags` in the record of `flow` held by `slot` (found by `find`).
#[inline(always)]
pub fn set_flags(slot: &mut SessionSlot, flow: &Flow, flags: u16) {
    if slot.session.flags & flags != flags {
        slot.session.flags |= flags;
        slot.check = session_check(flow.hash, &slot.session);
    }
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

