//! Documents as files `NAME.json` in one directory. A write goes to `.NAME.json.tmp` in the
//! same directory (same file system, so the rename is atomic), is fsynced, renamed over the
//! document, and the directory is fsynced so the rename itself survives a power cut. A temp
//! file left by a crash is never read and is overwritten by the next write.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{StateError, StateStore, check_name};

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Uses `dir`, creating it (mode 0700: accounts are nobody else's business) if missing.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        let err = |source| StateError::Dir { dir: dir.to_path_buf(), source };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
        if !fs::metadata(dir).map_err(err)?.is_dir() {
            return Err(err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        Ok(FileStore { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub(super) fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.json.tmp"))
    }

    /// `write` with the temp file's content written by `fill` (tests make it fail midway).
    pub(super) fn write_with(
        &self,
        name: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), StateError> {
        check_name(name)?;
        let temp = self.temp_path(name);
        let result = (|| {
            let mut file = File::create(&temp)?;
            fill(&mut file)?;
            file.sync_all()?;
            fs::rename(&temp, self.path(name))?;
            File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|source| {
            // The document is untouched; the half-written temp file is of no use to anyone.
            let _ = fs::remove_file(&temp);
            StateError::Write { location: self.location(name), source }
        })
    }
}

impl StateStore for FileStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_name(name)?;
        match fs::read(self.path(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { location: self.location(name), source }),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.write_with(name, |f| f.write_all(bytes))
    }

    /// Renames it to `NAME.json.corrupt-<unix seconds>` (`-2`, `-3`... if that is taken).
    fn set_aside(&self, name: &str) -> Result<String, StateError> {
        check_name(name)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!("{name}.json.corrupt-{stamp}");
        let target = (1..)
            .map(|n| self.dir.join(if n == 1 { base.clone() } else { format!("{base}-{n}") }))
            .find(|p| !p.exists())
            .unwrap_or_else(|| self.dir.join(&base));
        let err = |source| StateError::SetAside { location: self.location(name), source };
        fs::rename(self.path(name), &target).map_err(err)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(target.display().to_string())
    }

    fn location(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}
