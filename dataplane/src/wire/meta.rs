//! Parse once: [`PacketMeta`], the per-packet summary every later stage reads.
//!
//! [`parse`] walks a frame from Ethernet through VLAN tags, ARP/IPv4/IPv6 (options
//! and the extension-header chain), to the TCP/UDP ports or ICMP type, and, for UDP to
//! a tunnel port, the VXLAN or Geneve header. What it finds goes into a small `Copy`
//! struct: offsets, addresses, ports, flags and the tunnel key. Stages then branch on
//! fields instead of re-reading bytes, and the flow cache hashes the same fields.
//!
//! Design choices:
//! * **The inner frame is not parsed here.** Decapsulation is a stage of its own (the
//!   VNI must first be mapped to a network, and most packets on a VTEP are outer
//!   traffic to look up, not to open), so `parse` records where the inner packet
//!   starts and [`parse_inner`] parses it on demand, as a second walk.
//! * **Checksums are not verified.** NICs verify them and a switch forwards what it
//!   cannot check; the UDP checksum 0 that VXLAN and Geneve senders use is fine.
//! * **Errors are specific and `Copy`.** Each truncation point has its own
//!   [`ParseError`], whose discriminant indexes a counter array like
//!   [`DropReason`](crate::DropReason): a drop for malformed input is counted, not
//!   logged.
//! * **No panics on any input** (tested over every prefix of every golden frame, random
//!   bytes, and by the fuzz targets in `dataplane/fuzz`).
//!
//! Offsets are `u16` to keep the struct small; frames over 65535 bytes are refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arrayvec::ArrayVec;

use super::geneve::{self, OPTION_CRITICAL};
use super::ipv6_ext::{self, Ipv6ExtError};
use super::vlan::{is_tpid, VlanTag};
use super::vxlan::{self, VXLAN_LEGACY_PORT, VXLAN_PORT};
use super::{be16_unchecked, be32_unchecked, GENEVE_PORT};
use super::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_TEB};
use super::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::MacAddr;

/// Most VLAN tags [`parse`] reads (an S-tag and a C-tag).
pub const MAX_VLAN_TAGS: usize = 2;

macro_rules! parse_errors {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal => $s:literal, )*) => {
        /// Why a frame could not be parsed. The discriminant indexes counter arrays.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum ParseError {
            $( $(#[$doc])* $name = $idx, )*
        }

        impl ParseError {
            /// Every error, in discriminant order (`ALL[e.index()] == e`).
            pub const ALL: &'static [ParseError] = &[$(ParseError::$name,)*];
            /// How many errors there are: the length of per-error counter arrays.
            pub const COUNT: usize = Self::ALL.len();

            /// The snake_case name shown to operators.
            pub const fn as_str(self) -> &'static str {
                match self { $(ParseError::$name => $s,)* }
            }
        }
    };
}

