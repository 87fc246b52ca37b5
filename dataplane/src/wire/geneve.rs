//! Geneve (RFC 8926): a tunnel header with a 24-bit VNI, a protocol type and TLV options.
//!
//! Header (8 bytes): version (2 bits, must be 0) and options length in 4-byte words
//! (6 bits); the O (control packet) and C (critical options present) bits; the
//! protocol type of the payload (0x6558 for an Ethernet frame, or an EtherType such as
//! 0x0800 for a bare IP packet); the VNI. Then up to 252 bytes of options, each a
//! 4-byte header — class (16 bits), type (8 bits, the top bit is the critical bit),
//! three reserved bits and a 5-bit length in 4-byte words — followed by its data.
//!
//! [`GenevePacket::new_checked`] walks the option list once, so after it succeeds the
//! option iterator cannot run off the end and needs no error path. RFC 8926 §3.5
//! requires an endpoint to drop a packet carrying a critical option it does not
//! understand; [`GenevePacket::check_critical`] tells which one, and the meta parser
//! turns it into a counted [`ParseError::GeneveUnknownCritical`](super::ParseError).
//! A UDP checksum of 0 on the outer header is accepted (RFC 8926 §3.3 allows it).

use thiserror::Error;

use super::{be16_unchecked, be32_unchecked};

/// IANA's UDP port for Geneve.
pub const GENEVE_PORT: u16 = 6081;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Bytes of an option's own header.
pub const OPTION_HEADER_LEN: usize = 4;
/// Most option bytes a header can announce (6-bit length in words).
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Most data bytes one option can carry (5-bit length in words).
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// The critical bit of an option's type.
pub const OPTION_CRITICAL: u8 = 0x80;
/// The O bit of the flags byte (the header's second): a control (OAM) packet.
pub const FLAG_O: u8 = 0x80;

mod field {
    pub const VER_OPTLEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const VNI: usize = 4;
    pub const FLAG_O: u8 = super::FLAG_O;
    pub const FLAG_C: u8 = 0x40;
}

/// A Geneve header that cannot be used, or an option set that cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GeneveError {
    /// Fewer than 8 bytes.
    #[error("Geneve header truncated")]
    Truncated,
    /// The version is not 0.
    #[error("Geneve version {0} is not 0")]
    BadVersion(u8),
    /// The options length runs past the end of the packet.
    #[error("Geneve options length {opt_len} bytes runs past the packet")]
    OptTooLong {
        /// Option bytes the header announces.
        opt_len: usize,
    },
    /// An option's length runs past the end of the option area.
    #[error("Geneve option class {class:#06x} type {type_:#04x} overruns the option area")]
    BadOption {
        /// The option's class.
        class: u16,
        /// The option's type byte.
        type_: u8,
    },
    /// A critical option the receiver does not understand: the packet must be dropped.
    #[error("unknown critical Geneve option class {class:#06x} type {type_:#04x}")]
    UnknownCritical {
        /// The option's class.
        class: u16,
        /// The option's type byte (critical bit included).
        type_: u8,
    },
    /// Emitting: options would exceed 252 bytes, or one option's data 124 bytes or a
    /// length that is not a multiple of 4.
    #[error("Geneve options do not fit the header's length fields")]
    OptionsTooLong,
}

/// One TLV option, borrowed from the packet (or to be emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    /// Option class (namespace), e.g. 0x0000 standard, 0x0132 Google.
    pub class: u16,
    /// Type byte, critical bit included.
    pub type_: u8,
    /// Whether the critical bit is set (`type_ & 0x80`).
    pub critical: bool,
    /// The data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

impl<'a> GeneveOption<'a> {
    /// An option from class, full type byte and data; `critical` follows the type.
    pub fn new(class: u16, type_: u8, data: &'a [u8]) -> Self {
        GeneveOption {
            class,
            type_,
            critical: type_ & OPTION_CRITICAL != 0,
            data,
        }
    }

    /// Bytes this option takes on the wire.
    pub fn wire_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }
}

