//! The NAT reply path: a backend's reply to a client is rewritten to come from VIP:port.

use aya_ebpf::programs::XdpContext;
use lb_common::Outcome;

use crate::{
    forward::{Endpoint, rewrite, route},
    maps::NAT_REVERSE,
    parse::Packet,
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &mut Packet) -> Outcome {
    let Some(reverse) = (unsafe { NAT_REVERSE.get(&pkt.flow) }).copied() else {
        return Outcome::PassNoService;
    };
    if rewrite(ctx, pkt, Endpoint::Src, &reverse.vip, reverse.vport).is_err() {
        return Outcome::PassMalformed;
    }
    route(ctx, pkt, &pkt.flow.dst_addr, Outcome::TxReply, Outcome::RedirectReply)
}
