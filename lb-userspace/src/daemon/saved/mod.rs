//! What an instance keeps in the state directory besides the maps, one document each (named
//! by `instance_files`): the drains in progress, the running services (live changes), the
//! health checkers' history and shunting. All are read before anything touches the kernel (a
//! document of another format version refuses the start then, untouched), taken up by a start
//! that adopts the data plane, and saved when they change and at exit.

use std::path::Path;

mod drains;
mod health;
mod instance_files;
mod live_changes;
mod running;
mod shunt;

use drains::DrainFile;
pub(in crate::daemon) use health::Key as HealthKey;
use health::HealthFile;
pub use instance_files::remove_instance_files;
use running::RunningFile;
pub(in crate::daemon) use shunt::{SavedService, SavedServices};
use shunt::ShuntFile;
use crate::{
    config::Config,
    state::{FileStore, StateError},
};

pub(in crate::daemon) struct SavedState {
    pub drains: DrainFile,
    pub running: RunningFile,
    pub health: HealthFile,
    pub shunt: ShuntFile,
}

impl SavedState {
    /// Reads `instance`'s documents in `dir`; `file` is the config file as read now, and
    /// `digest` its bytes' (RunningFile decides on it whose services run).
    pub fn load(dir: &Path, instance: &str, file: &Config, digest: u64) -> Result<SavedState, StateError> {
        let store = || FileStore::open(dir);
        Ok(SavedState {
            drains: DrainFile::load(store()?, instance)?,
            running: RunningFile::load(store()?, instance, file, digest)?,
            health: HealthFile::load(store()?, instance)?,
            shunt: ShuntFile::load(store()?, instance)?,
        })
    }
}