/// An owned-by-value description of an option to add (same as [`GeneveOption`]).
pub type GeneveOptionRepr<'a> = GeneveOption<'a>;

/// Iterator over the options of a checked [`GenevePacket`].
#[derive(Debug, Clone)]
pub struct GeneveOptions<'a> {
    rest: &'a [u8],
}

impl<'a> GeneveOptions<'a> {
    /// Iterates over raw option bytes that have been validated by [`validate_options`].
    fn new(rest: &'a [u8]) -> Self {
        GeneveOptions { rest }
    }
}

impl<'a> Iterator for GeneveOptions<'a> {
    type Item = GeneveOption<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // Validated up front; the `get`s keep this panic-free even if it were not.
        let h = self.rest.get(..OPTION_HEADER_LEN)?;
        let len = OPTION_HEADER_LEN + usize::from(h[3] & 0x1f) * 4;
        let data = self.rest.get(OPTION_HEADER_LEN..len)?;
        let opt = GeneveOption::new(be16_unchecked(h, 0), h[2], data);
        self.rest = &self.rest[len..];
        Some(opt)
    }
}

/// Checks that `opts` is a whole number of options and returns how many.
///
/// # Errors
/// [`GeneveError::BadOption`] naming the first option that overruns.
pub fn validate_options(mut opts: &[u8]) -> Result<usize, GeneveError> {
    let mut n = 0;
    while !opts.is_empty() {
        if opts.len() < OPTION_HEADER_LEN {
            let class = if opts.len() >= 2 {
                be16_unchecked(opts, 0)
            } else {
                0
            };
            let type_ = opts.get(2).copied().unwrap_or(0);
            return Err(GeneveError::BadOption { class, type_ });
        }
        let len = OPTION_HEADER_LEN + usize::from(opts[3] & 0x1f) * 4;
        if len > opts.len() {
            return Err(GeneveError::BadOption {
                class: be16_unchecked(opts, 0),
                type_: opts[2],
            });
        }
        opts = &opts[len..];
        n += 1;
    }
    Ok(n)
}

/// A view of a Geneve header, its options and payload.
#[derive(Debug, Clone, Copy)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    /// Wraps `buffer` (the UDP payload) after checking the version, that the options
    /// fit, and that they form a whole number of options.
    ///
    /// # Errors
    /// [`GeneveError::Truncated`], [`GeneveError::BadVersion`],
    /// [`GeneveError::OptTooLong`] or [`GeneveError::BadOption`].
    pub fn new_checked(buffer: T) -> Result<Self, GeneveError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(GeneveError::Truncated);
        }
        let version = b[field::VER_OPTLEN] >> 6;
        if version != 0 {
            return Err(GeneveError::BadVersion(version));
        }
        let opt_len = usize::from(b[field::VER_OPTLEN] & 0x3f) * 4;
        if HEADER_LEN + opt_len > b.len() {
            return Err(GeneveError::OptTooLong { opt_len });
        }
        validate_options(&b[HEADER_LEN..HEADER_LEN + opt_len])?;
        Ok(GenevePacket { buffer })
    }

    /// Version (always 0 in a checked view).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }
    /// Bytes of options.
    pub fn opt_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }
    /// The O bit: a control packet.
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & field::FLAG_O != 0
    }
    /// The C bit: critical options are present.
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & field::FLAG_C != 0
    }
    /// Protocol type of the payload (0x6558: Ethernet).
    pub fn protocol(&self) -> u16 {
        be16_unchecked(self.buffer.as_ref(), field::PROTOCOL)
    }
    /// The 24-bit VNI.
    pub fn vni(&self) -> u32 {
        be32_unchecked(self.buffer.as_ref(), field::VNI) >> 8
    }
    /// The raw option bytes.
    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.opt_len()]
    }
    /// The options, in order.
    pub fn options(&self) -> GeneveOptions<'_> {
        GeneveOptions::new(self.options_bytes())
    }
    /// The encapsulated packet.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN + self.opt_len()..]
    }

    /// Checks every critical option against `known(class, type)`.
    ///
    /// Every option is checked, not only when the C bit is set: a sender that sets a
    /// critical option but forgets the C bit must not slip it past us.
    ///
    /// # Errors
    /// [`GeneveError::UnknownCritical`] naming the first critical option not known.
    pub fn check_critical(&self, known: impl Fn(u16, u8) -> bool) -> Result<(), GeneveError> {
        check_critical_options(self.options_bytes(), known)
    }
}

