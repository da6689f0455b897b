//! Mutations of a seed frame: blind ones (bits, bytes, length) and ones aimed at the fields the
//! parser trusts (EtherType, IHL, lengths, fragment bits, protocol, TCP data offset and flags,
//! ports and addresses), so mutated frames get past the first checks often enough.

use super::rng::Rng;

/// Offsets of the fields a mutation may aim at, for an untagged frame (a tag shifts them; a
/// mutation that misses hits some other byte, which is fine).
const ETHER_TYPE: usize = 12;
const IP: usize = 14;

pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        one(&mut f, rng);
    }
    f
}

fn one(f: &mut Vec<u8>, rng: &mut Rng) {
    let v6 = f.get(ETHER_TYPE..ETHER_TYPE + 2) == Some(&[0x86, 0xdd]);
    let l4 = if v6 { IP + 40 } else { IP + 4 * (f.get(IP).map_or(5, |b| (b & 0x0f) as usize)).max(5) };
    match rng.below(14) {
        0 if !f.is_empty() => {
            let i = rng.below(f.len());
            f[i] ^= 1 << rng.below(8);
        }
        1 if !f.is_empty() => {
            let i = rng.below(f.len());
            f[i] = rng.byte();
        }
        2 => {
            let keep = rng.below(f.len() + 1);
            f.truncate(keep);
        }
        3 => {
            for _ in 0..1 + rng.below(64) {
                f.push(rng.byte());
            }
        }
        4 => set(f, ETHER_TYPE, &[[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00], [0x08, 0x06]][rng.below(4)]),
        // IPv4: version/IHL, total length, fragment bits, protocol.
        5 => set(f, IP, &[rng.byte()]),
        6 => set(f, IP + if v6 { 4 } else { 2 }, &interesting16(rng)),
        7 => set(f, IP + 6, &[rng.byte() & 0x3f | if rng.chance(2) { 0x20 } else { 0 }, rng.byte()]),
        8 => set(f, IP + if v6 { 6 } else { 9 }, &[[6, 17, 1, 58, 44, 0, 43][rng.below(7)]]),
        // Transport: ports, UDP length / TCP sequence, TCP data offset and flags.
        9 => set(f, l4 + 2 * rng.below(2), &interesting16(rng)),
        10 => set(f, l4 + 4, &interesting16(rng)),
        11 => set(f, l4 + 12, &[(rng.below(16) as u8) << 4, rng.byte()]),
        // An address: swapped for another's last byte (other clients, backends, VIPs).
        12 => {
            let at = if v6 { IP + 8 + 16 * rng.below(2) + 15 } else { IP + 12 + 4 * rng.below(2) + 3 };
            set(f, at, &[rng.byte()]);
        }
        _ => {
            let (a, b) = (rng.below(f.len().max(1)), rng.below(f.len().max(1)));
            if a < f.len() && b < f.len() {
                f.swap(a, b);
            }
        }
    }
}

fn set(f: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = f.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn interesting16(rng: &mut Rng) -> [u8; 2] {
    let v: u16 = match rng.below(6) {
        0 => 0,
        1 => 0xffff,
        2 => rng.below(80) as u16,
        3 => 1500,
        4 => 8,
        _ => rng.next() as u16,
    };
    v.to_be_bytes()
}