parse_errors! {
    /// The frame is longer than 65535 bytes, which the `u16` offsets cannot address.
    FrameTooLong = 0 => "frame_too_long",
    /// Shorter than the 14-byte Ethernet header.
    TruncatedEthernet = 1 => "truncated_ethernet",
    /// A VLAN TPID without a whole tag and EtherType after it.
    TruncatedVlan = 2 => "truncated_vlan",
    /// More than two stacked VLAN tags.
    TooManyVlanTags = 3 => "too_many_vlan_tags",
    /// An ARP packet shorter than 28 bytes.
    TruncatedArp = 4 => "truncated_arp",
    /// Shorter than the IPv4 header its IHL announces, or than its total length.
    TruncatedIpv4 = 5 => "truncated_ipv4",
    /// The IP version nibble does not match the EtherType.
    BadIpVersion = 6 => "bad_ip_version",
    /// IPv4 IHL below 5 words.
    BadIhl = 7 => "bad_ihl",
    /// IPv4 total length smaller than the header.
    BadTotalLength = 8 => "bad_total_length",
    /// Shorter than the 40-byte IPv6 header or than its payload length.
    TruncatedIpv6 = 9 => "truncated_ipv6",
    /// An IPv6 extension header runs past the payload.
    TruncatedIpv6Ext = 10 => "truncated_ipv6_ext",
    /// More IPv6 extension headers than the walk follows.
    Ipv6ExtTooLong = 11 => "ipv6_ext_too_long",
    /// An IPv6 hop-by-hop header that is not the first extension header.
    Ipv6HopByHopNotFirst = 12 => "ipv6_hop_by_hop_not_first",
    /// Fewer than 20 TCP header bytes, or fewer than the data offset announces.
    TruncatedTcp = 13 => "truncated_tcp",
    /// TCP data offset below 5 words.
    BadTcpDataOffset = 14 => "bad_tcp_data_offset",
    /// Fewer than 8 UDP header bytes.
    TruncatedUdp = 15 => "truncated_udp",
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength = 16 => "bad_udp_length",
    /// An ICMP/ICMPv6 header shorter than 4 bytes (8 for echo).
    TruncatedIcmp = 17 => "truncated_icmp",
    /// A UDP payload to a VXLAN port shorter than the 8-byte header.
    TruncatedVxlan = 18 => "truncated_vxlan",
    /// A VXLAN header without the I flag.
    BadVxlanFlags = 19 => "bad_vxlan_flags",
    /// A UDP payload to a Geneve port shorter than the 8-byte header.
    TruncatedGeneve = 20 => "truncated_geneve",
    /// Geneve version other than 0.
    GeneveBadVersion = 21 => "geneve_bad_version",
    /// Geneve options length beyond the UDP payload.
    GeneveOptTooLong = 22 => "geneve_opt_too_long",
    /// A Geneve option whose length overruns the option area.
    GeneveBadOption = 23 => "geneve_bad_option",
    /// A critical Geneve option this switch does not know (RFC 8926 §3.5: drop).
    GeneveUnknownCritical = 24 => "geneve_unknown_critical",
}

impl ParseError {
    /// The index of this error in per-error counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

/// What the EtherType announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum L3Kind {
    /// Not parsed past L2 (an EtherType this parser does not read).
    #[default]
    Other,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP for IPv4 over Ethernet: addresses are the sender and target protocol addresses.
    Arp,
}

/// The tunnel header found in the UDP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// Not a tunnel packet.
    #[default]
    None,
    /// VXLAN (RFC 7348).
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
}

/// Which UDP destination ports mean VXLAN and Geneve. Two slots each; 0 is unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelPorts {
    /// VXLAN ports.
    pub vxlan: [u16; 2],
    /// Geneve ports.
    pub geneve: [u16; 2],
}

impl TunnelPorts {
    /// IANA ports only: VXLAN 4789, Geneve 6081. The default: UDP to 8472 that is not
    /// VXLAN (it is unassigned, so anything may use it) is not misread as a tunnel.
    pub const IANA: TunnelPorts = TunnelPorts {
        vxlan: [VXLAN_PORT, 0],
        geneve: [GENEVE_PORT, 0],
    };
    /// IANA ports plus Linux's legacy VXLAN port 8472, for peers running the kernel
    /// default.
    pub const WITH_LINUX_VXLAN: TunnelPorts = TunnelPorts {
        vxlan: [VXLAN_PORT, VXLAN_LEGACY_PORT],
        geneve: [GENEVE_PORT, 0],
    };
    /// No tunnel parsing.
    pub const NONE: TunnelPorts = TunnelPorts {
        vxlan: [0; 2],
        geneve: [0; 2],
    };

    #[inline]
    pub(crate) fn kind(&self, port: u16) -> TunnelKind {
        if port == 0 {
            TunnelKind::None
        } else if self.vxlan.contains(&port) {
            TunnelKind::Vxlan
        } else if self.geneve.contains(&port) {
            TunnelKind::Geneve
        } else {
            TunnelKind::None
        }
    }
}

impl Default for TunnelPorts {
    fn default() -> Self {
        Self::IANA
    }
}

/// What [`parse_with`] needs to know beyond the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ParseConfig {
    /// Tunnel ports.
    pub ports: TunnelPorts,
    /// Critical Geneve options this switch understands, as (class, type byte with the
    /// critical bit). A critical option not listed drops the packet.
    pub geneve_known_critical: ArrayVec<(u16, u8), 8>,
}

