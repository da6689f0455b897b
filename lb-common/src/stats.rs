//! What happened to each packet: one OUTCOME counter per packet, in a per-CPU array.

/// Index into PACKET_OUTCOMES. Every packet the program sees increments exactly one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed.
    PassNotIp = 0,
    /// IP but neither TCP nor UDP (ICMP echo and other ICMP that is no error about a flow, other
    /// protocols): passed.
    PassNotTcpUdp = 1,
    /// TCP/UDP not addressed to a service and not a NAT reply: passed.
    PassNoService = 2,
    /// IPv4 fragment (ports unknown): passed untouched for the kernel to handle.
    PassFragment = 3,
    /// IPv6 next header other than TCP/UDP (extension headers included): passed.
    PassIpv6NextHeader = 4,
    /// Truncated header, IHL < 5, IP length beyond the frame, UDP length < 8 ...: passed untouched.
    PassMalformed = 5,
    /// Addressed to a service that has no backend in service: dropped.
    DropNoBackend = 6,
    /// bpf_fib_lookup found no route to the backend / client: dropped.
    DropFibFailed = 7,
    /// bpf_fib_lookup found the route but no neighbour (ARP/ND) entry yet: dropped.
    DropNoNeighbour = 8,
    /// The egress interface is not in the devmap (not attached by this instance): dropped.
    DropNoEgress = 9,
    /// Sent to a backend out of the interface it came in on (one-arm).
    TxToBackend = 10,
    /// Sent to a backend through another interface (two-arm).
    RedirectToBackend = 11,
    /// A NAT reply rewritten to VIP:port, sent back out of its ingress interface.
    TxReply = 12,
    /// A NAT reply rewritten to VIP:port, sent through another interface.
    RedirectReply = 13,
    /// An ICMP error (destination unreachable, packet too big) not about a service's flow (nor
    /// a NAT flow's packet to its backend), or about one that has no backend now: passed.
    PassIcmpError = 14,
    /// An ICMP error about a service's flow, sent to the flow's backend out of its ingress
    /// interface.
    TxIcmpToBackend = 15,
    /// An ICMP error about a service's flow, sent to the flow's backend through another
    /// interface.
    RedirectIcmpToBackend = 16,
    /// NAT: an ICMP error about a packet forwarded to a backend, rewritten to quote VIP:port
    /// and sent on to the client out of its ingress interface.
    TxIcmpToClient = 17,
    /// As TxIcmpToClient, through another interface.
    RedirectIcmpToClient = 18,
}

pub const OUTCOME_COUNT: u32 = 19;

impl Outcome {
    pub const ALL: [Outcome; OUTCOME_COUNT as usize] = [
        Outcome::PassNotIp,
        Outcome::PassNotTcpUdp,
        Outcome::PassNoService,
        Outcome::PassFragment,
        Outcome::PassIpv6NextHeader,
        Outcome::PassMalformed,
        Outcome::DropNoBackend,
        Outcome::DropFibFailed,
        Outcome::DropNoNeighbour,
        Outcome::DropNoEgress,
        Outcome::TxToBackend,
        Outcome::RedirectToBackend,
        Outcome::TxReply,
        Outcome::RedirectReply,
        Outcome::PassIcmpError,
        Outcome::TxIcmpToBackend,
        Outcome::RedirectIcmpToBackend,
        Outcome::TxIcmpToClient,
        Outcome::RedirectIcmpToClient,
    ];

