//! `lb explain`'s report from the balancer's explanation of a flow.

use std::net::SocketAddr;

use crate::{
    api::{ExplainReport, OverflowReport, SessionReport, SlotReport},
    balancer::{Explanation, ServiceState},
};

pub(super) fn report(svc: &ServiceState, client: SocketAddr, ex: &Explanation) -> ExplainReport {
    let cfg = &svc.config;
    let slot_state = |up: bool| {
        let health = if up { "up" } else { "down" };
        match &ex.slot_backend_state {
            Some(b) if b.drain.is_some() => format!("{health}, draining"),
            Some(_) => health.to_string(),
            None => format!("{health}, not a backend of {}", cfg.name),
        }
    };
    let session = ex.session.map(|s| SessionReport {
        backend_id: s.backend_id,
        generation: s.generation,
        address: svc
            .backends
            .iter()
            .find(|b| b.id == s.backend_id && lb_common::generation_tag(b.generation) == s.generation)
            .map(|b| b.addr),
        usable: s.usable,
        closing: s.closing,
        unconfirmed: s.unconfirmed,
    });
    let chosen_by = match (&ex.backend, ex.session.is_some_and(|s| s.usable), ex.slot_backend_up) {
        (None, _, _) => "none: no backend in service, dropped",
        (Some(_), true, _) => "session",
        (Some(_), false, true) => "table slot",
        (Some(_), false, false) => "second choice",
    };
    ExplainReport {
        service: cfg.name.clone(),
        flow: format!("{client} -> {} {}", SocketAddr::new(cfg.vip, cfg.port), cfg.protocol.as_str()),
        hash_key: cfg.hash_key.as_str().to_string(),
        hash: ex.hash,
        slot: ex.slot,
        table_size: svc.info.table_size,
        table_bank: ex.table_bank,
        slot_backend: SlotReport {
            id: ex.slot_backend,
            address: ex.slot_backend_state.as_ref().map(|b| b.addr),
            state: slot_state(ex.slot_backend_up),
        },
        second_choice_index: ex.second_choice_index,
        session,
        backend: ex.backend.as_ref().map(|b| b.addr),
        chosen_by: chosen_by.to_string(),
        overflow: ex.overflow.as_ref().map(|o| OverflowReport {
            choice_full: o.choice_full,
            choice_paced: o.choice_paced,
            open: o.open,
            pool_choice: o.pool_choice.as_ref().map(|b| b.addr),
        }),
    }
}

