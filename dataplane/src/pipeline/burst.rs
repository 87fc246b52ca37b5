//! The worker's burst loops ([`Pipeline::process_burst`]). A burst has one
//! ingress, so each kind of ingress gets a loop of its own: from a pod's port and
//! from the uplink, the common cases run on a straight pass with no call (a call in
//! the loop leaves only the callee-saved registers for the loop's values), and the
//! frames that pass leaves go through the per-packet pipeline in a second pass;
//! everything else runs per packet.

use std::net::IpAddr;

use super::encap::{source_port, too_big};
use super::fast::{self, PLAIN_IPV4};
use super::route::rewrite_routed;
use super::scratch::Scratch;
use super::{reply, Ctx, Ingress, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::ethernet::{MacAddr, HEADER_LEN};
use crate::io::BURST;
use crate::overlay::{L2Dest, NetworkId, NetworkInfo, UnderlayInfo};
use crate::port::{BurstPorts, PortIdx};
use crate::snapshot::Versioned;
use crate::wire;

/// Route cache entries written since the last burst from a pod above which the
/// next burst resolves its misses before its straight pass (a few are new
/// destinations; more, a cache too small for the traffic).
const ROUTE_FILL_AFTER: u32 = 4;

/// [`Pipeline::process_burst`] for a burst from `ingress`, a local port of
/// network `net` (`info`), with the fast paths on.
///
/// The straight path takes an untagged IPv4 frame (at least Ethernet and a fixed
/// IPv4 header long) that is switched by its destination MAC to another local port of
/// `net`, or to a remote endpoint, encapsulated with the header the cache holds
/// for its VTEP (IPv4 underlay, when it fits the underlay's MTU); or one sent to
/// the gateway MAC and routed, through a route the cache already holds, to a local
/// port of any network (TTL decremented with an incremental checksum, addresses
/// rewritten). It reads the header fields at their fixed places, checks them as
/// the parse and the per-packet fast paths do, and decides everything before it
/// writes a byte (a push without headroom refuses and changes nothing). Every
/// other frame (ARP, ND, IPv6, tags, options, broadcast, unknown MACs, hairpins,
/// cache misses, TTL expiry, too big) is marked and goes through
/// [`Pipeline::process_from`] afterwards, so the verdicts are those of the
/// per-packet pipeline.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn from_local<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    net: NetworkId,
    info: &NetworkInfo,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    out: &mut [Verdict],
) -> (u64, Option<PortIdx>) {
    let (pkts, out) = clip(pkts, out);
    let in_port = ingress.port;
    let l2 = p.overlay.l2_reader(net);
    let gateway = info.gateway_mac.to_u64();
    // More route misses since the last burst than a few new destinations make:
    // the cache holds fewer destinations than the traffic has, so resolve this
    // burst's misses first rather than send each through the per-packet path.
    if s.routes.take_fills() > ROUTE_FILL_AFTER {
        fast::fill_routes(p, net, gateway, pkts, &mut s.routes);
    }
    let routes = s.routes.reader4();
    let encaps = &s.encap;
    let neighbors = ctx.neighbors.generation();
    // A burst of one flow's run: one lookup for all of it. A run may end before
    // the burst does; the straight pass starts where it ended.
    let mut pass = Pass::new();
    let mut start = 0;
    if let Some(dst) = pkts.first().and_then(|p| MacAddr::dst_bits(p.data())) {
        let run = if dst == gateway {
            routed_run(net, gateway, routes, pkts, out)
        } else {
            encap_run(p, net, info, encaps, neighbors, pkts, out)
        };
        if let Some(run) = run {
            if run.frames == pkts.len() {
                return (run.bytes, Some(run.port));
            }
            pass.decided_run(run.port, run.bytes);
            start = run.frames;
        }
    }
    // A MAC table too large for the caches: its slots prefetched for the whole
    // burst first, so the lookups' misses overlap (frames to the gateway MAC
    // prefetch a slot they never read: harmless).
    if l2.is_large() {
        l2.prefetch_burst(&pkts[start..], MacAddr::dst_bits);
    }
    let fast = |pkt: &mut B| -> Option<PortIdx> {
        let data = pkt.data_mut();
        let len = data.len();
        let h: &mut [u8; PLAIN_IPV4] = data.get_mut(..PLAIN_IPV4)?.try_into().ok()?;
        if h[12..14] != wire::ETHERTYPE_IPV4.to_be_bytes() {
            return None;
        }
        let dst = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) >> 16;
        if dst != gateway {
            // I/G bit of the first byte: group addresses are flooded.
            if dst & (1 << 40) != 0 {
                return None;
            }
            return match L2Dest::from_bits(l2.get(dst)?) {
                L2Dest::Local(port) if port != in_port => Some(port),
                L2Dest::Local(_) => None,
                L2Dest::Remote(vtep) => {
                    // Encapsulated with a header the cache holds, if it fits the
                    // underlay: as `encap` does. Everything is checked before the
                    // push, which changes nothing when it refuses (no headroom).
                    let e = encaps.get(net, vtep, neighbors)?;
                    let hash = wire::ipv4_flow_hash(data)?;
                    if e.ipv6 || too_big(info, len - HEADER_LEN).is_some() {
                        return None;
                    }
                    let uplink = e.uplink;
                    reply::push_cached4(pkt, e, source_port(hash)).then_some(uplink)
                }
            };
        }
        let dst_ip = fast::routable_v4(h, len)?;
        let (macs, port) = routes.local(net, dst_ip)?;
        // The header is whole and its TTL above 1: this cannot refuse.
        wire::checksum::ipv4_decrement_ttl(&mut h[14..])?;
        h[0..12].copy_from_slice(&macs.0);
        Some(port)
    };
    // The frames a run left (all of them when there was none), indexed as in
    // the burst: `leave` marks frames for `finish`, which sees the whole burst.
    let rest = out[start..].iter_mut().zip(pkts[start..].iter_mut());
    for (i, (o, pkt)) in (start..).zip(rest) {
        match fast(pkt) {
            Some(port) => pass.decided(o, Verdict::Output(port), pkt.len()),
            None => pass.leave(i),
        }
    }
    pass.finish(p, ingress, pkts, ctx, s, out)
}

