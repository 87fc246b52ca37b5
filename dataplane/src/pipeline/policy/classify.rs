//! The classifier: the verdict of a new connection from a [`CompiledPolicy`].
//!
//! Three reads, each bounded by the compiled structure and by nothing a
//! packet can grow: the subject address in a hash map (its group), a binary
//! search of the peer address among the group's interval bounds, and a binary
//! search of the port (or ICMP type·code) among one protocol's pieces of the
//! interval's port table. No allocation, no lock, no state written: a lookup
//! leaves the structure as it found it, so no traffic can make later lookups
//! slower (the tuple-space explosion of CVE-2019-25076 came from a cache that
//! traffic filled).

use std::net::IpAddr;

use super::compile::{kind_of, CompiledPolicy, DecisionId, BLOCK, KIND_OTHER};
use super::model::Direction;

/// What the classifier reads of a new connection (after DNAT: the chosen
/// backend is the destination). The source port plays no part in policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// TCP/UDP/SCTP: the destination port; ICMP/ICMPv6: `type << 8 | code`;
    /// other protocols: ignored.
    pub l4: u16,
}

impl Connection {
    /// A TCP connection to `port`.
    pub fn tcp(src: IpAddr, dst: IpAddr, port: u16) -> Self {
        Connection {
            src,
            dst,
            protocol: 6,
            l4: port,
        }
    }

    /// A UDP flow to `port`.
    pub fn udp(src: IpAddr, dst: IpAddr, port: u16) -> Self {
        Connection {
            src,
            dst,
            protocol: 17,
            l4: port,
        }
    }

    /// An SCTP association to `port`.
    pub fn sctp(src: IpAddr, dst: IpAddr, port: u16) -> Self {
        Connection {
            src,
            dst,
            protocol: 132,
            l4: port,
        }
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message, by the family of `src`.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, code: u8) -> Self {
        Connection {
            src,
            dst,
            protocol: if src.is_ipv4() { 1 } else { 58 },
            l4: u16::from(icmp_type) << 8 | u16::from(code),
        }
    }
}

impl CompiledPolicy {
    /// The decision for `conn` in direction `dir`: ingress at its destination
    /// endpoint (the peer is the source), egress at its source endpoint (the
    /// peer is the destination). A connection between two local endpoints
    /// needs both, each allowed.
    #[inline]
    pub fn classify(&self, dir: Direction, conn: &Connection) -> DecisionId {
        let (subject, peer) = match dir {
            Direction::Ingress => (conn.dst, conn.src),
            Direction::Egress => (conn.src, conn.dst),
        };
        let slot = match subject {
            IpAddr::V4(a) => self.endpoints_v4.get(&a.to_bits()),
            IpAddr::V6(a) => self.endpoints_v6.get(&a.to_bits()),
        };
        let group = match slot {
            Some(s) if !s[dir.index()].is_none() => s[dir.index()],
            _ => return DecisionId::DEFAULT_ALLOW,
        };
        // Every range starts at key 0, so the piece before the partition
        // point always exists.
        let table = match peer {
            IpAddr::V4(a) => {
                let k = a.to_bits();
                let (off, n) = (group.v4.0 as usize, group.v4.1 as usize);
                let (at, n) = if n > BLOCK {
                    // The index's first key is 0, so block `b` is never below 0.
                    let blocks = n.div_ceil(BLOCK);
                    let first = |b: usize| (self.v4_pieces[off + b / 2] >> (32 * (b % 2))) as u32;
                    let (mut b, mut size) = (0, blocks);
                    while size > 1 {
                        let half = size / 2;
                        if first(b + half) <= k {
                            b += half;
                        }
                        size -= half;
                    }
                    let at = off + blocks.div_ceil(2) + b * BLOCK;
                    (at, BLOCK.min(n - b * BLOCK))
                } else {
                    (off, n)
                };
                let pieces = &self.v4_pieces[at..at + n];
                pieces[pieces.partition_point(|&p| (p >> 32) as u32 <= k) - 1] as u32
            }
            IpAddr::V6(a) => {
                let k = a.to_bits();
                let (off, len) = (group.v6.0 as usize, group.v6.1 as usize);
                let pieces = &self.v6_pieces[off..off + len];
                pieces[pieces.partition_point(|p| p.0 <= k) - 1].1
            }
        };
        let kind = kind_of(conn.protocol);
        let key = u64::from(if kind == KIND_OTHER { 0 } else { conn.l4 });
        let pieces = self.tables.pieces(table, kind);
        DecisionId(pieces[pieces.partition_point(|&p| p >> 32 <= key) - 1] as u32)
    }

    /// Both checks of a connection between two endpoints this policy may
    /// select: allowed only if egress at the source and ingress at the
    /// destination both allow. Returns the egress and the ingress decision.
    #[inline]
    pub fn classify_both(&self, conn: &Connection) -> (DecisionId, DecisionId) {
        (
            self.classify(Direction::Egress, conn),
            self.classify(Direction::Ingress, conn),
        )
    }
}
