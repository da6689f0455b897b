//! Attaching the program to interfaces: all of them or none, with errors that say what to do.

use aya::programs::{ProgramError, XdpMode, xdp::XdpLinkId};

use super::{Dataplane, DataplaneError};

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
}

pub(super) struct Attachment {
    pub iface: String,
    link: XdpLinkId,
}

impl Dataplane {
    /// Attaches to every interface in `ifaces` and lets the program redirect between them.
    /// If any step fails, whatever was attached is detached again before the error returns.
    pub fn attach(&mut self, ifaces: &[String], mode: XdpModeArg) -> Result<(), DataplaneError> {
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
        self.attached.push(Attachment { iface: iface.to_string(), link });
        Ok(())
    }

    /// Detaches from every interface (also happens when the Dataplane is dropped).
    pub fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        for a in attached.into_iter().rev() {
            if let Err(e) = self.program().detach(a.link) {
                tracing::warn!(iface = %a.iface, "detaching XDP failed: {e}");
            }
        }
    }

    /// Interfaces the program is attached to.
    pub fn interfaces(&self) -> Vec<String> {
        self.attached.iter().map(|a| a.iface.clone()).collect()
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