/// The front of a burst from a pod that is routed to one destination address (a
/// flow's run, the common case of bulk traffic through the gateway), decided with
/// one route lookup, every frame rewritten as the straight pass would (TTL and
/// checksum, addresses). The run is the untagged IPv4 frames to the gateway MAC
/// that [`fast::routable_v4`] takes, with the first frame's destination
/// address; it ends at the first frame that is not, and the straight pass
/// decides the frames from there. `None`, with nothing changed, when the first
/// frame starts no run: it is not such a frame, or its address is not forwarded
/// to a local port. The first and last frames' addresses are compared first, so
/// traffic with many destinations pays for one compare.
#[inline(never)]
fn routed_run<B: PacketBuf>(
    net: NetworkId,
    gateway: u64,
    routes: super::scratch::Route4Reader<'_>,
    pkts: &mut [B],
    out: &mut [Verdict],
) -> Option<Run> {
    // The destination address of a frame the straight pass would route.
    let routable = |data: &[u8]| -> Option<u32> {
        let h: &[u8; PLAIN_IPV4] = data.get(..PLAIN_IPV4)?.try_into().ok()?;
        let dst = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) >> 16;
        if h[12..14] != wire::ETHERTYPE_IPV4.to_be_bytes() || dst != gateway {
            return None;
        }
        fast::routable_v4(h, data.len())
    };
    // Traffic with many destinations is turned away before any check: the last
    // frame's destination address is another.
    const DST: std::ops::Range<usize> = 30..34;
    if pkts.first()?.data().get(DST)? != pkts.last()?.data().get(DST)? {
        return None;
    }
    let first = routable(pkts.first()?.data())?;
    let (macs, port) = routes.local(net, first)?;
    // One pass, each frame checked and then rewritten, up to the first frame that
    // is not routed to the first's address.
    let mut bytes = 0u64;
    let mut frames = 0;
    for pkt in pkts.iter_mut() {
        if routable(pkt.data()) != Some(first) {
            break;
        }
        // Checked: the header is whole and its TTL above 1, so the rewrite cannot
        // refuse.
        let _ = rewrite_routed(pkt.data_mut(), HEADER_LEN, false, macs);
        bytes += pkt.len() as u64;
        frames += 1;
    }
    out[..frames].fill(Verdict::Output(port));
    Some(Run {
        frames,
        bytes,
        port,
    })
}

