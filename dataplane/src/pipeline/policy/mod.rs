//! Network policy: the model a controller writes, its compiler, the
//! classifier that gives a new connection its verdict, and the stage that
//! enforces it (issue #26).
//!
//! The pieces: [`model`] (the tiers, validated with errors naming the
//! field), [`compile`] (the model into a [`CompiledPolicy`]), [`classify`]
//! (direction + 5-tuple → a [`DecisionId`] naming the allow or deny and the
//! tier, policy and rule that decided), [`observe`] (per-rule hit counters,
//! the log of denied connections) and the stage, at the bottom of this file.
//!
//! # The stage
//! Policy applies in a network that holds a subject of some policy (one of
//! its subnets holds a subject address: [`Pipeline::policed`]); such a
//! network is tracked whatever its `conntrack` setting, as a network with a
//! service is (`conntrack::tracked`). There, for each connection:
//!
//! * **its first packet** is classified twice: egress at its source
//!   endpoint, ingress at its destination endpoint, and allowed only if both
//!   allow (an address no policy selects allows by default, so for a
//!   connection with one end elsewhere only the local end's check can
//!   deny). Allowed, the conntrack entry keeps the policy's stamp
//!   ([`CompiledPolicy::stamp`]); denied, the packet is dropped
//!   (`policy_denied_egress`, `policy_denied_ingress`: egress is checked
//!   first), the entry removed, and the connection logged (rate-limited,
//!   [`observe`]). Every classification counts a hit for the rule that
//!   decided.
//! * **every later packet**, either direction, and the ICMP errors RELATED
//!   to it, pass on the stamp alone: one compare, no classification.
//! * **on a policy change** (a new stamp), a connection's next packet finds
//!   an old stamp: in a network with `policy_on_change = reevaluate` (the
//!   default) it is classified again against the new policy (allowed: the
//!   stamp is renewed; denied: dropped and the connection closed); with
//!   `keep` it keeps the verdict it was opened with. A connection opened
//!   before any policy applied to its network has stamp 0 and is treated
//!   alike.
//! * what conntrack leaves alone: SCTP and protocols without a state machine
//!   are classified packet by packet (never cached in the flow table);
//!   fragments, non-IP frames and ICMP that is neither echo nor error (ND,
//!   router discovery) pass.
//!
//! **After the LB stage, not before.** Policy must hold for the pod a
//! connection reaches: a connection to a Service VIP is classified against
//! the backend the LB chose and its target port, as Kubernetes does. Run
//! before the LB, the stage would have to pick the backend itself (the LB's
//! Maglev slot or ClientIP affinity) or read a choice not yet made. Run
//! after it, the stage reads the conntrack entry, whose reply tuple the LB
//! has just set (backend, target port → client); without a service the
//! reply tuple is the original reversed, so one reading serves both: the
//! classified connection is (original source → reply source, reply source
//! port). The cost of the order is that a denied connection to a VIP was
//! translated (and its entry given a reply tuple) before it is dropped and
//! removed: work on the slow path of a packet that is dropped anyway.
//!
//! **On the flow table.** Entries of a tracked network carry conntrack's
//! hook; its check (`conntrack::hit_check`) refuses a hit whose connection
//! carries another stamp than the snapshot's policy, in a network that
//! re-evaluates, so the packet comes back to this stage. An entry installed
//! without the hook, before its network was tracked (a policy subject added
//! since), is dropped when the flow table revalidates it against the new
//! snapshot (`burst.rs`). A denied packet installs nothing.
//!
//! //! # The structure, and why
//!
//! A verdict depends on the subject endpoint (an exact address), the peer (an
//! address against IP sets and blocks with holes), the protocol and the port
//! range or ICMP type·code, and then on the first rule in tier order with
//! `Pass`, isolation and the default applied. The compiler turns that into
//! **a two-dimensional range lookup per group of endpoints**:
//!
//! - subject address → group: a hash map. Endpoints selected by the same
//!   policies share a group, so the subject dimension is gone exactly and a
//!   deployment's pods cost one hash entry each, not one copy of their rules.
//! - peer address → port table: the bounds of the group's rules' peer
//!   intervals cut each family's space into elementary intervals; a binary
//!   search finds the one holding the peer and, packed beside its first
//!   address, its port table.
//! - (protocol, port) → decision: per protocol kind, the bounds of the active
//!   rules' ranges cut the key space; each piece holds the final decision,
//!   tiers already resolved. Port tables are interned by their list of active
//!   rules, across intervals and groups, so the cross product stays sparse:
//!   one table per distinct overlap of rules, not per interval.
//!
//! A lookup is one hash probe and two binary searches, `O(log P + log Q)` in
//! the pieces of the subject's *own* group — the rules that select that
//! endpoint, not all rules — and reads nothing a packet can grow: the
//! structure is immutable and no lookup result is cached, so crafted traffic
//! meets the same bounded search as any other. (OVS's tuple-space explosion,
//! CVE-2019-25076, came from a megaflow cache that traffic filled with masks;
//! there is no such cache here to fill.) No allocation, no lock, no state
//! written.
//!
//! The alternatives, and why not:
//! - *Tuple-space search* (OVS's classifier): one hash probe per distinct
//!   combination of masks. /16…/32 peers and port ranges expanded into
//!   prefixes give dozens of tuples, and priority pruning only helps once a
//!   high-priority match is found: the cost follows the variety of rules.
//! - *Decision trees* (HiCuts, HyperCuts, EffiCuts): flat lookups, but wide
//!   ranges (`0.0.0.0/0` with excepts, "all ports") replicate rules into many
//!   leaves, so memory and build time depend on heuristics and are hard to
//!   bound before building — and a too-large set must be refused up front.
//! - *Bit vectors* (Lucent BV, ABV): a lookup per field, then an AND of
//!   N-bit vectors: `N/64` words per lookup, linear in the rules.
//! - *DPDK `rte_acl`*: fast multi-bit tries, but it would bring FFI and
//!   `unsafe` into this crate (pure Rust, no DPDK by design), its contexts
//!   are sized at creation (a capacity cliff), its build grows quickly with
//!   wide ranges, and it knows nothing of tiers and `Pass`.
//!
//! What the structure costs is capped: validation bounds every list
//! ([`model::Limits`]), the compile counts its work and bytes against
//! [`CompileLimits`] as it goes and refuses the whole set beyond them
//! ([`CompileError`]); nothing is sized per endpoint.
//!
//! Measured (`cargo bench -p dataplane --bench policy`; full tables and
//! method in `bench/RESULTS.md`, issue #26; 2 vCPUs shared with other builds,
//! figures moved by up to 3× between runs). Realistic sets: 3,000 pods,
//! NetworkPolicies of 4 rules over one app, /16…/28 blocks and IP sets as
//! peers, admin and baseline policies over namespaces; traffic to selected
//! pods. Crafted traffic: every connection different, at the endpoint whose
//! group is deepest. ns per classification, quietest run:
//!
//! | rules | 10 | 100 | 1k | 10k | 100k |
//! |---|---|---|---|---|---|
//! | realistic traffic | 21 | 18 | 26 | 54 | 303 |
//! | crafted traffic | 32 | 30 | 35 | 43 | 47 |
//! | every rule on one endpoint, crafted | 38 | | 53 | 64 | |
//! | compiled structure | 3 KiB | 25 KiB | 234 KiB | 1.8 MiB | 20.7 MiB |
//!
//! Within a run, 10k rules cost 1.1–2.8× what 10 cost with realistic traffic
//! (the 2× target is met in some runs, not all), 1.0–1.5× with crafted
//! traffic. The search stays short (the deepest group at 10k has 136 peer
//! pieces, read through a block index); what grows is the footprint that
//! traffic spread over 1,200 groups walks through, and at 100k rules (20 MB)
//! each lookup misses the caches and the TLB several times. Crafted traffic
//! costs what any traffic costs at the same group.
//!
//! Compile of 10k realistic rules, validation included: 64–84 ms on CPU
//! (57–135 ms wall for the compile alone); 10k rules on one endpoint: 74–482
//! ms wall; 100k: 0.75–0.99 s on CPU. One policy changed among 3,000 policies
//! over 3,000 pods, recompiled whole (validate + compile): p99 72–110 ms on
//! CPU over 100 updates, within the 1 s the issue asks (wall p99 reached
//! 1.0 s once, at load 13 on 2 vCPUs). Changes are compiled whole
//! today; sharing unchanged groups with the previous compile is the way to
//! make a write cost what it changes.