impl ParseConfig {
    /// IANA ports and no known critical Geneve options.
    pub fn new(ports: TunnelPorts) -> Self {
        ParseConfig {
            ports,
            geneve_known_critical: ArrayVec::new(),
        }
    }

    #[inline]
    fn knows(&self, class: u16, type_: u8) -> bool {
        self.geneve_known_critical.contains(&(class, type_))
    }
}

/// Everything later stages need from a packet's headers, filled once by [`parse`].
///
/// Offsets are from the start of the parsed slice. A field a packet lacks is zero
/// (e.g. ports of ICMP, `l4_offset` of ARP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketMeta {
    /// Destination MAC (zero when parsing started at L3).
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// VLAN tags, outermost first; `vlan_count` are valid.
    pub vlans: [VlanTag; MAX_VLAN_TAGS],
    /// How many VLAN tags.
    pub vlan_count: u8,
    /// EtherType after the tags.
    pub ethertype: u16,
    /// Offset of the L3 header.
    pub l3_offset: u16,
    /// What the L3 header is.
    pub l3: L3Kind,
    /// Source address: IPv4 (and ARP) in the first 4 bytes, IPv6 in all 16.
    pub src_ip: [u8; 16],
    /// Destination address, as `src_ip`.
    pub dst_ip: [u8; 16],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Offset just past the IP packet (before any Ethernet padding).
    pub l3_end: u16,
    /// The L4 protocol number (after IPv6 extension headers).
    pub l4_proto: u8,
    /// Offset of the L4 header; 0 when there is none in this packet (non-IP, later
    /// fragments, unknown protocols).
    pub l4_offset: u16,
    /// Offset of the L4 payload (after TCP options, the UDP or ICMP header).
    pub payload_offset: u16,
    /// TCP/UDP source port; for ICMP echo request/reply, the identifier.
    pub src_port: u16,
    /// TCP/UDP destination port; for ICMP echo request/reply, the identifier.
    pub dst_port: u16,
    /// ICMP/ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code.
    pub icmp_code: u8,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    pub tcp_flags: u8,
    /// An IP fragment (first or later); only the first has an L4 header, and no
    /// fragment is read as a tunnel packet (the inner frame would be incomplete).
    pub is_fragment: bool,
    /// ARP operation (1 request, 2 reply).
    pub arp_op: u16,
    /// Tunnel header found, if any.
    pub tunnel: TunnelKind,
    /// Tunnel flags byte: VXLAN's flags, or Geneve's O/C byte.
    pub tunnel_flags: u8,
    /// VXLAN/Geneve VNI.
    pub vni: u32,
    /// Offset of the encapsulated packet.
    pub inner_offset: u16,
    /// Offset just past the encapsulated packet (the UDP payload's end).
    pub inner_end: u16,
    /// What the encapsulated packet is: 0x6558 (Ethernet) or an EtherType.
    pub inner_protocol: u16,
}

impl PacketMeta {
    /// Source address as an `IpAddr` (`None` unless IPv4, IPv6 or ARP).
    pub fn src_addr(&self) -> Option<IpAddr> {
        self.addr(&self.src_ip)
    }

    /// Destination address as an `IpAddr`.
    pub fn dst_addr(&self) -> Option<IpAddr> {
        self.addr(&self.dst_ip)
    }