/// The front of a burst from a pod that is one TCP or UDP flow to a remote
/// endpoint (a bulk flow's run), encapsulated with one MAC lookup, one cached
/// header and one flow hash, every frame as the straight pass would. The frames
/// of one flow (the same destination MAC, untagged IPv4 without options, not a
/// later fragment, the same protocol, addresses and ports) have the same flow
/// hash, so the same source port. The run ends at the first frame that is not of
/// the first frame's flow, does not fit the underlay or has no headroom for the
/// outer header; the straight pass decides the frames from there. `None`, with
/// nothing changed, when the first frame starts no run: its destination is not a
/// remote endpoint whose header the cache holds for an IPv4 underlay. The first
/// and last frames are compared first, so traffic with many flows pays for one
/// compare.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn encap_run<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    info: &NetworkInfo,
    encaps: &super::scratch::EncapCache,
    neighbors: u64,
    pkts: &mut [B],
    out: &mut [Verdict],
) -> Option<Run> {
    let first: &[u8; FLOW] = pkts.first()?.data().get(..FLOW)?.try_into().ok()?;
    let last = pkts.last()?.data().get(..FLOW)?;
    if first[..6] != last[..6] || first[26..] != last[26..] {
        return None;
    }
    // The first frame is one the run takes: untagged IPv4 without options, TCP or
    // UDP, not a later fragment. A frame that matches it where `FlowWords` looks
    // is then one too, and of the same flow.
    if first[12..15] != [0x08, 0x00, 0x45]
        || !matches!(first[23], wire::IPPROTO_TCP | wire::IPPROTO_UDP)
        || u16::from_be_bytes([first[20], first[21]]) & 0x1fff != 0
    {
        return None;
    }
    let dst = MacAddr::dst_bits(first)?;
    // I/G bit of the first byte: group addresses are flooded.
    if dst & (1 << 40) != 0 {
        return None;
    }
    let L2Dest::Remote(vtep) = p.overlay.l2_lookup_bits(net, dst)? else {
        return None;
    };
    let e = encaps.get(net, vtep, neighbors)?;
    if e.ipv6 {
        return None;
    }
    let hash = wire::ipv4_flow_hash(first)?;
    let flow = FlowWords::of(first);
    let outer = reply::Outer4::new(e, source_port(hash), pkts.first()?.len());
    // One pass: each frame checked, then pushed. The run ends at the first frame
    // that is not of the flow, does not fit the underlay or has no headroom (the
    // push refuses and changes nothing); that frame and those after it are left.
    let mut bytes = 0u64;
    let mut frames = 0;
    for pkt in pkts.iter_mut() {
        let d = pkt.data();
        let Some(h) = d.get(..FLOW).and_then(|h| <&[u8; FLOW]>::try_from(h).ok()) else {
            break;
        };
        if !flow.matches(h) || too_big(info, d.len() - HEADER_LEN).is_some() || !outer.push(pkt) {
            break;
        }
        bytes += pkt.len() as u64;
        frames += 1;
    }
    if frames == 0 {
        return None;
    }
    out[..frames].fill(Verdict::Output(e.uplink));
    Some(Run {
        frames,
        bytes,
        port: e.uplink,
    })
}

/// The frames at the front of a burst that a run decided: all output to `port`,
/// `bytes` long after processing.
struct Run {
    frames: usize,
    bytes: u64,
    port: PortIdx,
}

/// Ethernet, an IPv4 header without options and the two ports: what
/// [`encap_run`] compares.
const FLOW: usize = PLAIN_IPV4 + 4;

/// The bytes of a frame's first [`FLOW`] that make its flow and its way through
/// [`encap_run`], as five masked words (one load, one AND each): the destination
/// MAC, the EtherType and the IPv4 version and header length, the fragment offset,
/// the protocol, the addresses and the ports. Two frames with equal words are of
/// one flow; the source MAC, TOS, length, ID, flags, TTL and checksum are left out.
struct FlowWords([u64; 5]);

impl FlowWords {
    const AT: [usize; 5] = [0, 8, 16, 24, 30];
    const MASKS: [[u8; 8]; 5] = [
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
        [0, 0, 0, 0, 0xff, 0xff, 0xff, 0],
        [0, 0, 0, 0, 0x1f, 0xff, 0, 0xff],
        [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ];

    #[inline(always)]
    fn of(h: &[u8; FLOW]) -> Self {
        FlowWords(std::array::from_fn(|i| Self::word(h, i)))
    }

    /// Whether `h` is of this flow: every word compared, with no branch between.
    #[inline(always)]
    fn matches(&self, h: &[u8; FLOW]) -> bool {
        (0..5).fold(0, |diff, i| diff | (Self::word(h, i) ^ self.0[i])) == 0
    }

    #[inline(always)]
    fn word(h: &[u8; FLOW], i: usize) -> u64 {
        let at = Self::AT[i];
        let word = [
            h[at],
            h[at + 1],
            h[at + 2],
            h[at + 3],
            h[at + 4],
            h[at + 5],
            h[at + 6],
            h[at + 7],
        ];
        u64::from_le_bytes(word) & u64::from_le_bytes(Self::MASKS[i])
    }
}

/// [`Pipeline::process_burst`] for a burst from the uplink (`u`'s), with the fast
/// paths on: the decap straight pass (`fast::decap_pass`) over every frame of an
/// IPv4 underlay, then the per-packet pipeline for the frames it leaves (the
/// underlay's ARP/ND, IPv6 or tagged underlays, options, floods, the gateway MAC,
/// ...).
#[inline(never)]
pub(super) fn from_uplink<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    u: &UnderlayInfo,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    out: &mut [Verdict],
) -> (u64, Option<PortIdx>) {
    let (pkts, out) = clip(pkts, out);
    let n = pkts.len();
    let all = if n == BURST { u32::MAX } else { (1 << n) - 1 };
    let IpAddr::V4(local) = u.local_vtep_ip else {
        // No straight pass over an IPv6 underlay.
        return (rest(p, ingress, pkts, ctx, s, out, all), None);
    };
    // As in `from_local`, in the table of each frame's network.
    if p.overlay.l2_is_large() {
        fast::prefetch_decap_l2(p, pkts);
    }
    let mut ports = BurstPorts::new();
    let (left, bytes) = fast::decap_pass(p, local, pkts, out, &mut ports.0);
    if left != 0 {
        return (bytes + rest(p, ingress, pkts, ctx, s, out, left), None);
    }
    (bytes, ports.one(n))
}