pub mod classify;
pub mod compile;
pub mod model;
pub mod observe;

use std::net::IpAddr;
use std::ops::ControlFlow;

pub use classify::Connection;
pub use compile::{
    Action, CompileError, CompileLimits, CompiledPolicy, Decider, Decision, DecisionId, RuleRef,
};
pub use model::{Direction, PolicyError, PolicySet, Tier, ValidPolicySet};
pub use observe::{DenyEvent, PolicyObserver, PolicyWorker, RuleHits, RuleKey};

use super::conntrack::{describe_tuple, CtEvent, CtShard, CtTuple};
use super::packet::PacketCtx;
use super::trace::{self, Tracer};
use super::{Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::overlay::{NetworkInfo, OverlaySnapshot};
use crate::wire::{L3Kind, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// What a policy change does to the connections a network already has open
/// (a per-network option, issue #26 item 2), read by the stage on a packet
/// of a connection allowed by an older policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnChange {
    /// Each open connection is classified again on its next packet, against
    /// the new policy (the verdict cached in conntrack carries the policy
    /// generation it was made with).
    #[default]
    Reevaluate,
    /// Each open connection keeps the verdict it was opened with.
    Keep,
}

impl OnChange {
    /// The option's text, as the configuration and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnChange::Reevaluate => "reevaluate",
            OnChange::Keep => "keep",
        }
    }
}

