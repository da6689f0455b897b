//! The XDP_PASS program (`lb_pass`, from the object the `lb` binary embeds) attached in native
//! mode to one interface of a namespace, for as long as a `PassProgram` lives.
//!
//! Why: native XDP_TX out of a veth is dropped silently unless the veth's PEER runs an XDP
//! program of its own (toolchain README, "veth + XDP pitfalls"). One-arm tests put this on the
//! switch-side end of the lb's veth (`OneArm::lb_peer`).

use crate::netns::{Netns, enter_by_name, wait_xdp_detached_in};
use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use lb::dataplane::{PASS_PROGRAM, XDP_OBJECT};
use std::time::Duration;

/// How long Drop waits to see the program gone from the interface.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// Attached until Drop (also on panic), which detaches it again.
pub struct PassProgram {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    ns: String,
    dev: String,
}

impl PassProgram {
    /// Loads `lb_pass` and attaches it in native (driver) mode to `dev` inside `ns`.
    pub fn attach(ns: &Netns, dev: &str) -> Result<PassProgram> {
        let mut ebpf =
            EbpfLoader::new().load(XDP_OBJECT).context("loading the embedded XDP object")?;
        let program = pass_program(&mut ebpf)?;
        program.load().context("loading lb_pass")?;
        // The attach resolves `dev` and creates the link in the calling thread's namespace.
        let link = {
            let _inside = ns.enter()?;
            program
                .attach(dev, XdpMode::Driver)
                .with_context(|| format!("attaching lb_pass to {dev} in {}", ns.name()))?
        };
        Ok(PassProgram { ebpf, link: Some(link), ns: ns.name().to_owned(), dev: dev.to_owned() })
    }

    /// The interface it is attached to.
    pub fn dev(&self) -> &str {
        &self.dev
    }
}

impl Drop for PassProgram {
    fn drop(&mut self) {
        let Some(link) = self.link.take() else { return };
        // Detach from inside the namespace (a netlink fallback attach is namespace-bound). If
        // the namespace is gone already, so is the veth, and with it the attachment.
        let Ok(_inside) = enter_by_name(&self.ns) else {
            return;
        };
        let detached = pass_program(&mut self.ebpf)
            .and_then(|p| Ok(p.detach(link)?))
            .and_then(|()| wait_xdp_detached_in(&self.ns, &self.dev, DETACH_WAIT));
        if let Err(e) = detached {
            eprintln!("lb-tests: detaching lb_pass from {} in {}: {e:#}", self.dev, self.ns);
        }
    }
}

fn pass_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PASS_PROGRAM)
        .with_context(|| format!("{PASS_PROGRAM} is not in the embedded XDP object"))?
        .try_into()?)
}
