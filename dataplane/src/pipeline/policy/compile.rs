//! The compiler: a [`ValidPolicySet`] into the [`CompiledPolicy`] the
//! classifier reads (the structure and why it is this one: the module doc of
//! [`super`]).
//!
//! Steps, per direction:
//! 1. Every rule of the set gets a global rank: admin policies by
//!    (priority, name), then NetworkPolicies in the model's order, then
//!    baseline policies by (priority, name); within a policy, its rules in
//!    order. The first matching rule by rank is the first in evaluation order.
//! 2. Each subject address gets its **group key**: the positions, in that
//!    order, of the policies that select it and have something to say in that
//!    direction (not the baseline ones if a NetworkPolicy isolates it), plus — only
//!    if one of them names ports in ingress rules — its named ports, on which
//!    those names resolve. Endpoints with equal keys share one compiled group;
//!    a pod of a deployment costs one hash entry, not one copy of its rules.
//! 3. A group is compiled by a sweep over the peer address space (per family):
//!    the bounds of every rule's peer intervals cut it into elementary
//!    intervals, and each interval gets the port table of the rules active
//!    there. Port tables are interned by that rule list, across groups and
//!    intervals, so the same rules cost one table.
//! 4. A port table cuts each protocol's key space (ports; ICMP type·code) at
//!    its rules' bounds and stores, per piece, the decision of the first
//!    matching rule with the tier semantics applied (`Pass`, NetworkPolicy
//!    isolation, default allow). Decisions are interned too.
//!
//! What it costs is capped as it is spent: the work (rule × interval visits)
//! and the bytes of the result are counted against [`CompileLimits`], and
//! the compile stops at either cap and refuses the set whole with
//! [`CompileError`] — nothing of it is published.

use std::net::IpAddr;

use hashbrown::HashMap;
use thiserror::Error;

use super::model::{AddrIntervals, ClusterAction, Direction, PortSpec, Tier, ValidPolicySet};

/// Protocol kinds a port table has a key space for.
pub(super) const KINDS: usize = 6;
/// The kind of protocols that have neither ports nor ICMP types.
pub(super) const KIND_OTHER: usize = 5;

/// The kind of IP protocol `p`: TCP, UDP, SCTP, ICMP, ICMPv6, other.
pub(super) const fn kind_of(p: u8) -> usize {
    match p {
        6 => 0,
        17 => 1,
        132 => 2,
        1 => 3,
        58 => 4,
        _ => KIND_OTHER,
    }
}

/// The outcome of a classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The connection may be set up.
    Allow,
    /// It may not.
    Deny,
}

/// A rule, by where it sits in the model: its tier, the policy's index in
/// that tier's list, and the rule's index in the policy's list for the
/// direction classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// The tier.
    pub tier: Tier,
    /// Index of the policy in its tier's list.
    pub policy: u32,
    /// Index of the rule in the policy's ingress or egress list.
    pub rule: u32,
}

/// What decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decider {
    /// A rule (Allow/Deny of a cluster policy, Allow of a NetworkPolicy).
    Rule(RuleRef),
    /// The endpoint is isolated by a NetworkPolicy and no rule allowed it.
    Isolated,
    /// No policy said anything: default allow.
    Default,
}

/// A classification's result, with what a trace and the hit counters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Allow or deny.
    pub action: Action,
    /// Which rule (or default) decided.
    pub by: Decider,
    /// The admin `Pass` rule that handed the connection down, if one did.
    pub passed_by: Option<RuleRef>,
}

/// An index into the decisions of a [`CompiledPolicy`] (read with
/// [`CompiledPolicy::decision`]): what the classifier returns, small enough
/// to keep in a conntrack entry and to index hit counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionId(pub u32);

impl DecisionId {
    /// Default allow, the decision for an endpoint no policy selects.
    pub const DEFAULT_ALLOW: DecisionId = DecisionId(0);
}

/// Bounds on what a compile may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Bytes of the compiled structure.
    pub max_bytes: usize,
    /// Units of work: one per rule visited per elementary interval or port piece.
    pub max_work: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_bytes: 512 << 20,
            max_work: 400_000_000,
        }
    }
}

