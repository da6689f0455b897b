//! Step 5b: quotas. A backend chosen for a new flow takes it only while under its quotas:
//! `max_new_sessions_per_sec`, paced here per new flow across CPUs (lb_common::quota), and the
//! control plane's "full" mark for the quotas it measures itself (sessions, bytes).

use lb_common::{BACKEND_F_FULL, BACKEND_F_PACED, Backend, quota};

use crate::{
    atomic::compare_and_swap,
    maps::{NEW_SESSION_PACE, NEW_SESSION_QUOTAS},
};

/// Compare-and-swap attempts before a contended backend is taken as at its quota: losing a race
/// to another CPU means that CPU just admitted a flow there.
const PACE_ATTEMPTS: usize = 4;

/// Whether the backend takes one more new flow now; if it does, the flow is counted against its
/// quota.
#[inline(always)]
pub fn admit(id: u32, backend: &Backend, now_ns: u64) -> bool {
    if backend.flags & (BACKEND_F_PACED | BACKEND_F_FULL) == 0 {
        return true;
    }
    if backend.flags & BACKEND_F_FULL != 0 {
        return false;
    }
    let (Some(q), Some(pace)) = (NEW_SESSION_QUOTAS.get(id), NEW_SESSION_PACE.get_ptr_mut(id)) else {
        return true;
    };
    for _ in 0..PACE_ATTEMPTS {
        let tat = unsafe { core::ptr::read_volatile(pace) };
        let Some(next) = quota::admit(q, tat, now_ns) else {
            return false;
        };
        if unsafe { compare_and_swap(pace, tat, next) } {
            return true;
        }
    }
    false
}