impl CompiledPolicy {
    /// One empty policy shared by every snapshot that has none, so a snapshot
    /// built without policies allocates nothing for them.
    pub fn shared_empty() -> std::sync::Arc<CompiledPolicy> {
        static EMPTY: std::sync::OnceLock<std::sync::Arc<CompiledPolicy>> =
            std::sync::OnceLock::new();
        std::sync::Arc::clone(EMPTY.get_or_init(|| std::sync::Arc::new(CompiledPolicy::empty())))
    }
}

/// Which networks policy applies in, indexed by [`NetworkId`](crate::overlay::NetworkId):
/// a network holds a subject of `policy` when one of its subnets holds a
/// subject address, or, for a network without subnets (pure L2: nothing
/// says which addresses are its), when any policy has a subject at all.
/// Computed once per snapshot on the control thread
/// ([`Pipeline::with_policy`](super::Pipeline::with_policy)), `O(subjects ×
/// subnets)`.
pub(crate) fn policed_networks(overlay: &OverlaySnapshot, policy: &CompiledPolicy) -> Vec<bool> {
    if !policy.has_subjects() {
        return Vec::new();
    }
    (0..overlay.network_count())
        .map(|i| {
            let nets = overlay.subnets(crate::overlay::NetworkId(i as u16));
            nets.is_empty()
                || policy
                    .subjects()
                    .any(|a| nets.iter().any(|n| n.contains(&a)))
        })
        .collect()
}

/// The stage (see the module docs): one branch for a network no policy
/// applies in.
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &B,
    ct: &mut CtShard,
    t: &mut T,
) -> ControlFlow<Verdict> {
    match pc.net {
        Some((net, info)) if p.policed(net) => enforce(p, pc, pkt, ct, info, t),
        _ => ControlFlow::Continue(()),
    }
}

/// Why the stage classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The first packet of a connection.
    New,
    /// A packet of a connection allowed by an older policy (stamp `had`; 0:
    /// opened before any policy applied), in a network that re-evaluates.
    Reevaluated { had: u32 },
    /// A packet conntrack leaves alone (SCTP, other protocols): classified
    /// alone, every packet.
    Stateless,
}

#[inline(never)]
fn enforce<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &B,
    ct: &mut CtShard,
    info: &NetworkInfo,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let stamp = p.policy.stamp();
    let Some(hit) = pc.ct else {
        return stateless(p, pc, pkt, ct, info, t);
    };
    let why = match hit.event {
        // The owner decides, with the connection.
        CtEvent::Redirect(_) => return ControlFlow::Continue(()),
        CtEvent::New => Why::New,
        CtEvent::Existing | CtEvent::Related => {
            let had = ct.table().policy_stamp(hit.handle);
            if had == stamp || info.policy_on_change == OnChange::Keep {
                if T::ON {
                    t.record(trace::Record::Policy(Record::Cached {
                        had,
                        now: stamp,
                        kept: had != stamp,
                    }));
                }
                return ControlFlow::Continue(());
            }
            Why::Reevaluated { had }
        }
    };
    let Some(view) = ct.table().get(hit.handle) else {
        return ControlFlow::Continue(());
    };
    let conn = connection(&view.original, &view.reply);
    let (egress, ingress) = p.policy.classify_both(&conn);
    ct.policy.hit(Direction::Egress, egress);
    ct.policy.hit(Direction::Ingress, ingress);
    let denied = denied_by(&p.policy, egress, ingress);
    if T::ON {
        t.record(trace::Record::Policy(Record::describe_decided(
            &p.policy, &conn, why, egress, ingress,
        )));
    }
    let Some((dir, id)) = denied else {
        ct.table().set_policy_stamp(hit.handle, stamp);
        return ControlFlow::Continue(());
    };
    // A denied connection keeps no entry: it holds no room in the table, its
    // next packet is a new attempt (classified and logged again), and a
    // re-evaluated one is closed.
    ct.table().remove(hit.handle);
    let (o, r) = (&view.original, &view.reply);
    let frontend = (o.dst != r.src || o.dport != r.sport).then(|| (o.dst_ip(), o.dport));
    log(p, ct, info, dir, id, conn, view.original.sport, frontend);
    ControlFlow::Break(Verdict::Drop(reason(dir)))
}

