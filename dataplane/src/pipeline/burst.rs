//! The worker's burst loop ([`Pipeline::process_burst`]): the flow table first,
//! the stages for what it misses (see `flow/mod.rs`).
//!
//! For a burst from a pod's port or from the uplink, three functions of their
//! own, each with the registers to itself: the keys ([`Keys::extract`]: a frame
//! that reads like the one before to the extractor joins its run without an
//! extraction; a run's first frame is hashed and its bucket prefetched); the
//! frames that are runs of their own ([`Tally::singles`]: a lookup, with the
//! revalidation of an entry from an older snapshot, and the arm of the action's
//! kind); the runs of two frames or more ([`Tally::runs`]: one lookup, one loop
//! of the action's kind). Then the misses and the hits whose per-packet guards
//! failed go through the stages, which install what they compile. Classic L2
//! ports run the stages per packet: their MAC table is already one lookup.

use std::net::IpAddr;

use super::flow::action::{Action, HOOK_CT, HOOK_HANDOFF, HOOK_REDIRECT};
use super::flow::key::{self, FlowKey, PLAIN_TUNNEL};
use super::flow::table::{Deps, FlowTable};
use super::flow::template::Templates;
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

/// A frame without a key (the start of its run, when it has one).
const NO_KEY: u8 = u8::MAX;

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
    // A throttled table's lookups cost more than its few hits save: most
    // bursts skip it (`flow/table.rs`, lookup bypass).
    if ws.flows.bypass(pkts.len()) {
        return per_packet(p, ingress, pkts, ctx, ws, out);
    }
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
    ws.flows.tick();
    let mut k = Keys::new();
    k.extract(pkts, ingress.port, local_ip, &p.parse, &ws.flows);
    let generation = p.overlay.generation();
    let mut t = Tally::new(!k.keyed & low_bits(n));
    // A run of two frames or more starts where the next frame continues it.
    let continued = k.keyed & !k.starts;
    let multi = k.starts & (continued >> 1);
    let look = Look {
        p,
        generation,
        neighbors: ctx.neighbors.generation(),
    };
    t.singles(
        &look,
        pkts,
        out,
        &k,
        k.starts & !multi,
        &mut ws.flows,
        &ws.templates,
    );
    if multi != 0 {
        t.runs(&look, pkts, out, &k, multi, &mut ws.flows, &ws.templates);
    }
    if t.hooked != 0 {
        t.hooked(
            &look,
            pkts,
            out,
            &k,
            &ws.flows,
            &ws.templates,
            &mut ws.ct,
            ctx,
        );
    }
    if t.handoff != 0 {
        t.handoff(&look, pkts, out, &ws.flows, &mut ws.ct, ctx);
    }
    // The window that decides admission (`flow/table.rs`), once a burst.
    ws.flows.observe(t.hits, t.misses);
    if t.left == 0 {
        let one = n > 0 && t.any == t.all && !t.dropped;
        return (t.bytes, one.then_some(PortIdx(t.any as u16)));
    }
    // The rest through the stages, installing what they compile.
    let misses = Misses {
        left: t.left,
        keyed: k.keyed,
        start: &k.start,
        keys: &k.keys,
        hashes: &k.hashes,
        generation,
        uplink: local_ip.is_some(),
    };
    (t.bytes + misses.run(p, ingress, pkts, ctx, ws, out), None)
}

/// The low `n` bits (`n` at most 32).
#[inline(always)]
fn low_bits(n: usize) -> u32 {
    ((1u64 << n) - 1) as u32
}

/// A burst's keys: a run's first frame holds its key, hash and inner length
/// for the run.
struct Keys {
    /// Per frame with a key, the frame that starts its run.
    start: [u8; BURST],
    keys: [FlowKey; BURST],
    hashes: [u64; BURST],
    inner_len: [u16; BURST],
    /// One bit per frame with a key.
    keyed: u32,
    /// One bit per frame that starts a run.
    starts: u32,
}

impl Keys {
    #[inline(always)]
    fn new() -> Self {
        Keys {
            start: [NO_KEY; BURST],
            keys: [FlowKey::default(); BURST],
            hashes: [0; BURST],
            inner_len: [0; BURST],
            keyed: 0,
            starts: 0,
        }
    }