/// A policy set the compiler refused; nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompileError {
    /// The compiled structure would be larger than the limit.
    #[error("the compiled policy needs more than {limit} bytes (at {at} so far); the policy set is refused whole")]
    TooLarge {
        /// Bytes counted when the compile stopped.
        at: usize,
        /// The limit.
        limit: usize,
    },
    /// Compiling would take more work than the limit (rules overlapping on
    /// too many address intervals).
    #[error("the policy set needs more than {limit} units of compile work (overlapping rules over too many address intervals); it is refused whole")]
    TooMuchWork {
        /// The limit.
        limit: u64,
    },
}

/// IPv4 peer pieces per index block: a block of `u64` pieces is one cache line.
pub(super) const BLOCK: usize = 8;

/// Where one subject group's peer lookup lies in the pools: its elementary
/// intervals of each family's peer space, ascending from address 0. Stored in
/// the endpoint map itself, so a lookup goes from the hash entry straight to
/// the intervals. An empty range (`v4.1 == 0`): no group, default allow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct GroupRef {
    pub(super) v4: (u32, u32),
    pub(super) v6: (u32, u32),
}

impl GroupRef {
    pub(super) fn is_none(&self) -> bool {
        self.v4.1 == 0
    }
}

/// Every interned port table in one pool of `u64` words. Table `t` starts
/// at word `t` with a header of [`HEADER`] words holding, per kind, where its
/// pieces end (`u32`s, relative to the end of the header); then the pieces,
/// each `first key << 32 | decision`, first keys ascending from 0 per kind.
/// The header shares its cache line with the first pieces, and the last probe
/// of the binary search reads the decision with its key.
#[derive(Debug, Clone, Default)]
pub(super) struct PortTables {
    pub(super) words: Vec<u64>,
    pub(super) count: usize,
}

/// Header words of a port table: six `u32` ends, two to a word.
pub(super) const HEADER: usize = KINDS / 2;

impl PortTables {
    /// The pieces of `kind` in the table at `t`.
    #[inline(always)]
    pub(super) fn pieces(&self, t: u32, kind: usize) -> &[u64] {
        let t = t as usize;
        let end = |k: usize| (self.words[t + k / 2] >> (32 * (k % 2))) as u32 as usize;
        let start = if kind == 0 { 0 } else { end(kind - 1) };
        let data = t + HEADER;
        &self.words[data + start..data + end(kind)]
    }
}

/// Names kept for trace and logs.
#[derive(Debug, Clone, Default)]
struct PolicyNames {
    name: String,
    rules: [Vec<String>; 2],
}

/// A policy set compiled for the classifier: immutable, shared by the
/// workers through the pipeline snapshot.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(super) endpoints_v4: HashMap<u32, [GroupRef; 2]>,
    pub(super) endpoints_v6: HashMap<u128, [GroupRef; 2]>,
    /// IPv4 peer intervals of every group: `first address << 32 | table`.
    /// A group of more than [`BLOCK`] pieces has an index before them: the
    /// first address of each block of [`BLOCK`] pieces, two `u32`s to a word,
    /// so its search reads the small index and then one block instead of
    /// probing across all its pieces.
    pub(super) v4_pieces: Vec<u64>,
    /// IPv6 peer intervals of every group: first address and table.
    pub(super) v6_pieces: Vec<(u128, u32)>,
    groups: usize,
    pub(super) tables: PortTables,
    pub(super) decisions: Vec<Decision>,
    names: [Vec<PolicyNames>; 3],
    rules: [usize; 2],
    /// This compile's stamp (see [`CompiledPolicy::stamp`]).
    stamp: u32,
}

/// The stamp the next compile gets. A process-wide counter, not a hash of the
/// set: two compiles of equal sets get two stamps, which costs the open
/// connections one re-evaluation each and nothing else, while a hash could
/// give two different sets one stamp and let a connection keep a verdict the
/// new set does not give.
static NEXT_STAMP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// What endpoints sharing a compiled group have in common: the direction, the
/// positions of the policies that select them, and (when those name ports in
/// ingress rules) their named ports.
type GroupKey = (usize, Vec<u32>, Vec<(String, u8, u16)>);

/// A rule in global rank order.
struct RankedRule {
    rref: RuleRef,
    action: ClusterAction,
}

