//! Step 3: session forwarding records. A known flow keeps its backend across table changes as
//! long as that backend is up; NAT replies are matched to their flow through the same record. A
//! client's FIN/RST marks the record closing, so userspace can tell ended flows from live ones.

use lb_common::{BACKEND_F_UP, Backend, FlowKey, SESSION_F_CLOSING, Session};

use crate::maps::{BACKENDS, SESSIONS};

pub enum Lookup {
    /// The flow's backend is still up: keep using it.
    Hit(u32, Backend),
    /// The flow had a backend that is down or whose id now names another backend.
    Stale,
    Miss,
}

#[inline(always)]
pub fn lookup(flow: &FlowKey) -> Lookup {
    let Some(session) = (unsafe { SESSIONS.get(flow) }) else {
        return Lookup::Miss;
    };
    let id = session.backend_id;
    match usable_backend(id) {
        Some(b) if b.generation == session.generation => Lookup::Hit(id, b),
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
pub fn record(flow: &FlowKey, backend_id: u32, backend: &Backend) {
    let session = Session { backend_id, generation: backend.generation, flags: 0 };
    // A full LRU evicts its oldest record; there is nothing better to do on failure.
    let _ = SESSIONS.insert(flow, &session, 0);
}

/// Marks the flow's record as closing (once: later FINs and RSTs find it marked).
#[inline(always)]
pub fn mark_closing(flow: &FlowKey) {
    if let Some(session) = SESSIONS.get_ptr_mut(flow) {
        unsafe {
            if (*session).flags & SESSION_F_CLOSING == 0 {
                (*session).flags |= SESSION_F_CLOSING;
            }
        }
    }
}

/// Whether the flow's record sends it to the backend at `addr`:`port` (raw forms): a packet
/// from there to the client is a reply of this flow. Up or not: a backend's last replies may
/// follow its removal.
#[inline(always)]
pub fn sent_to(flow: &FlowKey, addr: &[u32; 4], port: u16) -> bool {
    let Some(session) = (unsafe { SESSIONS.get(flow) }) else {
        return false;
    };
    BACKENDS.get(session.backend_id).is_some_and(|b| {
        b.generation == session.generation && b.port == port && b.addr == *addr
    })
}
