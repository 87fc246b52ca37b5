//! The 5-tuple a connection is found by, its table hash, and the symmetric hash
//! that picks the worker owning a connection.

use std::net::{IpAddr, Ipv6Addr};

/// One direction of a connection: addresses, ports and protocol.
///
/// Addresses are 16 bytes; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`), which
/// never appears as a real IPv6 source or destination on the wire (RFC 4291
/// §2.5.5.2 reserves it for sockets), so the two families cannot collide. For
/// ICMP echo both ports hold the echo identifier, which makes the reply's tuple
/// the reverse of the request's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (echo identifier).
    pub sport: u16,
    /// Destination port (echo identifier).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

fn to16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn from16(b: [u8; 16]) -> IpAddr {
    let a = Ipv6Addr::from(b);
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

impl CtTuple {
    /// A tuple from addresses of one family (a mixed pair is the caller's bug and
    /// simply never matches a real packet).
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> Self {
        CtTuple {
            src: to16(src),
            dst: to16(dst),
            sport,
            dport,
            proto,
        }
    }

    /// The tuple of the other direction.
    #[inline]
    pub fn reversed(&self) -> Self {
        CtTuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// Source address.
    pub fn src_ip(&self) -> IpAddr {
        from16(self.src)
    }

    /// Destination address.
    pub fn dst_ip(&self) -> IpAddr {
        from16(self.dst)
    }

    /// The words of the tuple for hashing: 16 + 16 + 2 + 2 + 1 bytes.
    #[inline]
    fn words(&self) -> [u64; 5] {
        let w = |b: &[u8; 16], i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
        [
            w(&self.src, 0),
            w(&self.src, 8),
            w(&self.dst, 0),
            w(&self.dst, 8),
            u64::from(self.sport) | u64::from(self.dport) << 16 | u64::from(self.proto) << 32,
        ]
    }
}

/// A 64-bit finaliser (SplitMix64's): every input bit reaches every output bit.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The table hash of (zone, tuple) under `seed`. The seed is the table's, chosen
/// by whoever builds it, so a remote sender cannot aim many connections at one
/// bucket without knowing it.
#[inline]
pub fn ct_hash(seed: u64, zone: u32, t: &CtTuple) -> u64 {
    let mut h = seed ^ u64::from(zone).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // A multiply carries a word's bits only upwards; the shift folds the high
    // half back down, so the next word meets every bit of this one (a rotate
    // instead left the IPv4 address, in a word's high half, to collide with
    // the ports: chains of 8 and more at 100k connections).
    for w in t.words() {
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
    }
    mix64(h)
}

/// A hash that is the same for a tuple and its reverse: the endpoints are put in
/// a fixed order before hashing. It picks the worker owning the connection.
#[inline]
pub fn symmetric_hash(zone: u32, t: &CtTuple) -> u32 {
    let a = (t.src, t.sport);
    let b = (t.dst, t.dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let ordered = CtTuple {
        src: lo.0,
        dst: hi.0,
        sport: lo.1,
        dport: hi.1,
        proto: t.proto,
    };
    (ct_hash(0x6f77_6e65_7273_6970, zone, &ordered) >> 32) as u32
}

/// The worker, of `workers`, that owns the connection of `t` (either direction).
#[inline]
pub fn owner(zone: u32, t: &CtTuple, workers: usize) -> usize {
    ((u64::from(symmetric_hash(zone, t)) * workers as u64) >> 32) as usize
}
