//! IEEE 802.1Q VLAN tags and 802.1ad (QinQ) stacking.
//!
//! A tag is four bytes inserted after the source MAC: a TPID (0x8100 for a C-tag,
//! 0x88a8 for an S-tag) and a TCI (3-bit PCP, DEI, 12-bit VID). Seen from the frame,
//! the TPID sits where the EtherType would, so the view here starts at that TPID and
//! its [`VlanTagView::inner_ethertype`] is the next TPID or the real EtherType; walking
//! a stack is repeating that until the EtherType is not a TPID.

use thiserror::Error;

use super::be16_unchecked;

/// TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad service tag (the outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;
/// Bytes of one tag.
pub const TAG_LEN: usize = 4;

mod field {
    use std::ops::Range;
    pub const TPID: Range<usize> = 0..2;
    pub const TCI: Range<usize> = 2..4;
    pub const INNER_TYPE: Range<usize> = 4..6;
}

/// True for an EtherType that announces a VLAN tag.
#[inline]
pub const fn is_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD)
}

/// A VLAN tag that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VlanError {
    /// Fewer than 6 bytes (TPID, TCI, next EtherType) from the tag's start.
    #[error("VLAN tag truncated")]
    Truncated,
    /// The first two bytes are not a VLAN TPID.
    #[error("not a VLAN TPID: {0:#06x}")]
    NotATag(u16),
}

/// The TCI of a tag: priority, drop eligibility and VLAN ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag(pub u16);

impl VlanTag {
    /// A TCI from its parts; `vid` is masked to 12 bits, `pcp` to 3.
    pub const fn new(pcp: u8, dei: bool, vid: u16) -> Self {
        VlanTag(((pcp as u16 & 7) << 13) | ((dei as u16) << 12) | (vid & 0x0fff))
    }
    /// VLAN ID (12 bits).
    pub const fn vid(self) -> u16 {
        self.0 & 0x0fff
    }
    /// Priority code point (3 bits).
    pub const fn pcp(self) -> u8 {
        (self.0 >> 13) as u8
    }
    /// Drop eligible indicator.
    pub const fn dei(self) -> bool {
        self.0 & 0x1000 != 0
    }
}

/// A view of one tag: TPID, TCI and the EtherType that follows.
#[derive(Debug, Clone, Copy)]
pub struct VlanTagView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTagView<T> {
    /// Wraps `buffer`, which starts at the TPID (frame offset 12 for the outer tag).
    ///
    /// # Errors
    /// [`VlanError::Truncated`] under 6 bytes, [`VlanError::NotATag`] if the TPID is
    /// not 0x8100 or 0x88a8.
    pub fn new_checked(buffer: T) -> Result<Self, VlanError> {
        let b = buffer.as_ref();
        if b.len() < field::INNER_TYPE.end {
            return Err(VlanError::Truncated);
        }
        let tpid = be16_unchecked(b, field::TPID.start);
        if !is_tpid(tpid) {
            return Err(VlanError::NotATag(tpid));
        }
        Ok(VlanTagView { buffer })
    }
    /// The TPID.
    pub fn tpid(&self) -> u16 {
        be16_unchecked(self.buffer.as_ref(), field::TPID.start)
    }
    /// The TCI.
    pub fn tag(&self) -> VlanTag {
        VlanTag(be16_unchecked(self.buffer.as_ref(), field::TCI.start))
    }
    /// The EtherType after the tag: another TPID for a stacked tag, else the payload's.
    pub fn inner_ethertype(&self) -> u16 {
        be16_unchecked(self.buffer.as_ref(), field::INNER_TYPE.start)
    }
    /// The bytes after the tag, starting at the inner EtherType/TPID.
    pub fn rest(&self) -> &[u8] {
        &self.buffer.as_ref()[TAG_LEN..]
    }
}

/// A tag as a value: its TPID and TCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// 0x8100 or 0x88a8.
    pub tpid: u16,
    /// Priority, DEI, VID.
    pub tag: VlanTag,
}

impl VlanRepr {
    /// Reads the tag at the front of a view.
    pub fn parse<T: AsRef<[u8]>>(view: &VlanTagView<T>) -> Self {
        VlanRepr {
            tpid: view.tpid(),
            tag: view.tag(),
        }
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        TAG_LEN
    }

    /// Writes TPID and TCI into the first 4 bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`TAG_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::TPID].copy_from_slice(&self.tpid.to_be_bytes());
        buf[field::TCI].copy_from_slice(&self.tag.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testvec;
    use proptest::prelude::*;

    #[test]
    fn qinq_walk() {
        let f = testvec::qinq_udp();
        let s = VlanTagView::new_checked(&f[12..]).unwrap();
        assert_eq!(s.tpid(), TPID_8021AD);
        assert_eq!(
            (s.tag().pcp(), s.tag().dei(), s.tag().vid()),
            (3, false, 100)
        );
        assert_eq!(s.inner_ethertype(), TPID_8021Q);
        let c = VlanTagView::new_checked(s.rest()).unwrap();
        assert_eq!(c.tag().vid(), 200);
        assert_eq!(c.inner_ethertype(), 0x0800);
        assert_eq!(
            VlanTagView::new_checked(c.rest()).unwrap_err(),
            VlanError::NotATag(0x0800)
        );
    }

    #[test]
    fn truncation_is_specific() {
        let f = testvec::qinq_udp();
        for len in 0..6 {
            assert_eq!(
                VlanTagView::new_checked(&f[12..12 + len]).unwrap_err(),
                VlanError::Truncated
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(ad in any::<bool>(), pcp in 0u8..8, dei in any::<bool>(), vid in 0u16..4096, next in any::<u16>()) {
            let repr = VlanRepr { tpid: if ad { TPID_8021AD } else { TPID_8021Q }, tag: VlanTag::new(pcp, dei, vid) };
            let mut buf = [0u8; 6];
            repr.emit(&mut buf);
            buf[4..].copy_from_slice(&next.to_be_bytes());
            let v = VlanTagView::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(VlanRepr::parse(&v), repr);
            prop_assert_eq!((v.tag().pcp(), v.tag().dei(), v.tag().vid()), (pcp, dei, vid));
            prop_assert_eq!(v.inner_ethertype(), next);
        }
    }
}
