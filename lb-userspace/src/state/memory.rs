//! Documents in memory: for tests, and for running without a state directory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{StateError, StateStore, check_name};

#[derive(Debug, Default)]
pub struct MemoryStore {
    documents: Mutex<HashMap<String, Vec<u8>>>,
    set_aside: Mutex<Vec<(String, Vec<u8>)>>,
}

impl MemoryStore {
    /// Documents set aside so far, as (where, bytes).
    pub fn set_aside_documents(&self) -> Vec<(String, Vec<u8>)> {
        self.set_aside.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl StateStore for MemoryStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_name(name)?;
        Ok(self.documents.lock().ok().and_then(|d| d.get(name).cloned()))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        check_name(name)?;
        if let Ok(mut d) = self.documents.lock() {
            d.insert(name.to_string(), bytes.to_vec());
        }
        Ok(())
    }

    fn set_aside(&self, name: &str) -> Result<String, StateError> {
        check_name(name)?;
        let bytes = self.documents.lock().ok().and_then(|mut d| d.remove(name)).unwrap_or_default();
        let mut aside = self.set_aside.lock().map_err(|_| StateError::Name(name.to_string()))?;
        let location = format!("memory:{name}.corrupt-{}", aside.len() + 1);
        aside.push((location.clone(), bytes));
        Ok(location)
    }

    fn location(&self, name: &str) -> String {
        format!("memory:{name}")
    }
}
