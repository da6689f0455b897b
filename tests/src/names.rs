//! Names for the namespaces a test creates, unique across runs and across parallel tests.
//!
//! Shape: `lbt-<pid>-<counter>-<tag>`. The pid separates concurrent runs, the counter separates
//! tests inside one run, the tag tells a human what the namespace is for. Interfaces are created
//! directly inside these namespaces (never in the root one), so their names only need to be
//! unique per namespace and can stay short and readable (`eth0`, `p-lb`).

use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace this crate creates starts with this.
pub const PREFIX: &str = "lbt-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh name for a namespace tagged `tag` (non `[a-z0-9-]` characters become `-`).
pub fn unique(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .take(24)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}-{tag}", std::process::id())
}

/// The pid of the run that created `name`, if the name is one of ours.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_carry_the_pid() {
        let a = unique("lb");
        let b = unique("lb");
        assert_ne!(a, b);
        assert_eq!(owner_pid(&a), Some(std::process::id()));
        assert_eq!(owner_pid("other-ns"), None);
        assert!(unique("a b/c").ends_with("-a-b-c"));
    }
}
