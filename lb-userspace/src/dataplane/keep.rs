//! Keeping the running XDP program at an adopting start: when the program pinned in the
//! instance's directory is exactly the one this lb would load (its recorded identity is ours and
//! the record names the pinned program's id), it is opened from its pin instead of being loaded
//! (the verifier is nearly all of a restart's time), and the pinned links, which already run it,
//! are left as they are. Nothing is trusted blindly: a pin that cannot be opened, is not an XDP
//! program, is not the recorded one, or uses maps other than the pinned ones means loading, as
//! without a record.

use std::{
    collections::HashSet,
    ffi::CString,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use aya::{
    maps::MapInfo,
    programs::{ProgramInfo, Xdp},
};
use aya_obj::programs::XdpAttachType;
use aya_obj::generated::{bpf_link_info, bpf_link_type, bpf_prog_type};

use super::identity::{ProgramIdentity, read_record};

/// Why the pinned program is not kept: said in the log, then the start loads its own.
pub(super) enum NotKept {
    /// No record: pinned by an lb older than program records.
    Unrecorded,
    /// Another build, or the same build with other globals (an upgrade, a new tick length).
    Different,
    /// The record, the pin or the program is not what it should be.
    Unusable(String),
}

impl std::fmt::Display for NotKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotKept::Unrecorded => f.write_str("no identity is recorded for the pinned program (pinned by an older lb)"),
            NotKept::Different => f.write_str("the pinned program differs from this lb's"),
            NotKept::Unusable(why) => f.write_str(why),
        }
    }
}

/// The program pinned at `program_pin`, opened, if the record in `dir` says it is `ours`.
pub(super) fn pinned_program_if_identical<'a>(
    dir: &Path,
    program_pin: &Path,
    ours: ProgramIdentity,
    maps: impl Iterator<Item = &'a str>,
) -> Result<Xdp, NotKept> {
    let record = match read_record(dir) {
        Ok(Some(record)) => record,
        Ok(None) => return Err(NotKept::Unrecorded),
        Err(e) => return Err(NotKept::Unusable(format!("the program record cannot be read: {e}"))),
    };
    if record.identity != ours {
        return Err(NotKept::Different);
    }
    let cannot = |what: &str, e: &dyn std::fmt::Display| NotKept::Unusable(format!("{what} {}: {e}", program_pin.display()));
    let program = Xdp::from_pin(program_pin, XdpAttachType::Interface).map_err(|e| cannot("cannot open the pinned program", &e))?;
    // Opened first, then checked: what is kept is what was checked.
    let info = program.info().map_err(|e| cannot("cannot read the pinned program", &e))?;
    if info.program_type() != bpf_prog_type::BPF_PROG_TYPE_XDP {
        return Err(NotKept::Unusable(format!("the pin {} is not an XDP program", program_pin.display())));
    }
    if info.id() != record.program_id {
        return Err(NotKept::Unusable(format!(
            "the pinned program (id {}) is not the one recorded (id {}): a start was cut short",
            info.id(),
            record.program_id
        )));
    }
    uses_the_pinned_maps(&info, dir, maps)?;
    Ok(program)
}

/// Every map the program uses is one pinned in `dir` (by the layout's `maps`) or its own global
/// data: a map pin replaced since (by hand) leaves a program writing to a map lb does not see.
fn uses_the_pinned_maps<'a>(info: &ProgramInfo, dir: &Path, maps: impl Iterator<Item = &'a str>) -> Result<(), NotKept> {
    let mut pinned = HashSet::new();
    for name in maps {
        let map = MapInfo::from_pin(dir.join(name)).map_err(|e| NotKept::Unusable(format!("the pinned map {name} cannot be read: {e}")))?;
        pinned.insert(map.id());
    }
    let used = match info.map_ids() {
        Ok(Some(ids)) => ids,
        Ok(None) => return Err(NotKept::Unusable("the kernel does not list the maps of the pinned program".into())),
        Err(e) => return Err(NotKept::Unusable(format!("the maps of the pinned program cannot be listed: {e}"))),
    };
    for id in used.into_iter().filter(|id| !pinned.contains(id)) {
        let name = MapInfo::from_id(id).ok().and_then(|m| m.name_as_str().map(str::to_string)).unwrap_or_default();
        if ![".rodata", ".data", ".bss"].iter().any(|global| name.contains(global)) {
            return Err(NotKept::Unusable(format!("the pinned program uses a map {name:?} (id {id}) that is not the one pinned")));
        }
    }
    Ok(())
}

/// Whether the XDP link pinned at `path` runs program `program_id` on interface `ifindex`
/// (false also when it cannot be read: the caller then updates the link, which reports why).
pub(super) fn link_runs(path: &Path, program_id: u32, ifindex: u32) -> bool {
    // aya's LinkInfo has no interface, and a link whose interface was deleted still names its
    // program: the kernel's bpf_link_info is read whole.
    pinned_link_info(path).is_some_and(|info| {
        // SAFETY: the xdp member is what the kernel fills for an XDP link; read as plain u32.
        let link_ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
        info.type_ == bpf_link_type::BPF_LINK_TYPE_XDP as u32 && info.prog_id == program_id && link_ifindex == ifindex
    })
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The kernel's bpf_link_info of the link pinned at `path` (its interface is 0 once gone).
fn pinned_link_info(path: &Path) -> Option<bpf_link_info> {
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let name = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut get = ObjGetAttr { pathname: name.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: `get` names a NUL-terminated path that lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &mut get as *mut ObjGetAttr, size_of::<ObjGetAttr>()) };
    if fd < 0 {
        return None;
    }
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: bpf_link_info is plain data; all zeroes is a valid value.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: size_of::<bpf_link_info>() as u32, info: &mut info as *mut _ as u64 };
    // SAFETY: `attr` names a buffer of `info_len` bytes that lives across the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &mut attr as *mut InfoAttr, size_of::<InfoAttr>()) };
    (rc == 0).then_some(info)
}
