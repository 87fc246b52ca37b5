//! Just enough Ethernet/IPv4/UDP to emit test traffic.
//!
//! The bench crate deliberately does not reuse the dataplane's parsers to
//! build its traffic: a generator that shares code with the thing under test
//! would share its bugs too. Only emission lives here; the tests check the
//! result with independent arithmetic and, when available, with tshark.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Ethernet II header length.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes in front of the UDP payload.
pub const HEADERS_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;

const ETHERTYPE_IPV4: u16 = 0x0800;
const IP_PROTO_UDP: u8 = 17;
const IPV4_FLAG_DONT_FRAGMENT: u16 = 0x4000;

/// A 48-bit MAC address, shown as lowercase `aa:bb:cc:dd:ee:ff` (the form
/// tshark prints and `ovs-ofctl` accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Error from parsing a [`MacAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected six colon-separated hex bytes)")]
pub struct MacAddrParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| MacAddrParseError(s.to_owned()))?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacAddrParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacAddrParseError(s.to_owned()));
        }
        Ok(Self(bytes))
    }
}

/// Errors from emitting a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The requested frame cannot hold the headers plus the payload prefix.
    #[error("frame length {frame_len} is shorter than the {min} bytes of headers and payload")]
    FrameTooShort {
        /// Requested frame length.
        frame_len: usize,
        /// Smallest length that fits.
        min: usize,
    },
    /// The IPv4 total length would not fit in 16 bits.
    #[error("frame length {frame_len} exceeds the IPv4 maximum of {max}")]
    FrameTooLong {
        /// Requested frame length.
        frame_len: usize,
        /// Largest length IPv4 can describe.
        max: usize,
    },
}

/// The header fields of one Ethernet/IPv4/UDP flow.
///
/// Fixed choices: no VLAN tag, no IP options, DSCP 0, IP ID 0 with Don't
/// Fragment set (RFC 6864 allows ID 0 for atomic datagrams, and a constant
/// keeps output a pure function of the flow), UDP checksum always computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrameRepr {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IPv4 time to live.
    pub ttl: u8,
}

impl UdpFrameRepr {
    /// Replaces `buf` with a `frame_len`-byte frame (no FCS): headers, then
    /// `payload_prefix`, then zero padding up to `frame_len`.
    ///
    /// # Errors
    /// [`WireError::FrameTooShort`] if `frame_len` cannot hold the headers and
    /// `payload_prefix`; [`WireError::FrameTooLong`] if the IPv4 total length
    /// would exceed 65535.
    pub fn emit(
        &self,
        buf: &mut Vec<u8>,
        frame_len: usize,
        payload_prefix: &[u8],
    ) -> Result<(), WireError> {
        let min = HEADERS_LEN + payload_prefix.len();
        if frame_len < min {
            return Err(WireError::FrameTooShort { frame_len, min });
        }
        let max = ETHERNET_HEADER_LEN + usize::from(u16::MAX);
        let ip_len = u16::try_from(frame_len - ETHERNET_HEADER_LEN)
            .map_err(|_| WireError::FrameTooLong { frame_len, max })?;
        let udp_len = ip_len - IPV4_HEADER_LEN as u16;

        buf.clear();
        buf.resize(frame_len, 0);
        let (eth, rest) = buf.split_at_mut(ETHERNET_HEADER_LEN);
        let (ip, rest) = rest.split_at_mut(IPV4_HEADER_LEN);
        let (udp, payload) = rest.split_at_mut(UDP_HEADER_LEN);

        eth[0..6].copy_from_slice(&self.dst_mac.0);
        eth[6..12].copy_from_slice(&self.src_mac.0);
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

        ip[0] = 0x45; // version 4, IHL 5 words
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6..8].copy_from_slice(&IPV4_FLAG_DONT_FRAGMENT.to_be_bytes());
        ip[8] = self.ttl;
        ip[9] = IP_PROTO_UDP;
        ip[12..16].copy_from_slice(&self.src_ip.octets());
        ip[16..20].copy_from_slice(&self.dst_ip.octets());
        let ip_checksum = internet_checksum(0, ip);
        ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

        payload[..payload_prefix.len()].copy_from_slice(payload_prefix);
        udp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let pseudo = pseudo_header_sum(self.src_ip, self.dst_ip, udp_len);
        let udp_checksum =
            match internet_checksum(ones_complement_add(pseudo, sum_words(udp)), payload) {
                // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
                0 => 0xffff,
                c => c,
            };
        udp[6..8].copy_from_slice(&udp_checksum.to_be_bytes());
        Ok(())
    }
}