/// The first [`BURST`] frames and their verdicts at most: a straight pass keeps a
/// bit per frame.
#[inline(always)]
fn clip<'a, B>(pkts: &'a mut [B], out: &'a mut [Verdict]) -> (&'a mut [B], &'a mut [Verdict]) {
    let n = pkts.len().min(out.len()).min(BURST);
    (&mut pkts[..n], &mut out[..n])
}

/// What a straight pass over a burst keeps: the frames it left, the bytes of those
/// it decided, and whether their verdicts all output to one port (every port seen
/// is ORed and ANDed: they are all one port exactly when the two agree).
struct Pass {
    left: u32,
    any: u32,
    all: u32,
    other: bool,
    bytes: u64,
}

impl Pass {
    #[inline(always)]
    fn new() -> Self {
        Pass {
            left: 0,
            any: 0,
            all: u32::MAX,
            other: false,
            bytes: 0,
        }
    }

    /// Frame `o`'s verdict is `v`; it is `len` bytes now.
    #[inline(always)]
    fn decided(&mut self, o: &mut Verdict, v: Verdict, len: usize) {
        *o = v;
        match v {
            Verdict::Output(port) => self.output(port),
            _ => self.other = true,
        }
        self.bytes += len as u64;
    }

    /// Frames a run decided, all output to `port`, `bytes` long.
    #[inline(always)]
    fn decided_run(&mut self, port: PortIdx, bytes: u64) {
        self.output(port);
        self.bytes += bytes;
    }

    /// A frame (or a run of them) goes out of `port`.
    #[inline(always)]
    fn output(&mut self, port: PortIdx) {
        self.any |= u32::from(port.0);
        self.all &= u32::from(port.0);
    }

    /// Frame `i` is left to the per-packet pipeline.
    #[inline(always)]
    fn leave(&mut self, i: usize) {
        self.left |= 1 << i;
    }

    /// The per-packet pipeline for the frames left; the burst's bytes after
    /// processing, and its one port when the pass decided every frame alike.
    #[inline(always)]
    fn finish<B: PacketBuf>(
        self,
        p: &Pipeline,
        ingress: Ingress<'_>,
        pkts: &mut [B],
        ctx: &mut Ctx<'_>,
        s: &mut Scratch,
        out: &mut [Verdict],
    ) -> (u64, Option<PortIdx>) {
        if self.left == 0 {
            let one = !pkts.is_empty() && !self.other && self.any == self.all;
            return (self.bytes, one.then_some(PortIdx(self.any as u16)));
        }
        let rest = rest(p, ingress, pkts, ctx, s, out, self.left);
        (self.bytes + rest, None)
    }
}

/// The per-packet pipeline for the frames of `pkts` whose bit is set in `left`;
/// returns their bytes after processing.
#[inline(never)]
fn rest<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    out: &mut [Verdict],
    mut left: u32,
) -> u64 {
    let mut bytes = 0;
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        left &= left - 1;
        if let (Some(pkt), Some(o)) = (pkts.get_mut(i), out.get_mut(i)) {
            *o = p.process_from(ingress, pkt, ctx, s);
            bytes += pkt.len() as u64;
        }
    }
    bytes
}

/// [`Pipeline::process_burst`] one packet at a time: the uplink (whose decap fast
/// path is per packet), classic ports, and every ingress with the fast paths off.
#[inline(never)]
pub(super) fn per_packet<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    out: &mut [Verdict],
) -> (u64, Option<PortIdx>) {
    let (pkts, out) = clip(pkts, out);
    let mut pass = Pass::new();
    for (o, pkt) in out.iter_mut().zip(pkts.iter_mut()) {
        let v = p.process_from(ingress, pkt, ctx, s);
        pass.decided(o, v, pkt.len());
    }
    pass.finish(p, ingress, pkts, ctx, s, out)
}