/// What a group's sweep works on: one rule's peers (or one named-port
/// destination) with its resolved port atoms.
struct Entry<'a> {
    rank: u32,
    atoms: u32,
    peers: EntryPeers<'a>,
}

enum EntryPeers<'a> {
    Any,
    Set(&'a AddrIntervals),
    Point(IpAddr),
}

/// Port atoms `(proto, lo, hi)`, interned; `ANY_PORTS` is every protocol.
const ANY_PORTS: u32 = 0;

struct Compiler<'a> {
    set: &'a ValidPolicySet,
    limits: CompileLimits,
    work: u64,
    bytes: usize,
    /// Per direction, the rules in rank order.
    ranked: [Vec<RankedRule>; 2],
    /// Per tier and policy: its position in the global policy order.
    order: Vec<(Tier, u32)>,
    /// Per direction, per order position: the rank of the policy's first rule.
    first_rank: [Vec<u32>; 2],
    atoms: Vec<Vec<(u8, u16, u16)>>,
    atom_ids: HashMap<Vec<(u8, u16, u16)>, u32>,
    named_dir: HashMap<(&'a str, u8), Vec<(IpAddr, u16)>>,
    v4_pieces: Vec<u64>,
    v6_pieces: Vec<(u128, u32)>,
    tables: PortTables,
    table_ids: HashMap<Vec<(u32, u32)>, u32>,
    /// Scratch of the sweep, kept between groups.
    events: Vec<(u128, bool, u32)>,
    key: Vec<(u32, u32)>,
    decisions: Vec<Decision>,
    decision_ids: HashMap<Decision, u32>,
}

impl CompiledPolicy {
    /// Compiles `set` with the default [`CompileLimits`].
    ///
    /// # Errors
    /// [`CompileError`] when the result or the work would exceed the limits.
    pub fn compile(set: &ValidPolicySet) -> Result<CompiledPolicy, CompileError> {
        Self::compile_with(set, CompileLimits::default())
    }

    /// Compiles `set` within `limits`.
    ///
    /// # Errors
    /// [`CompileError`] when the result or the work would exceed the limits.
    pub fn compile_with(
        set: &ValidPolicySet,
        limits: CompileLimits,
    ) -> Result<CompiledPolicy, CompileError> {
        Compiler::new(set, limits).run()
    }

    /// A policy that allows everything: no policy at all.
    pub fn empty() -> CompiledPolicy {
        Self::compile(&ValidPolicySet::default()).expect("an empty set compiles")
    }

    /// This compile's stamp: unique among the compiles of this process, never
    /// 0. The policy stage keeps it in the conntrack entry of each connection
    /// it allows; a connection whose stamp is not the running policy's was
    /// decided by an older policy (`policy/mod.rs`).
    #[inline]
    pub fn stamp(&self) -> u32 {
        self.stamp
    }

    /// Whether any endpoint is the subject of a policy (else every
    /// classification is the default allow).
    pub fn has_subjects(&self) -> bool {
        !self.endpoints_v4.is_empty() || !self.endpoints_v6.is_empty()
    }

    /// Every subject address, in no order.
    pub fn subjects(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self
            .endpoints_v4
            .keys()
            .map(|&a| IpAddr::V4(std::net::Ipv4Addr::from_bits(a)));
        let v6 = self
            .endpoints_v6
            .keys()
            .map(|&a| IpAddr::V6(std::net::Ipv6Addr::from_bits(a)));
        v4.chain(v6)
    }

    /// The tier, policy and rule names of decision `d` in direction `dir`,
    /// for hit counters, logs and trace: `None` for the default allow and
    /// for an isolated endpoint (no rule decided).
    pub fn rule_of(&self, dir: Direction, d: &Decision) -> Option<(RuleRef, &str, &str)> {
        match d.by {
            Decider::Rule(r) => self.names(dir, r).map(|(p, n)| (r, p, n)),
            Decider::Isolated | Decider::Default => None,
        }
    }

    /// The decision behind an id the classifier returned.
    pub fn decision(&self, id: DecisionId) -> &Decision {
        &self.decisions[id.0 as usize]
    }

    /// How many distinct decisions there are (the size of a hit-counter array).
    pub fn decision_count(&self) -> usize {
        self.decisions.len()
    }