    /// The keys of `pkts` from `port` (the uplink when `local_ip`, its VTEP
    /// address, is given), their buckets prefetched. A frame that reads like
    /// the one before to the extractor (a flow's run) joins its run without an
    /// extraction. A function of its own: the registers are the extractor's.
    #[inline(never)]
    fn extract<B: PacketBuf>(
        &mut self,
        pkts: &[B],
        port: PortIdx,
        local_ip: Option<[u8; 4]>,
        cfg: &crate::wire::ParseConfig,
        flows: &FlowTable,
    ) {
        let mut prev: &[u8] = &[];
        let mut run_start = NO_KEY;
        for (i, pkt) in pkts.iter().enumerate().take(BURST) {
            let data = pkt.data();
            let same = run_start != NO_KEY
                && match local_ip {
                    None => key::same_local(prev, data),
                    Some(_) => key::same_uplink(prev, data),
                };
            prev = data;
            if same {
                self.keyed |= 1 << i;
                self.start[i] = run_start;
                continue;
            }
            let e = match local_ip {
                None => key::local(port, data, cfg),
                Some(ip) => key::uplink(port, ip, data, cfg),
            };
            let Some(e) = e else {
                run_start = NO_KEY;
                continue;
            };
            run_start = i as u8;
            self.start[i] = run_start;
            self.keyed |= 1 << i;
            self.starts |= 1 << i;
            self.keys[i] = e.key;
            self.inner_len[i] = e.inner_len;
            let h = e.key.hash();
            self.hashes[i] = h;
            flows.prefetch::<B>(h);
        }
    }
}

/// What the lookups and actions of a burst read.
struct Look<'a> {
    p: &'a Pipeline,
    generation: u64,
    neighbors: u64,
}

/// What the hit passes decided: the frames left to the stages, the bytes of
/// those decided, and whether they all output to one port (every port seen is
/// ORed and ANDed: they are all one port exactly when the two agree).
struct Tally {
    left: u32,
    any: u32,
    all: u32,
    bytes: u64,
    hits: u64,
    misses: u64,
    /// Hits whose entry carries conntrack's hook, and their entries: left
    /// to [`Tally::hooked`].
    hooked: u32,
    /// Hits whose entry hands over to another worker ([`Tally::handoff`]);
    /// their entries in `entry` too.
    handoff: u32,
    entry: [u32; BURST],
    /// A hook dropped a frame: the burst has no one port.
    dropped: bool,
}

impl Tally {
    #[inline(always)]
    fn new(left: u32) -> Self {
        Tally {
            left,
            any: 0,
            all: u32::MAX,
            bytes: 0,
            hits: 0,
            misses: 0,
            hooked: 0,
            handoff: 0,
            entry: [NONE; BURST],
            dropped: false,
        }
    }