    fn addr(&self, a: &[u8; 16]) -> Option<IpAddr> {
        match self.l3 {
            L3Kind::Ipv4 | L3Kind::Arp => Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()),
            L3Kind::Ipv6 => Some(Ipv6Addr::from(*a).into()),
            L3Kind::Other => None,
        }
    }

    /// The VLAN tags present, outermost first.
    pub fn vlan_tags(&self) -> &[VlanTag] {
        &self.vlans[..usize::from(self.vlan_count).min(MAX_VLAN_TAGS)]
    }

    /// True when the packet has an L4 header here (TCP, UDP, ICMP).
    pub fn has_l4(&self) -> bool {
        self.l4_offset != 0
    }

    /// A hash of the 5-tuple (addresses, protocol, ports) for flow tables and ECMP:
    /// four multiplies and a murmur3 finaliser, no table.
    #[inline]
    pub fn flow_hash(&self) -> u32 {
        hash_tuple(
            &self.src_ip,
            &self.dst_ip,
            self.src_port,
            self.dst_port,
            self.l4_proto,
        )
    }

    /// [`flow_hash`](Self::flow_hash) that is the same for both directions of a flow:
    /// the endpoints are ordered before hashing.
    #[inline]
    pub fn symmetric_flow_hash(&self) -> u32 {
        let a = (self.src_ip, self.src_port);
        let b = (self.dst_ip, self.dst_port);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        hash_tuple(&lo.0, &hi.0, lo.1, hi.1, self.l4_proto)
    }
}

/// The [`PacketMeta::flow_hash`] of an untagged IPv4 frame, read straight from its
/// bytes without a parse: for the fast path that switches such frames on their
/// destination MAC and needs the hash only for the outer source port. `None` when
/// the frame is not untagged IPv4 or is too short to read what the hash covers.
///
/// Wherever [`parse`] succeeds this equals `parse(frame)?.flow_hash()` (same
/// addresses, protocol, and ports: TCP/UDP ports, the ICMP echo identifier, none for
/// later fragments), so a flow keeps one source port whichever path it takes. It
/// does not validate the headers beyond what it reads; a switch forwarding a frame on
/// its MAC does not need them valid. Always inlined: then the zero halves of the
/// IPv4 addresses' 16-byte fields fold to constants, and the call itself was a
/// tenth of the pod fast path's own cycles.
#[inline(always)]
pub fn ipv4_flow_hash(frame: &[u8]) -> Option<u32> {
    if frame.len() < 34 || be16_unchecked(frame, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[14..34];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let proto = ip[9];
    let l4 = 14 + ihl;
    let (sport, dport) = if be16_unchecked(ip, 6) & 0x1fff != 0 {
        (0, 0) // a later fragment: no L4 header
    } else {
        match proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let p = frame.get(l4..l4 + 4)?;
                (be16_unchecked(p, 0), be16_unchecked(p, 2))
            }
            IPPROTO_ICMP => {
                let p = frame.get(l4..l4 + 8)?;
                if matches!(p[0], 0 | 8) {
                    (be16_unchecked(p, 4), be16_unchecked(p, 4))
                } else {
                    (0, 0)
                }
            }
            _ => (0, 0),
        }
    };
    Some(hash_tuple(
        &v4_field(&ip[12..16]),
        &v4_field(&ip[16..20]),
        sport,
        dport,
        proto,
    ))
}

/// Always inlined: the pod fast paths hash every packet, and as a call it cost
/// the encap burst loop its registers.
#[inline(always)]
fn hash_tuple(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: u8) -> u32 {
    const K: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0xd6e8_feb8_6659_fd93,
    ];
    let w = |b: &[u8; 16], i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let mut h = u64::from(sport) | u64::from(dport) << 16 | u64::from(proto) << 32;
    h ^= (w(src, 0) ^ K[3]).wrapping_mul(K[0]);
    h ^= (w(src, 8) ^ K[2]).wrapping_mul(K[1]).rotate_left(29);
    h ^= (w(dst, 0) ^ K[1]).wrapping_mul(K[2]).rotate_left(41);
    h ^= (w(dst, 8) ^ K[0]).wrapping_mul(K[3]).rotate_left(13);
    // murmur3's fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

/// Parses `frame` with the default configuration ([`TunnelPorts::IANA`], no known
/// critical Geneve options).
///
/// # Errors
/// The first malformation found, see [`ParseError`].
#[inline]
pub fn parse(frame: &[u8]) -> Result<PacketMeta, ParseError> {
    parse_with(frame, &DEFAULT_CONFIG)
}

/// The configuration [`parse`] uses: [`TunnelPorts::IANA`], no known critical Geneve
/// options.
pub static DEFAULT_CONFIG: ParseConfig = ParseConfig {
    ports: TunnelPorts::IANA,
    geneve_known_critical: ArrayVec::new_const(),
};

