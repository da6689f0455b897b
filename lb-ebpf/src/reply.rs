//! The NAT reply path: a backend's reply to a client is rewritten to come from VIP:port.

use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, Outcome, filter_slot};

use crate::{
    forward::{self, Endpoint},
    maps::{NAT_REVERSE, REPLY_FILTER},
    parse::Packet,
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &mut Packet) -> Outcome {
    if !may_be_reply(&pkt.flow) {
        return Outcome::PassNoService;
    }
    let Some(reverse) = (unsafe { NAT_REVERSE.get(&pkt.flow) }).copied() else {
        return Outcome::PassNoService;
    };
    if forward::rewrite(ctx, pkt, Endpoint::Src, &reverse.vip, reverse.vport).is_err() {
        return Outcome::PassMalformed;
    }
    // Replies go to many clients: no per-destination cache, the FIB answers each one.
    let hop = match forward::fib_hop(ctx, pkt, &pkt.flow.dst_addr) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxReply, Outcome::RedirectReply);
    if outcome.is_forwarded() && forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    outcome
}

/// Marks the reply filter for packets from this backend endpoint; see `may_be_reply`.
#[inline(always)]
pub fn expect_replies_from(addr: &[u32; 4], port: u16, proto: u8) {
    if let Some(mark) = REPLY_FILTER.get_ptr_mut(filter_slot(addr, port, proto)) {
        // Read before writing: a mark set once stays clean in every CPU's cache.
        unsafe {
            if *mark == 0 {
                *mark = 1;
            }
        }
    }
}

/// The array test that spares packets from anything but a NAT backend the NAT_REVERSE lookup.
#[inline(always)]
fn may_be_reply(flow: &FlowKey) -> bool {
    REPLY_FILTER
        .get(filter_slot(&flow.src_addr, flow.src_port, flow.proto))
        .is_some_and(|mark| *mark != 0)
}
