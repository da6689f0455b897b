//! The identity of the XDP program a start would load: a digest of everything that makes the
//! program what it is (the object's bytes and the globals the loader sets; the maps it uses are
//! the pinned ones, checked by the layout). Pinned beside the program as LB_PROGRAM (identity
//! and the kernel's id of the program pinned with it), so a restart of the same binary can tell
//! that the pinned program is exactly its own and keep it instead of loading (verifying) it
//! again. The program id ties the record to one pinned program: a start cut short after pinning
//! a new program but before recording it leaves a record that names another id, read as
//! "different" (loaded and replaced, as without a record).

use std::path::Path;

use aya::maps::{Array, Map, MapData};
use aya_obj::generated::bpf_map_type;

use super::{DataplaneError, layout::Fnv};

/// The pin of the record: an array of one `[identity, program id]`.
pub const PROGRAM_STAMP: &str = "LB_PROGRAM";

/// What the program a start would load is made of (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramIdentity(u64);

impl ProgramIdentity {
    /// The identity of `object` loaded with these values of its globals (the loader's
    /// `override_global`s: every one of them must be here).
    pub fn of(object: &[u8], ns_per_jiffy: u64, session_bucket_mask: u32) -> ProgramIdentity {
        let mut digest = Fnv::default();
        digest.write(&(object.len() as u64).to_le_bytes());
        digest.write(object);
        digest.write(b"NS_PER_JIFFY");
        digest.write(&ns_per_jiffy.to_le_bytes());
        digest.write(b"SESSION_BUCKET_MASK");
        digest.write(&session_bucket_mask.to_le_bytes());
        ProgramIdentity(digest.0)
    }
}

impl std::fmt::Display for ProgramIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What LB_PROGRAM in a pin directory says: the identity of the program pinned with it, and
/// that program's kernel id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramRecord {
    pub identity: ProgramIdentity,
    pub program_id: u32,
}

/// The record in `dir`; None if there is none (a directory pinned by an lb older than records).
pub fn read_record(dir: &Path) -> Result<Option<ProgramRecord>, DataplaneError> {
    let path = dir.join(PROGRAM_STAMP);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let bad = |detail: String| DataplaneError::Map { name: PROGRAM_STAMP, detail: format!("{detail} (at {})", path.display()) };
    let data = MapData::from_pin(&path).map_err(|e| bad(e.to_string()))?;
    let map = Map::from_map_data(data).map_err(|e| bad(e.to_string()))?;
    let record: Array<MapData, [u64; 2]> = Array::try_from(map).map_err(|e| bad(e.to_string()))?;
    let [identity, id] = record.get(&0, 0).map_err(|e| bad(e.to_string()))?;
    Ok(Some(ProgramRecord { identity: ProgramIdentity(identity), program_id: id as u32 }))
}

/// Records `record` in `dir`, in place if a record is pinned there, else pinned anew.
pub fn write_record(dir: &Path, record: ProgramRecord) -> Result<(), DataplaneError> {
    let path = dir.join(PROGRAM_STAMP);
    let failed = |detail: String| DataplaneError::Map { name: PROGRAM_STAMP, detail: format!("{detail} (at {})", path.display()) };
    let (data, pinned) = match MapData::from_pin(&path) {
        Ok(data) => (data, true),
        Err(_) => {
            let def = aya_obj::Map::new_from_params(bpf_map_type::BPF_MAP_TYPE_ARRAY as u32, 4, 16, 1, 0);
            (MapData::create(def, PROGRAM_STAMP, None).map_err(|e| failed(e.to_string()))?, false)
        }
    };
    let map = Map::from_map_data(data).map_err(|e| failed(e.to_string()))?;
    let mut array: Array<MapData, [u64; 2]> = Array::try_from(map).map_err(|e| failed(e.to_string()))?;
    array.set(0, [record.identity.0, u64::from(record.program_id)], 0).map_err(|e| failed(e.to_string()))?;
    if !pinned {
        array.pin(&path).map_err(|e| failed(format!("pinning failed: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ProgramIdentity;

    #[test]
    fn the_identity_follows_the_object_and_each_global_and_nothing_else() {
        let object = b"an XDP object".to_vec();
        let base = ProgramIdentity::of(&object, 4_000_000, 0x3ffff);
        assert_eq!(base, ProgramIdentity::of(&object.clone(), 4_000_000, 0x3ffff), "not stable");
        let mut other = object.clone();
        other[3] ^= 1;
        assert_ne!(base, ProgramIdentity::of(&other, 4_000_000, 0x3ffff), "blind to the object's bytes");
        assert_ne!(base, ProgramIdentity::of(&object[..object.len() - 1], 4_000_000, 0x3ffff), "blind to the object's length");
        assert_ne!(base, ProgramIdentity::of(&object, 1_000_000, 0x3ffff), "blind to NS_PER_JIFFY");
        assert_ne!(base, ProgramIdentity::of(&object, 4_000_000, 0xffff), "blind to SESSION_BUCKET_MASK");
    }

    #[test]
    fn the_embedded_object_has_one_identity_per_session_table_size() {
        let a = ProgramIdentity::of(super::super::XDP_OBJECT, 4_000_000, (1 << 18) - 1);
        assert_eq!(a, ProgramIdentity::of(super::super::XDP_OBJECT, 4_000_000, (1 << 18) - 1));
        assert_ne!(a, ProgramIdentity::of(super::super::XDP_OBJECT, 4_000_000, (1 << 10) - 1));
        assert_eq!(a.to_string().len(), 16);
    }
}