/// Parses an Ethernet frame.
///
/// # Errors
/// The first malformation found, see [`ParseError`].
#[inline]
pub fn parse_with(frame: &[u8], cfg: &ParseConfig) -> Result<PacketMeta, ParseError> {
    let mut m = PacketMeta::default();
    parse_into(frame, cfg, &mut m)?;
    Ok(m)
}

/// [`parse_with`] writing into `m` in place, for a stage that fills a burst's metadata
/// array: it saves moving a `PacketMeta` through a `Result`. On error `m` holds what
/// was parsed before the malformation (every field is reset first).
///
/// # Errors
/// The first malformation found, see [`ParseError`].
pub fn parse_into(frame: &[u8], cfg: &ParseConfig, m: &mut PacketMeta) -> Result<(), ParseError> {
    *m = PacketMeta::default();
    if frame.len() > usize::from(u16::MAX) {
        return Err(ParseError::FrameTooLong);
    }
    let Some(eth) = frame.get(..14) else {
        return Err(ParseError::TruncatedEthernet);
    };
    m.dst_mac.0.copy_from_slice(&eth[0..6]);
    m.src_mac.0.copy_from_slice(&eth[6..12]);
    let mut at = 12;
    let mut ethertype = be16_unchecked(eth, 12);
    while is_tpid(ethertype) {
        if usize::from(m.vlan_count) == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags);
        }
        let Some(tag) = frame.get(at..at + 6) else {
            return Err(ParseError::TruncatedVlan);
        };
        m.vlans[usize::from(m.vlan_count)] = VlanTag(be16_unchecked(tag, 2));
        m.vlan_count += 1;
        ethertype = be16_unchecked(tag, 4);
        at += 4;
    }
    at += 2;
    parse_l3(frame, at, ethertype, cfg, m)
}

/// Parses the packet a tunnel carries, as a second walk over the inner bytes.
///
/// `frame` and `outer` are the outer frame and its meta; offsets in the result are
/// from `outer.inner_offset`. An inner Ethernet frame (VXLAN, Geneve 0x6558) is parsed
/// from L2; a bare IP packet (Geneve with protocol 0x0800/0x86dd) from L3, leaving the
/// MACs zero. A packet that is not a tunnel gives a meta with only `ethertype` set to
/// 0 (nothing to parse).
///
/// # Errors
/// The first malformation in the inner packet.
pub fn parse_inner(
    frame: &[u8],
    outer: &PacketMeta,
    cfg: &ParseConfig,
) -> Result<PacketMeta, ParseError> {
    let mut m = PacketMeta::default();
    parse_inner_into(frame, outer, cfg, &mut m)?;
    Ok(m)
}

/// [`parse_inner`] writing into `m` in place, as [`parse_into`] does.
///
/// # Errors
/// The first malformation in the inner packet.
pub fn parse_inner_into(
    frame: &[u8],
    outer: &PacketMeta,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    if outer.tunnel == TunnelKind::None {
        *m = PacketMeta::default();
        return Ok(());
    }
    let inner = frame
        .get(usize::from(outer.inner_offset)..usize::from(outer.inner_end))
        .unwrap_or(&[]);
    if outer.inner_protocol == ETHERTYPE_TEB {
        parse_into(inner, cfg, m)
    } else {
        *m = PacketMeta::default();
        parse_l3(inner, 0, outer.inner_protocol, cfg, m)
    }
}

fn parse_l3(
    frame: &[u8],
    at: usize,
    ethertype: u16,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    m.ethertype = ethertype;
    m.l3_offset = at as u16;
    m.l3_end = frame.len() as u16;
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, at, cfg, m),
        ETHERTYPE_IPV6 => parse_ipv6(frame, at, cfg, m),
        ETHERTYPE_ARP => parse_arp(frame, at, m),
        _ => Ok(()),
    }
}

