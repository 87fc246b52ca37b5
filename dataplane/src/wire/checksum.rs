//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A forwarding path that rewrites a field — TTL decrement, NAT of an address or a
//! port — should not re-sum the whole header or, worse, the whole L4 payload. RFC 1624
//! updates the stored checksum from the old and new value of the changed words alone:
//! `HC' = ~(~HC + ~m + m')`. This form (eqn. 3) is the one that never yields the
//! `0x0000`-for-`0xffff` mistake of RFC 1141's shortcut.

/// The ones'-complement sum of `data` as 16-bit big-endian words (an odd last byte is
/// padded with zero), folded to 16 bits but not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(sum_raw(0, data))
}

/// The Internet checksum of `data`: the complement of [`sum`]. Computing it over a
/// header whose checksum field holds the correct value gives 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The 32-bit accumulator form of [`sum`], for summing several pieces (a pseudo-header
/// and a payload) before one [`fold`].
#[inline]
pub fn sum_raw(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds a wide ones'-complement accumulator to 16 bits.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the summed data changed from
/// `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// [`update16`] for a 32-bit field (an IPv4 address), word by word.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!check)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(acc)
}

/// [`update16`] over a changed byte range of equal length (an IPv6 address), which
/// must start at an even offset of the summed data. `old` and `new` of odd length are
/// padded with a zero byte.
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!check);
    // Adding ~x for each old word is adding (0xffff - x): sum the complements.
    let old_words = old.len().div_ceil(2) as u64;
    acc += old_words * 0xffff - sum_raw(0, old);
    acc = sum_raw(acc, new);
    !fold(acc)
}

/// Decrements the TTL of the IPv4 header at the front of `header` and updates its
/// checksum incrementally. Returns the new TTL, or `None` (and no change) if the
/// header is shorter than 20 bytes or the TTL is already 0.
#[inline]
pub fn ipv4_decrement_ttl(header: &mut [u8]) -> Option<u8> {
    let h: &mut [u8; 20] = header.get_mut(..20)?.try_into().ok()?;
    if h[8] == 0 {
        return None;
    }
    h[8] -= 1;
    // The TTL/protocol word m is 0x100 less, so RFC 1624's ~(~HC + ~m + m') adds
    // ~m + m' = 0xfeff to ~HC: one carry to fold, no read of the other word. A
    // ones'-complement sum is the same in either byte order (RFC 1071), so the
    // words are taken as they lie in memory: no byte swaps on a little-endian CPU.
    let sum = u32::from(!u16::from_ne_bytes([h[10], h[11]]))
        + u32::from(u16::from_ne_bytes([0xfe, 0xff]));
    let check = !((sum & 0xffff) + (sum >> 16)) as u16;
    h[10..12].copy_from_slice(&check.to_ne_bytes());
    Some(h[8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testvec;
    use proptest::prelude::*;

    /// Outer IPv4 header of `testvec::VXLAN_ICMP` (TTL 64, checksum 0x1662).
    fn vxlan_outer_ip() -> [u8; 20] {
        let mut h = [0u8; 20];
        h.copy_from_slice(&testvec::VXLAN_ICMP[14..34]);
        h
    }

    #[test]
    fn golden_header_sums_to_zero() {
        let h = vxlan_outer_ip();
        assert_eq!(checksum(&h), 0);
        let mut z = h;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(checksum(&z), u16::from_be_bytes([h[10], h[11]]));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ttl_decrement_matches_full_recompute() {
        let mut h = vxlan_outer_ip();
        let ttl = h[8];
        assert_eq!(ipv4_decrement_ttl(&mut h), Some(ttl - 1));
        assert_eq!(checksum(&h), 0);
        let mut zero = h;
        zero[8] = 0;
        assert_eq!(ipv4_decrement_ttl(&mut zero), None);
        assert_eq!(ipv4_decrement_ttl(&mut [0u8; 19]), None);
    }

    proptest! {
        #[test]
        fn ttl_decrement_is_the_general_update(
            mut h in proptest::array::uniform20(any::<u8>()),
            ttl in 1u8..=255,
        ) {
            h[8] = ttl;
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let (old, check) = (u16::from_be_bytes([h[8], h[9]]), c);
            let mut d = h;
            prop_assert_eq!(ipv4_decrement_ttl(&mut d), Some(ttl - 1));
            let expect = update16(check, old, old - 0x100);
            prop_assert_eq!(u16::from_be_bytes([d[10], d[11]]), expect);
            prop_assert_eq!(checksum(&d), 0);
            prop_assert_eq!(&d[..8], &h[..8]);
            prop_assert_eq!(&d[9..10], &h[9..10]);
            prop_assert_eq!(&d[12..], &h[12..]);
        }

        #[test]
        fn incremental_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 20..64),
            at in 0usize..8,
            new16 in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            data[10] = 0;
            data[11] = 0;
            let c = checksum(&data);
            data[10..12].copy_from_slice(&c.to_be_bytes());
            // One 16-bit word at an even offset (not the checksum itself).
            let off = if at * 2 == 10 { 0 } else { at * 2 };
            let old16 = u16::from_be_bytes([data[off], data[off + 1]]);
            data[off..off + 2].copy_from_slice(&new16.to_be_bytes());
            let c16 = update16(c, old16, new16);
            data[10..12].copy_from_slice(&c16.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
            // A 32-bit field at 12..16 (an IPv4 source address).
            let old32 = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
            data[12..16].copy_from_slice(&new32.to_be_bytes());
            let c32 = update32(c16, old32, new32);
            data[10..12].copy_from_slice(&c32.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
            // The same change through update_bytes.
            let old = data[12..16].to_vec();
            let newb = (!new32).to_be_bytes();
            data[12..16].copy_from_slice(&newb);
            let cb = update_bytes(c32, &old, &newb);
            data[10..12].copy_from_slice(&cb.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
        }
    }
}
