//! The IPv6 extension-header walk: from the fixed header's Next Header to the
//! upper-layer protocol.
//!
//! smoltcp has views for each extension header but no bounded walk over a chain, and
//! the fast path needs exactly that: the L4 protocol and offset, and whether the
//! packet is a fragment. The walk is bounded by [`MAX_IPV6_EXT_HEADERS`] so a chain of
//! hundreds of empty options headers costs a fixed amount of work and is refused, as
//! RFC 8200 §4.1 allows and RFC 7045/9098 recommend for long chains.

use thiserror::Error;

/// Most extension headers the walk follows before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Hop-by-Hop Options.
pub const NH_HOPOPT: u8 = 0;
/// Routing.
pub const NH_ROUTING: u8 = 43;
/// Fragment.
pub const NH_FRAGMENT: u8 = 44;
/// Authentication Header (length in 4-byte units, unlike the others).
pub const NH_AH: u8 = 51;
/// No Next Header.
pub const NH_NONE: u8 = 59;
/// Destination Options.
pub const NH_DSTOPTS: u8 = 60;

/// An extension-header chain that cannot be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Ipv6ExtError {
    /// An extension header runs past the payload.
    #[error("IPv6 extension header truncated")]
    Truncated,
    /// More than [`MAX_IPV6_EXT_HEADERS`] extension headers.
    #[error("more than {MAX_IPV6_EXT_HEADERS} IPv6 extension headers")]
    TooLong,
    /// Hop-by-Hop Options anywhere but first (RFC 8200 §4.1).
    #[error("IPv6 hop-by-hop header not first")]
    HopByHopNotFirst,
}

/// Where the chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtWalk {
    /// The upper-layer protocol (59 for "no next header").
    pub protocol: u8,
    /// Offset of the upper-layer header within the walked payload.
    pub offset: usize,
    /// A Fragment header was present.
    pub is_fragment: bool,
    /// The fragment offset is non-zero: the upper-layer header is not in this packet.
    pub later_fragment: bool,
    /// Extension headers walked.
    pub headers: u8,
}

/// Walks extension headers in `payload` (the bytes after the 40-byte fixed header,
/// bounded by the payload length) starting from `next_header`.
///
/// # Errors
/// See [`Ipv6ExtError`].
pub fn walk(mut next_header: u8, payload: &[u8]) -> Result<Ipv6ExtWalk, Ipv6ExtError> {
    let mut at = 0usize;
    let mut headers = 0u8;
    let mut is_fragment = false;
    let mut later_fragment = false;
    loop {
        let len = match next_header {
            NH_HOPOPT | NH_ROUTING | NH_DSTOPTS => {
                if next_header == NH_HOPOPT && headers != 0 {
                    return Err(Ipv6ExtError::HopByHopNotFirst);
                }
                let hlen = payload.get(at + 1).ok_or(Ipv6ExtError::Truncated)?;
                (usize::from(*hlen) + 1) * 8
            }
            NH_FRAGMENT => {
                is_fragment = true;
                let b = payload.get(at..at + 8).ok_or(Ipv6ExtError::Truncated)?;
                later_fragment = u16::from_be_bytes([b[2], b[3]]) & 0xfff8 != 0;
                8
            }
            NH_AH => {
                let hlen = payload.get(at + 1).ok_or(Ipv6ExtError::Truncated)?;
                (usize::from(*hlen) + 2) * 4
            }
            _ => {
                return Ok(Ipv6ExtWalk {
                    protocol: next_header,
                    offset: at,
                    is_fragment,
                    later_fragment,
                    headers,
                })
            }
        };
        if headers as usize == MAX_IPV6_EXT_HEADERS {
            return Err(Ipv6ExtError::TooLong);
        }
        if at + len > payload.len() {
            return Err(Ipv6ExtError::Truncated);
        }
        next_header = payload[at];
        at += len;
        headers += 1;
        if later_fragment {
            // The rest is fragment data, not headers.
            return Ok(Ipv6ExtWalk {
                protocol: next_header,
                offset: at,
                is_fragment,
                later_fragment,
                headers,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testvec;

    #[test]
    fn golden_chain_to_udp() {
        let f = testvec::ipv6_ext_udp();
        let w = walk(f[20], &f[54..]).unwrap();
        assert_eq!(
            w,
            Ipv6ExtWalk {
                protocol: 17,
                offset: 24,
                is_fragment: true,
                later_fragment: false,
                headers: 3
            }
        );
    }

    #[test]
    fn noise_maps_to_specific_errors() {
        let f = testvec::ipv6_ext_udp();
        let p = &f[54..];
        for len in 0..24 {
            assert_eq!(
                walk(0, &p[..len]),
                Err(Ipv6ExtError::Truncated),
                "len {len}"
            );
        }
        // Nine destination-options headers in a row.
        let mut chain = Vec::new();
        for _ in 0..=MAX_IPV6_EXT_HEADERS {
            chain.extend_from_slice(&[NH_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(walk(NH_DSTOPTS, &chain), Err(Ipv6ExtError::TooLong));
        assert_eq!(
            walk(NH_DSTOPTS, &chain[..8 * MAX_IPV6_EXT_HEADERS - 8]).map(|w| w.headers),
            Err(Ipv6ExtError::Truncated)
        );
        let hbh_late = [NH_HOPOPT, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            walk(NH_DSTOPTS, &hbh_late),
            Err(Ipv6ExtError::HopByHopNotFirst)
        );
        assert_eq!(walk(NH_NONE, &[]).unwrap().protocol, NH_NONE);
    }

    #[test]
    fn later_fragment_stops_the_walk() {
        let frag = [17, 0, 0x05, 0x00, 0, 0, 0, 1, 0xff, 0xff];
        let w = walk(NH_FRAGMENT, &frag).unwrap();
        assert!(w.is_fragment && w.later_fragment);
        assert_eq!((w.protocol, w.offset), (17, 8));
    }
}
