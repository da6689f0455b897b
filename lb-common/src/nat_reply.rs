//! Which packets from a NAT backend to a client are replies of the flow the balancer sent
//! there, judged on the client's session record (client -> VIP) that names that backend. The
//! reply path (lb-ebpf/src/reply.rs) applies it; tests and `explain` can predict it.
//!
//! The same client address and port may later talk to the backend's own address directly
//! (clients behind a shared address reuse ports all the time): those packets carry the same
//! addresses and ports as the old flow's replies. Only a flow that is still alive may claim
//! them: a record whose client has closed (FIN/RST, either side) is over at the first SYN the
//! backend sends for a new connection, or once it has been quiet for a linger.

use crate::layout::Session;

/// Session clock ticks (about a minute) after the client's last packet during which a closing
/// flow's replies (the rest of the close handshake, a half-closed response) are still its own.
pub const REPLY_LINGER_TICKS: u32 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyVerdict {
    /// A reply of the recorded flow: it leaves from VIP:port.
    Rewrite,
    /// Not the recorded flow's: that flow is over. The packet passes untouched and the record is
    /// forgotten, so the rest of the new conversation passes too.
    Ended,
}

/// The verdict on a packet from the record's backend to its client. `idle`: session clock ticks
/// since the client's last packet; `opens`: the packet is a SYN (a SYN-ACK opening a connection).
#[inline(always)]
pub const fn reply_verdict(session: &Session, idle: u32, opens: bool) -> ReplyVerdict {
    let quiet = idle > REPLY_LINGER_TICKS;
    // A SYN-ACK belongs to a flow whose handshake is under way or was (retransmissions back
    // off for up to a minute); after the client closed, it can only open another connection.
    let ended = if session.is_closing() { opens || quiet } else { opens && quiet };
    if ended { ReplyVerdict::Ended } else { ReplyVerdict::Rewrite }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{SESSION_F_CLOSING, SESSION_F_NAT, SESSION_F_UNCONFIRMED};

    fn session(flags: u8) -> Session {
        Session { backend_id: 2, generation: 1, service_id: 0, flags: SESSION_F_NAT | flags }
    }

    #[test]
    fn a_live_flow_claims_its_replies() {
        for flags in [0, SESSION_F_UNCONFIRMED] {
            for opens in [false, true] {
                assert_eq!(reply_verdict(&session(flags), 0, opens), ReplyVerdict::Rewrite);
            }
            // Quiet for long, but not closing: a server may push after a long pause.
            assert_eq!(reply_verdict(&session(flags), 100_000, false), ReplyVerdict::Rewrite);
        }
        // A retransmitted SYN-ACK within the linger is the handshake's own.
        assert_eq!(reply_verdict(&session(0), REPLY_LINGER_TICKS, true), ReplyVerdict::Rewrite);
        assert_eq!(reply_verdict(&session(0), REPLY_LINGER_TICKS + 1, true), ReplyVerdict::Ended);
    }

    #[test]
    fn a_closed_flow_claims_its_close_but_no_new_connection() {
        let closing = session(SESSION_F_CLOSING);
        // The backend's FIN/ACK and a half-closed response's data: the flow's own.
        assert_eq!(reply_verdict(&closing, 0, false), ReplyVerdict::Rewrite);
        assert_eq!(reply_verdict(&closing, REPLY_LINGER_TICKS, false), ReplyVerdict::Rewrite);
        // The client reconnected to the backend's own address from the same port.
        assert_eq!(reply_verdict(&closing, 0, true), ReplyVerdict::Ended);
        // Quiet past the linger: whatever comes is not this flow's.
        assert_eq!(reply_verdict(&closing, REPLY_LINGER_TICKS + 1, false), ReplyVerdict::Ended);
    }
}
