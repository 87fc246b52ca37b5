//! The compiled action of a flow ("header transposition"): what the stages did
//! to the flow's first packet, as data to apply to every later one.
//!
//! In order: pop the tunnel's outer headers (decap), rewrite an address and
//! port of a service connection with the checksum deltas computed at install
//! (LB: [`Nat`]), rewrite the Ethernet addresses and decrement the TTL with an
//! incremental checksum (route), push the outer headers from a template of the
//! side table with the per-packet lengths and the flow's source port (encap),
//! send to the output port.
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
use crate::pipeline::conntrack::CtTuple;
use crate::pipeline::reply;
use crate::pipeline::Verdict;
use crate::port::PortIdx;
use crate::wire;
use crate::wire::checksum::{fold, sum_raw};

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

/// The LB stage's part of an action: one side of an IPv4 TCP/UDP packet
/// rewritten (a service connection's destination to its backend, or its
/// reply's source back to the frontend), with the one's-complement deltas of
/// its checksums computed once from the old values, which the key fixes
/// (RFC 1624: `HC' = ~(~HC + ~m + m')`). A hit then writes six bytes and two
/// checksums, whatever the packet's length.
///
/// `svc` and `version` name the service write it was compiled under: a hit
/// checks them and the connection's translation (`conntrack::hit_check`)
/// before anything is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nat {
    /// 0: no rewrite; [`Nat::SRC`] or [`Nat::DST`].
    pub(crate) side: u8,
    /// The new address.
    pub(crate) addr: [u8; 4],
    /// The new port.
    pub(crate) port: u16,
    /// Added to the IPv4 header checksum.
    pub(crate) ip_delta: u16,
    /// Added to the TCP/UDP checksum (pseudo-header address and port).
    pub(crate) l4_delta: u16,
    /// The service's id in the snapshot.
    pub(crate) svc: u16,
    /// Its version ([`crate::pipeline::lb::services::ServiceEntry::version`]).
    pub(crate) version: u32,
}

impl Nat {
    /// The source is rewritten.
    pub(crate) const SRC: u8 = 1;
    /// The destination is rewritten.
    pub(crate) const DST: u8 = 2;

    /// The rewrite of `side` from `old` to `new` (address, port).
    pub(crate) fn new(
        side: u8,
        old: ([u8; 4], u16),
        new: ([u8; 4], u16),
        svc: u16,
        version: u32,
    ) -> Nat {
        // Σ ~old + Σ new over the 16-bit words, as `conntrack::nat` computes it.
        let delta =
            |o: &[u8], n: &[u8]| (o.len() / 2) as u64 * 0xffff - sum_raw(0, o) + sum_raw(0, n);
        let addrs = delta(&old.0, &new.0);
        let ports = delta(&old.1.to_be_bytes(), &new.1.to_be_bytes());
        Nat {
            side,
            addr: new.0,
            port: new.1,
            ip_delta: fold(addrs),
            l4_delta: fold(addrs + ports),
            svc,
            version,
        }
    }

    /// The tuple `t` after the rewrite.
    #[inline]
    pub(crate) fn translate(&self, t: &mut CtTuple) {
        let mapped = |a: [u8; 4]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&a);
            m
        };
        match self.side {
            Nat::SRC => (t.src, t.sport) = (mapped(self.addr), self.port),
            Nat::DST => (t.dst, t.dport) = (mapped(self.addr), self.port),
            _ => {}
        }
    }

    /// Whether the frame at `at` holds what [`write`](Self::write) touches.
    #[inline(always)]
    fn fits(&self, f: &[u8], at: usize) -> bool {
        let l4 = at + HEADER_LEN + 20;
        match f.get(at + HEADER_LEN + 9) {
            Some(&wire::IPPROTO_TCP) => f.len() >= l4 + 18,
            Some(&wire::IPPROTO_UDP) => f.len() >= l4 + 8,
            _ => false,
        }
    }

    /// Rewrites the option-less IPv4 frame at `at`, which
    /// [`fits`](Self::fits).
    #[inline(always)]
    fn write(&self, f: &mut [u8], at: usize) {
        let ip = at + HEADER_LEN;
        let l4 = ip + 20;
        let (a, p) = if self.side == Nat::SRC {
            (ip + 12, l4)
        } else {
            (ip + 16, l4 + 2)
        };
        f[a..a + 4].copy_from_slice(&self.addr);
        f[p..p + 2].copy_from_slice(&self.port.to_be_bytes());
        add_to_checksum(f, ip + 10, self.ip_delta, false);
        if f[ip + 9] == wire::IPPROTO_TCP {
            add_to_checksum(f, l4 + 16, self.l4_delta, false);
        } else if f[l4 + 6] != 0 || f[l4 + 7] != 0 {
            // A UDP checksum of 0 is none over IPv4 and stays none.
            add_to_checksum(f, l4 + 6, self.l4_delta, true);
        }
    }
}

/// `HC' = ~(~HC + delta)` at `at`; `udp`: a result of 0 is sent as `0xffff`.
#[inline(always)]
fn add_to_checksum(f: &mut [u8], at: usize, delta: u16, udp: bool) {
    let old = u16::from_be_bytes([f[at], f[at + 1]]);
    let mut new = !fold(u64::from(!old) + u64::from(delta));
    if udp && new == 0 {
        new = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

/// [`Action::hook`]: conntrack's check and update.
pub(crate) const HOOK_CT: u8 = 1;
/// [`Action::hook`]: hand the packet to the worker owning its connection.
pub(crate) const HOOK_HANDOFF: u8 = 2;
/// [`Action::hook`]: hand the packet to the worker a redirect stub of this
/// worker names, while the stub is there (`conntrack::stub_check`).
pub(crate) const HOOK_REDIRECT: u8 = 3;

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
    /// [`HOOK_CT`] when a packet of the flow must update connection state:
    /// a hit checks the connection before the action and updates it after
    /// (`conntrack::hit_check`, `conntrack::hit_update`). [`HOOK_HANDOFF`]
    /// when the flow's connection is another worker's, worker `out.0`: a
    /// hit hands the packet there as it came in, and nothing else of the
    /// action applies (the owner of a tuple is fixed while the workers are).
    /// [`HOOK_REDIRECT`] the same for a DNAT'd reply meeting a redirect
    /// stub, checked on every hit (a stub goes with its connection).
    pub(crate) hook: u8,
    /// A service connection's rewrite (`side` 0: none).
    pub(crate) nat: Nat,
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
            nat: Nat {
                side: 0,
                addr: [0; 4],
                port: 0,
                ip_delta: 0,
                l4_delta: 0,
                svc: 0,
                version: 0,
            },
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
        if self.nat.side != 0 && !self.nat.fits(pkt.data(), at) {
            return None;
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
        if self.nat.side != 0 {
            self.nat.write(pkt.data_mut(), 0);
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