/// UDP port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// UDP port of Geneve (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// Outer Ethernet + IPv4 + UDP + VXLAN/Geneve (without options) header bytes.
pub const TUNNEL_OVERHEAD: usize = HEADERS_LEN + 8;
const ETHERTYPE_TEB: u16 = 0x6558;

/// Tunnel encapsulation of an outer IPv4/UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// VXLAN, UDP 4789, flags `I` set.
    Vxlan,
    /// Geneve, UDP 6081, no options, protocol type 0x6558 (Ethernet).
    Geneve,
}

impl TunnelKind {
    /// The well-known UDP destination port.
    pub fn udp_port(self) -> u16 {
        match self {
            Self::Vxlan => VXLAN_PORT,
            Self::Geneve => GENEVE_PORT,
        }
    }

    /// Lower-case name, as in vswitchd's `encap` key and OVS's interface type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
        }
    }
}

/// The outer headers of a tunnelled frame: Ethernet, IPv4 (DF, TTL 64, ID 0),
/// UDP with a zero checksum (RFC 7348 §5 and RFC 8926 §3.3 allow it over IPv4)
/// and a VXLAN or option-less Geneve header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelRepr {
    /// Encapsulation.
    pub kind: TunnelKind,
    /// Outer Ethernet source.
    pub src_mac: MacAddr,
    /// Outer Ethernet destination.
    pub dst_mac: MacAddr,
    /// Outer IPv4 source (the remote VTEP).
    pub src_ip: Ipv4Addr,
    /// Outer IPv4 destination (the local VTEP).
    pub dst_ip: Ipv4Addr,
    /// Outer UDP source port (flow entropy).
    pub src_port: u16,
    /// 24-bit virtual network identifier.
    pub vni: u32,
}

impl TunnelRepr {
    /// Replaces `buf` with the outer headers followed by `inner` (an Ethernet
    /// frame without FCS). The result is `inner.len() + TUNNEL_OVERHEAD` bytes.
    ///
    /// # Errors
    /// [`WireError::FrameTooLong`] if the outer IPv4 total length would
    /// exceed 65535.
    pub fn emit(&self, buf: &mut Vec<u8>, inner: &[u8]) -> Result<(), WireError> {
        let frame_len = inner.len() + TUNNEL_OVERHEAD;
        let max = ETHERNET_HEADER_LEN + usize::from(u16::MAX);
        let ip_len = u16::try_from(frame_len - ETHERNET_HEADER_LEN)
            .map_err(|_| WireError::FrameTooLong { frame_len, max })?;
        let udp_len = ip_len - IPV4_HEADER_LEN as u16;
        buf.clear();
        buf.resize(TUNNEL_OVERHEAD, 0);
        buf.extend_from_slice(inner);
        let (eth, rest) = buf.split_at_mut(ETHERNET_HEADER_LEN);
        let (ip, rest) = rest.split_at_mut(IPV4_HEADER_LEN);
        let (udp, rest) = rest.split_at_mut(UDP_HEADER_LEN);
        let tunnel = &mut rest[..8];

        eth[0..6].copy_from_slice(&self.dst_mac.0);
        eth[6..12].copy_from_slice(&self.src_mac.0);
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6..8].copy_from_slice(&IPV4_FLAG_DONT_FRAGMENT.to_be_bytes());
        ip[8] = 64;
        ip[9] = IP_PROTO_UDP;
        ip[12..16].copy_from_slice(&self.src_ip.octets());
        ip[16..20].copy_from_slice(&self.dst_ip.octets());
        let ip_checksum = internet_checksum(0, ip);
        ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

        udp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.kind.udp_port().to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        // udp[6..8]: checksum 0, "not computed".

        let vni = (self.vni & 0x00ff_ffff) << 8;
        match self.kind {
            TunnelKind::Vxlan => tunnel[0] = 0x08, // I flag: the VNI is valid
            // Version 0, no options, O and C clear; protocol type Ethernet.
            TunnelKind::Geneve => tunnel[2..4].copy_from_slice(&ETHERTYPE_TEB.to_be_bytes()),
        }
        tunnel[4..8].copy_from_slice(&vni.to_be_bytes());
        Ok(())
    }
}

/// RFC 1071 Internet checksum of `data`, starting from a partial
/// ones'-complement sum `initial` (0 for none).
pub fn internet_checksum(initial: u16, data: &[u8]) -> u16 {
    !ones_complement_add(initial, sum_words(data))
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = IP_PROTO_UDP;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    sum_words(&pseudo)
}