/// A packet conntrack leaves alone, in a policed network: SCTP (no state
/// machine here) and protocols without ports are classified packet by
/// packet, and never installed in the flow table. Fragments (no ports to
/// classify by: no reassembly yet), non-IP frames and ICMP that is neither
/// echo nor error (ND, router discovery: the network's own plumbing) pass.
fn stateless<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &B,
    ct: &mut CtShard,
    info: &NetworkInfo,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let Ok(m) = pc.meta(pkt, &p.parse) else {
        return ControlFlow::Continue(());
    };
    let v6 = match m.l3 {
        L3Kind::Ipv4 => false,
        L3Kind::Ipv6 => true,
        _ => return ControlFlow::Continue(()),
    };
    if m.is_fragment
        || matches!(
            m.l4_proto,
            IPPROTO_ICMP | IPPROTO_ICMPV6 | IPPROTO_TCP | IPPROTO_UDP
        )
    {
        return ControlFlow::Continue(());
    }
    let (src, dst) = match (m.src_addr(), m.dst_addr()) {
        (Some(s), Some(d)) => (s, d),
        _ => return ControlFlow::Continue(()),
    };
    let proto = m.l4_proto;
    let (sport, dport) = if proto == IPPROTO_SCTP {
        sctp_ports(pkt.data(), usize::from(m.l3_offset), v6).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let conn = Connection {
        src,
        dst,
        protocol: proto,
        l4: dport,
    };
    pc.compiled.uncacheable = true;
    let (egress, ingress) = p.policy.classify_both(&conn);
    ct.policy.hit(Direction::Egress, egress);
    ct.policy.hit(Direction::Ingress, ingress);
    if T::ON {
        t.record(trace::Record::Policy(Record::describe_decided(
            &p.policy,
            &conn,
            Why::Stateless,
            egress,
            ingress,
        )));
    }
    match denied_by(&p.policy, egress, ingress) {
        None => ControlFlow::Continue(()),
        Some((dir, id)) => {
            log(p, ct, info, dir, id, conn, sport, None);
            ControlFlow::Break(Verdict::Drop(reason(dir)))
        }
    }
}

const IPPROTO_SCTP: u8 = 132;

