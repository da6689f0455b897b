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
            session::record(&pkt.flow, id, &backend);
            if svc.flags & SERVICE_F_NAT != 0 {
                session::record_nat_reverse(&pkt.flow, &backend, svc.id);
            }
            (id, backend, true)
        }
    };
    let outcome = forward::to_backend(ctx, &mut pkt, &svc, &backend);
    if matches!(outcome, Outcome::TxToBackend | Outcome::RedirectToBackend) {
        stats::count_traffic(svc.id, backend_id, pkt.len, new_session);
    }
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
