//! NAT_REPLIES upkeep: for each backend endpoint of a NAT service, the VIPs its replies may
//! have to come from. The XDP program confirms a reply through the client's session record, so
//! this map changes with the configuration, never per flow.

use std::collections::HashMap;

use lb_common::{Endpoint, NAT_REPLY_VIPS, NatReplyVips, NatVip};

use super::{Dataplane, DataplaneError};

/// Userspace's copy of NAT_REPLIES, in the order VIPs were added.
#[derive(Default)]
pub(super) struct NatReplies {
    vips: HashMap<Endpoint, Vec<NatVip>>,
}

impl NatReplies {
    /// An entry read back from adopted maps.
    pub(super) fn adopt(&mut self, backend: Endpoint, vips: Vec<NatVip>) {
        self.vips.insert(backend, vips);
    }

    pub(super) fn endpoints(&self) -> Vec<Endpoint> {
        self.vips.keys().copied().collect()
    }

    pub(super) fn pairs(&self) -> Vec<(Endpoint, NatVip)> {
        self.vips.iter().flat_map(|(e, vips)| vips.iter().map(move |v| (*e, *v))).collect()
    }
}

impl Dataplane {
    /// Rewrites replies from `backend` to come from `vip` when they belong to a session with
    /// it. Config validation keeps the VIPs per endpoint within NAT_REPLY_VIPS.
    pub fn add_nat_reply(&mut self, backend: &Endpoint, vip: NatVip) -> Result<(), DataplaneError> {
        let mut vips = self.nat_replies.vips.get(backend).cloned().unwrap_or_default();
        if vips.contains(&vip) {
            return Ok(());
        }
        if vips.len() == NAT_REPLY_VIPS {
            return Err(DataplaneError::Full {
                name: "NAT_REPLIES",
                detail: format!("backend endpoint {backend:?} already serves {NAT_REPLY_VIPS} NAT services"),
            });
        }
        vips.push(vip);
        self.nat_reply_filter.add(backend)?;
        self.write_nat_reply(backend, vips)
    }

    /// Stops rewriting replies from `backend` for `vip`.
    pub fn remove_nat_reply(&mut self, backend: &Endpoint, vip: NatVip) -> Result<(), DataplaneError> {
        let Some(mut vips) = self.nat_replies.vips.get(backend).cloned() else {
            return Ok(());
        };
        vips.retain(|v| *v != vip);
        if !vips.is_empty() {
            return self.write_nat_reply(backend, vips);
        }
        self.nat_reply_map
            .remove(backend)
            .map_err(|source| DataplaneError::Write { name: "NAT_REPLIES", source })?;
        self.nat_replies.vips.remove(backend);
        self.nat_reply_filter.remove(backend)
    }

    /// The VIPs the kernel holds for a backend endpoint (tests, diagnostics).
    pub fn nat_reply_vips(&self, backend: &Endpoint) -> Vec<NatVip> {
        match self.nat_reply_map.get(backend, 0) {
            Ok(v) => v.vips[..v.count as usize].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// Word `word` of NAT_REPLY_FILTER as the kernel holds it (tests, diagnostics).
    pub fn nat_reply_filter_word(&self, word: u32) -> Result<u64, DataplaneError> {
        self.nat_reply_filter.word(word)
    }

    fn write_nat_reply(&mut self, backend: &Endpoint, vips: Vec<NatVip>) -> Result<(), DataplaneError> {
        let mut value = NatReplyVips { count: vips.len() as u32, ..Default::default() };
        value.vips[..vips.len()].copy_from_slice(&vips);
        // One element replaced whole: a reply sees the old list or the new one.
        self.nat_reply_map
            .insert(backend, value, 0)
            .map_err(|source| DataplaneError::Write { name: "NAT_REPLIES", source })?;
        self.nat_replies.vips.insert(*backend, vips);
        Ok(())
    }
}
