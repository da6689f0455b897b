//! The packet's whole path, top to bottom. Each step lives in its own module.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Event, Outcome, SERVICE_F_NAT};

use crate::{
    forward::{self, Side},
    parse, reply, select, service,
    session::{self, Lookup},
    stats,
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let outcome = run(&ctx);
    stats::count_outcome(outcome);
    action(outcome)
}

#[inline(always)]
fn run(ctx: &XdpContext) -> Outcome {
    let mut pkt = match parse::parse(ctx) {
        Ok(pkt) => pkt,
        Err(outcome) => return outcome,
    };
    let Some(svc) = service::lookup(&pkt.flow) else {
        return reply::forward(ctx, &mut pkt);
    };
    // A SYN opens a connection: whatever an old record says, it is chosen afresh (as Katran
    // does), which spares new connections the session lookup.
    let known = if pkt.opens_connection() { Lookup::Miss } else { session::lookup(&pkt.flow) };
    let (backend_id, backend, new_session) = match known {
        Lookup::Hit(id, backend) => (id, backend, false),
        known => {
            if matches!(known, Lookup::Stale) {
                stats::count_event(Event::SessionRechosen);
            }
            let Some((id, backend)) = select::choose(&pkt.flow, &svc) else {
                return Outcome::DropNoBackend;
            };
            (id, backend, true)
        }
    };
    let hop = match forward::backend_hop(ctx, &pkt, backend_id, &backend) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxToBackend, Outcome::RedirectToBackend);
    if !outcome.is_forwarded() {
        // Not forwarded: record nothing, so the flow's next packet is counted as its first.
        return outcome;
    }
    let nat = svc.flags & SERVICE_F_NAT != 0;
    // Recorded before the NAT rewrite: sessions are keyed by what the client sent (the NAT
    // reply path finds them by the same key).
    if new_session {
        session::record(&pkt.flow, backend_id, &backend);
    }
    if pkt.ends_connection() {
        session::mark_closing(&pkt.flow);
    }
    if nat && forward::rewrite(ctx, &mut pkt, Side::Dst, &backend.addr, backend.port).is_err() {
        return Outcome::PassMalformed;
    }
    if forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    stats::count_traffic(svc.id, backend_id, pkt.len, new_session);
    outcome
}

#[inline(always)]
fn action(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::PassNotIp
        | Outcome::PassNotTcpUdp
        | Outcome::PassNoService
        | Outcome::PassFragment
        | Outcome::PassIpv6NextHeader
        | Outcome::PassMalformed => xdp_action::XDP_PASS,
        Outcome::DropNoBackend
        | Outcome::DropFibFailed
        | Outcome::DropNoNeighbour
        | Outcome::DropNoEgress => xdp_action::XDP_DROP,
        Outcome::TxToBackend | Outcome::TxReply => xdp_action::XDP_TX,
        Outcome::RedirectToBackend | Outcome::RedirectReply => xdp_action::XDP_REDIRECT,
    }
}
