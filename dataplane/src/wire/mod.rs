//! Wire formats: typed zero-copy views, `Repr`s, and the parse-once [`PacketMeta`].
//!
//! Two layers, for two kinds of reader:
//!
//! * **Views and `Repr`s** for stages that read or write one header in detail (ARP and
//!   ND answers, encapsulation, option handling). Standard headers come from smoltcp's
//!   `wire` module, re-exported here so the rest of the crate names one place; the
//!   formats smoltcp lacks — 802.1Q/802.1ad tags, VXLAN, Geneve with its TLV options,
//!   the IPv6 extension-header walk and RFC 1624 incremental checksums — are ours and
//!   follow the same shape: `Packet<T: AsRef<[u8]>>`, a private `field` module of byte
//!   ranges, `new_checked` for untrusted bytes, and a `Repr` with symmetric
//!   `parse`/`emit`.
//! * **[`PacketMeta`]** for the fast path: [`parse`] walks a frame once, from Ethernet
//!   to the L4 ports (and the tunnel header, if any), into a small `Copy` struct that
//!   later stages read instead of the bytes. It never panics on any input; malformed
//!   input maps to a specific [`ParseError`] whose discriminant indexes counters.
//!
//! The meta walk does not go through smoltcp's views: it needs its own error per
//! truncation point, and reading a handful of fields with one bounds check per header
//! is cheaper than building each view. The views are cross-checked against it in tests.
//!
//! # No-panic contract
//! Every `new_checked` validates the lengths its accessors rely on; after it succeeds no
//! accessor of the view panics. Functions with `_unchecked` in their name may panic
//! and say so.

pub mod checksum;
pub mod geneve;
pub mod ipv6_ext;
pub mod meta;
pub mod vlan;
pub mod vxlan;

#[cfg(test)]
pub(crate) mod testvec;

pub use geneve::{
    GeneveError, GeneveOption, GeneveOptionRepr, GenevePacket, GeneveRepr, GENEVE_PORT,
};
pub use ipv6_ext::{Ipv6ExtError, Ipv6ExtWalk, MAX_IPV6_EXT_HEADERS};
pub use meta::{
    ipv4_flow_hash, parse, parse_inner, parse_inner_into, parse_into, parse_with, L3Kind,
    PacketMeta, ParseConfig, ParseError, TunnelKind, TunnelPorts, DEFAULT_CONFIG,
};
pub use vlan::{VlanError, VlanRepr, VlanTag, VlanTagView, TPID_8021AD, TPID_8021Q};
pub use vxlan::{VxlanError, VxlanPacket, VxlanRepr, VXLAN_LEGACY_PORT, VXLAN_PORT};

/// Which checksums smoltcp's `Repr::parse`/`emit` verify and fill.
pub use smoltcp::phy::ChecksumCapabilities;
/// smoltcp's views and `Repr`s for the standard headers, re-exported so stages depend
/// on `wire`, not on smoltcp directly.
pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv6Message, Icmpv6Packet, Icmpv6Repr,
    IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr,
    NdiscNeighborFlags, NdiscRepr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
    UdpRepr,
};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of transparent Ethernet bridging: Geneve's protocol type for an inner frame.
pub const ETHERTYPE_TEB: u16 = 0x6558;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// The big-endian `u16` at `at`.
///
/// # Panics
/// If `b` is shorter than `at + 2`: for fields whose header length was checked.
#[inline]
pub(crate) fn be16_unchecked(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The big-endian `u32` at `at`.
///
/// # Panics
/// If `b` is shorter than `at + 4`: for fields whose header length was checked.
#[inline]
pub(crate) fn be32_unchecked(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
