//! The pins of a running instance, under /sys/fs/bpf/lb/<instance>: every map of the loaded
//! object by its map name, every loaded program as `prog_<name>`. They are there for operators
//! (`bpftool map dump pinned ...`) and are never reused: each start creates fresh maps and pins
//! them anew, and a clean exit removes them.
//!
//! Ownership: the instance's directory is owned by the process holding an flock on it, so the
//! kernel releases it when that process dies, however it dies. A start claims the directory
//! while holding an flock on /sys/fs/bpf/lb, so two starts cannot both take it: a directory
//! whose lock is held belongs to a running lb (refused); one whose lock is free was left by an
//! lb that died (stale: removed).

use std::{
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use aya::Ebpf;

use super::bpffs::{self, DirLock};

/// The instance name when `lb run` is given none.
pub const DEFAULT_INSTANCE: &str = "default";

/// Where every instance's directory lives.
pub const PIN_ROOT: &str = "/sys/fs/bpf/lb";

/// How long a start waits for another start to finish claiming its directory.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Pins of programs are named `prog_<program name>`; maps keep their own names.
pub const PROGRAM_PIN_PREFIX: &str = "prog_";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    Mount(String),
    #[error(
        "instance \"{instance}\" is already running{holder}: its pins are at {}. Stop it first, \
         or start this one under another name with --instance OTHER (and its own --admin-socket)",
        dir.display()
    )]
    InUse { instance: Instance, dir: PathBuf, holder: Holder },
    #[error("{what} {path} failed: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning {object} at {path} failed: {source}")]
    Pin {
        object: String,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

/// The pid of a running instance, when /proc/locks tells it.
#[derive(Debug)]
pub struct Holder(Option<u32>);

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(f, " (lb pid {pid})"),
            None => Ok(()),
        }
    }
}

/// An instance name: 1 to 64 of A-Z a-z 0-9 _ - (it becomes a directory name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance(String);

#[derive(Debug, thiserror::Error)]
#[error("instance name {0:?} is not valid: use 1 to 64 characters of A-Z a-z 0-9 _ -")]
pub struct BadInstanceName(String);

impl FromStr for Instance {
    type Err = BadInstanceName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(Instance(s.to_string())) } else { Err(BadInstanceName(s.to_string())) }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance's pin directory, claimed by this process. Dropping it removes the directory
/// and every pin in it, so a start that fails after the claim leaves nothing behind.
pub struct PinDir {
    path: PathBuf,
    /// Held for as long as the directory exists; None once it is removed.
    lock: Option<DirLock>,
}

impl PinDir {
    /// Mounts bpffs at /sys/fs/bpf if needed, then makes /sys/fs/bpf/lb/<instance> this
    /// process's: refused if a running lb holds it, removed first if its lb died.
    pub fn claim(instance: &Instance) -> Result<PinDir, PinError> {
        if bpffs::ensure_mounted()? {
            tracing::info!(path = bpffs::BPFFS, private = bpffs::private_mounts(), "mounted a BPF filesystem");
        }
        let root = Path::new(PIN_ROOT);
        create_dir(root)?;
        let _claiming = bpffs::lock(root, CLAIM_WAIT)
            .map_err(io_error("locking", root))?
            .ok_or_else(|| PinError::Io {
                what: "locking",
                path: root.into(),
                source: io::Error::other(format!("another lb kept it locked for {CLAIM_WAIT:?} while starting")),
            })?;
        let path = root.join(&instance.0);
        if path.symlink_metadata().is_ok() {
            remove_stale(instance, &path)?;
        }
        create_dir(&path)?;
        // Free unless something other than lb locks it: every lb claims under the root's lock.
        let lock = bpffs::try_lock(&path).map_err(io_error("locking", &path))?;
        if lock.is_none() {
            let holder = Holder(bpffs::lock_holder(&path));
            return Err(PinError::InUse { instance: instance.clone(), dir: path, holder });
        }
        Ok(PinDir { path, lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory as other mount namespaces reach it (/proc/<pid>/root/...), unless this
    /// process shares the host's mount namespace (see `bpffs::private_mounts`).
    pub fn path_from_outside(&self) -> Option<PathBuf> {
        let inside = self.path.strip_prefix("/").ok()?;
        bpffs::private_mounts().then(|| Path::new(&format!("/proc/{}/root", std::process::id())).join(inside))
    }

    /// Pins every map of `ebpf` (all that the object declares, whatever their names) and every
    /// program of it that is loaded. Returns how many maps it pinned.
    pub fn pin_object(&self, ebpf: &mut Ebpf) -> Result<usize, PinError> {
        let mut maps = 0;
        for (name, map) in ebpf.maps() {
            // Global data (.rodata: constants set at load) is no state to look at, and bpffs
            // refuses names with a dot.
            if name.starts_with('.') {
                continue;
            }
            let path = self.path.join(name);
            map.pin(&path).map_err(|source| PinError::Pin { object: format!("map {name}"), path, source })?;
            maps += 1;
        }
        for (name, program) in ebpf.programs_mut() {
            if program.fd().is_err() {
                continue; // not loaded (the test helpers' programs): nothing to pin
            }
            let path = self.path.join(format!("{PROGRAM_PIN_PREFIX}{name}"));
            program
                .pin(&path)
                .map_err(|source| PinError::Pin { object: format!("program {name}"), path, source })?;
        }
        Ok(maps)
    }

    /// Removes every pin and the directory (the maps live on while the process holds them).
    pub fn remove(&mut self) -> io::Result<()> {
        if self.lock.is_none() {
            return Ok(());
        }
        let removed = remove_dir_all(&self.path);
        // Unlocked only once the directory is gone: a start in between would see it held.
        self.lock = None;
        removed
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(path = %self.path.display(), "removing the pin directory failed: {e}");
        }
    }
}

/// A directory found at claim time: refused while its owner runs, else removed.
fn remove_stale(instance: &Instance, path: &Path) -> Result<(), PinError> {
    let lock = match bpffs::try_lock(path) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // its owner just removed it
        Err(e) => return Err(PinError::Io { what: "locking", path: path.into(), source: e }),
    };
    if lock.is_none() {
        let holder = Holder(bpffs::lock_holder(path));
        return Err(PinError::InUse { instance: instance.clone(), dir: path.into(), holder });
    }
    remove_dir_all(path).map_err(io_error("removing stale pin directory", path))?;
    tracing::warn!(path = %path.display(), "removed a stale pin directory (the lb that made it exited without cleaning up)");
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), PinError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists || !path.is_dir() => {
            Err(PinError::Io { what: "creating", path: path.into(), source: e })
        }
        _ => Ok(()),
    }
}

fn remove_dir_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.to_path_buf();
    move |source| PinError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::Instance;

    #[test]
    fn instance_names_are_short_and_plain() {
        for ok in ["default", "a", "edge-1", "LB_2", &"x".repeat(64)] {
            assert_eq!(ok.parse::<Instance>().map(|i| i.to_string()).ok().as_deref(), Some(ok));
        }
        for bad in ["", "a/b", "..", ".hidden", "with space", "é", &"x".repeat(65)] {
            let err = bad.parse::<Instance>().expect_err(bad).to_string();
            assert!(err.contains("A-Z a-z 0-9 _ -") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
