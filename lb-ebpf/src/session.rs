//! Step 3: session forwarding records. A known flow keeps its backend across table changes as
//! long as that backend is up; NAT sessions also leave a reverse record for the replies. A
//! client's FIN/RST marks the record closing, so userspace can tell ended flows from live ones.

use lb_common::{BACKEND_F_UP, Backend, FlowKey, NatReverse, SESSION_F_CLOSING, Session};

use crate::{
    maps::{BACKENDS, NAT_REVERSE, SESSIONS},
    reply,
};

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

/// Remember how to turn the backend's replies back into VIP:port replies.
#[inline(always)]
pub fn record_nat_reverse(flow: &FlowKey, backend: &Backend, service_id: u32) {
    let reply = FlowKey {
        src_addr: backend.addr,
        dst_addr: flow.src_addr,
        src_port: backend.port,
        dst_port: flow.src_port,
        proto: flow.proto,
        family: flow.family,
        _pad: [0; 2],
    };
    // The mark first: a reply may arrive the moment the reverse record exists.
    reply::expect_replies_from(&reply.src_addr, reply.src_port, reply.proto);
    let reverse = NatReverse { vip: flow.dst_addr, vport: flow.dst_port, _pad: 0, service_id };
    let _ = NAT_REVERSE.insert(&reply, &reverse, 0);
}
