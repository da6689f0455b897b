//! A do-nothing XDP program for the OTHER end of a veth that `lb_xdp` sends frames out of.
//!
//! Native XDP_TX (and XDP_REDIRECT) into a veth delivers a frame to the peer through the peer's
//! XDP ring, which exists only while the peer has an XDP program of its own; without one the
//! kernel drops the frame silently (toolchain README, "veth + XDP pitfalls"). Test topologies
//! attach this program to the peer so it has that ring and passes every frame on unchanged.
//! Real NICs need nothing of the kind.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
