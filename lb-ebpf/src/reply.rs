//! The NAT reply path: a backend's reply to a client is rewritten to come from VIP:port.
//!
//! No per-flow reverse record: NAT_REPLIES names the VIPs a backend endpoint serves, and the
//! client's session record (client -> VIP) naming that backend confirms the reply belongs to a
//! flow sent there, if that flow is still alive (lb_common::nat_reply decides).

use aya_ebpf::programs::XdpContext;
use lb_common::{Endpoint, Event, FlowKey, NAT_REPLY_VIPS, NatVip, Outcome, ReplyVerdict, reply_verdict};

use crate::{
    filter,
    forward::{self, Side},
    maps::{NAT_REPLIES, NAT_REPLY_FILTER},
    packet,
    parse::Packet,
    session::{self, Flow, Found},
    session_table, stats,
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &mut Packet) -> Outcome {
    let Some(Recorded { vip, found, hash }) = recorded_flow(&pkt.flow) else {
        return Outcome::PassNoService;
    };
    let now = packet::now_ns();
    if reply_verdict(&found.session, session_table::idle(found.slot, now), pkt.carries_syn()) == ReplyVerdict::Ended {
        // The client's old flow is over: this is another conversation between the same
        // endpoints (say, straight to the backend's own address). Leave it, and let it be.
        session_table::forget(hash, found.slot);
        stats::count_event(Event::ReplyOfEndedFlow);
        return Outcome::PassNoService;
    }
    // The way out first, as for requests: a reply that cannot leave is dropped unchanged.
    let hop = match forward::client_hop(ctx, pkt, &vip, now) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxReply, Outcome::RedirectReply);
    if !outcome.is_forwarded() {
        return outcome;
    }
    // The backend ending the connection ends the flow as the client's FIN/RST does.
    if pkt.ends_connection() {
        session::mark_found_closing(&found);
    }
    if forward::rewrite(ctx, pkt, Side::Src, &vip.addr, vip.port).is_err() || forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    outcome
}

/// A client's record of a flow sent to the backend a packet comes from.
pub struct Recorded {
    /// The service address the flow was sent to.
    pub vip: NatVip,
    pub found: Found,
    /// The session hash of the client's flow (client -> VIP).
    pub hash: u64,
}

/// The client's record that sends a flow to the backend a packet (backend -> client) comes
/// from, if any. Reads only (icmp.rs asks it too, for errors about a flow's packets).
#[inline(always)]
pub fn recorded_flow(reply: &FlowKey) -> Option<Recorded> {
    if !filter::marked(&NAT_REPLY_FILTER, &reply.src_addr, reply.src_port, reply.proto) {
        return None;
    }
    let backend = Endpoint {
        addr: reply.src_addr,
        port: reply.src_port,
        proto: reply.proto,
        family: reply.family,
    };
    let vips = unsafe { NAT_REPLIES.get(&backend) }?;
    for i in 0..NAT_REPLY_VIPS {
        if i as u32 >= vips.count {
            break;
        }
        let vip = vips.vips[i];
        let request = request_of(reply, &vip);
        let flow = Flow::new(&request);
        if let Some(found) = session::sent_to(&flow, &reply.src_addr, reply.src_port) {
            return Some(Recorded { vip, found, hash: flow.hash });
        }
    }
    None
}

/// The client's flow (client -> VIP) a reply to it from a backend of `vip` would belong to.
#[inline(always)]
fn request_of(reply: &FlowKey, vip: &NatVip) -> FlowKey {
    FlowKey {
        src_addr: reply.dst_addr,
        dst_addr: vip.addr,
        src_port: reply.dst_port,
        dst_port: vip.port,
        proto: reply.proto,
        family: reply.family,
        _pad: [0; 2],
    }
}
