//! Waiting out the XDP program runs that may still read a retired bank.
//!
//! A flip (one SERVICE_BANKS store) retires the bank the service used before, but a program run
//! that read the old word a moment earlier may still be reading that bank. Every run of the
//! program is an RCU read-side critical section (driver NAPI poll, generic XDP and
//! BPF_PROG_TEST_RUN all run it under rcu_read_lock with preemption or migration off), so once an
//! RCU grace period has passed after the flip, no run can still see the retired bank.
//!
//! The bpf() syscall has no "synchronize_rcu" command, but an update of an element of a
//! BPF_MAP_TYPE_ARRAY_OF_MAPS map waits for one before it returns: in kernel/bpf/syscall.c,
//! `map_update_elem()` calls `maybe_wait_bpf_programs(map)` after a successful update, and that
//! calls `synchronize_rcu()` for HASH_OF_MAPS and ARRAY_OF_MAPS maps ("Wait for any running
//! non-sleepable BPF programs to complete so that userspace, when we return to it, knows that
//! all non-sleepable programs that could be running use the new map value"; in the kernel since
//! 4.16, commit 1ae80cf31938, and unchanged in 6.18). The selftests use the same trick
//! (tools/testing/selftests/bpf/prog_tests/btf_map_in_map.c, "Trigger synchronize_rcu() in
//! kernel"). So `Grace` owns a one-slot outer array of maps and a tiny inner array, and a wait is
//! one update of slot 0 with the inner map.
//!
//! aya 0.14 cannot create a map-of-maps by itself (the inner map fd it needs is only passed for
//! maps declared in an object), so both maps are created with a raw BPF_MAP_CREATE below; the
//! update goes through aya.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use aya::maps::{ArrayOfMaps, Map, MapData, MapError};

use super::DataplaneError;

/// Grace periods waited out so far: a bank retired while this read `n` is safe to write once it
/// reads more than `n`.
pub type Epoch = u64;

pub(super) struct Grace {
    outer: ArrayOfMaps<MapData, MapData>,
    inner: MapData,
    completed: Epoch,
    waited: Duration,
}

impl Grace {
    pub(super) fn new() -> Result<Self, DataplaneError> {
        let err = |detail: String| DataplaneError::Map { name: "lb_grace", detail };
        let inner = create_map(BPF_MAP_TYPE_ARRAY, None)
            .map_err(|e| err(format!("BPF_MAP_CREATE of the inner array failed: {e}")))
            .and_then(|fd| MapData::from_fd(fd).map_err(|e| err(e.to_string())))?;
        let outer = create_map(BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner))
            .map_err(|e| err(format!("BPF_MAP_CREATE of the array of maps failed: {e}")))?;
        let outer = MapData::from_fd(outer)
            .and_then(Map::from_map_data)
            .and_then(ArrayOfMaps::try_from)
            .map_err(|e: MapError| err(e.to_string()))?;
        Ok(Grace { outer, inner, completed: 0, waited: Duration::ZERO })
    }

    /// Grace periods completed so far.
    pub(super) fn epoch(&self) -> Epoch {
        self.completed
    }

    /// Returns once every program run that started before this call has finished.
    pub(super) fn wait(&mut self) -> Result<(), DataplaneError> {
        let start = Instant::now();
        self.outer
            .set(0, &self.inner, 0)
            .map_err(|source| DataplaneError::Write { name: "lb_grace", source })?;
        self.waited += start.elapsed();
        self.completed += 1;
        Ok(())
    }

    /// Makes sure a grace period has completed since `retired` (the epoch read when a bank
    /// stopped being live). Returns whether it had to wait.
    pub(super) fn wait_past(&mut self, retired: Epoch) -> Result<bool, DataplaneError> {
        if self.completed > retired {
            return Ok(false);
        }
        self.wait()?;
        Ok(true)
    }

    /// Grace periods waited for and the time spent in them.
    pub(super) fn stats(&self) -> (u64, Duration) {
        (self.completed, self.waited)
    }
}

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE (include/uapi/linux/bpf.h). The
/// kernel reads `size` bytes and treats the rest of its attr as zero.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    /// The map every slot must look like; only used at creation.
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// A one-slot array with u32 keys and values; for an array of maps, slots hold maps like `inner`.
fn create_map(map_type: u32, inner: Option<&MapData>) -> std::io::Result<OwnedFd> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut map_name = [0u8; 16];
    map_name[..8].copy_from_slice(b"lb_grace");
    let attr = MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        map_flags: 0,
        inner_map_fd: inner.map_or(0, |m| m.fd().as_fd().as_raw_fd() as u32),
        numa_node: 0,
        map_name,
    };
    // SAFETY: BPF_MAP_CREATE reads `size_of::<MapCreateAttr>()` bytes from a live struct.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, &attr as *const MapCreateAttr, size_of::<MapCreateAttr>())
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