fn parse_arp(frame: &[u8], at: usize, m: &mut PacketMeta) -> Result<(), ParseError> {
    let Some(b) = frame.get(at..at + 28) else {
        return Err(ParseError::TruncatedArp);
    };
    m.arp_op = be16_unchecked(b, 6);
    // Ethernet/IPv4 ARP only; other hardware or protocol types keep L3Kind::Other.
    if be16_unchecked(b, 0) == 1 && be16_unchecked(b, 2) == ETHERTYPE_IPV4 && b[4] == 6 && b[5] == 4
    {
        m.l3 = L3Kind::Arp;
        m.src_ip = v4_field(&b[14..18]);
        m.dst_ip = v4_field(&b[24..28]);
    }
    m.l3_end = (at + 28) as u16;
    Ok(())
}

/// An IPv4 address in a 16-byte address field, zero-padded, built whole: stored with
/// one write, so the 8-byte reads of the flow hash are served from the store queue
/// (a 4-byte write next to the reset's zeroes could not be, and stalled each read).
#[inline]
fn v4_field(a: &[u8]) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[..4].copy_from_slice(&a[..4]);
    f
}

fn parse_ipv4(
    frame: &[u8],
    at: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    let Some(b) = frame.get(at..at + 20) else {
        return Err(ParseError::TruncatedIpv4);
    };
    if b[0] >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(ParseError::BadIhl);
    }
    let total = usize::from(be16_unchecked(b, 2));
    if total < ihl {
        return Err(ParseError::BadTotalLength);
    }
    if at + total > frame.len() {
        return Err(ParseError::TruncatedIpv4);
    }
    m.l3 = L3Kind::Ipv4;
    m.ttl = b[8];
    m.l4_proto = b[9];
    m.src_ip = v4_field(&b[12..16]);
    m.dst_ip = v4_field(&b[16..20]);
    let frag = be16_unchecked(b, 6);
    m.is_fragment = frag & 0x3fff != 0;
    let end = at + total;
    m.l3_end = end as u16;
    if frag & 0x1fff != 0 {
        return Ok(()); // a later fragment: no L4 header
    }
    parse_l4(frame, at + ihl, end, cfg, m)
}

