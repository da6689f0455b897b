//! The packet's whole path, top to bottom. Each step lives in its own module.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Event, Outcome};

use crate::{
    forward::{self, Side},
    icmp, packet,
    parse::{self, Parsed},
    reply, select, service,
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
        Ok(Parsed::Flow(pkt)) => pkt,
        Ok(Parsed::Icmp { outer, ip_end }) => return icmp::forward(ctx, &outer, ip_end),
        Err(outcome) => return outcome,
    };
    if !service::may_be_service(&pkt.flow) {
        return reply::forward(ctx, &mut pkt);
    }
    // A SYN opens a connection: whatever an old record says, it is chosen afresh (as Katran
    // does), which spares new connections the session lookup. A known flow's record says all
    // the rest of the path needs, which spares it the SERVICES lookup.
    let flow = session::Flow::new(&pkt.flow);
    let now = packet::now_ns();
    let known = if pkt.opens_connection() { Lookup::Miss } else { session::lookup(&flow, now) };
    let to = match known {
        Lookup::Hit(to) => to,
        known => {
            if matches!(known, Lookup::Stale) {
                stats::count_event(Event::SessionRechosen);
            }
            let Some(svc) = service::lookup(&pkt.flow) else {
                return reply::forward(ctx, &mut pkt);
            };
            // The bucket this flow will be recorded in starts loading now, so that its miss
            // overlaps the table lookup's (a SYN has not read it; for others it is cached).
            session::warm(&flow);
            let Some(to) = select::choose(&flow, &svc, now) else {
                return Outcome::DropNoBackend;
            };
            to
        }
    };
    let hop = match forward::backend_hop(ctx, &pkt, to.backend_id, &to.backend, now) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxToBackend, Outcome::RedirectToBackend);
    if !outcome.is_forwarded() {
        // Not forwarded: record nothing, so the flow's next packet is counted as its first.
        return outcome;
    }
    // Recorded before the NAT rewrite: sessions are keyed by what the client sent (the NAT
    // reply path finds them by the same key).
    if to.new && !session::record(&flow, &to, now) {
        stats::count_event(Event::NewFlowNotRecorded);
    }
    if pkt.ends_connection() {
        session::mark_closing(&flow);
    }
    if to.nat && forward::rewrite(ctx, &mut pkt, Side::Dst, &to.backend.addr, to.backend.port).is_err() {
        return Outcome::PassMalformed;
    }
    if forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    stats::count_traffic(to.service_id, to.backend_id, pkt.len, to.new);
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
        | Outcome::PassMalformed
        | Outcome::PassIcmpError => xdp_action::XDP_PASS,
        Outcome::DropNoBackend
        | Outcome::DropFibFailed
        | Outcome::DropNoNeighbour
        | Outcome::DropNoEgress => xdp_action::XDP_DROP,
        Outcome::TxToBackend | Outcome::TxReply | Outcome::TxIcmpToBackend | Outcome::TxIcmpToClient => {
            xdp_action::XDP_TX
        }
        Outcome::RedirectToBackend
        | Outcome::RedirectReply
        | Outcome::RedirectIcmpToBackend
        | Outcome::RedirectIcmpToClient => xdp_action::XDP_REDIRECT,
    }
}