    /// The hits whose entry hands over to another worker (a bit each in
    /// `handoff`): the connection is that worker's (`conntrack/mod.rs`), the
    /// frame goes to it as it came in.
    #[cold]
    #[inline(never)]
    fn handoff<B: PacketBuf>(
        &mut self,
        look: &Look<'_>,
        pkts: &[B],
        out: &mut [Verdict],
        flows: &FlowTable,
        ct: &mut conntrack::CtShard,
        ctx: &mut Ctx<'_>,
    ) {
        let mut bits = self.handoff;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let (Some(pkt), Some(o), Some(&f)) = (pkts.get(i), out.get_mut(i), self.entry.get(i))
            else {
                break;
            };
            // A burst handed to this worker is its own to track: never the
            // case for an entry this worker installed (it hands over only
            // what it did not receive from a peer), but the stages decide.
            if ct.handed {
                self.left |= 1 << i;
                continue;
            }
            let entry = flows.entry(f as usize);
            let to = entry.action.out.0;
            if entry.action.hook == HOOK_REDIRECT {
                let at = if entry.action.pop { PLAIN_TUNNEL } else { 0 };
                let net = entry.deps.nets[0];
                if !conntrack::stub_check(look.p, net, ct, pkt.data(), at, to, ctx) {
                    self.left |= 1 << i;
                    continue;
                }
            }
            ct.handed_off += 1;
            *o = Verdict::Handoff(to);
            self.bytes += pkt.len() as u64;
            // Not one output port.
            self.dropped = true;
        }
    }

    /// The hits whose entry carries the hook (a bit each in `hooked`):
    /// conntrack's check that the entry holds for the frame (else the frame
    /// goes to the stages, unchanged: `conntrack::hit_check`), the action
    /// (with the LB stage's rewrite, if any), then conntrack's per-packet
    /// update, which may drop the frame (`conntrack::hit_update`). Apart
    /// from the other passes, whose loops stay as they are for untracked
    /// flows.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn hooked<B: PacketBuf>(
        &mut self,
        look: &Look<'_>,
        pkts: &mut [B],
        out: &mut [Verdict],
        k: &Keys,
        flows: &FlowTable,
        templates: &Templates,
        ct: &mut conntrack::CtShard,
        ctx: &mut Ctx<'_>,
    ) {
        let mut bits = self.hooked;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let (Some(pkt), Some(o), Some(&f), Some(&s)) = (
                pkts.get_mut(i),
                out.get_mut(i),
                self.entry.get(i),
                k.start.get(i),
            ) else {
                break;
            };
            let entry = flows.entry(f as usize);
            let action = &entry.action;
            let len = pkt.len();
            let inner = k.inner_len.get(usize::from(s)).copied().unwrap_or(0);
            // The connection is checked on the frame as it came in (the inner
            // frame of a tunnel packet), before the action writes a byte.
            let at = if action.pop { PLAIN_TUNNEL } else { 0 };
            let net = entry.deps.nets[0];
            let Ok(found) = conntrack::hit_check(look.p, net, ct, pkt.data(), at, &action.nat, ctx)
            else {
                self.left |= 1 << i;
                continue;
            };
            let Some(now) = action.apply_one(pkt, len, inner, templates, look.neighbors) else {
                self.left |= 1 << i;
                continue;
            };
            self.bytes += now as u64;
            match conntrack::hit_update(ct, found) {
                Ok(()) => {
                    *o = Verdict::Output(action.out);
                    let to = u32::from(action.out.0);
                    (self.any, self.all) = (self.any | to, self.all & to);
                }
                Err(r) => {
                    *o = Verdict::Drop(r);
                    self.dropped = true;
                }
            }
        }
    }

    /// Frames that are runs of their own (a bit each in `bits`): a lookup and
    /// the action's arm each.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn singles<B: PacketBuf>(
        &mut self,
        look: &Look<'_>,
        pkts: &mut [B],
        out: &mut [Verdict],
        k: &Keys,
        mut bits: u32,
        flows: &mut FlowTable,
        templates: &Templates,
    ) {
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let (Some(pkt), Some(o), Some(key), Some(&hash)) = (
                pkts.get_mut(i),
                out.get_mut(i),
                k.keys.get(i),
                k.hashes.get(i),
            ) else {
                break;
            };
            let f = look_up(look.p, flows, key, hash, look.generation);
            if f == NONE {
                self.left |= 1 << i;
                self.misses += 1;
                continue;
            }
            self.hits += 1;
            let action = &flows.entry(f as usize).action;
            if action.hook != 0 {
                if action.hook >= HOOK_HANDOFF {
                    self.handoff |= 1 << i;
                } else {
                    self.hooked |= 1 << i;
                }
                self.entry[i] = f;
                flows.touch(f as usize);
                continue;
            }
            let len = pkt.len();
            let inner = k.inner_len.get(i).copied().unwrap_or(0);
            match action.apply_one(pkt, len, inner, templates, look.neighbors) {
                Some(now) => {
                    *o = Verdict::Output(action.out);
                    let to = u32::from(action.out.0);
                    (self.any, self.all) = (self.any | to, self.all & to);
                    self.bytes += now as u64;
                }
                None => self.left |= 1 << i,
            }
            flows.touch(f as usize);
        }
    }

    /// Runs of two frames or more (a bit each in `starts` for their first
    /// frames): one lookup and one loop of the action's kind per run.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn runs<B: PacketBuf>(
        &mut self,
        look: &Look<'_>,
        pkts: &mut [B],
        out: &mut [Verdict],
        k: &Keys,
        mut starts: u32,
        flows: &mut FlowTable,
        templates: &Templates,
    ) {
        let n = pkts.len();
        // Where a run stops: at the next run's start or at a frame without a key.
        let stops = k.starts | !k.keyed;
        while starts != 0 {
            let i = starts.trailing_zeros() as usize;
            starts &= starts - 1;
            let end = ((stops >> i >> 1).trailing_zeros() as usize + i + 1).min(n);
            let run = low_bits(end - i) << i;
            let (Some(run_pkts), Some(run_out)) = (pkts.get_mut(i..end), out.get_mut(i..end))
            else {
                break;
            };
            let f = look_up(look.p, flows, &k.keys[i], k.hashes[i], look.generation);
            if f == NONE {
                self.left |= run;
                self.misses += (end - i) as u64;
                continue;
            }
            self.hits += (end - i) as u64;
            let action = &flows.entry(f as usize).action;
            if action.hook != 0 {
                if action.hook >= HOOK_HANDOFF {
                    self.handoff |= run;
                } else {
                    self.hooked |= run;
                }
                self.entry[i..end].fill(f);
                flows.touch(f as usize);
                continue;
            }
            // Every frame of a run has the first one's length.
            let len = run_pkts.first().map_or(0, |p| p.len());
            let (l, now) = action.apply_run(
                run_pkts,
                run_out,
                len,
                k.inner_len[i],
                templates,
                look.neighbors,
            );
            let applied = (end - i) - (l.count_ones() as usize);
            if applied != 0 {
                let to = u32::from(action.out.0);
                (self.any, self.all) = (self.any | to, self.all & to);
                self.bytes += (applied * now) as u64;
            }
            self.left |= l << i;
            flows.touch(f as usize);
        }
    }
}

