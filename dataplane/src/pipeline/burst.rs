//! The worker's burst loop ([`Pipeline::process_burst`]): the flow table first,
//! the stages for what it misses (see `flow/mod.rs`).
//!
//! For a burst from a pod's port or from the uplink: every frame's key and hash
//! (a frame whose key equals the one before reuses its hash and its lookup, so
//! a bulk flow's run costs one lookup), the buckets prefetched, the lookups
//! (with the revalidation of entries from an older snapshot), the hits' actions
//! in one straight pass, then the misses and the hits whose per-packet guards
//! failed through the stages, which install what they compile. Classic L2
//! ports run the stages per packet: their MAC table is already one lookup.

use std::net::IpAddr;

use super::flow::action::Action;
use super::flow::key::{self, FlowKey, PLAIN_TUNNEL};
use super::flow::table::{Deps, FlowTable};
use super::flow::Compiled;
use super::state::WorkerState;
use super::{conntrack, stages, trace, Ctx, Ingress, IngressKind, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::io::BURST;
use crate::overlay::NetworkId;
use crate::port::PortIdx;
use crate::snapshot::Versioned;

/// No entry.
const NONE: u32 = u32::MAX;

/// [`Pipeline::process_burst`] through the flow table, for a burst from a pod's
/// port or from the uplink of an IPv4 underlay; every other burst runs the
/// stages per packet.
#[inline(never)]
pub(super) fn flows<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    ws: &mut WorkerState,
    out: &mut [Verdict],
) -> (u64, Option<PortIdx>) {
    let local_ip = match ingress.kind {
        IngressKind::Network(..) => None,
        IngressKind::Uplink => match p.overlay.underlay().map(|u| u.local_vtep_ip) {
            Some(IpAddr::V4(ip)) => Some(ip.octets()),
            _ => return per_packet(p, ingress, pkts, ctx, ws, out),
        },
        IngressKind::Classic | IngressKind::UnknownNetwork => {
            return per_packet(p, ingress, pkts, ctx, ws, out)
        }
    };
    let (pkts, out) = clip(pkts, out);
    let n = pkts.len();
    let flows = &mut ws.flows;
    flows.tick();
    let port = ingress.port;
    let cfg = &p.parse;
    // Keys and hashes; a run of one key is hashed and looked up once.
    let mut keys = [FlowKey::default(); BURST];
    let mut inner_len = [0u16; BURST];
    let mut hashes = [0u64; BURST];
    let mut lens = [0u32; BURST];
    let mut keyed = 0u32;
    let mut same = 0u32;
    let mut prev: &[u8] = &[];
    for (i, pkt) in pkts.iter().enumerate() {
        let data = pkt.data();
        // A frame that reads like the one before to the extractor (a flow's
        // run) gets its key without an extraction.
        let run = i > 0
            && keyed & (1 << (i - 1)) != 0
            && match local_ip {
                None => key::same_local(prev, data),
                Some(_) => key::same_uplink(prev, data),
            };
        prev = data;
        if run {
            keyed |= 1 << i;
            same |= 1 << i;
            inner_len[i] = inner_len[i - 1];
            lens[i] = lens[i - 1];
            hashes[i] = hashes[i - 1];
            keys[i] = keys[i - 1];
            continue;
        }
        let e = match local_ip {
            None => key::local(port, data, cfg),
            Some(ip) => key::uplink(port, ip, data, cfg),
        };
        let Some(e) = e else { continue };
        keyed |= 1 << i;
        inner_len[i] = e.inner_len;
        // At most 64 KiB: the extractor refuses longer frames.
        lens[i] = data.len() as u32;
        if i > 0 && keyed & (1 << (i - 1)) != 0 && keys[i - 1] == e.key {
            same |= 1 << i;
            hashes[i] = hashes[i - 1];
        } else {
            let h = e.key.hash();
            hashes[i] = h;
            flows.prefetch::<B>(h);
        }
        keys[i] = e.key;
    }
    // The lookups.
    let generation = p.overlay.generation();
    let mut found = [NONE; BURST];
    let mut last = NONE;
    let mut bits = keyed;
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        if same & (1 << i) == 0 {
            last = look_up(p, flows, &keys[i], hashes[i], generation);
        }
        found[i] = last;
    }
    // The hits' actions, in one pass; a run of one entry counted once.
    let neighbors = ctx.neighbors.generation();
    let templates = &ws.templates;
    let ct = &mut ws.ct;
    let mut pass = Pass::new();
    let (mut hits, mut misses) = (0u64, 0u64);
    let (mut run, mut run_packets, mut run_bytes) = (NONE, 0u64, 0u64);
    for i in 0..n {
        let f = found[i];
        let (Some(pkt), Some(o), true) = (pkts.get_mut(i), out.get_mut(i), f != NONE) else {
            misses += u64::from(keyed >> i & 1);
            pass.leave(i);
            continue;
        };
        hits += 1;
        let len = lens[i];
        let entry = flows.entry(f as usize);
        let action = &entry.action;
        let Some(now) = action.apply(pkt, len as usize, inner_len[i], templates, neighbors) else {
            pass.leave(i);
            continue;
        };
        let mut v = Verdict::Output(action.out);
        if action.hook != 0 {
            // The inner frame ends the packet whatever the action pushed or popped.
            let inner = if action.pop {
                inner_len[i].into()
            } else {
                len as usize
            };
            let at = now - inner;
            if let Err(r) = conntrack::on_hit(p, entry.deps.nets[0], ct, pkt.data(), at, ctx) {
                v = Verdict::Drop(r);
            }
        }
        pass.decided(o, v, now);
        if f != run {
            if run != NONE {
                flows.count(run as usize, run_packets, run_bytes);
            }
            (run, run_packets, run_bytes) = (f, 0, 0);
        }
        run_packets += 1;
        run_bytes += u64::from(len);
    }
    if run != NONE {
        flows.count(run as usize, run_packets, run_bytes);
    }
    flows.stats.hits += hits;
    flows.stats.misses += misses;
    if pass.left == 0 {
        return pass.one(n);
    }
    // The rest through the stages, installing what they compile.
    let misses = Misses {
        left: pass.left,
        keyed,
        keys: &keys,
        hashes: &hashes,
        generation,
        uplink: local_ip.is_some(),
    };
    (
        pass.bytes + misses.run(p, ingress, pkts, ctx, ws, out),
        None,
    )
}

