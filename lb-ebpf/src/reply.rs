//! The NAT reply path: a backend's reply to a client is rewritten to come from VIP:port.
//!
//! No per-flow reverse record: NAT_REPLIES names the VIPs a backend endpoint serves, and the
//! client's session record (client -> VIP) confirms the reply belongs to a flow sent there.

use aya_ebpf::programs::XdpContext;
use lb_common::{Endpoint, FlowKey, NAT_REPLY_VIPS, NatVip, Outcome};

use crate::{
    filter,
    forward::{self, Side},
    maps::{NAT_REPLIES, NAT_REPLY_FILTER},
    packet,
    parse::Packet,
    session,
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &mut Packet) -> Outcome {
    let Some(vip) = vip_of_reply(&pkt.flow) else {
        return Outcome::PassNoService;
    };
    // The way out first, as for requests: a reply that cannot leave is dropped unchanged.
    let hop = match forward::client_hop(ctx, pkt, &vip, packet::now_ns()) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxReply, Outcome::RedirectReply);
    if !outcome.is_forwarded() {
        return outcome;
    }
    if forward::rewrite(ctx, pkt, Side::Src, &vip.addr, vip.port).is_err() || forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    outcome
}

/// The VIP a packet from a NAT backend to a client must appear to come from, if it is a reply
/// of a flow the balancer sent to that backend.
#[inline(always)]
fn vip_of_reply(reply: &FlowKey) -> Option<NatVip> {
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
        let request = FlowKey {
            src_addr: reply.dst_addr,
            dst_addr: vip.addr,
            src_port: reply.dst_port,
            dst_port: vip.port,
            proto: reply.proto,
            family: reply.family,
            _pad: [0; 2],
        };
        if session::sent_to(&request, &reply.src_addr, reply.src_port) {
            return Some(vip);
        }
    }
    None
}
