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
use crate::pipeline::Verdict;
use crate::port::PortIdx;
use crate::wire;

/// What an action does, decided once at install from its parts so that a run
/// of frames takes one straight loop with no branch on the parts per frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Output only (switched within a network).
    #[default]
    Switch,
    /// MACs and TTL.
    Route,
    /// Push the outer header.
    Encap,
    /// MACs and TTL, then push.
    RouteEncap,
    /// Pop the outer headers.
    Decap,
    /// Pop, then MACs and TTL.
    DecapRoute,
    /// Any other combination: the parts one by one ([`Action::apply`]).
    Other,
}

impl Kind {
    /// The kind of an action with these parts.
    pub(crate) fn of(pop: bool, route: bool, encap: bool) -> Kind {
        match (pop, route, encap) {
            (false, false, false) => Kind::Switch,
            (false, true, false) => Kind::Route,
            (false, false, true) => Kind::Encap,
            (false, true, true) => Kind::RouteEncap,
            (true, false, false) => Kind::Decap,
            (true, true, false) => Kind::DecapRoute,
            _ => Kind::Other,
        }
    }
}

/// A flow's action (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Action {
    /// Where the packet goes.
    pub(crate) out: PortIdx,
    /// The parts below as one kind: set by the table at install
    /// ([`Kind::of`]).
    pub(crate) kind: Kind,
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
            kind: Kind::Switch,
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

    /// [`apply`](Self::apply) by kind: one straight arm per kind, no branch
    /// on the parts. What a frame that is a run of its own takes.
    #[inline(always)]
    pub(crate) fn apply_one<B: PacketBuf>(
        &self,
        pkt: &mut B,
        len: usize,
        inner_len: u16,
        templates: &Templates,
        neighbors: u64,
    ) -> Option<usize> {
        match self.kind {
            Kind::Switch => Some(len),
            Kind::Route => route(pkt.data_mut(), &self.macs).then_some(len),
            Kind::Encap | Kind::RouteEncap => {
                let t = templates.by_tag(self.slot, self.tag, neighbors)?;
                let routed = self.kind == Kind::RouteEncap;
                if len - HEADER_LEN > usize::from(self.max_ip_len)
                    || !t.fits(len)
                    || pkt.headroom() < t.len()
                    || routed && !ttl_above_one(pkt.data(), 0)
                {
                    return None;
                }
                if routed {
                    route(pkt.data_mut(), &self.macs);
                }
                reply::push_cached(pkt, t, self.src_port).then(|| len + t.len())
            }
            Kind::Decap | Kind::DecapRoute => {
                let routed = self.kind == Kind::DecapRoute;
                if routed && !ttl_above_one(pkt.data(), PLAIN_TUNNEL) {
                    return None;
                }
                pkt.narrow(PLAIN_TUNNEL, usize::from(inner_len))?;
                if routed {
                    route(pkt.data_mut(), &self.macs);
                }
                Some(usize::from(inner_len))
            }
            Kind::Other => self.apply(pkt, len, inner_len, templates, neighbors),
        }
    }

    /// Applies the action to `pkts`, a run of frames alike to the extractor
    /// (one length, `len`, one key: one inner length, `inner_len`), writing
    /// the verdicts of those it applied to into `out`. Returns the frames left
    /// to the stages (a bit each, unchanged: a guard failed) and the length of
    /// every applied frame after. What does not depend on the frame (the
    /// template, the MTU) is checked once for the run. Not inlined: runs of
    /// two or more take it, and the frames of many flows keep the burst loop's
    /// registers.
    #[inline(never)]
    pub(crate) fn apply_run<B: PacketBuf>(
        &self,
        pkts: &mut [B],
        out: &mut [Verdict],
        len: usize,
        inner_len: u16,
        templates: &Templates,
        neighbors: u64,
    ) -> (u32, usize) {
        let v = Verdict::Output(self.out);
        // A run is 1 to 32 frames.
        let all = ((1u64 << pkts.len()) - 1) as u32;
        let mut left = 0u32;
        match self.kind {
            Kind::Switch => {
                out.fill(v);
                (0, len)
            }
            Kind::Route => {
                for (j, (pkt, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
                    if route(pkt.data_mut(), &self.macs) {
                        *o = v;
                    } else {
                        left |= 1 << j;
                    }
                }
                (left, len)
            }
            Kind::Encap | Kind::RouteEncap => {
                let Some(t) = templates.by_tag(self.slot, self.tag, neighbors) else {
                    return (all, 0);
                };
                if len - HEADER_LEN > usize::from(self.max_ip_len) || !t.fits(len) {
                    return (all, 0);
                }
                let (hl, routed) = (t.len(), self.kind == Kind::RouteEncap);
                for (j, (pkt, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
                    // Every guard before the first byte is written.
                    if pkt.headroom() < hl || routed && !ttl_above_one(pkt.data(), 0) {
                        left |= 1 << j;
                        continue;
                    }
                    if routed {
                        route(pkt.data_mut(), &self.macs);
                    }
                    if reply::push_cached(pkt, t, self.src_port) {
                        *o = v;
                    } else {
                        left |= 1 << j;
                    }
                }
                (left, len + hl)
            }
            Kind::Decap | Kind::DecapRoute => {
                let (inner, routed) = (usize::from(inner_len), self.kind == Kind::DecapRoute);
                for (j, (pkt, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
                    if routed && !ttl_above_one(pkt.data(), PLAIN_TUNNEL) {
                        left |= 1 << j;
                        continue;
                    }
                    if pkt.narrow(PLAIN_TUNNEL, inner).is_none() {
                        left |= 1 << j;
                        continue;
                    }
                    if routed {
                        route(pkt.data_mut(), &self.macs);
                    }
                    *o = v;
                }
                (left, inner)
            }
            Kind::Other => {
                let mut now = len;
                for (j, (pkt, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
                    match self.apply(pkt, len, inner_len, templates, neighbors) {
                        Some(n) => {
                            *o = v;
                            now = n;
                        }
                        None => left |= 1 << j,
                    }
                }
                (left, now)
            }
        }
    }
}

/// Whether the IPv4 TTL of the frame whose Ethernet header starts at `at` is
/// above 1: at or below, the stages answer time exceeded.
#[inline(always)]
fn ttl_above_one(f: &[u8], at: usize) -> bool {
    f.get(at + HEADER_LEN + 8).is_some_and(|&ttl| ttl > 1)
}

/// Routes an IPv4 frame in place when its TTL is above 1: the TTL decremented
/// with its checksum, the MACs rewritten. False, with nothing changed, when
/// the TTL is not above 1.
#[inline(always)]
fn route(f: &mut [u8], macs: &[u8; 12]) -> bool {
    let Some((eth, ip)) = f.split_at_mut_checked(HEADER_LEN) else {
        return false;
    };
    if ip.get(8).is_none_or(|&ttl| ttl <= 1) || wire::checksum::ipv4_decrement_ttl(ip).is_none() {
        return false;
    }
    eth[..12].copy_from_slice(macs);
    true
}
