//! Which backend a flow goes to and why, read from the live maps with the same pure functions
//! the XDP program runs.

use lb_common::{
    BACKEND_F_UP, FlowKey, HASH_FIELDS_MASK, Session, flow_hash, second_choice, table_slot,
};
use serde::Serialize;

use super::{Balancer, BackendState, in_service_ids};
use crate::dataplane::DataplaneError;

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub service: String,
    pub hash: u32,
    pub slot: u32,
    /// The live LOOKUP bank the slot was read from.
    pub table_bank: u32,
    /// Backend id the slot names in the live table, and whether it is up (BACKENDS flag).
    pub slot_backend: u32,
    pub slot_backend_up: bool,
    /// The service's state of that backend (None: not one of its backends any more).
    pub slot_backend_state: Option<BackendState>,
    /// Index into the in-service list when the slot's backend is down.
    pub second_choice_index: Option<u32>,
    /// The session record the kernel holds for this flow, if any.
    pub session: Option<SessionView>,
    /// Explained for a TCP SYN, which is always chosen afresh: the session record is not used.
    pub tcp_syn: bool,
    /// Where the next packet of this flow goes (None: dropped, no backend in service).
    pub backend: Option<BackendState>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SessionView {
    pub backend_id: u32,
    pub generation: u32,
    /// Whether the recorded backend still takes the flow.
    pub usable: bool,
    /// The client sent FIN or RST: the connection is ending (not counted as active).
    pub closing: bool,
    /// Recorded at the client's SYN; no later packet of the client yet (not counted as active).
    pub unconfirmed: bool,
}

impl Balancer {
    /// Explains where the flow's next (non-SYN) packet goes; None if the flow is addressed to
    /// no service.
    pub fn explain(&self, flow: &FlowKey) -> Result<Option<Explanation>, DataplaneError> {
        self.explain_packet(flow, false)
    }

    /// As `explain`, for a packet that is (`tcp_syn`) or is not a TCP SYN without ACK.
    pub fn explain_packet(&self, flow: &FlowKey, tcp_syn: bool) -> Result<Option<Explanation>, DataplaneError> {
        let Some(svc) = self.services.iter().find(|s| {
            s.key.addr == flow.dst_addr && s.key.port == flow.dst_port && s.key.proto == flow.proto
                && s.key.family == flow.family
        }) else {
            return Ok(None);
        };
        let info = svc.info;
        let dp = &self.dp;
        let by_id = |id: u32| svc.backends.iter().find(|b| b.id == id).cloned();
        let up = |id: u32| -> Result<bool, DataplaneError> { Ok(dp.backend(id)?.flags & BACKEND_F_UP != 0) };

        let session = match dp.session(flow) {
            Some(s @ Session { backend_id, generation, .. }) => {
                let b = dp.backend(backend_id)?;
                let usable = b.flags & BACKEND_F_UP != 0 && b.generation == generation;
                Some(SessionView { backend_id, generation, usable, closing: s.is_closing(), unconfirmed: s.is_unconfirmed() })
            }
            None => None,
        };
        let hash = flow_hash(flow, info.flags & HASH_FIELDS_MASK);
        let slot = table_slot(hash, info.table_size);
        let slot_backend = dp.lookup_slot(info.id, info.lookup_bank, slot)?;
        let slot_backend_up = up(slot_backend)?;
        let mut second_choice_index = None;
        let chosen = if let Some(s) = session.filter(|s| s.usable && !tcp_syn) {
            Some(s.backend_id)
        } else if slot_backend_up {
            Some(slot_backend)
        } else if info.in_service_count > 0 {
            let i = second_choice(hash, info.in_service_count);
            second_choice_index = Some(i);
            in_service_ids(svc).get(i as usize).copied()
        } else {
            None
        };
        Ok(Some(Explanation {
            service: svc.config.name.clone(),
            hash,
            slot,
            table_bank: info.lookup_bank,
            slot_backend,
            slot_backend_up,
            slot_backend_state: by_id(slot_backend),
            second_choice_index,
            session,
            tcp_syn,
            backend: chosen.and_then(by_id),
        }))
    }
}