/// The frames of a burst left to the stages, and what the burst loop found
/// for them: a function of its own, never inlined, so that the stages do not
/// take the hit loop's registers.
struct Misses<'a> {
    /// One bit per frame left.
    left: u32,
    /// One bit per frame with a key.
    keyed: u32,
    keys: &'a [FlowKey; BURST],
    hashes: &'a [u64; BURST],
    generation: u64,
    uplink: bool,
}

impl Misses<'_> {
    /// Runs the stages for every frame left, installs what they compile;
    /// returns the frames' bytes after processing.
    #[inline(never)]
    fn run<B: PacketBuf>(
        &self,
        p: &Pipeline,
        ingress: Ingress<'_>,
        pkts: &mut [B],
        ctx: &mut Ctx<'_>,
        ws: &mut WorkerState,
        out: &mut [Verdict],
    ) -> u64 {
        let mut left = self.left;
        let mut bytes = 0;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            let (Some(pkt), Some(o)) = (pkts.get_mut(i), out.get_mut(i)) else {
                continue;
            };
            let (v, compiled) = stages::run_compiled(
                p,
                ingress,
                pkt,
                ctx,
                &mut ws.scratch,
                &mut ws.templates,
                &mut ws.ct,
                &mut trace::NoTrace,
            );
            *o = v;
            bytes += pkt.len() as u64;
            if let (Verdict::Output(to), Some((c, net)), true) =
                (v, compiled, self.keyed >> i & 1 != 0)
            {
                let (key, hash) = (self.keys[i], self.hashes[i]);
                install(
                    &mut ws.flows,
                    key,
                    hash,
                    to,
                    &c,
                    net,
                    self.generation,
                    self.uplink,
                );
            }
        }
        bytes
    }
}

