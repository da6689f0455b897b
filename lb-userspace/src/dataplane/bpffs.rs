//! The BPF filesystem at /sys/fs/bpf: mounting it when it is not there, exclusive locks on its
//! directories (bpffs holds no regular files, so a lock is an flock on the directory itself),
//! and who holds such a lock.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{fd::AsRawFd, unix::ffi::OsStrExt, unix::fs::MetadataExt},
    path::Path,
};

use super::pins::PinError;

/// Where the BPF filesystem is mounted by convention (systemd, Cilium, bpftool).
pub const BPFFS: &str = "/sys/fs/bpf";

/// `f_type` of a bpffs in statfs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: libc::c_long = 0xcafe4a11;

/// Mounts a bpffs at /sys/fs/bpf unless one is there, as Cilium does. True if it mounted one.
/// Inside `ip netns exec` the mount lands in that command's private mount namespace.
pub fn ensure_mounted() -> Result<bool, PinError> {
    match is_bpffs(Path::new(BPFFS)) {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(e) => {
            return Err(PinError::Mount(format!(
                "{BPFFS} is not there ({e}): lb needs sysfs at /sys and a kernel with BPF support"
            )));
        }
    }
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (source, target, fstype, options) = (c("bpffs"), c(BPFFS), c("bpf"), c("mode=0700"));
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, options.as_ptr().cast())
    };
    if rc != 0 {
        return Err(PinError::Mount(format!(
            "{BPFFS} is not a BPF filesystem and mounting one there failed ({}): run lb as root, \
             or mount it first with `mount -t bpf bpffs {BPFFS}`",
            io::Error::last_os_error()
        )));
    }
    Ok(true)
}

/// True if a BPF filesystem is mounted at `path`.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as libc::c_long == BPF_FS_MAGIC)
}

/// False if this process shares the mount namespace of pid 1 (the host's), true if it has one
/// of its own (`ip netns exec` gives it one) or that cannot be told (pid 1's namespace may be
/// unreadable from another one). In its own, its bpffs mount and pins are visible to it alone.
pub fn private_mounts() -> bool {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    !matches!((ns("self"), ns("1")), (Some(me), Some(init)) if me == init)
}

/// An exclusive flock on a directory, held until dropped (or until the process dies).
pub struct DirLock {
    _dir: File,
}

/// Takes the lock on `dir` if nobody holds it: None when another process does.
pub fn try_lock(dir: &Path) -> io::Result<Option<DirLock>> {
    let file = File::open(dir)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(DirLock { _dir: file }));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        e => Err(e),
    }
}

/// Takes the lock on `dir`, waiting up to `timeout` for its holder to let go.
pub fn lock(dir: &Path, timeout: std::time::Duration) -> io::Result<Option<DirLock>> {
    let start = std::time::Instant::now();
    loop {
        if let Some(l) = try_lock(dir)? {
            return Ok(Some(l));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The pid holding an flock on `dir`, from /proc/locks (lines such as
/// `1: FLOCK  ADVISORY  WRITE 4242 00:27:1010143 0 EOF`: pid, then major:minor in hex and the
/// inode). None if nobody holds one or the holder cannot be told.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let meta = std::fs::metadata(dir).ok()?;
    let dev = meta.dev();
    let id = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiting lock shows as "1: -> FLOCK ...": only held ones have FLOCK second.
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}
