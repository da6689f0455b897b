//! Which backend a flow goes to and why, read from the live maps with the same pure functions
//! the XDP program runs.

use lb_common::{
    BACKEND_F_FULL, BACKEND_F_PACED, BACKEND_F_UP, FlowKey, HASH_FIELDS_MASK, ServiceInfo, Session, flow_hash,
    second_choice, table_slot,
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
    /// Where the next packet of this flow goes (None: dropped, no backend in service). For a
    /// new flow whose choice is at its quota, `overflow` says where it goes instead.
    pub backend: Option<BackendState>,
    /// For a service with an overflow pool: what a new flow does if its choice has no room.
    pub overflow: Option<OverflowView>,
}

/// The overflow pool as a new flow of this hash meets it (select.rs `spill`).
#[derive(Clone, Debug, Serialize)]
pub struct OverflowView {
    /// The chosen backend is marked full by the control plane: the flow spills (if the pool is
    /// open) whatever its pace.
    pub choice_full: bool,
    /// The chosen backend's new flows are paced (max_new_sessions_per_sec): whether this one
    /// fits depends on the flows just before it, which no reading of the maps can tell.
    pub choice_paced: bool,
    /// The pool takes spilled flows (an overflow backend in its in-service list).
    pub open: bool,
    /// The overflow backend the pool's table (or its second choice) names for this flow; the
    /// next ones are tried if it has no room either.
    pub pool_choice: Option<BackendState>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SessionView {
    pub backend_id: u32,
    /// The generation of the backend the record names, as records keep it (its low 16 bits,
    /// lb_common::generation_tag).
    pub generation: u16,
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
                let backend_id = u32::from(backend_id);
                let b = dp.backend(backend_id)?;
                let usable = b.flags & BACKEND_F_UP != 0 && s.names(&b);
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
        let overflow = match (svc.pool, chosen) {
            (Some(pool), Some(id)) if session.filter(|s| s.usable && !tcp_syn).is_none() => {
                let flags = dp.backend(id)?.flags;
                let pool_choice = self.pool_choice(&pool, hash)?.and_then(by_id);
                Some(OverflowView {
                    choice_full: flags & BACKEND_F_FULL != 0,
                    choice_paced: flags & BACKEND_F_PACED != 0,
                    open: pool.in_service_count > 0,
                    pool_choice,
                })
            }
            _ => None,
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
            overflow,
        }))
    }

    /// The pool table's choice for `hash`, else its second choice (as select.rs
    /// `choose_backend` on the pool's banks); None while the pool is closed.
    fn pool_choice(&self, pool: &ServiceInfo, hash: u32) -> Result<Option<u32>, DataplaneError> {
        if pool.in_service_count == 0 {
            return Ok(None);
        }
        let dp = &self.dp;
        if pool.table_size != 0 {
            let id = dp.lookup_slot(pool.id, pool.lookup_bank, table_slot(hash, pool.table_size))?;
            if dp.backend(id).is_ok_and(|b| b.flags & BACKEND_F_UP != 0) {
                return Ok(Some(id));
            }
        }
        let i = second_choice(hash, pool.in_service_count);
        Ok(Some(dp.in_service_slot(pool.id, pool.in_service_bank, i)?))
    }
}
