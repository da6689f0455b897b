//! The unit of the XDP program's clock. The program counts time in kernel ticks (jiffies: a
//! load the verifier inlines, where a clock helper is a call) and needs the tick's length to
//! turn them into nanoseconds. Set as the read-only global NS_PER_JIFFY at load.

use std::io;

/// Nanoseconds per jiffy (1e9 / CONFIG_HZ). The kernel reports exactly that as the resolution
/// of CLOCK_MONOTONIC_COARSE, the clock it advances once a tick.
pub(super) fn ns_per_jiffy() -> io::Result<u64> {
    let mut res = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `res` is a valid timespec for the call to fill.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64;
    // CONFIG_HZ is one of 100, 250, 300 or 1000; anything far outside is not a tick.
    if !(100_000..=100_000_000).contains(&ns) {
        return Err(io::Error::other(format!(
            "CLOCK_MONOTONIC_COARSE has a resolution of {ns} ns, not a kernel tick \
             (CONFIG_HZ 100 to 1000 gives 1 to 10 ms)"
        )));
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_one_of_the_kernels_hz_choices() {
        let ns = ns_per_jiffy().unwrap();
        let hz = (1_000_000_000 + ns / 2) / ns;
        assert!([100, 250, 300, 1000].contains(&hz), "{ns} ns per tick is HZ={hz}");
    }
}
