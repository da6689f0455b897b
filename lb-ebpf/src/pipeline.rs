//! The packet's whole path, top to bottom. Each step lives in its own module.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Event, Outcome, SERVICE_F_NAT};

use crate::{
    forward, parse, reply, select, service,
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
    let (backend_id, backend, new_session) = match session::lookup(&pkt.flow) {
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
    // NAT rewrites pkt.flow; the session is keyed by what the client sent.
    let client_flow = pkt.flow;
    let outcome = forward::to_backend(ctx, &mut pkt, &svc, &backend);
    if !matches!(outcome, Outcome::TxToBackend | Outcome::RedirectToBackend) {
        // Not forwarded: record nothing, so the flow's next packet is counted as its first.
        return outcome;
    }
    if new_session {
        session::record(&client_flow, backend_id, &backend);
        if svc.flags & SERVICE_F_NAT != 0 {
            session::record_nat_reverse(&client_flow, &backend, svc.id);
        }
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