    /// The policy and rule names of `r` in direction `dir`, for trace and logs
    /// (the rule name is empty for NetworkPolicy rules and unnamed rules).
    pub fn names(&self, dir: Direction, r: RuleRef) -> Option<(&str, &str)> {
        let p = self.names[r.tier as usize].get(r.policy as usize)?;
        let rule = p.rules[dir.index()].get(r.rule as usize)?;
        Some((&p.name, rule))
    }

    /// Rules compiled, per direction (ingress, egress).
    pub fn rule_count(&self) -> [usize; 2] {
        self.rules
    }

    /// Subject groups (endpoints sharing one compiled rule list).
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// How many peer intervals the group of `subject` has in `dir` (both
    /// families; 0 for an endpoint no policy selects): the depth of its
    /// binary search is the log of this.
    pub fn peer_pieces(&self, dir: Direction, subject: IpAddr) -> usize {
        let slot = match subject {
            IpAddr::V4(a) => self.endpoints_v4.get(&a.to_bits()),
            IpAddr::V6(a) => self.endpoints_v6.get(&a.to_bits()),
        };
        slot.map_or(0, |s| {
            let g = &s[dir.index()];
            (g.v4.1 + g.v6.1) as usize
        })
    }

    /// Interned port tables.
    pub fn table_count(&self) -> usize {
        self.tables.count
    }

    /// Bytes of the compiled structure the classifier reads (the names
    /// for trace are not counted).
    pub fn memory_bytes(&self) -> usize {
        let maps = self.endpoints_v4.capacity() * (4 + 32 + 1)
            + self.endpoints_v6.capacity() * (16 + 32 + 1);
        let groups = self.v4_pieces.len() * 8 + self.v6_pieces.len() * 32;
        let tables = self.tables.words.len() * 8;
        maps + groups + tables + self.decisions.len() * std::mem::size_of::<Decision>()
    }
}

fn full_range(v6: bool) -> u128 {
    if v6 {
        u128::MAX
    } else {
        u32::MAX as u128
    }
}

impl<'a> Compiler<'a> {
    fn new(set: &'a ValidPolicySet, limits: CompileLimits) -> Self {
        let mut order: Vec<(Tier, u32)> = Vec::new();
        for tier in [Tier::Admin, Tier::Network, Tier::Baseline] {
            let list = &set.tiers[tier as usize];
            let mut idx: Vec<u32> = (0..list.len() as u32).collect();
            if tier != Tier::Network {
                idx.sort_by(|&a, &b| {
                    let (pa, pb) = (&list[a as usize], &list[b as usize]);
                    (pa.priority, &pa.name).cmp(&(pb.priority, &pb.name))
                });
            }
            order.extend(idx.into_iter().map(|i| (tier, i)));
        }
        let mut ranked: [Vec<RankedRule>; 2] = Default::default();
        let mut first_rank: [Vec<u32>; 2] = Default::default();
        for dir in Direction::ALL {
            let d = dir.index();
            for &(tier, i) in &order {
                first_rank[d].push(ranked[d].len() as u32);
                for (j, r) in set.tiers[tier as usize][i as usize].rules[d]
                    .iter()
                    .enumerate()
                {
                    ranked[d].push(RankedRule {
                        rref: RuleRef {
                            tier,
                            policy: i,
                            rule: j as u32,
                        },
                        action: r.action,
                    });
                }
            }
        }
        let mut named_dir: HashMap<(&str, u8), Vec<(IpAddr, u16)>> = HashMap::new();
        for (addr, ports) in &set.named_ports {
            for (name, proto, port) in ports {
                named_dir
                    .entry((name.as_str(), *proto))
                    .or_default()
                    .push((*addr, *port));
            }
        }
        for list in named_dir.values_mut() {
            list.sort_unstable();
        }
        let any: Vec<(u8, u16, u16)> = Vec::new();
        let mut atom_ids = HashMap::new();
        atom_ids.insert(any.clone(), ANY_PORTS);
        let default = Decision {
            action: Action::Allow,
            by: Decider::Default,
            passed_by: None,
        };
        let mut decision_ids = HashMap::new();
        decision_ids.insert(default, 0);
        Compiler {
            set,
            limits,
            work: 0,
            bytes: 0,
            ranked,
            order,
            first_rank,
            atoms: vec![any],
            atom_ids,
            named_dir,
            v4_pieces: Vec::new(),
            v6_pieces: Vec::new(),
            tables: PortTables::default(),
            table_ids: HashMap::new(),
            events: Vec::new(),
            key: Vec::new(),
            decisions: vec![default],
            decision_ids,
        }
    }

