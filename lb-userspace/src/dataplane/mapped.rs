//! A BPF_F_MMAPABLE array map mapped into our memory: LOOKUP (written with plain stores) and
//! SESSIONS (read without one bpf() call per element).

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::{Map, MapData};

use super::DataplaneError;

pub(super) struct Mapped {
    addr: NonNull<u8>,
    bytes: usize,
    /// Keeps the map (and so the mapping's backing) alive as long as the mapping.
    _map: MapData,
}

// The mapping is plain shared memory that the XDP program writes on every CPU at any time, so
// its readers already use volatile reads of racing memory; another thread of ours reading it
// (the session census) is one more such reader. munmap runs only when the last owner drops.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `bytes` bytes of array map `name`.
    pub(super) fn new(name: &'static str, map: Map, bytes: usize) -> Result<Self, DataplaneError> {
        let Map::Array(map) = map else {
            return Err(DataplaneError::Map { name, detail: "not an array map".into() });
        };
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of a map fd we own; the kernel checks size and flags.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if addr == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            return Err(DataplaneError::Map { name, detail: format!("mmap failed: {err} (is it BPF_F_MMAPABLE?)") });
        }
        let addr = NonNull::new(addr.cast::<u8>()).expect("mmap returned a null mapping");
        Ok(Mapped { addr, bytes, _map: map })
    }

    /// The mapping as `len` elements of `T`; panics if they do not fit.
    pub(super) fn elements<T>(&self, len: usize) -> *mut T {
        assert!(len * size_of::<T>() <= self.bytes, "mapping smaller than its elements");
        self.addr.as_ptr().cast()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.bytes) };
    }
}