    /// Name used in `lb status` and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::PassNotIp => "pass_not_ip",
            Outcome::PassNotTcpUdp => "pass_not_tcp_udp",
            Outcome::PassNoService => "pass_no_service",
            Outcome::PassFragment => "pass_fragment",
            Outcome::PassIpv6NextHeader => "pass_ipv6_next_header",
            Outcome::PassMalformed => "pass_malformed",
            Outcome::DropNoBackend => "drop_no_backend",
            Outcome::DropFibFailed => "drop_fib_failed",
            Outcome::DropNoNeighbour => "drop_no_neighbour",
            Outcome::DropNoEgress => "drop_no_egress",
            Outcome::TxToBackend => "tx_to_backend",
            Outcome::RedirectToBackend => "redirect_to_backend",
            Outcome::TxReply => "tx_reply",
            Outcome::RedirectReply => "redirect_reply",
            Outcome::PassIcmpError => "pass_icmp_error",
            Outcome::TxIcmpToBackend => "tx_icmp_to_backend",
            Outcome::RedirectIcmpToBackend => "redirect_icmp_to_backend",
            Outcome::TxIcmpToClient => "tx_icmp_to_client",
            Outcome::RedirectIcmpToClient => "redirect_icmp_to_client",
        }
    }

    /// Whether the packet left towards a backend or client (TX or redirect).
    pub const fn is_forwarded(self) -> bool {
        matches!(
            self,
            Outcome::TxToBackend
                | Outcome::RedirectToBackend
                | Outcome::TxReply
                | Outcome::RedirectReply
                | Outcome::TxIcmpToBackend
                | Outcome::RedirectIcmpToBackend
                | Outcome::TxIcmpToClient
                | Outcome::RedirectIcmpToClient
        )
    }

    /// The XDP verdict this outcome implies: "pass", "drop", "tx" or "redirect".
    pub const fn verdict(self) -> &'static str {
        match self {
            Outcome::PassNotIp
            | Outcome::PassNotTcpUdp
            | Outcome::PassNoService
            | Outcome::PassFragment
            | Outcome::PassIpv6NextHeader
            | Outcome::PassMalformed
            | Outcome::PassIcmpError => "pass",
            Outcome::DropNoBackend | Outcome::DropFibFailed | Outcome::DropNoNeighbour | Outcome::DropNoEgress => "drop",
            Outcome::TxToBackend | Outcome::TxReply | Outcome::TxIcmpToBackend | Outcome::TxIcmpToClient => "tx",
            Outcome::RedirectToBackend
            | Outcome::RedirectReply
            | Outcome::RedirectIcmpToBackend
            | Outcome::RedirectIcmpToClient => "redirect",
        }
    }
}

/// Index into PACKET_EVENTS: things that happen on the way, counted besides the outcome.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The slot's backend was out of service; a second choice was taken.
    SecondChoice = 0,
    /// A session's backend was out of service or gone; the flow was re-chosen.
    SessionRechosen = 1,
    /// A new flow found no slot of its bucket it may take (all held by live confirmed flows): it
    /// was forwarded unrecorded (its next packet tries again; a NAT SYN-ACK is not rewritten).
    NewFlowNotRecorded = 2,
    /// A NAT backend's packet matched a client's record of a flow that is over (a new connection
    /// from the same client port, or past the closing linger): passed untouched, record forgotten.
    ReplyOfEndedFlow = 3,
    /// A new flow's choice was at its quota and the flow went to an overflow backend instead.
    SpilledToOverflow = 4,
    /// A new flow's choice was at its quota and so was every other choice (or no overflow pool
    /// was open): it went to its choice all the same (never dropped for a quota).
    EveryChoiceFull = 5,
}

pub const EVENT_COUNT: u32 = 6;

impl Event {
    pub const ALL: [Event; EVENT_COUNT as usize] =
        [Event::SecondChoice, Event::SessionRechosen, Event::NewFlowNotRecorded,
        Event::ReplyOfEndedFlow,
        Event::SpilledToOverflow,
        Event::EveryChoiceFull,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Event::SecondChoice => "second_choice",
            Event::SessionRechosen => "session_rechosen",
            Event::NewFlowNotRecorded => "new_flow_not_recorded",
            Event::ReplyOfEndedFlow => "reply_of_ended_flow",
            Event::SpilledToOverflow => "spilled_to_overflow",
            Event::EveryChoiceFull => "every_choice_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_listed_once_in_its_own_place() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{} is out of place in Outcome::ALL", o.name());
            let forwarded = matches!(o.verdict(), "tx" | "redirect");
            assert_eq!(o.is_forwarded(), forwarded, "{}: is_forwarded disagrees with its verdict", o.name());
        }
    }
}
