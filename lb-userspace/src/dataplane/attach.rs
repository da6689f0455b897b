//! Attaching the program to interfaces: all of them or none, with errors that say what to do.
//! A pinned dataplane (`lb run`) pins each XDP link, so the program stays on the interface when
//! lb exits, and a later start replaces the program on the same link (one atomic
//! bpf_link_update: the interface is never without XDP).

use std::path::{Path, PathBuf};

use aya::programs::{
    ProgramError, XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};

use super::{Dataplane, DataplaneError, PinError};

/// How the program runs on the interface (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeArg {
    /// In the driver, before the kernel allocates anything (fast; needs driver support).
    #[default]
    Native,
    /// In the kernel's generic path (works on any interface; slower).
    Generic,
}

impl XdpModeArg {
    fn aya(self) -> XdpMode {
        match self {
            XdpModeArg::Native => XdpMode::Driver,
            XdpModeArg::Generic => XdpMode::Skb,
        }
    }

    /// As it appears in link pin names.
    fn name(self) -> &'static str {
        match self {
            XdpModeArg::Native => "native",
            XdpModeArg::Generic => "generic",
        }
    }
}

pub(super) struct Attachment {
    pub iface: String,
    /// The link, held by this process (unpinned dataplanes).
    link: Option<XdpLinkId>,
    /// Where the link is pinned: it outlives lb.
    pin: Option<PathBuf>,
    /// Pinned by an earlier lb (its program replaced by this start's, or kept).
    adopted: bool,
}

impl Dataplane {
    /// Attaches to every interface in `ifaces` and lets the program redirect between them.
    /// If any step fails, whatever was attached is detached again before the error returns.
    /// Pinned: links already pinned for these interfaces get this program (the interface keeps
    /// XDP throughout), new ones are attached and pinned, pinned ones of interfaces not given
    /// (or of another mode) are removed; then the program is pinned.
    pub fn attach(&mut self, ifaces: &[String], mode: XdpModeArg) -> Result<(), DataplaneError> {
        if self.pins.is_some() {
            return self.attach_pinned(ifaces, mode);
        }
        for iface in ifaces {
            if let Err(e) = self.attach_one(iface, mode) {
                self.detach_all();
                return Err(e);
            }
        }
        Ok(())
    }

    fn attach_one(&mut self, iface: &str, mode: XdpModeArg) -> Result<(), DataplaneError> {
        let ifindex = ifindex(iface)?;
        self.allow_egress(ifindex)?;
        let link = self
            .program()
            .attach_to_if_index(ifindex, mode.aya())
            .map_err(|e| DataplaneError::Attach(explain_attach_error(iface, mode, &e)))?;
        self.attached.push(Attachment { iface: iface.to_string(), link: Some(link), pin: None, adopted: false });
        Ok(())
    }

    fn attach_pinned(&mut self, ifaces: &[String], mode: XdpModeArg) -> Result<(), DataplaneError> {
        let pins = self.pins.as_ref().expect("checked by attach");
        let pinned = pins.links().map_err(|e| PinError::Io { what: "reading", path: pins.path().into(), source: e })?;
        let wanted = |iface: &str, m: &str| ifaces.iter().any(|i| i == iface) && m == mode.name();
        let (keep, stale): (Vec<_>, Vec<_>) = pinned.into_iter().partition(|(iface, m, _)| wanted(iface, m));
        // Links of interfaces no longer given, or pinned in another mode: removed first (an
        // interface cannot hold native and generic XDP at once). The program leaves them.
        for (iface, m, path) in &stale {
            remove_pin(path)?;
            if let Ok(index) = ifindex(iface) {
                self.forbid_egress(index);
            }
            tracing::info!(iface = %iface, mode = %m, "removed the pinned XDP link: the interface is no longer given in this mode");
        }
        for iface in ifaces {
            let path = self.pins.as_ref().expect("checked").link_path(iface, mode.name());
            let replaced = match keep.iter().any(|(i, _, _)| i == iface) {
                true => self.take_over_link(iface, &path)?,
                false => false,
            };
            let result = if replaced {
                ifindex(iface).and_then(|i| self.allow_egress(i))
            } else {
                self.attach_and_pin(iface, mode, &path)
            };
            if let Err(e) = result {
                // Only what this start attached is taken back: adopted links keep forwarding.
                self.detach_new();
                return Err(e);
            }
            self.attached.push(Attachment { iface: iface.clone(), link: None, pin: Some(path), adopted: replaced });
        }
        // A kept program is the pinned one, recorded already.
        if self.kept.is_none() {
            self.pin_program()?;
        }
        Ok(())
    }

    /// Puts this program on the pinned link at `path` (see `replace_on_link`), unless it runs
    /// it already: a kept program is left running on its links, untouched.
    fn take_over_link(&mut self, iface: &str, path: &Path) -> Result<bool, DataplaneError> {
        if self.kept.is_some() {
            let id = self.program().info().map_err(DataplaneError::Verify)?.id();
            if ifindex(iface).is_ok_and(|index| super::keep::link_runs(path, id, index)) {
                tracing::debug!(iface, "the pinned XDP link runs the kept program");
                return Ok(true);
            }
            // Another program (a start cut short between links) or an interface gone.
            tracing::info!(iface, "the pinned XDP link does not run the kept program: updating it");
        }
        self.replace_on_link(iface, path)
    }