    fn spend(&mut self, work: u64) -> Result<(), CompileError> {
        self.work += work;
        if self.work > self.limits.max_work {
            return Err(CompileError::TooMuchWork {
                limit: self.limits.max_work,
            });
        }
        Ok(())
    }

    fn grow(&mut self, bytes: usize) -> Result<(), CompileError> {
        self.bytes += bytes;
        if self.bytes > self.limits.max_bytes {
            return Err(CompileError::TooLarge {
                at: self.bytes,
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn run(mut self) -> Result<CompiledPolicy, CompileError> {
        let set = self.set;
        // Subject address → positions (in `order`) of the policies selecting it.
        let mut selected: HashMap<IpAddr, Vec<u32>> = HashMap::new();
        for pos in 0..self.order.len() {
            let (tier, i) = self.order[pos];
            let p = &set.tiers[tier as usize][i as usize];
            self.spend(p.subject.len() as u64)?;
            for a in &p.subject {
                selected.entry(*a).or_default().push(pos as u32);
            }
        }
        let mut group_ids: HashMap<GroupKey, GroupRef> = HashMap::new();
        let mut endpoints_v4: HashMap<u32, [GroupRef; 2]> = HashMap::new();
        let mut endpoints_v6: HashMap<u128, [GroupRef; 2]> = HashMap::new();
        let mut addrs: Vec<&IpAddr> = selected.keys().collect();
        // A deterministic order, so group and table ids do not depend on hashing.
        addrs.sort_unstable();
        for addr in addrs {
            let positions = &selected[addr];
            let mut slot = [GroupRef::default(); 2];
            for dir in Direction::ALL {
                let d = dir.index();
                let mut relevant: Vec<u32> = Vec::new();
                let mut named = false;
                let mut isolated = false;
                for &pos in positions {
                    let (tier, i) = self.order[pos as usize];
                    let p = &set.tiers[tier as usize][i as usize];
                    if p.rules[d].is_empty() && !p.isolates[d] {
                        continue;
                    }
                    isolated |= p.isolates[d];
                    named |= dir == Direction::Ingress
                        && p.rules[d].iter().any(|r| {
                            r.ports.as_ref().is_some_and(|ps| {
                                ps.iter().any(|s| matches!(s, PortSpec::Named { .. }))
                            })
                        });
                    relevant.push(pos);
                }
                if isolated {
                    // An isolated endpoint's fate ends in the NetworkPolicy tier.
                    relevant.retain(|&pos| self.order[pos as usize].0 != Tier::Baseline);
                }
                if relevant.is_empty() {
                    continue;
                }
                let sig = if named {
                    let mut s = set.named_ports.get(addr).cloned().unwrap_or_default();
                    s.sort_unstable();
                    s
                } else {
                    Vec::new()
                };
                let key = (d, relevant, sig);
                let g = match group_ids.get(&key) {
                    Some(&g) => g,
                    None => {
                        let g = self.group(dir, &key.1, *addr, isolated)?;
                        group_ids.insert(key, g);
                        g
                    }
                };
                slot[d] = g;
            }
            if !(slot[0].is_none() && slot[1].is_none()) {
                match addr {
                    IpAddr::V4(a) => {
                        self.grow(37)?;
                        endpoints_v4.insert(a.to_bits(), slot);
                    }
                    IpAddr::V6(a) => {
                        self.grow(49)?;
                        endpoints_v6.insert(a.to_bits(), slot);
                    }
                }
            }
        }
        let names = std::array::from_fn(|t| {
            set.tiers[t]
                .iter()
                .map(|p| PolicyNames {
                    name: p.name.clone(),
                    rules: std::array::from_fn(|d| {
                        p.rules[d].iter().map(|r| r.name.clone()).collect()
                    }),
                })
                .collect()
        });
        endpoints_v4.shrink_to_fit();
        endpoints_v6.shrink_to_fit();
        Ok(CompiledPolicy {
            endpoints_v4,
            endpoints_v6,
            v4_pieces: self.v4_pieces,
            v6_pieces: self.v6_pieces,
            groups: group_ids.len(),
            tables: self.tables,
            decisions: self.decisions,
            names,
            rules: [self.ranked[0].len(), self.ranked[1].len()],
            // Never 0, the stamp of a connection no policy was consulted for
            // (a wrap after 2^32 compiles skips it).
            stamp: loop {
                let s = NEXT_STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if s != 0 {
                    break s;
                }
            },
        })
    }

    fn intern_atoms(&mut self, mut atoms: Vec<(u8, u16, u16)>) -> u32 {
        atoms.sort_unstable();
        atoms.dedup();
        if let Some(&id) = self.atom_ids.get(&atoms) {
            return id;
        }
        let id = self.atoms.len() as u32;
        self.atoms.push(atoms.clone());
        self.atom_ids.insert(atoms, id);
        id
    }

    /// Compiles one group: the policies at `positions` (ascending), for
    /// `dir`, with ingress named ports resolved on `subject`.
    fn group(
        &mut self,
        dir: Direction,
        positions: &[u32],
        subject: IpAddr,
        isolated: bool,
    ) -> Result<GroupRef, CompileError> {
        let d = dir.index();
        let set = self.set;
        let mut entries: Vec<Entry<'a>> = Vec::new();
        for &pos in positions {
            let (tier, i) = self.order[pos as usize];
            let p = &set.tiers[tier as usize][i as usize];
            let base = self.first_rank[d][pos as usize];
            self.spend(p.rules[d].len() as u64)?;
            for (j, r) in p.rules[d].iter().enumerate() {
                let rank = base + j as u32;
                let peers = match &r.peers {
                    None => EntryPeers::Any,
                    Some(s) => EntryPeers::Set(s),
                };
                let Some(ports) = &r.ports else {
                    entries.push(Entry {
                        rank,
                        atoms: ANY_PORTS,
                        peers,
                    });
                    continue;
                };
                let mut atoms = Vec::new();
                for spec in ports {
                    match spec {
                        PortSpec::Range { proto, lo, hi } => atoms.push((*proto, *lo, *hi)),
                        PortSpec::Named { proto, name } if dir == Direction::Ingress => {
                            let found = set
                                .named_ports
                                .get(&subject)
                                .and_then(|l| l.iter().find(|(n, p, _)| n == name && p == proto));
                            if let Some(&(_, _, port)) = found {
                                atoms.push((*proto, port, port));
                            }
                        }
                        PortSpec::Named { proto, name } => {
                            // Egress: the name resolves on each destination.
                            let (seen, points) = match self.named_dir.get(&(name.as_str(), *proto))
                            {
                                None => (0, Vec::new()),
                                Some(dests) => (
                                    dests.len(),
                                    dests
                                        .iter()
                                        .filter(|(addr, _)| {
                                            r.peers.as_ref().is_none_or(|s| s.contains(*addr))
                                        })
                                        .copied()
                                        .collect::<Vec<_>>(),
                                ),
                            };
                            self.spend(seen as u64)?;
                            for (addr, port) in points {
                                let atoms = self.intern_atoms(vec![(*proto, port, port)]);
                                entries.push(Entry {
                                    rank,
                                    atoms,
                                    peers: EntryPeers::Point(addr),
                                });
                            }
                        }
                    }
                }
                if !atoms.is_empty() {
                    let atoms = self.intern_atoms(atoms);
                    entries.push(Entry { rank, atoms, peers });
                }
            }
        }
        entries.sort_by_key(|e| e.rank);
        let mut g = GroupRef::default();
        let start = self.v4_pieces.len();
        let v4 = self.sweep(d, &entries, false, isolated)?;
        if v4.len() > BLOCK {
            // The index: the first address of every block of pieces, two to a word.
            for pair in v4.chunks(BLOCK).collect::<Vec<_>>().chunks(2) {
                let lo = pair[0][0].0 as u64;
                let hi = pair.get(1).map_or(0, |b| b[0].0 as u64);
                self.v4_pieces.push(hi << 32 | lo);
            }
        }
        for &(first, table) in &v4 {
            self.v4_pieces.push((first as u64) << 32 | u64::from(table));
        }
        g.v4 = (start as u32, v4.len() as u32);
        let start = self.v6_pieces.len();
        for (first, table) in self.sweep(d, &entries, true, isolated)? {
            self.v6_pieces.push((first, table));
        }
        g.v6 = (start as u32, (self.v6_pieces.len() - start) as u32);
        self.grow(g.v4.1 as usize * 8 + g.v6.1 as usize * 32)?;
        Ok(g)
    }

    /// Cuts one family's peer space at the entries' bounds; returns each
    /// piece's first address and port table, adjacent equal pieces merged.
    fn sweep(
        &mut self,
        d: usize,
        entries: &[Entry<'a>],
        v6: bool,
        isolated: bool,
    ) -> Result<Vec<(u128, u32)>, CompileError> {
        let max = full_range(v6);
        // (address, add?, entry); removals sort before additions at one address.
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let mut push = |lo: u128, hi: u128, e: u32| {
            events.push((lo, true, e));
            if hi < max {
                events.push((hi + 1, false, e));
            }
        };
        for (k, e) in entries.iter().enumerate() {
            let k = k as u32;
            match &e.peers {
                EntryPeers::Any => push(0, max, k),
                EntryPeers::Set(s) => {
                    for &(lo, hi) in if v6 { &s.v6 } else { &s.v4 } {
                        push(lo, hi, k);
                    }
                }
                EntryPeers::Point(a) => match (a, v6) {
                    (IpAddr::V4(a), false) => push(a.to_bits().into(), a.to_bits().into(), k),
                    (IpAddr::V6(a), true) => push(a.to_bits(), a.to_bits(), k),
                    _ => {}
                },
            }
        }
        events.sort_unstable();
        let mut pieces: Vec<(u128, u32)> = Vec::new();
        // Entry indices, ascending: entries are in rank order, so this is too.
        let mut active: Vec<u32> = Vec::new();
        let mut key = std::mem::take(&mut self.key);
        let mut cur = 0u128;
        let mut i = 0;
        loop {
            let next = events.get(i).map(|e| e.0);
            if next.is_none_or(|n| n > cur) {
                // The piece [cur, next) has the rules in `active`.
                self.spend(active.len() as u64 + 1)?;
                key.clear();
                // The head names the direction (ranks are per direction) and isolation.
                key.push((u32::MAX - d as u32, isolated as u32));
                for &k in &active {
                    let e = &entries[k as usize];
                    if key.last() != Some(&(e.rank, e.atoms)) {
                        key.push((e.rank, e.atoms));
                    }
                }
                let t = self.table(d, &key)?;
                if pieces.last().map(|p| p.1) != Some(t) {
                    pieces.push((cur, t));
                }
            }
            let Some(n) = next else { break };
            cur = n;
            while let Some(&(a, add, k)) = events.get(i) {
                if a != n {
                    break;
                }
                match (active.binary_search(&k), add) {
                    (Err(at), true) => active.insert(at, k),
                    (Ok(at), false) => {
                        active.remove(at);
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        self.events = events;
        self.key = key;
        Ok(pieces)
    }

    /// The interned port table of a rule list (`key[0]` carries the direction
    /// and isolation).
    fn table(&mut self, d: usize, key: &[(u32, u32)]) -> Result<u32, CompileError> {
        if let Some(&t) = self.table_ids.get(key) {
            return Ok(t);
        }
        let isolated = key[0].1 != 0;
        let t = self.tables.words.len();
        self.tables.words.extend([0; HEADER]);
        let data = t + HEADER;
        for kind in 0..KINDS {
            // The atoms of this kind, in rank order: (lo, hi, rank).
            let mut atoms: Vec<(u16, u16, u32)> = Vec::new();
            for &(rank, a) in &key[1..] {
                if a == ANY_PORTS {
                    atoms.push((0, u16::MAX, rank));
                    continue;
                }
                for &(proto, lo, hi) in &self.atoms[a as usize] {
                    if kind_of(proto) == kind {
                        atoms.push((lo, hi, rank));
                    }
                }
            }
            let mut cuts: Vec<u16> = Vec::with_capacity(atoms.len() * 2 + 1);
            cuts.push(0);
            for &(lo, hi, _) in &atoms {
                cuts.push(lo);
                if hi < u16::MAX {
                    cuts.push(hi + 1);
                }
            }
            cuts.sort_unstable();
            cuts.dedup();
            self.spend((atoms.len() + cuts.len()) as u64)?;
            // First admin rule and first later-tier rule per piece, painted in
            // rank order; `skip` jumps over painted pieces, so each piece is
            // painted once whatever the overlap.
            let n = cuts.len();
            let mut first: [Vec<u32>; 2] = [vec![u32::MAX; n], vec![u32::MAX; n]];
            let mut skip: [Vec<u32>; 2] = [(0..=n as u32).collect(), (0..=n as u32).collect()];
            for &(lo, hi, rank) in &atoms {
                let layer = usize::from(self.ranked[d][rank as usize].rref.tier != Tier::Admin);
                let a = cuts.partition_point(|&c| c < lo);
                let b = cuts.partition_point(|&c| c <= hi);
                let mut p = find(&mut skip[layer], a as u32) as usize;
                while p < b {
                    first[layer][p] = rank;
                    skip[layer][p] = p as u32 + 1;
                    p = find(&mut skip[layer], p as u32 + 1) as usize;
                }
            }
            let mut last = u32::MAX;
            for p in 0..n {
                let dec = self.decide(d, first[0][p], first[1][p], isolated);
                let id = self.intern_decision(dec);
                if id != last {
                    self.tables
                        .words
                        .push(u64::from(cuts[p]) << 32 | u64::from(id));
                    last = id;
                }
                if kind == KIND_OTHER {
                    // One key (0) only: protocols without ports.
                    break;
                }
            }
            let end = (self.tables.words.len() - data) as u64;
            self.tables.words[t + kind / 2] |= end << (32 * (kind % 2));
        }
        self.grow((self.tables.words.len() - t) * 8)?;
        let t = u32::try_from(t).map_err(|_| CompileError::TooLarge {
            at: self.bytes,
            limit: self.limits.max_bytes,
        })?;
        self.tables.count += 1;
        self.table_ids.insert(key.to_vec(), t);
        Ok(t)
    }

    /// The decision of a piece whose first admin rule is `admin` and first
    /// later-tier rule is `rest` (`u32::MAX`: none).
    fn decide(&self, d: usize, admin: u32, rest: u32, isolated: bool) -> Decision {
        let rule = |rank: u32| &self.ranked[d][rank as usize];
        let mut passed_by = None;
        if admin != u32::MAX {
            let r = rule(admin);
            match r.action {
                ClusterAction::Allow | ClusterAction::Deny => {
                    return Decision {
                        action: if r.action == ClusterAction::Allow {
                            Action::Allow
                        } else {
                            Action::Deny
                        },
                        by: Decider::Rule(r.rref),
                        passed_by: None,
                    }
                }
                ClusterAction::Pass => passed_by = Some(r.rref),
            }
        }
        if rest != u32::MAX {
            let r = rule(rest);
            return Decision {
                action: if r.action == ClusterAction::Deny {
                    Action::Deny
                } else {
                    Action::Allow
                },
                by: Decider::Rule(r.rref),
                passed_by,
            };
        }
        Decision {
            action: if isolated {
                Action::Deny
            } else {
                Action::Allow
            },
            by: if isolated {
                Decider::Isolated
            } else {
                Decider::Default
            },
            passed_by,
        }
    }

    fn intern_decision(&mut self, d: Decision) -> u32 {
        if let Some(&id) = self.decision_ids.get(&d) {
            return id;
        }
        let id = self.decisions.len() as u32;
        self.decisions.push(d);
        self.decision_ids.insert(d, id);
        id
    }
}

/// Union-find "next unpainted piece at or after `p`", with path halving.
fn find(skip: &mut [u32], mut p: u32) -> u32 {
    while skip[p as usize] != p {
        let next = skip[skip[p as usize] as usize];
        skip[p as usize] = next;
        p = next;
    }
    p
}