/// [`GenevePacket::check_critical`] over raw, validated option bytes.
///
/// # Errors
/// [`GeneveError::UnknownCritical`] naming the first critical option not known.
pub fn check_critical_options(
    opts: &[u8],
    known: impl Fn(u16, u8) -> bool,
) -> Result<(), GeneveError> {
    for o in GeneveOptions::new(opts) {
        if o.critical && !known(o.class, o.type_) {
            return Err(GeneveError::UnknownCritical {
                class: o.class,
                type_: o.type_,
            });
        }
    }
    Ok(())
}

/// A Geneve header as a value.
///
/// `options` are encoded option bytes (from a parsed packet, or empty); `add` are
/// options appended after them on [`emit`](Self::emit). So forwarding a packet while
/// adding one option copies the existing ones as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveRepr<'a> {
    /// O bit.
    pub oam: bool,
    /// C bit as received or requested; [`emit`](Self::emit) also sets it when an added
    /// option is critical.
    pub critical: bool,
    /// Payload protocol type.
    pub protocol: u16,
    /// 24-bit VNI.
    pub vni: u32,
    /// Encoded options to copy.
    pub options: &'a [u8],
    /// Options to append.
    pub add: &'a [GeneveOption<'a>],
}

impl<'a> GeneveRepr<'a> {
    /// Reads a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a GenevePacket<T>) -> Self {
        GeneveRepr {
            oam: packet.oam(),
            critical: packet.critical(),
            protocol: packet.protocol(),
            vni: packet.vni(),
            options: packet.options_bytes(),
            add: &[],
        }
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len() + self.add.iter().map(|o| o.wire_len()).sum::<usize>()
    }

    /// Writes the header and options to the front of `buf`; returns bytes written.
    ///
    /// # Errors
    /// [`GeneveError::OptionsTooLong`] if the options exceed 252 bytes, an added
    /// option's data exceeds 124 bytes or is not a multiple of 4, or `options` is not
    /// a whole number of 4-byte words; [`GeneveError::Truncated`] if `buf` is shorter
    /// than [`buffer_len`](Self::buffer_len). Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, GeneveError> {
        let total = self.buffer_len();
        let opt_len = total - HEADER_LEN;
        let bad_add = self
            .add
            .iter()
            .any(|o| o.data.len() > MAX_OPTION_DATA_LEN || o.data.len() & 3 != 0);
        if opt_len > MAX_OPTIONS_LEN || self.options.len() & 3 != 0 || bad_add {
            return Err(GeneveError::OptionsTooLong);
        }
        if buf.len() < total {
            return Err(GeneveError::Truncated);
        }
        let critical = self.critical || self.add.iter().any(|o| o.critical);
        buf[field::VER_OPTLEN] = (opt_len / 4) as u8;
        buf[field::FLAGS] =
            if self.oam { field::FLAG_O } else { 0 } | if critical { field::FLAG_C } else { 0 };
        buf[field::PROTOCOL..field::PROTOCOL + 2].copy_from_slice(&self.protocol.to_be_bytes());
        buf[field::VNI..field::VNI + 4]
            .copy_from_slice(&((self.vni & 0x00ff_ffff) << 8).to_be_bytes());
        let mut at = HEADER_LEN;
        buf[at..at + self.options.len()].copy_from_slice(self.options);
        at += self.options.len();
        for o in self.add {
            buf[at..at + 2].copy_from_slice(&o.class.to_be_bytes());
            buf[at + 2] = o.type_;
            buf[at + 3] = (o.data.len() / 4) as u8;
            buf[at + 4..at + 4 + o.data.len()].copy_from_slice(o.data);
            at += o.wire_len();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testvec;
    use proptest::prelude::*;

    /// UDP payloads of the golden frames (Ethernet 14 + IPv4 20 + UDP 8).
    fn opt_frame() -> &'static [u8] {
        &testvec::GENEVE_ICMP_OPT[42..]
    }
    fn ip_opts_frame() -> &'static [u8] {
        &testvec::GENEVE_IP_OPTS[42..]
    }

    #[test]
    fn golden_standard_critical_option() {
        // Flags [C], vni 7001, options [class 0x0 type 0x81(C) len 8 data 0000002a]
        let g = GenevePacket::new_checked(opt_frame()).unwrap();
        assert_eq!(
            (g.version(), g.opt_len(), g.oam(), g.critical()),
            (0, 8, false, true)
        );
        assert_eq!(g.protocol(), 0x6558);
        assert_eq!(g.vni(), 7001);
        let opts: Vec<_> = g.options().collect();
        assert_eq!(opts, vec![GeneveOption::new(0, 0x81, &[0, 0, 0, 0x2a])]);
        assert!(opts[0].critical);
        assert_eq!(
            g.check_critical(|_, _| false),
            Err(GeneveError::UnknownCritical {
                class: 0,
                type_: 0x81
            })
        );
        assert_eq!(g.check_critical(|c, t| (c, t) == (0, 0x81)), Ok(()));
        // Re-emitting the parsed header gives the same bytes.
        let mut out = [0u8; 16];
        let repr = GeneveRepr::parse(&g);
        assert_eq!(repr.emit(&mut out), Ok(16));
        assert_eq!(&out, &opt_frame()[..16]);
    }

    #[test]
    fn golden_three_options() {
        // vni 300, options [class 0xff01 type 0x1 len 8 data 11223344,
        // type 0x2 len 20 data 0a140002 0a140001 a0a1a2a3 a4a5a6a7, type 0x3 len 12 ...]
        let g = GenevePacket::new_checked(ip_opts_frame()).unwrap();
        assert_eq!(
            (g.vni(), g.critical(), g.protocol(), g.opt_len()),
            (300, false, 0x0800, 40)
        );
        let got: Vec<_> = g
            .options()
            .map(|o| (o.class, o.type_, o.wire_len()))
            .collect();
        assert_eq!(got, vec![(0xff01, 1, 8), (0xff01, 2, 20), (0xff01, 3, 12)]);
        assert_eq!(g.options().next().unwrap().data, &[0x11, 0x22, 0x33, 0x44]);
        assert_eq!(
            g.options().last().unwrap().data,
            &[0xc0, 0xff, 0xee, 0, 0, 0, 0, 1]
        );
        assert_eq!(g.payload()[0], 0x45);
        assert_eq!(g.check_critical(|_, _| false), Ok(()));
    }

    #[test]
    fn oam_and_critical_bits_from_bytes() {
        // Version 0, no options; flags O; Ethernet inside; VNI 7001; then the inner
        // frame's first bytes.
        let mut b = [
            0x00, 0x80, 0x65, 0x58, 0x00, 0x1b, 0x59, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        ];
        let g = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.oam(), g.critical(), g.vni()), (true, false, 7001));
        assert!(GeneveRepr::parse(&g).oam);
        b[1] = 0xc0;
        let g = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.oam(), g.critical()), (true, true));
        b[1] = 0x40;
        let g = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.oam(), g.critical()), (false, true));
        // Emitted with `oam`, the O bit is the flags byte's top bit.
        let mut out = [0u8; 8];
        let repr = GeneveRepr {
            oam: true,
            critical: false,
            protocol: 0x6558,
            vni: 7001,
            options: &[],
            add: &[],
        };
        assert_eq!(repr.emit(&mut out), Ok(8));
        assert_eq!(out[1], FLAG_O);
    }

    #[test]
    fn noise_maps_to_specific_errors() {
        let f = opt_frame();
        for len in 0..HEADER_LEN {
            assert_eq!(
                GenevePacket::new_checked(&f[..len]).unwrap_err(),
                GeneveError::Truncated
            );
        }
        for len in HEADER_LEN..16 {
            assert_eq!(
                GenevePacket::new_checked(&f[..len]).unwrap_err(),
                GeneveError::OptTooLong { opt_len: 8 }
            );
        }
        let mut b = f.to_vec();
        b[0] |= 0x40;
        assert_eq!(
            GenevePacket::new_checked(&b[..]).unwrap_err(),
            GeneveError::BadVersion(1)
        );
        let mut b = f.to_vec();
        b[11] = 2; // option claims 8 data bytes in a 4-byte area
        assert_eq!(
            GenevePacket::new_checked(&b[..]).unwrap_err(),
            GeneveError::BadOption {
                class: 0,
                type_: 0x81
            }
        );
        let mut b = f.to_vec();
        b[0] = 1; // 4 bytes of options: a bare option header, no data
        b[11] = 0;
        assert!(GenevePacket::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn adding_an_option_sets_c_and_grows_opt_len() {
        let g = GenevePacket::new_checked(ip_opts_frame()).unwrap();
        let data = [1, 2, 3, 4, 5, 6, 7, 8];
        let add = [GeneveOption::new(0x0105, 0x81, &data)];
        let repr = GeneveRepr {
            add: &add,
            ..GeneveRepr::parse(&g)
        };
        let mut out = vec![0u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out), Ok(8 + 40 + 12));
        let g2 = GenevePacket::new_checked(&out[..]).unwrap();
        assert!(g2.critical());
        assert_eq!(g2.opt_len(), 52);
        let last = g2.options().last().unwrap();
        assert_eq!(
            (last.class, last.type_, last.critical, last.data),
            (0x0105, 0x81, true, &data[..])
        );
        assert_eq!(g2.options().count(), 4);
        let big = [0u8; 128];
        let add = [GeneveOption::new(1, 1, &big)];
        assert_eq!(
            GeneveRepr {
                add: &add,
                ..GeneveRepr::parse(&g)
            }
            .emit(&mut [0u8; 512]),
            Err(GeneveError::OptionsTooLong)
        );
        assert_eq!(repr.emit(&mut [0u8; 10]), Err(GeneveError::Truncated));
    }

    fn arb_option() -> impl Strategy<Value = (u16, u8, Vec<u8>)> {
        (
            any::<u16>(),
            any::<u8>(),
            (0usize..8).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4)),
        )
    }

    proptest! {
        #[test]
        fn round_trip(oam in any::<bool>(), crit in any::<bool>(), protocol in any::<u16>(),
                      vni in 0u32..(1 << 24), opts in proptest::collection::vec(arb_option(), 0..6)) {
            let add: Vec<_> = opts.iter().map(|(c, t, d)| GeneveOption::new(*c, *t, d)).collect();
            let repr = GeneveRepr { oam, critical: crit, protocol, vni, options: &[], add: &add };
            let mut buf = vec![0u8; repr.buffer_len()];
            prop_assert_eq!(repr.emit(&mut buf), Ok(buf.len()));
            let g = GenevePacket::new_checked(&buf[..]).unwrap();
            let parsed = GeneveRepr::parse(&g);
            prop_assert_eq!((parsed.oam, parsed.protocol, parsed.vni), (oam, protocol, vni));
            prop_assert_eq!(parsed.critical, crit || add.iter().any(|o| o.critical));
            prop_assert_eq!(g.options().collect::<Vec<_>>(), add);
            // Emitting the parsed repr (options as bytes) reproduces the buffer.
            let mut again = vec![0u8; parsed.buffer_len()];
            parsed.emit(&mut again).unwrap();
            prop_assert_eq!(again, buf);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(g) = GenevePacket::new_checked(&bytes[..]) {
                let n: usize = g.options().map(|o| o.wire_len()).sum();
                prop_assert_eq!(n, g.opt_len());
                let _ = g.check_critical(|c, _| c == 0);
            }
        }
    }
}
