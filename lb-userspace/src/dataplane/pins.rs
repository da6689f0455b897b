//! The pins of an instance, under /sys/fs/bpf/lb/<instance>: every map of the object by its
//! map name, the program as `prog_<name>`, one XDP link per interface as
//! `link_<mode>_<interface>`, and the layout stamp (`layout::STAMP`). They outlive the lb that
//! made them: the links keep the program on the interfaces and the maps keep their contents, so
//! the data plane forwards on its own while no lb runs, and the next `lb run` of the instance
//! adopts them. `lb detach` (or `lb run --detach-on-exit`) removes them.
//!
//! Ownership: the instance's directory is owned by the process holding an flock on it, so the
//! kernel releases it when that process dies, however it dies. A start claims the directory
//! while holding an flock on /sys/fs/bpf/lb, so two starts cannot both take it: a directory
//! whose lock is held belongs to a running lb (refused); one whose lock is free is adopted if
//! its layout stamp names this lb's layout, refused if it names another (unless `--fresh`), and
//! cleared if it has no stamp (a start that did not finish).

use std::{
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use super::{
    bpffs::{self, DirLock},
    layout::{self, Layout},
};

/// The instance name when `lb run` is given none.
pub const DEFAULT_INSTANCE: &str = "default";

/// Where every instance's directory lives.
pub const PIN_ROOT: &str = "/sys/fs/bpf/lb";

/// How long a start waits for another start to finish claiming its directory.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Pins of programs are named `prog_<program name>`; maps keep their own names.
pub const PROGRAM_PIN_PREFIX: &str = "prog_";

/// Pins of XDP links are named `link_<mode>_<interface>` (mode: native or generic).
pub const LINK_PIN_PREFIX: &str = "link_";

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
    #[error(
        "the pins of instance \"{instance}\" at {} have map layout {pinned}; this lb needs layout \
         {wanted}, so it cannot adopt them (their data plane still runs, untouched). Either start \
         this lb with --fresh to discard them (XDP leaves the interfaces for a moment, sessions and \
         counters are lost), or run the lb that pinned them again and drain its traffic first, then \
         `lb detach --instance {instance}`",
        dir.display()
    )]
    Mismatch { instance: Instance, dir: PathBuf, pinned: String, wanted: String },
    #[error("the layout stamp: {0}")]
    Layout(String),
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

/// What a claimed directory held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing: a first start, or the last lb of the instance was detached.
    Nothing,
    /// The pins of an earlier lb of this layout: adopted.
    Adoptable,
    /// Pins discarded as `--fresh` asked (their layout version).
    Discarded(String),
    /// Pins without a layout stamp (a start that did not finish), cleared.
    Repaired,
}

/// An instance's pin directory, claimed by this process. A directory this start made (or
/// cleared) is removed again when it is dropped before `commit`, so a start that fails leaves
/// nothing behind; one it adopts, or has committed, stays: the data plane outlives lb.
pub struct PinDir {
    path: PathBuf,
    /// Held for as long as this process uses the directory.
    lock: Option<DirLock>,
    found: Found,
    /// Removed on drop: a fresh start that has not committed.
    discard_on_drop: bool,
}

impl PinDir {
    /// Mounts bpffs at /sys/fs/bpf if needed, then makes /sys/fs/bpf/lb/<instance> this
    /// process's: refused if a running lb holds it or if it holds pins of another layout than
    /// `layout` (unless `fresh`: then they are removed, links first). Touches nothing it refuses.
    pub fn claim(instance: &Instance, layout: &Layout, fresh: bool) -> Result<PinDir, PinError> {
        let (path, lock) = lock_instance(instance, true)?;
        let stamp = layout::read_stamp(&path).map_err(|e| PinError::Layout(e.to_string()))?;
        let empty = entries(&path).map_err(io_error("reading", &path))?.is_empty();
        let found = match stamp {
            None if empty => Found::Nothing,
            None => Found::Repaired,
            Some(v) if v == layout.version() && !fresh => {
                let differences = layout.differences(&path);
                if !differences.is_empty() {
                    return Err(PinError::Mismatch {
                        instance: instance.clone(),
                        dir: path,
                        pinned: format!("{v} (its maps differ from what it names: {})", differences.join("; ")),
                        wanted: layout.version().to_string(),
                    });
                }
                Found::Adoptable
            }
            Some(v) if fresh => Found::Discarded(v),
            Some(v) => {
                let differences = layout.differences(&path);
                let pinned = if differences.is_empty() { v } else { format!("{v}: {}", differences.join("; ")) };
                return Err(PinError::Mismatch {
                    instance: instance.clone(),
                    dir: path,
                    pinned,
                    wanted: layout.version().to_string(),
                });
            }
        };
        let mut dir = PinDir { path, lock: Some(lock), discard_on_drop: found != Found::Adoptable, found };
        match dir.found.clone() {
            Found::Repaired => {
                dir.clear().map_err(io_error("clearing", &dir.path))?;
                tracing::warn!(path = %dir.path.display(), "removed a half-written pin directory: it has no layout stamp, so the start that made it did not finish");
            }
            Found::Discarded(v) => {
                dir.clear().map_err(io_error("clearing", &dir.path))?;
                tracing::warn!(path = %dir.path.display(), pinned = %v, wanted = layout.version(), "--fresh: removed the pins found (their links are detached, sessions and counters lost)");
            }
            Found::Nothing | Found::Adoptable => {}
        }
        Ok(dir)
    }