/// Ones'-complement sum of big-endian 16-bit words; an odd tail byte is
/// padded with zero.
fn sum_words(data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u32 = 0;
    for word in &mut chunks {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    fold(sum)
}

fn ones_complement_add(a: u16, b: u16) -> u16 {
    fold(u32::from(a) + u32::from(b))
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr() -> UdpFrameRepr {
        UdpFrameRepr {
            src_mac: MacAddr([0x02, 0x01, 0, 0, 0, 1]),
            dst_mac: MacAddr([0x02, 0, 0, 0, 0, 7]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 1),
            src_port: 1024,
            dst_port: 9,
            ttl: 64,
        }
    }

    /// Built independently with Python's `struct` and an RFC 1071 reference
    /// sum; tshark reports both checksums good (`ip.checksum.status` and
    /// `udp.checksum.status` = 1 with checksum validation enabled).
    const GOLDEN_60: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x07, 0x02, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // Ethernet
        0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x6a, 0xab, // IPv4 ...
        0x0a, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, // ... addresses
        0x04, 0x00, 0x00, 0x09, 0x00, 0x1a, 0x7f, 0xcf, // UDP
        0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // payload
    ];

    #[test]
    fn emits_golden_frame() {
        let mut buf = Vec::new();
        repr().emit(&mut buf, 60, &[0xab, 0xcd]).unwrap();
        assert_eq!(buf, GOLDEN_60);
    }

    #[test]
    fn checksums_verify_to_zero() {
        let mut buf = vec![0xee; 3]; // stale contents must be replaced
        for len in [42, 43, 60, 571, 1514] {
            repr().emit(&mut buf, len, &[]).unwrap();
            assert_eq!(buf.len(), len);
            assert_eq!(
                internet_checksum(0, &buf[14..34]),
                0,
                "IPv4 header, len {len}"
            );
            let udp_len = (len - 34) as u16;
            let pseudo = pseudo_header_sum(repr().src_ip, repr().dst_ip, udp_len);
            assert_eq!(internet_checksum(pseudo, &buf[34..]), 0, "UDP, len {len}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: sum of these words is 0xddf2.
        assert_eq!(
            internet_checksum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn rejects_impossible_lengths() {
        let mut buf = Vec::new();
        assert_eq!(
            repr().emit(&mut buf, 43, &[1, 2]),
            Err(WireError::FrameTooShort {
                frame_len: 43,
                min: 44
            })
        );
        assert!(matches!(
            repr().emit(&mut buf, 14 + 65_536, &[]),
            Err(WireError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn tunnel_headers() {
        let mut inner = Vec::new();
        repr().emit(&mut inner, 60, &[]).unwrap();
        let mut buf = vec![1, 2, 3];
        for (kind, port) in [(TunnelKind::Vxlan, 4789u16), (TunnelKind::Geneve, 6081)] {
            let t = TunnelRepr {
                kind,
                src_mac: MacAddr([2, 0xfe, 0, 0, 0, 2]),
                dst_mac: MacAddr([2, 0xfe, 0, 0, 0, 1]),
                src_ip: Ipv4Addr::new(192, 0, 2, 2),
                dst_ip: Ipv4Addr::new(192, 0, 2, 1),
                src_port: 49152,
                vni: 0x12_3456,
            };
            t.emit(&mut buf, &inner).unwrap();
            assert_eq!(buf.len(), 110);
            assert_eq!(&buf[50..], &inner[..]);
            assert_eq!(internet_checksum(0, &buf[14..34]), 0);
            assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), 96);
            assert_eq!(u16::from_be_bytes([buf[36], buf[37]]), port);
            assert_eq!(u16::from_be_bytes([buf[38], buf[39]]), 76);
            assert_eq!(&buf[46..50], &[0x12, 0x34, 0x56, 0]);
            match kind {
                TunnelKind::Vxlan => assert_eq!(&buf[42..46], &[0x08, 0, 0, 0]),
                TunnelKind::Geneve => assert_eq!(&buf[42..46], &[0, 0, 0x65, 0x58]),
            }
        }
    }

    #[test]
    fn mac_display_and_parse_round_trip() {
        let mac = MacAddr([0x02, 0x00, 0x00, 0x01, 0x86, 0x9f]);
        assert_eq!(mac.to_string(), "02:00:00:01:86:9f");
        assert_eq!("02:00:00:01:86:9F".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "02:00:00:01:86",
            "02:00:00:01:86:9f:00",
            "2:00:00:01:86:9f",
            "02:00:00:01:86:zz",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
