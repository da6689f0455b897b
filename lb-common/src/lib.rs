//! What the XDP program and the control plane must agree on: map layouts, limits, and the pure
//! functions (flow hash, table slot, second choice, checksum updates) that decide where a packet
//! goes. Userspace calls the very same functions to predict and test every kernel decision.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod csum;
pub mod filter;
pub mod hash;
pub mod icmp;
pub mod layout;
pub mod limits;
pub mod nat_reply;
pub mod quota;
pub mod session_table;
pub mod stats;

pub use filter::{FILTER_SLOTS, FILTER_WORDS, filter_bit, filter_slot};
pub use hash::{flow_hash, second_choice, table_slot};
pub use icmp::{PROTO_ICMP, PROTO_ICMPV6};
pub use layout::*;
pub use limits::*;
pub use quota::{NewSessionQuota, QUOTA_BURST_PERCENT};
pub use nat_reply::{REPLY_LINGER_TICKS, ReplyVerdict, reply_verdict};
pub use session_table::*;
pub use stats::*;
