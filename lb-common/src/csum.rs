//! Incremental Internet checksum update (RFC 1624, eqn. 3): HC' = ~(~HC + ~m + m').
//! All values are raw (as loaded from the packet), which one's complement arithmetic allows.

#[derive(Clone, Copy, Debug)]
pub struct CsumUpdate(u64);

impl CsumUpdate {
    #[inline(always)]
    pub fn new(check: u16) -> Self {
        Self(!check as u64)
    }

    #[inline(always)]
    pub fn replace_u16(&mut self, old: u16, new: u16) {
        self.0 += (!old) as u64 + new as u64;
    }

    /// A 32-bit field, added whole: 2^32 = 1 modulo 2^16 - 1, so a one's complement sum of
    /// 32-bit words folds to the sum of their 16-bit halves (RFC 1071), in fewer operations.
    #[inline(always)]
    pub fn replace_u32(&mut self, old: u32, new: u32) {
        self.0 += (!old) as u64 + new as u64;
    }

    #[inline(always)]
    pub fn replace_addr(&mut self, old: &[u32; 4], new: &[u32; 4]) {
        self.replace_u32(old[0], new[0]);
        self.replace_u32(old[1], new[1]);
        self.replace_u32(old[2], new[2]);
        self.replace_u32(old[3], new[3]);
    }

    /// The updated checksum field.
    #[inline(always)]
    pub fn finish(self) -> u16 {
        // One 32-bit fold and three 16-bit folds bring any sum below 2^48 into 16 bits.
        let mut s = self.0;
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        !(s as u16)
    }

    /// Like `finish`, for UDP: a computed zero is sent as 0xffff, since zero means "no checksum".
    #[inline(always)]
    pub fn finish_udp(self) -> u16 {
        let c = self.finish();
        if c == 0 { 0xffff } else { c }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full checksum over raw 16-bit words, the way a sender computes it.
    fn full(words: &[u16]) -> u16 {
        let mut s: u64 = words.iter().map(|&w| w as u64).sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn incremental_update_matches_full_recompute() {
        let mut state = 0x1234_5678u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..10_000 {
            let mut words: [u16; 10] = core::array::from_fn(|_| next() as u16);
            words[5] = 0; // the checksum field itself
            let check = full(&words);
            let old = (words[2] as u32) | ((words[3] as u32) << 16);
            let new = next();
            let old_port = words[7];
            let new_port = next() as u16;
            words[2] = new as u16;
            words[3] = (new >> 16) as u16;
            words[7] = new_port;
            let mut up = CsumUpdate::new(check);
            up.replace_u32(old, new);
            up.replace_u16(old_port, new_port);
            let got = up.finish();
            let want = full(&words);
            // 0x0000 and 0xffff are the same value in one's complement.
            assert!(got == want || (got ^ want) == 0xffff && (got == 0 || want == 0), "{got:#x} != {want:#x}");
        }
    }
}
