//! Shared test bed: network namespaces, frames, servers.