/// The ports of the SCTP packet whose IP header is at `l3` of `f` (IPv6:
/// only with SCTP as the first next header; extension headers are not
/// walked again here).
fn sctp_ports(f: &[u8], l3: usize, v6: bool) -> Option<(u16, u16)> {
    let l4 = if v6 {
        (*f.get(l3 + 6)? == IPPROTO_SCTP).then_some(l3 + 40)?
    } else {
        l3 + usize::from(f.get(l3)? & 0xf) * 4
    };
    let b = f.get(l4..l4 + 4)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// The connection as policy sees it, from its conntrack entry: the client
/// to where it really goes. The reply tuple's source is the backend the LB
/// stage chose (itself, without DNAT) and its source port the backend's
/// port, so a service's connection is classified against the chosen
/// backend and its target port. ICMP echo: the request's type, code 0.
#[inline]
pub(crate) fn connection(orig: &CtTuple, reply: &CtTuple) -> Connection {
    let l4 = match orig.proto {
        IPPROTO_TCP | IPPROTO_UDP => reply.sport,
        IPPROTO_ICMP => 8 << 8,
        IPPROTO_ICMPV6 => 128 << 8,
        _ => 0,
    };
    Connection {
        src: addr(&orig.src),
        dst: addr(&reply.src),
        protocol: orig.proto,
        l4,
    }
}

/// A tuple's address (IPv4 mapped into IPv6) as the classifier reads it:
/// one compare on the word, where the general conversion
/// (`CtTuple::src_ip`) cost this stage 75 instructions an address.
#[inline(always)]
fn addr(b: &[u8; 16]) -> IpAddr {
    let w = u128::from_be_bytes(*b);
    if w >> 32 == 0xffff {
        IpAddr::V4(std::net::Ipv4Addr::from_bits(w as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from_bits(w))
    }
}

/// The direction whose check denies, egress (at the source) first.
#[inline]
fn denied_by(
    p: &CompiledPolicy,
    egress: DecisionId,
    ingress: DecisionId,
) -> Option<(Direction, DecisionId)> {
    if !observe::allows(p, egress) {
        Some((Direction::Egress, egress))
    } else if !observe::allows(p, ingress) {
        Some((Direction::Ingress, ingress))
    } else {
        None
    }
}

fn reason(dir: Direction) -> DropReason {
    match dir {
        Direction::Ingress => DropReason::PolicyDeniedIngress,
        Direction::Egress => DropReason::PolicyDeniedEgress,
    }
}

#[allow(clippy::too_many_arguments)]
#[cold]
fn log(
    p: &Pipeline,
    ct: &mut CtShard,
    info: &NetworkInfo,
    direction: Direction,
    decision: DecisionId,
    conn: Connection,
    sport: u16,
    frontend: Option<(IpAddr, u16)>,
) {
    let now = ct.last_ms();
    let vni = info.vni;
    ct.policy.denied(now, || DenyEvent {
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        policy: std::sync::Arc::clone(&p.policy),
        direction,
        decision,
        conn,
        sport,
        frontend,
        vni,
    });
}

/// The stage's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// A packet of a connection with a verdict: the current policy's, or an
    /// older one's kept (`keep`).
    Cached { had: u32, now: u32, kept: bool },
    /// A classification: both checks, described.
    Decided {
        why: Why,
        conn: String,
        egress: String,
        ingress: String,
        verdict: &'static str,
    },
}

/// A decision in words: what decided, in which tier.
pub fn describe_decision(p: &CompiledPolicy, dir: Direction, id: DecisionId) -> String {
    let d = p.decision(id);
    let action = match d.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    let rule = |r: RuleRef| match p.names(dir, r) {
        Some((name, rule)) if !rule.is_empty() => {
            format!("{} policy {name:?} rule {} ({rule:?})", r.tier, r.rule)
        }
        Some((name, _)) => format!("{} policy {name:?} rule {}", r.tier, r.rule),
        None => format!("{} policy #{} rule {}", r.tier, r.policy, r.rule),
    };
    let by = match d.by {
        Decider::Rule(r) => format!("{action} by {}", rule(r)),
        Decider::Isolated => format!("{action}: isolated by a network policy, no rule allows"),
        Decider::Default => format!("{action}: no policy selects it (default)"),
    };
    match d.passed_by {
        Some(r) => format!("{by}, passed down by {}", rule(r)),
        None => by,
    }
}

impl Record {
    fn describe_decided(
        p: &CompiledPolicy,
        conn: &Connection,
        why: Why,
        egress: DecisionId,
        ingress: DecisionId,
    ) -> Record {
        let tuple = CtTuple::new(conn.src, 0, conn.dst, conn.l4, conn.protocol);
        let verdict = match denied_by(p, egress, ingress) {
            None => "allowed",
            Some((d, _)) => reason(d).as_str(),
        };
        Record::Decided {
            why,
            conn: describe_tuple(&tuple),
            egress: format!(
                "egress at {}: {}",
                conn.src,
                describe_decision(p, Direction::Egress, egress)
            ),
            ingress: format!(
                "ingress at {}: {}",
                conn.dst,
                describe_decision(p, Direction::Ingress, ingress)
            ),
            verdict,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Record::Cached { had, now, kept } => {
                if *kept {
                    format!("verdict of policy #{had} kept under policy #{now} (policy_on_change = keep)")
                } else {
                    format!(
                        "allowed by policy #{now} when the connection opened: not classified again"
                    )
                }
            }
            Record::Decided {
                why,
                conn,
                egress,
                ingress,
                verdict,
            } => {
                let why = match why {
                    Why::New => "new connection".to_string(),
                    Why::Reevaluated { had: 0 } => {
                        "connection opened before any policy applied, re-evaluated".to_string()
                    }
                    Why::Reevaluated { had } => {
                        format!("connection allowed by policy #{had}, re-evaluated")
                    }
                    Why::Stateless => "untracked packet".to_string(),
                };
                format!("{why} {conn}: {egress}; {ingress}: {verdict}")
            }
        }
    }
}
