//! VXLAN (RFC 7348): an Ethernet frame in UDP, keyed by a 24-bit VNI.
//!
//! The header is 8 bytes: flags (only I, "VNI valid", is defined), 24 reserved bits,
//! the VNI and 8 reserved bits. RFC 7348 §5 says reserved bits are zero on send and
//! ignored on receipt, so the only check on receipt is the I flag: a header without it
//! carries no VNI and cannot be mapped to a network.

use thiserror::Error;

use super::be32_unchecked;

/// IANA's UDP port for VXLAN.
pub const VXLAN_PORT: u16 = 4789;
/// The port Linux used before IANA assigned 4789, still the kernel's default.
pub const VXLAN_LEGACY_PORT: u16 = 8472;
/// Bytes of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;

mod field {
    pub const FLAGS: usize = 0;
    pub const VNI: usize = 4;
}

/// A VXLAN header that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VxlanError {
    /// Fewer than 8 bytes.
    #[error("VXLAN header truncated")]
    Truncated,
    /// The I flag is clear: there is no VNI.
    #[error("VXLAN flags {0:#04x} lack the I flag")]
    BadFlags(u8),
}

/// A view of a VXLAN header and the frame it carries.
#[derive(Debug, Clone, Copy)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` (the UDP payload) after checking length and the I flag.
    ///
    /// # Errors
    /// [`VxlanError::Truncated`] under 8 bytes, [`VxlanError::BadFlags`] without I.
    pub fn new_checked(buffer: T) -> Result<Self, VxlanError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(VxlanError::Truncated);
        }
        if b[field::FLAGS] & FLAG_I == 0 {
            return Err(VxlanError::BadFlags(b[field::FLAGS]));
        }
        Ok(VxlanPacket { buffer })
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// The 24-bit VNI.
    pub fn vni(&self) -> u32 {
        be32_unchecked(self.buffer.as_ref(), field::VNI) >> 8
    }
    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// A VXLAN header as a value: its VNI (the I flag is implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// 24-bit network identifier.
    pub vni: u32,
}

impl VxlanRepr {
    /// Reads a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Self {
        VxlanRepr { vni: packet.vni() }
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header (I flag, reserved bits zero, VNI masked to 24 bits).
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, 0, 0, 0, 0]);
        buf[field::VNI..field::VNI + 4]
            .copy_from_slice(&((self.vni & 0x00ff_ffff) << 8).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testvec;
    use proptest::prelude::*;

    /// UDP payload of `testvec::VXLAN_ICMP`: starts after Ethernet(14)+IPv4(20)+UDP(8).
    fn golden() -> &'static [u8] {
        &testvec::VXLAN_ICMP[42..]
    }

    #[test]
    fn golden_vni_5001() {
        let v = VxlanPacket::new_checked(golden()).unwrap();
        assert_eq!(v.flags(), 0x08);
        assert_eq!(v.vni(), 5001);
        assert_eq!(VxlanRepr::parse(&v), VxlanRepr { vni: 5001 });
        // Inner 02:00:00:aa:00:01 > 02:00:00:aa:00:02, length 98.
        assert_eq!(v.payload().len(), 98);
        assert_eq!(&v.payload()[..6], &[0x02, 0x00, 0x00, 0xaa, 0x00, 0x02]);
        let mut out = [0u8; 8];
        VxlanRepr { vni: 5001 }.emit(&mut out);
        assert_eq!(&out, &golden()[..8]);
    }

    #[test]
    fn i_flag_clear_is_refused_from_bytes() {
        // Flags 0x00 (a sender that forgot I), then VNI 5001: the VNI is not valid.
        let b = [0x00, 0, 0, 0, 0x00, 0x13, 0x89, 0x00];
        assert_eq!(
            VxlanPacket::new_checked(&b[..]).unwrap_err(),
            VxlanError::BadFlags(0x00)
        );
        // Only the G bit of VXLAN-GBP (0x80): still no I.
        let b = [0x80, 0, 0, 0, 0x00, 0x13, 0x89, 0x00];
        assert_eq!(
            VxlanPacket::new_checked(&b[..]).unwrap_err(),
            VxlanError::BadFlags(0x80)
        );
        let b = [0x88, 0, 0, 0, 0x00, 0x13, 0x89, 0x00];
        assert_eq!(VxlanPacket::new_checked(&b[..]).unwrap().vni(), 5001);
    }

    #[test]
    fn noise_maps_to_specific_errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                VxlanPacket::new_checked(&golden()[..len]).unwrap_err(),
                VxlanError::Truncated
            );
        }
        let mut b = golden().to_vec();
        b[0] = 0x00;
        assert_eq!(
            VxlanPacket::new_checked(&b[..]).unwrap_err(),
            VxlanError::BadFlags(0)
        );
        // Reserved bits are ignored on receipt (RFC 7348 §5).
        b[0] = 0xff;
        b[1] = 0xff;
        b[7] = 0xff;
        assert_eq!(VxlanPacket::new_checked(&b[..]).unwrap().vni(), 5001);
    }

    proptest! {
        #[test]
        fn round_trip(vni in 0u32..(1 << 24), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let repr = VxlanRepr { vni };
            let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
            repr.emit(&mut buf);
            buf[HEADER_LEN..].copy_from_slice(&payload);
            let v = VxlanPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(VxlanRepr::parse(&v), repr);
            prop_assert_eq!(v.payload(), &payload[..]);
        }
    }
}
