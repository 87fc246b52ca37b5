//! Ethernet II header: a typed view over the frame's bytes.
//!
//! Following smoltcp, [`EthernetFrame`] wraps any `AsRef<[u8]>` and reads fields
//! through byte ranges, never by casting to a `#[repr(C)]` struct (no alignment or
//! endianness traps). [`EthernetFrame::new_checked`] is the only way in from
//! untrusted bytes: once it succeeds, every accessor is in bounds and cannot panic.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Length of an Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Hashed as one 48-bit integer: one hasher round where the derived (slice) hash
/// would feed a length and two pieces. MAC tables are probed once per packet.
impl std::hash::Hash for MacAddr {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.to_u64());
    }
}

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address from its six bytes, in wire order.
    pub const fn new(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }

    /// The six bytes, in wire order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The destination MAC of `frame` as [`to_u64`](Self::to_u64) gives it, read
    /// with one 8-byte load (the frame's first 8 bytes; `None` if it is shorter):
    /// the per-packet table keys are built from this, not byte by byte.
    #[inline]
    pub fn dst_bits(frame: &[u8]) -> Option<u64> {
        let b: [u8; 8] = frame.get(..8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b) >> 16)
    }

    /// The address from [`to_u64`](Self::to_u64)'s integer (its low 48 bits).
    #[inline]
    pub const fn from_u64(bits: u64) -> Self {
        let b = bits.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The address as an integer (big-endian: the first byte is the highest).
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// True for group addresses (I/G bit set): multicast, including broadcast.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for `00:00:00:00:00:00`, which no interface may have: configuration
    /// refuses it wherever it wants a station's address.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True for individual (unicast) addresses.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address string that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes separated by ':'")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A prefix is enough to recognise the input; errors never echo it whole.
        let err = || MacParseError(s.chars().take(24).collect());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// The frame is too short to hold an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("frame of {len} bytes is shorter than the {HEADER_LEN}-byte Ethernet header")]
pub struct Truncated {
    /// The frame's length in bytes.
    pub len: usize,
}

/// A read-only view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    ///
    /// # Errors
    /// [`Truncated`] if `buffer` is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Truncated { len });
        }
        Ok(EthernetFrame { buffer })
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(self.array(field::DST.start))
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(self.array(field::SRC.start))
    }

    /// EtherType (or 802.1Q TPID), host order.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn array(&self, start: usize) -> [u8; 6] {
        let b = &self.buffer.as_ref()[start..start + 6];
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP request from a capture: broadcast, from 52:54:00:12:34:56, EtherType 0x0806.
    const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0x0a, 0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x02,
    ];

    #[test]
    fn parses_header_fields() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert!(f.dst_addr().is_multicast());
        assert_eq!(f.src_addr(), "52:54:00:12:34:56".parse().unwrap());
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.ethertype(), 0x0806);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn short_frames_are_truncated_errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_REQUEST[..len]).unwrap_err(),
                Truncated { len }
            );
        }
        assert!(EthernetFrame::new_checked(&ARP_REQUEST[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn mac_text_round_trip_and_noise() {
        let m: MacAddr = "01:00:5e:00:00:fb".parse().unwrap();
        assert!(m.is_multicast() && !m.is_broadcast());
        assert_eq!(m.to_string(), "01:00:5e:00:00:fb");
        for bad in [
            "",
            "01:00:5e:00:00",
            "01:00:5e:00:00:fb:00",
            "1:00:5e:00:00:fb",
            "zz:00:5e:00:00:fb",
        ] {
            assert_eq!(
                bad.parse::<MacAddr>(),
                Err(MacParseError(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
