//! What `lb explain` shows: the path the data plane takes for one flow.

use std::{fmt::Write, net::SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExplainReport {
    pub service: String,
    /// "client -> vip:port proto".
    pub flow: String,
    pub hash_key: String,
    pub hash: u32,
    pub slot: u32,
    pub table_size: u32,
    /// The live LOOKUP bank (0 or 1).
    pub table_bank: u32,
    pub slot_backend: SlotReport,
    /// Set when the slot's backend is down: index into the in-service list.
    pub second_choice_index: Option<u32>,
    pub session: Option<SessionReport>,
    /// Where the flow's next packet goes (None: dropped, no backend in service).
    pub backend: Option<SocketAddr>,
    /// How it was chosen: "session", "table slot", "second choice" or "none".
    pub chosen_by: String,
    /// For a new flow of a service with an overflow pool: where it goes if `backend` has no room.
    #[serde(default)]
    pub overflow: Option<OverflowReport>,
}

/// What a new flow does when its choice is at its quota (`lb explain` of a shunted service).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverflowReport {
    /// The choice is marked full (max_sessions / max_bytes_per_sec, as measured).
    pub choice_full: bool,
    /// The choice's new flows are paced (max_new_sessions_per_sec).
    pub choice_paced: bool,
    /// The pool is open: it takes spilled flows.
    pub open: bool,
    /// The overflow backend the pool's table names for this flow (the next ones follow if it
    /// has no room); None while the pool is closed.
    pub pool_choice: Option<SocketAddr>,
}

/// The backend a table slot names.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlotReport {
    pub id: u32,
    /// None: the id is not a backend of this service (any more).
    pub address: Option<SocketAddr>,
    /// "up", "down", "up, draining", ...
    pub state: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionReport {
    pub backend_id: u32,
    /// The backend's generation as the record keeps it: its low 16 bits.
    pub generation: u16,
    pub address: Option<SocketAddr>,
    /// Whether the recorded backend still takes the flow (up, same generation).
    pub usable: bool,
    /// The client sent FIN or RST: the connection is ending.
    #[serde(default)]
    pub closing: bool,
    /// Recorded at the client's SYN, not yet confirmed by its next packet.
    #[serde(default)]
    pub unconfirmed: bool,
}

/// The human-readable form of `lb explain`.
pub fn render_explain(r: &ExplainReport) -> String {
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    let mut out = String::new();
    let _ = writeln!(out, "service {}: {} (hash_key {})", r.service, r.flow, r.hash_key);
    let _ = writeln!(out, "  hash        {:#010x}", r.hash);
    let _ = writeln!(out, "  slot        {} of {} (table bank {})", r.slot, r.table_size, r.table_bank);
    let s = &r.slot_backend;
    let _ = writeln!(out, "  slot names  backend {} {} ({})", s.id, addr(s.address), s.state);
    if let Some(i) = r.second_choice_index {
        let _ = writeln!(out, "  second choice: in-service list entry {i}");
    }
    match &r.session {
        Some(s) => {
            let usable = match (s.usable, s.closing, s.unconfirmed) {
                (true, false, false) => "usable",
                (true, false, true) => "usable, handshake not yet confirmed by the client",
                (true, true, _) => "usable, connection closing",
                (false, _, _) => "stale: will be re-chosen",
            };
            let _ = writeln!(
                out,
                "  session     backend {} {} generation {} ({usable})",
                s.backend_id,
                addr(s.address),
                s.generation
            );
        }
        None => {
            let _ = writeln!(out, "  session     none (a new flow)");
        }
    }
    let _ = writeln!(out, "  goes to     {} (by {})", addr(r.backend), r.chosen_by);
    if let Some(o) = &r.overflow {
        let quota = match (o.choice_full, o.choice_paced) {
            (true, _) => "it is marked full: a new flow spills",
            (false, true) => "its new flows are paced: a new flow over its quota spills",
            (false, false) => "it has no quota: a new flow stays",
        };
        let pool = match (o.open, o.pool_choice) {
            (true, Some(b)) => format!("overflow pool open: spills to {b} (or the next overflow backend with room; every one full: stays)"),
            _ => "overflow pool closed: a flow over quota stays on its choice".to_string(),
        };
        let _ = writeln!(out, "  quota       {quota}");
        let _ = writeln!(out, "  overflow    {pool}");
    }
    out
}
