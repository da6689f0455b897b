//! The layout of every map of the XDP object, and its version: what a start compares before it
//! adopts the maps an earlier lb pinned. The version is lb_common::LAYOUT_REVISION and a
//! digest of each map's name, type, key and value sizes, entries and flags, SESSIONS sized by
//! `[sessions] capacity`. It is kept in the pin directory as the LB_LAYOUT map (bpffs holds no
//! ordinary files), pinned last by a fresh start: a directory without it was left by a start
//! that did not finish.

use std::path::Path;

use aya::maps::{Array, Map, MapData, MapInfo, MapType};
use aya_obj::{EbpfSectionKind, generated::bpf_map_type};

use super::{DataplaneError, XDP_OBJECT};

/// The pin of the layout stamp: an array of one LayoutStamp.
pub const STAMP: &str = "LB_LAYOUT";

/// Bytes of the version string the stamp holds (NUL-padded ASCII).
const STAMP_BYTES: usize = 64;

/// One map as the object declares it (after the loader's size overrides).
#[derive(Clone, Debug, PartialEq, Eq)]
struct MapLayout {
    name: String,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

/// Every map of the object this binary carries, as it would be created with a session table of
/// `session_buckets` buckets, and the version that names all of it.
#[derive(Clone, Debug)]
pub struct Layout {
    maps: Vec<MapLayout>,
    version: String,
}

impl Layout {
    pub fn of_object(session_buckets: u32) -> Result<Layout, DataplaneError> {
        let object = aya_obj::Object::parse(XDP_OBJECT)
            .map_err(|e| DataplaneError::Map { name: "the XDP object", detail: e.to_string() })?;
        let mut maps: Vec<MapLayout> = object
            .maps
            .iter()
            // Global data (.rodata: constants set at load) belongs to each loaded program.
            .filter(|(_, m)| !matches!(m.section_kind(), EbpfSectionKind::Rodata | EbpfSectionKind::Data | EbpfSectionKind::Bss))
            .map(|(name, m)| MapLayout {
                name: name.clone(),
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: if name == "SESSIONS" { session_buckets } else { m.max_entries() },
                flags: m.map_flags(),
            })
            .collect();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        let mut digest = Fnv::default();
        for m in &maps {
            digest.write(m.name.as_bytes());
            for v in [m.map_type, m.key_size, m.value_size, m.max_entries, m.flags] {
                digest.write(&v.to_le_bytes());
            }
        }
        let version = format!("r{}-{:012x}", lb_common::LAYOUT_REVISION, digest.0 >> 16);
        Ok(Layout { maps, version })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Names of the maps to pin (every map but global data).
    pub fn map_names(&self) -> impl Iterator<Item = &str> {
        self.maps.iter().map(|m| m.name.as_str())
    }

    /// How the maps pinned in `dir` differ from this layout, one line per map (empty: they
    /// match). Reads only.
    pub fn differences(&self, dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for want in &self.maps {
            let info = match MapInfo::from_pin(dir.join(&want.name)) {
                Ok(info) => info,
                Err(_) => {
                    lines.push(format!("{}: not pinned", want.name));
                    continue;
                }
            };
            let mut differ = |what: &str, pinned: u32, wanted: u32| {
                if pinned != wanted {
                    lines.push(format!("{}: {what} {pinned} pinned, {wanted} wanted", want.name));
                }
            };
            differ("key size", info.key_size(), want.key_size);
            // The loader sizes devmap values by what the kernel supports, not as declared, and
            // the kernel marks devmaps read-only for programs.
            if !is_devmap(want.map_type) {
                differ("value size", info.value_size(), want.value_size);
                differ("flags", info.map_flags(), want.flags);
            }
            differ("entries", info.max_entries(), want.max_entries);
            if let Ok(t) = info.map_type() {
                differ("type", map_type_number(t), want.map_type);
            }
        }
        lines
    }
}

fn is_devmap(map_type: u32) -> bool {
    map_type == bpf_map_type::BPF_MAP_TYPE_DEVMAP as u32 || map_type == bpf_map_type::BPF_MAP_TYPE_DEVMAP_HASH as u32
}

fn map_type_number(t: MapType) -> u32 {
    t as u32
}

/// The version the stamp in `dir` names, None if there is no stamp.
pub fn read_stamp(dir: &Path) -> Result<Option<String>, DataplaneError> {
    let path = dir.join(STAMP);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let bad = |detail: String| DataplaneError::Map { name: STAMP, detail: format!("{detail} (at {})", path.display()) };
    let data = MapData::from_pin(&path).map_err(|e| bad(e.to_string()))?;
    let map = Map::from_map_data(data).map_err(|e| bad(e.to_string()))?;
    let stamp: Array<MapData, [u8; STAMP_BYTES]> = Array::try_from(map).map_err(|e| bad(e.to_string()))?;
    let bytes = stamp.get(&0, 0).map_err(|e| bad(e.to_string()))?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(STAMP_BYTES);
    Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
}

/// Pins a stamp naming `version` in `dir`: written whole before it appears there.
pub fn write_stamp(dir: &Path, version: &str) -> Result<(), DataplaneError> {
    let failed = |detail: String| DataplaneError::Map { name: STAMP, detail };
    let def = aya_obj::Map::new_from_params(bpf_map_type::BPF_MAP_TYPE_ARRAY as u32, 4, STAMP_BYTES as u32, 1, 0);
    let data = MapData::create(def, STAMP, None).map_err(|e| failed(e.to_string()))?;
    let map = Map::from_map_data(data).map_err(|e| failed(e.to_string()))?;
    let mut stamp: Array<MapData, [u8; STAMP_BYTES]> = Array::try_from(map).map_err(|e| failed(e.to_string()))?;
    let mut bytes = [0u8; STAMP_BYTES];
    bytes[..version.len().min(STAMP_BYTES)].copy_from_slice(&version.as_bytes()[..version.len().min(STAMP_BYTES)]);
    stamp.set(0, bytes, 0).map_err(|e| failed(e.to_string()))?;
    stamp.pin(dir.join(STAMP)).map_err(|e| failed(format!("pinning at {} failed: {e}", dir.display())))
}

/// FNV-1a, 64 bits: a stable digest (std's hashers may change between releases).
pub(super) struct Fnv(pub(super) u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub(super) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;

    #[test]
    fn the_version_follows_the_session_table_size_and_nothing_else_of_the_config() {
        let a = Layout::of_object(1 << 18).unwrap();
        let b = Layout::of_object(1 << 18).unwrap();
        let c = Layout::of_object(1 << 10).unwrap();
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert!(a.version().starts_with(&format!("r{}-", lb_common::LAYOUT_REVISION)), "{}", a.version());
        assert!(a.map_names().any(|n| n == "SESSIONS") && !a.map_names().any(|n| n.starts_with('.')));
    }
}
