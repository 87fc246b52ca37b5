//! The compiled action of a flow ("header transposition"): what the stages did
//! to the flow's first packet, as data to apply to every later one.
//!
//! In order: pop the tunnel's outer headers (decap), rewrite the Ethernet
//! addresses and decrement the TTL with an incremental checksum (route), push
//! the outer headers from a template of the side table with the per-packet
//! lengths and the flow's source port (encap), send to the output port.
//!
//! The guards that stay per packet are checked before a byte is written: a
//! routed packet's TTL above 1, an encapsulated packet's length within the
//! network's MTU and the IP length field, the headroom for the outer headers,
//! and the template still the one compiled in, built with the current underlay
//! neighbours. A failed guard changes nothing and sends the packet to the
//! stages, which then answer it (ICMP), drop it with its reason, or resolve and
//! install the flow again.

use super::key::PLAIN_TUNNEL;
use super::template::Templates;
use crate::buf::PacketBuf;
use crate::ethernet::HEADER_LEN;
use crate::pipeline::reply;
use crate::port::PortIdx;
use crate::wire;

/// A flow's action (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Action {
    /// Where the packet goes.
    pub(crate) out: PortIdx,
    /// Strip a plain tunnel's outer headers ([`PLAIN_TUNNEL`] bytes) and any
    /// padding after the inner frame.
    pub(crate) pop: bool,
    /// Rewrite the Ethernet addresses to `macs` and decrement the IPv4 TTL.
    pub(crate) route: bool,
    /// Push the template in `slot` while it has `tag`.
    pub(crate) encap: bool,
    /// Set when a packet of the flow must update connection state: a hit
    /// calls conntrack's per-packet update (`conntrack::on_hit`).
    pub(crate) hook: u8,
    /// The routed frame's destination and source MACs.
    pub(crate) macs: [u8; 12],
    /// The template's slot in the side table.
    pub(crate) slot: u16,
    /// The outer UDP source port (from the inner flow's hash: one per key).
    pub(crate) src_port: u16,
    /// The template's tag when the action was compiled.
    pub(crate) tag: u32,
    /// The largest inner IP packet the encapsulation may carry (the network's
    /// MTU), beyond which the stages answer "too big".
    pub(crate) max_ip_len: u16,
}

impl Default for Action {
    fn default() -> Self {
        Action {
            out: PortIdx(0),
            pop: false,
            route: false,
            encap: false,
            hook: 0,
            macs: [0; 12],
            slot: 0,
            src_port: 0,
            tag: 0,
            max_ip_len: 0,
        }
    }
}

impl Action {
    /// Applies the action to `pkt`, `len` bytes long, whose key's extraction
    /// found an inner frame of `inner_len` bytes (tunnels only), with the
    /// underlay neighbour map of generation `neighbors`; its length after.
    /// `None`, with nothing changed, when a per-packet guard fails (see the
    /// module docs): the stages decide the packet.
    #[inline(always)]
    pub(crate) fn apply<B: PacketBuf>(
        &self,
        pkt: &mut B,
        len: usize,
        inner_len: u16,
        templates: &Templates,
        neighbors: u64,
    ) -> Option<usize> {
        let (at, len) = if self.pop {
            (PLAIN_TUNNEL, usize::from(inner_len))
        } else {
            (0, len)
        };
        if self.route {
            // TTL above 1: at or below, the stages answer time exceeded.
            match pkt.data().get(at + HEADER_LEN + 8) {
                Some(&ttl) if ttl > 1 => {}
                _ => return None,
            }
        }
        let template = if self.encap {
            let t = templates.by_tag(self.slot, self.tag, neighbors)?;
            if len - HEADER_LEN > usize::from(self.max_ip_len)
                || !t.fits(len)
                || pkt.headroom() + at < t.len()
            {
                return None;
            }
            Some(t)
        } else {
            None
        };
        // Every guard passed: nothing below refuses.
        if self.pop {
            pkt.narrow(PLAIN_TUNNEL, len)?;
        }
        if self.route {
            let data = pkt.data_mut();
            wire::checksum::ipv4_decrement_ttl(data.get_mut(HEADER_LEN..)?)?;
            data.get_mut(0..12)?.copy_from_slice(&self.macs);
        }
        match template {
            Some(t) => reply::push_cached(pkt, t, self.src_port).then(|| len + t.len()),
            None => Some(len),
        }
    }
}