    /// What the directory held when it was claimed.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// Whether the maps, links and program pinned here are an earlier lb's, to be adopted.
    pub fn adopting(&self) -> bool {
        self.found == Found::Adoptable
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

    /// The start is complete: the layout stamp is pinned (last, so a directory without one is
    /// known to be half-written) and the directory outlives this process.
    pub fn commit(&mut self, layout: &Layout) -> Result<(), PinError> {
        if !self.adopting() {
            layout::write_stamp(&self.path, layout.version()).map_err(|e| PinError::Layout(e.to_string()))?;
        }
        self.discard_on_drop = false;
        Ok(())
    }

    /// The XDP links pinned here: (interface, mode name, pin path).
    pub fn links(&self) -> io::Result<Vec<(String, String, PathBuf)>> {
        Ok(entries(&self.path)?
            .into_iter()
            .filter_map(|name| {
                let rest = name.strip_prefix(LINK_PIN_PREFIX)?;
                let (mode, iface) = rest.split_once('_')?;
                Some((iface.to_string(), mode.to_string(), self.path.join(&name)))
            })
            .collect())
    }

    /// Where the XDP program is pinned.
    pub fn program_path(&self) -> PathBuf {
        self.path.join(format!("{PROGRAM_PIN_PREFIX}{}", super::PROGRAM))
    }

    /// Where the link of `iface` in mode `mode` is pinned.
    pub fn link_path(&self, iface: &str, mode: &str) -> PathBuf {
        self.path.join(format!("{LINK_PIN_PREFIX}{mode}_{iface}"))
    }

    /// Removes every pin, the stamp first (a clear cut short reads as half-written), then the
    /// links (the program leaves the interfaces), then the rest. The directory stays.
    pub fn clear(&mut self) -> io::Result<()> {
        clear_dir(&self.path)
    }

    /// Removes every pin and the directory (the maps live on while a process holds them).
    pub fn remove(&mut self) -> io::Result<()> {
        if self.lock.is_none() {
            return Ok(());
        }
        let removed = clear_dir(&self.path).and_then(|()| remove_dir(&self.path));
        // Unlocked only once the directory is gone: a start in between would see it held.
        self.lock = None;
        removed
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if !self.discard_on_drop {
            return;
        }
        if let Err(e) = self.remove() {
            tracing::warn!(path = %self.path.display(), "removing the pin directory failed: {e}");
        }
    }
}

/// What `lb detach` removed.
pub struct Detached {
    pub path: PathBuf,
    pub pins: usize,
    pub links: Vec<String>,
}

/// Removes an instance that no lb runs: its links (the program leaves the interfaces), maps,
/// program, stamp and directory. None if it has no directory. Refused while its lb runs.
pub fn detach_instance(instance: &Instance) -> Result<Option<Detached>, PinError> {
    let root = Path::new(PIN_ROOT);
    if !root.join(&instance.0).exists() {
        return Ok(None);
    }
    let (path, lock) = lock_instance(instance, false)?;
    let names = entries(&path).map_err(io_error("reading", &path))?;
    let links = names.iter().filter_map(|n| n.strip_prefix(LINK_PIN_PREFIX)).map(str::to_string).collect();
    clear_dir(&path).and_then(|()| remove_dir(&path)).map_err(io_error("removing", &path))?;
    drop(lock);
    Ok(Some(Detached { path, pins: names.len(), links }))
}

/// Locks the root, then takes the instance's directory (made if `create`): refused while
/// another lb holds it.
fn lock_instance(instance: &Instance, create: bool) -> Result<(PathBuf, DirLock), PinError> {
    if create && bpffs::ensure_mounted()? {
        tracing::info!(path = bpffs::BPFFS, private = bpffs::private_mounts(), "mounted a BPF filesystem");
    }
    let root = Path::new(PIN_ROOT);
    if create {
        create_dir(root)?;
    }
    let _claiming = bpffs::lock(root, CLAIM_WAIT)
        .map_err(io_error("locking", root))?
        .ok_or_else(|| PinError::Io {
            what: "locking",
            path: root.into(),
            source: io::Error::other(format!("another lb kept it locked for {CLAIM_WAIT:?} while starting")),
        })?;
    let path = root.join(&instance.0);
    if create {
        create_dir(&path)?;
    }
    // Free unless a running lb holds it: every lb claims under the root's lock.
    match bpffs::try_lock(&path).map_err(io_error("locking", &path))? {
        Some(lock) => Ok((path, lock)),
        None => {
            let holder = Holder(bpffs::lock_holder(&path));
            Err(PinError::InUse { instance: instance.clone(), dir: path, holder })
        }
    }
}

/// Names in a pin directory.
fn entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Unpins everything in `dir`: the stamp, the links, then the rest.
fn clear_dir(dir: &Path) -> io::Result<()> {
    let names = match entries(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    let rank = |n: &String| match n.as_str() {
        n if n == layout::STAMP => 0,
        n if n.starts_with(LINK_PIN_PREFIX) => 1,
        _ => 2,
    };
    let mut names = names;
    names.sort_by_key(rank);
    for name in names {
        match std::fs::remove_file(dir.join(&name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
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

fn remove_dir(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir(path) {
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
