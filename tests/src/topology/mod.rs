//! Test topologies: namespaces wired with veth pairs and a bridge, addressed in 10.200.0.0/16
//! and fd00:200::/32, ready for an XDP program (offloads set, neighbours filled).

mod common;
mod host;
mod one_arm;
mod setup;
mod switch;
mod two_arm;

pub use common::Topology;
pub use host::{Host, Iface};
pub use one_arm::{ONE_ARM_NET, OneArm};
pub use switch::BRIDGE;
pub use two_arm::{BACKEND_NET, CLIENT_NET, TwoArm};