fn parse_ipv6(
    frame: &[u8],
    at: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    let Some(b) = frame.get(at..at + 40) else {
        return Err(ParseError::TruncatedIpv6);
    };
    if b[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let end = at + 40 + usize::from(be16_unchecked(b, 4));
    if end > frame.len() {
        return Err(ParseError::TruncatedIpv6);
    }
    m.l3 = L3Kind::Ipv6;
    m.ttl = b[7];
    m.src_ip.copy_from_slice(&b[8..24]);
    m.dst_ip.copy_from_slice(&b[24..40]);
    m.l3_end = end as u16;
    let w = ipv6_ext::walk(b[6], &frame[at + 40..end]).map_err(|e| match e {
        Ipv6ExtError::Truncated => ParseError::TruncatedIpv6Ext,
        Ipv6ExtError::TooLong => ParseError::Ipv6ExtTooLong,
        Ipv6ExtError::HopByHopNotFirst => ParseError::Ipv6HopByHopNotFirst,
    })?;
    m.l4_proto = w.protocol;
    m.is_fragment = w.is_fragment;
    if w.later_fragment {
        return Ok(());
    }
    parse_l4(frame, at + 40 + w.offset, end, cfg, m)
}

fn parse_l4(
    frame: &[u8],
    at: usize,
    end: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    // `at <= end <= frame.len()` holds by construction; `get` keeps it panic-free anyway.
    let l4 = frame.get(at..end).unwrap_or(&[]);
    match m.l4_proto {
        IPPROTO_TCP => {
            if l4.len() < 20 {
                return Err(ParseError::TruncatedTcp);
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 {
                return Err(ParseError::BadTcpDataOffset);
            }
            if doff > l4.len() {
                return Err(ParseError::TruncatedTcp);
            }
            m.src_port = be16_unchecked(l4, 0);
            m.dst_port = be16_unchecked(l4, 2);
            m.tcp_flags = l4[13];
            m.payload_offset = (at + doff) as u16;
        }
        IPPROTO_UDP => {
            if l4.len() < 8 {
                return Err(ParseError::TruncatedUdp);
            }
            let ulen = usize::from(be16_unchecked(l4, 4));
            if ulen < 8 || ulen > l4.len() {
                return Err(ParseError::BadUdpLength);
            }
            m.src_port = be16_unchecked(l4, 0);
            m.dst_port = be16_unchecked(l4, 2);
            m.payload_offset = (at + 8) as u16;
            if !m.is_fragment {
                match cfg.ports.kind(m.dst_port) {
                    TunnelKind::None => {}
                    TunnelKind::Vxlan => parse_vxlan(&l4[8..ulen], at + 8, m)?,
                    TunnelKind::Geneve => parse_geneve(&l4[8..ulen], at + 8, cfg, m)?,
                }
            }
        }
        // ICMP in IPv4 and ICMPv6 in IPv6 only: the other way round is no ICMP
        // at all (and `ipv4_flow_hash`, which reads only IPv4's ICMP, must agree).
        IPPROTO_ICMP | IPPROTO_ICMPV6 if (m.l4_proto == IPPROTO_ICMP) == (m.l3 == L3Kind::Ipv4) => {
            if l4.len() < 4 {
                return Err(ParseError::TruncatedIcmp);
            }
            m.icmp_type = l4[0];
            m.icmp_code = l4[1];
            let echo = if m.l4_proto == IPPROTO_ICMP {
                matches!(l4[0], 0 | 8)
            } else {
                matches!(l4[0], 128 | 129)
            };
            if echo {
                if l4.len() < 8 {
                    return Err(ParseError::TruncatedIcmp);
                }
                m.src_port = be16_unchecked(l4, 4);
                m.dst_port = m.src_port;
            }
            m.payload_offset = (at + if echo { 8 } else { 4 }) as u16;
        }
        _ => return Ok(()),
    }
    m.l4_offset = at as u16;
    Ok(())
}

fn parse_vxlan(b: &[u8], at: usize, m: &mut PacketMeta) -> Result<(), ParseError> {
    if b.len() < vxlan::HEADER_LEN {
        return Err(ParseError::TruncatedVxlan);
    }
    if b[0] & vxlan::FLAG_I == 0 {
        return Err(ParseError::BadVxlanFlags);
    }
    m.tunnel = TunnelKind::Vxlan;
    m.tunnel_flags = b[0];
    m.vni = be32_unchecked(b, 4) >> 8;
    m.inner_offset = (at + vxlan::HEADER_LEN) as u16;
    m.inner_end = (at + b.len()) as u16;
    m.inner_protocol = ETHERTYPE_TEB;
    Ok(())
}

fn parse_geneve(
    b: &[u8],
    at: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseError> {
    if b.len() < geneve::HEADER_LEN {
        return Err(ParseError::TruncatedGeneve);
    }
    if b[0] >> 6 != 0 {
        return Err(ParseError::GeneveBadVersion);
    }
    let opt_end = geneve::HEADER_LEN + usize::from(b[0] & 0x3f) * 4;
    let Some(opts) = b.get(geneve::HEADER_LEN..opt_end) else {
        return Err(ParseError::GeneveOptTooLong);
    };
    // One pass over the options: well-formed, and no unknown critical option.
    let mut rest = opts;
    while let Some(h) = rest.get(..4) {
        let len = 4 + usize::from(h[3] & 0x1f) * 4;
        if len > rest.len() {
            return Err(ParseError::GeneveBadOption);
        }
        if h[2] & OPTION_CRITICAL != 0 && !cfg.knows(be16_unchecked(h, 0), h[2]) {
            return Err(ParseError::GeneveUnknownCritical);
        }
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(ParseError::GeneveBadOption);
    }
    m.tunnel = TunnelKind::Geneve;
    m.tunnel_flags = b[1];
    m.vni = be32_unchecked(b, 4) >> 8;
    m.inner_offset = (at + opt_end) as u16;
    m.inner_end = (at + b.len()) as u16;
    m.inner_protocol = be16_unchecked(b, 2);
    Ok(())
}

#[cfg(test)]
mod tests;