/// The frames of a burst left to the stages, and what the burst loop found
/// for them: a function of its own, never inlined, so that the stages do not
/// take the hit loop's registers.
struct Misses<'a> {
    /// One bit per frame left.
    left: u32,
    /// One bit per frame with a key.
    keyed: u32,
    /// Per frame with a key, the frame that starts its run and holds its key.
    start: &'a [u8; BURST],
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
            let out = match v {
                Verdict::Output(to) => Some(to),
                // Installed with the hook that hands over (`install`).
                Verdict::Handoff(w) => Some(PortIdx(w)),
                _ => None,
            };
            if let (Some(to), Some((c, net)), true) = (out, compiled, self.keyed >> i & 1 != 0) {
                let s = usize::from(self.start[i]);
                let (key, hash) = (self.keys[s], self.hashes[s]);
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
    if flows.entry(i).generation != generation {
        return revalidate(p, flows, i, generation);
    }
    i as u32
}

/// The entry at `i`, found with a generation older than `generation`:
/// restamped when nothing it depends on changed since, else no entry.
#[cold]
#[inline(never)]
fn revalidate(p: &Pipeline, flows: &mut FlowTable, i: usize, generation: u64) -> u32 {
    let entry = flows.entry(i);
    let deps = entry.deps;
    if entry.generation > generation
        || p.overlay
            .changed_since(entry.generation, deps.nets, deps.vrf)
        || (entry.action.hook == 0 && conntrack::tracked_id(p, deps.nets[0]))
    {
        // (The last: an entry installed before its network was tracked —
        // a service or a policy subject added since, which changes no
        // network — would let its packets pass conntrack, the LB and the
        // policy stage by. `hit_check` covers the entries with the hook.)
        return NONE;
    }
    flows.entry_mut(i).generation = generation;
    flows.stats.revalidations += 1;
    i as u32
}

/// Installs the entry for `key` from what the stages compiled for its frame,
/// which they sent to `out`, switched in network `net`; `uplink` when the
/// frame came from the uplink (and must have been decapsulated). A frame
/// conntrack handed to another worker (`c.handoff`, `out` that worker)
/// gets an entry that hands over and does nothing else.
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
    if let Some((_, by_stub)) = c.handoff {
        let action = Action {
            out,
            // Where the inner frame starts, for the stub's check.
            pop,
            hook: if by_stub { HOOK_REDIRECT } else { HOOK_HANDOFF },
            ..Action::default()
        };
        let deps = Deps {
            nets: [net, net],
            vrf: None,
        };
        flows.install(key, hash, action, deps, generation);
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
    action.hook = if c.tracked { HOOK_CT } else { 0 };
    if let Some(nat) = c.nat {
        action.nat = nat;
    }
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
