//! Step 3: session forwarding records. A known flow keeps its backend across table changes as
//! long as that backend is up; NAT replies are matched to their flow through the same record.
//! A new record is unconfirmed until the flow's next packet from the client (it may never
//! displace a confirmed one, see lb_common::session_table): one spoofed packet, SYN or not,
//! costs no live connection its record. A FIN/RST marks the record closing, so userspace can
//! tell ended flows from live ones.

use lb_common::{
    BACKEND_F_UP, Backend, SESSION_F_CLOSING, SESSION_F_NAT, SESSION_F_UNCONFIRMED, SERVICE_F_NAT,
    ServiceInfo, Session, generation_tag,
};

pub use crate::session_table::{Flow, Found, warm};
use crate::{maps::BACKENDS, session_table};

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

#[inline(always)]
pub fn lookup(flow: &Flow, now_ns: u64) -> Lookup {
    let Some(found) = session_table::find(flow) else {
        return Lookup::Miss;
    };
    session_table::touch(found.slot, now_ns);
    // The lookup runs for every packet but a SYN: this one confirms a record made by the flow's
    // first packet.
    session_table::change_flags(&found, 0, SESSION_F_UNCONFIRMED);
    match recorded(&found.session) {
        Some(to) => Lookup::Hit(to),
        None => Lookup::Stale,
    }
}

/// Where the flow's record sends it, if that backend is still up; unlike `lookup`, writes
/// nothing: a packet that is not the flow's own (an ICMP error about it) must not keep its
/// record alive or confirm it.
#[inline(always)]
pub fn peek(flow: &Flow) -> Option<Assignment> {
    recorded(&session_table::find(flow)?.session)
}

/// The record's assignment, if its backend is up and still the one it names (same generation).
#[inline(always)]
fn recorded(session: &Session) -> Option<Assignment> {
    let backend_id = session.backend_id as u32;
    let backend = usable_backend(backend_id)?;
    session.names(&backend).then_some(Assignment {
        service_id: session.service_id as u32,
        nat: session.is_nat(),
        backend_id,
        backend,
        new: false,
    })
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

/// Records where the flow goes, unconfirmed until its next packet. False if its bucket had no
/// slot such a record may take.
#[inline(always)]
pub fn record(flow: &Flow, to: &Assignment, now_ns: u64) -> bool {
    let nat = if to.nat { SESSION_F_NAT } else { 0 };
    let session = Session {
        backend_id: to.backend_id as u16,
        generation: generation_tag(to.backend.generation),
        service_id: to.service_id as u8,
        flags: nat | SESSION_F_UNCONFIRMED,
    };
    session_table::store(flow, &session, now_ns)
}

/// Marks the flow's record as closing (once: later FINs and RSTs find it marked).
#[inline(always)]
pub fn mark_closing(flow: &Flow) {
    if let Some(found) = session_table::find(flow) {
        mark_found_closing(&found);
    }
}

/// Marks the record `found` read as closing.
#[inline(always)]
pub fn mark_found_closing(found: &Found) {
    session_table::change_flags(found, SESSION_F_CLOSING, 0);
}

/// The flow's record if it sends the flow to the backend at `addr`:`port` (raw
/// forms): a packet from there to the client may be a reply of this flow (nat_reply decides).
/// Up or not: a backend's last replies may follow its removal.
#[inline(always)]
pub fn sent_to(flow: &Flow, addr: &[u32; 4], port: u16) -> Option<Found> {
    let found = session_table::find(flow)?;
    let b = BACKENDS.get(found.session.backend_id as u32)?;
    (found.session.names(b) && b.port == port && b.addr == *addr).then_some(found)
}