/// The entry for `key`, valid for snapshot generation `generation`: an entry of
/// an older generation is restamped when nothing it depends on changed since,
/// and is no entry when something did.
#[inline(always)]
fn look_up(p: &Pipeline, flows: &mut FlowTable, key: &FlowKey, hash: u64, generation: u64) -> u32 {
    let Some(i) = flows.find(key, hash) else {
        return NONE;
    };
    let entry = flows.entry(i);
    if entry.generation != generation {
        let deps = entry.deps;
        if entry.generation > generation
            || p.overlay
                .changed_since(entry.generation, deps.nets, deps.vrf)
        {
            return NONE;
        }
        flows.entry_mut(i).generation = generation;
        flows.stats.revalidations += 1;
    }
    i as u32
}

/// Installs the entry for `key` from what the stages compiled for its frame,
/// which they sent to `out`, switched in network `net`; `uplink` when the
/// frame came from the uplink (and must have been decapsulated).
#[allow(clippy::too_many_arguments)]
#[cold]
fn install(
    flows: &mut FlowTable,
    key: FlowKey,
    hash: u64,
    out: PortIdx,
    c: &Compiled,
    net: NetworkId,
    generation: u64,
    uplink: bool,
) {
    // What the extractor found is what decap stripped, or the key does not
    // describe the frame the stages saw: nothing to install.
    let pop = match c.popped {
        None => false,
        Some(n) => n == PLAIN_TUNNEL,
    };
    if pop != uplink {
        return;
    }
    let mut action = Action {
        out,
        pop,
        ..Action::default()
    };
    if let Some(macs) = c.routed {
        action.route = true;
        action.macs = macs;
    }
    if let Some(r) = c.encap {
        action.encap = true;
        action.slot = r.slot;
        action.tag = r.tag;
        action.src_port = r.src_port;
        action.max_ip_len = r.max_ip_len;
    }
    action.hook = u8::from(c.tracked);
    let deps = Deps {
        nets: [net, c.routed_into.map_or(net, |(n, _)| n)],
        vrf: c.routed_into.map(|(_, v)| v),
    };
    flows.install(key, hash, action, deps, generation);
}

/// The first [`BURST`] frames and their verdicts at most: a pass keeps a bit
/// per frame.
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
            Verdict::Output(port) => {
                self.any |= u32::from(port.0);
                self.all &= u32::from(port.0);
            }
            _ => self.other = true,
        }
        self.bytes += len as u64;
    }

    /// Frame `i` is left to the stages.
    #[inline(always)]
    fn leave(&mut self, i: usize) {
        self.left |= 1 << i;
    }

    /// The bytes of a burst of `n` frames the pass decided all of, and its one
    /// port when they all go to one.
    #[inline(always)]
    fn one(&self, n: usize) -> (u64, Option<PortIdx>) {
        let one = n > 0 && self.left == 0 && !self.other && self.any == self.all;
        (self.bytes, one.then_some(PortIdx(self.any as u16)))
    }
}

/// [`Pipeline::process_burst`] one packet at a time through the stages: classic
/// ports, an IPv6 underlay, and every ingress with the flow table off.
#[inline(never)]
pub(super) fn per_packet<B: PacketBuf>(
    p: &Pipeline,
    ingress: Ingress<'_>,
    pkts: &mut [B],
    ctx: &mut Ctx<'_>,
    ws: &mut WorkerState,
    out: &mut [Verdict],
) -> (u64, Option<PortIdx>) {
    let (pkts, out) = clip(pkts, out);
    let mut pass = Pass::new();
    for (o, pkt) in out.iter_mut().zip(pkts.iter_mut()) {
        let v = stages::run(
            p,
            ingress,
            pkt,
            ctx,
            &mut ws.scratch,
            &mut ws.templates,
            &mut ws.ct,
            &mut trace::NoTrace,
        );
        pass.decided(o, v, pkt.len());
    }
    pass.one(pkts.len())
}