    /// Gives the pinned link at `path` this program. False if the link no longer holds an
    /// interface (it was deleted meanwhile): the pin is removed, to be attached anew.
    fn replace_on_link(&mut self, iface: &str, path: &Path) -> Result<bool, DataplaneError> {
        let fd_link: FdLink = PinnedLink::from_pin(path)
            .map_err(|e| DataplaneError::Attach(format!("opening the pinned XDP link {}: {e}", path.display())))?
            .into();
        let link = XdpLink::try_from(fd_link)
            .map_err(|e| DataplaneError::Attach(format!("{} is not an XDP link: {e}", path.display())))?;
        match self.program().attach_to_link(link) {
            Ok(id) => {
                // Our handle closes; the pin holds the link.
                drop(self.program().take_link(id));
                tracing::info!(iface, "replaced the program on the pinned XDP link");
                Ok(true)
            }
            Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOLINK) => {
                remove_pin(path)?;
                tracing::warn!(iface, "the pinned XDP link had lost its interface (deleted meanwhile?): attaching anew");
                Ok(false)
            }
            Err(e) => Err(DataplaneError::Attach(format!("replacing the program on the XDP link of {iface} failed: {e}"))),
        }
    }

    fn attach_and_pin(&mut self, iface: &str, mode: XdpModeArg, path: &Path) -> Result<(), DataplaneError> {
        let ifindex = ifindex(iface)?;
        self.allow_egress(ifindex)?;
        let id = self
            .program()
            .attach_to_if_index(ifindex, mode.aya())
            .map_err(|e| DataplaneError::Attach(explain_attach_error(iface, mode, &e)))?;
        let link = self.program().take_link(id).map_err(|e| DataplaneError::Attach(e.to_string()))?;
        let fd_link = FdLink::try_from(link).map_err(|e: LinkError| {
            DataplaneError::Attach(format!(
                "the kernel attached XDP to {iface} without a BPF link ({e}), which cannot be pinned: \
                 lb needs Linux 5.9 or later to keep the data plane running across restarts"
            ))
        })?;
        fd_link
            .pin(path)
            .map_err(|source| PinError::Pin { object: format!("the XDP link of {iface}"), path: path.into(), source })?;
        tracing::info!(iface, mode = mode.name(), "attached and pinned the XDP link");
        Ok(())
    }

    /// Pins the program (replacing the pin of the program it took over from), then records its
    /// identity and id beside it (after: a record never names a program not yet pinned).
    fn pin_program(&mut self) -> Result<(), DataplaneError> {
        let pins = self.pins.as_ref().expect("pinned dataplane");
        let (dir, path) = (pins.path().to_path_buf(), pins.program_path());
        remove_pin(&path)?;
        self.program()
            .pin(&path)
            .map_err(|source| PinError::Pin { object: "the XDP program".into(), path: path.clone(), source })?;
        let program_id = self.program().info().map_err(DataplaneError::Verify)?.id();
        super::identity::write_record(&dir, super::identity::ProgramRecord { identity: self.identity, program_id })
    }

    /// Takes back the links this start attached and pinned; adopted ones keep forwarding.
    fn detach_new(&mut self) {
        let (adopted, new): (Vec<_>, Vec<_>) = std::mem::take(&mut self.attached).into_iter().partition(|a| a.adopted);
        self.attached = new;
        self.detach_all();
        drop(adopted);
    }

    /// Detaches from every interface: drops the links this process holds and removes pinned
    /// ones (also happens for unpinned links when the Dataplane is dropped).
    pub fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        for a in attached.into_iter().rev() {
            if let Some(link) = a.link
                && let Err(e) = self.program().detach(link)
            {
                tracing::warn!(iface = %a.iface, "detaching XDP failed: {e}");
            }
            if let Some(pin) = a.pin
                && let Err(e) = std::fs::remove_file(&pin)
            {
                tracing::warn!(iface = %a.iface, pin = %pin.display(), "unpinning the XDP link failed: {e}");
            }
        }
    }

    /// Interfaces the program is attached to.
    pub fn interfaces(&self) -> Vec<String> {
        self.attached.iter().map(|a| a.iface.clone()).collect()
    }
}

fn remove_pin(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PinError::Io { what: "unpinning", path: path.into(), source: e }.into())
        }
        _ => Ok(()),
    }
}

/// The interface's index, or an error naming it.
pub fn ifindex(iface: &str) -> Result<u32, DataplaneError> {
    let name = std::ffi::CString::new(iface)
        .map_err(|_| DataplaneError::Attach(format!("interface name {iface:?} contains a NUL byte")))?;
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(DataplaneError::Attach(format!(
            "interface {iface:?} does not exist: check the name with `ip link show`"
        ))),
        i => Ok(i),
    }
}

fn explain_attach_error(iface: &str, mode: XdpModeArg, e: &ProgramError) -> String {
    let errno = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
            "interface {iface} already has an XDP program attached (another lb instance or tool): \
             see it with `ip link show dev {iface}`, remove it with `ip link set dev {iface} xdp off` \
             or stop its owner, then retry"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "not allowed to attach XDP to {iface}: run lb as root (it needs CAP_NET_ADMIN and CAP_BPF)"
        ),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if mode == XdpModeArg::Native => format!(
            "the driver of {iface} does not support native XDP: retry with --xdp-mode generic"
        ),
        _ => format!("attaching XDP to {iface} failed: {e}"),
    }
}
