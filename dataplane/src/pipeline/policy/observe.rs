//! What the policy stage lets operators see: per-rule hit counters and the
//! log of denied connections.
//!
//! # Hit counters
//! Each worker counts its classifications in a [`HitBlock`] of its own, one
//! counter per (direction, [`DecisionId`]) of the compiled policy it runs:
//! a counter is written by its one worker with a plain load and store
//! (`Relaxed`, no read-modify-write, no shared line with another writer),
//! as the worker's other counters are (`crate::stats`). A policy change
//! gives the worker a new block (in [`PolicyWorker::bind`], once per
//! snapshot, never per packet) and registers it with the daemon's
//! [`PolicyObserver`]. The control thread sums the blocks by *rule* (tier,
//! policy name, direction, rule index), not by decision id: ids mean nothing
//! across compiles, rules keep their names. A block its worker has let go
//! is folded into a running sum by rule and dropped, so counts survive
//! policy writes and the registry does not grow with them.
//!
//! # Denied connections
//! A denied connection is logged as a [`DenyEvent`]: the policy it was
//! classified with (shared, so names are read when the log is), the
//! direction, the decision, the connection and the time. Logging is
//! rate-limited per worker ([`LOG_PER_SECOND`] a second; the rest are
//! counted as suppressed) and never waits: the worker `try_lock`s the
//! observer's ring of the last [`LOG_KEEP`] events, allocated whole at
//! start, and counts the event as suppressed when the control thread holds
//! it. A flood of denied packets therefore costs the worker a counter each
//! beyond the first hundred a second.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::classify::Connection;
use super::compile::{Action, CompiledPolicy, Decider, Decision, DecisionId};
use super::model::{Direction, Tier};

/// Denied connections a worker logs per second at most.
pub const LOG_PER_SECOND: u32 = 100;

/// Denied connections the observer keeps, newest last.
pub const LOG_KEEP: usize = 1024;

/// One worker's hit counters for one compiled policy (module docs).
#[derive(Debug)]
pub struct HitBlock {
    policy: Arc<CompiledPolicy>,
    /// `[ingress ids…, egress ids…]`.
    hits: Box<[AtomicU64]>,
}

impl HitBlock {
    fn new(policy: &Arc<CompiledPolicy>) -> Self {
        let n = 2 * policy.decision_count();
        HitBlock {
            policy: Arc::clone(policy),
            hits: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn count(&self, dir: Direction, id: DecisionId) {
        let i = dir.index() * self.policy.decision_count() + id.0 as usize;
        if let Some(c) = self.hits.get(i) {
            // One writer: a load and a store, no locked add.
            c.store(c.load(Relaxed) + 1, Relaxed);
        }
    }

    /// Adds this block's counts, by rule, into `into`.
    fn fold(&self, into: &mut HashMap<RuleKey, u64>) {
        let n = self.policy.decision_count();
        for dir in Direction::ALL {
            for id in 0..n {
                let h = self.hits[dir.index() * n + id].load(Relaxed);
                if h == 0 {
                    continue;
                }
                let d = self.policy.decision(DecisionId(id as u32));
                for key in rule_keys(&self.policy, dir, d).into_iter().flatten() {
                    *into.entry(key).or_default() += h;
                }
            }
        }
    }
}

/// What hit counters are summed by: a rule, or a direction's isolation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    /// The tier.
    pub tier: Tier,
    /// The policy's name; empty for `rule: None`.
    pub policy: String,
    /// Ingress or egress (0, 1).
    pub direction: u8,
    /// The rule's index in the policy's list for the direction; `None`:
    /// connections denied because a NetworkPolicy isolates their endpoint and
    /// no rule allowed them (no one policy decided).
    pub rule: Option<u32>,
    /// The rule's name (cluster policies), empty otherwise.
    pub rule_name: String,
}

/// The rules a decision counts for: the deciding rule (or the isolation),
/// and the admin `Pass` rule that handed it down.
fn rule_keys(p: &CompiledPolicy, dir: Direction, d: &Decision) -> [Option<RuleKey>; 2] {
    let key = |r: super::compile::RuleRef| {
        p.names(dir, r).map(|(policy, rule)| RuleKey {
            tier: r.tier,
            policy: policy.to_owned(),
            direction: dir.index() as u8,
            rule: Some(r.rule),
            rule_name: rule.to_owned(),
        })
    };
    let by = match d.by {
        Decider::Rule(r) => key(r),
        Decider::Isolated => Some(RuleKey {
            tier: Tier::Network,
            policy: String::new(),
            direction: dir.index() as u8,
            rule: None,
            rule_name: String::new(),
        }),
        Decider::Default => None,
    };
    [by, d.passed_by.and_then(key)]
}

/// A denied connection (module docs).
#[derive(Debug, Clone)]
pub struct DenyEvent {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The policy that classified it.
    pub policy: Arc<CompiledPolicy>,
    /// The direction whose check denied it.
    pub direction: Direction,
    /// The decision.
    pub decision: DecisionId,
    /// The connection as classified: after DNAT, the backend is the
    /// destination and its target port the port.
    pub conn: Connection,
    /// The source port (0 for ICMP and protocols without ports).
    pub sport: u16,
    /// The address and port the client sent to, when the LB translated
    /// them (a service frontend).
    pub frontend: Option<(IpAddr, u16)>,
    /// The network's VNI.
    pub vni: u32,
}

/// A rule by name: the policy's, its index and its own name.
pub type NamedRule<'a> = (&'a str, Option<u32>, &'a str);

impl DenyEvent {
    /// The tier, policy and rule that denied it; `None` for the policy of
    /// a denial by isolation (no one policy decided).
    pub fn decided_by(&self) -> (Tier, Option<NamedRule<'_>>) {
        let d = self.policy.decision(self.decision);
        match d.by {
            Decider::Rule(r) => (
                r.tier,
                self.policy
                    .names(self.direction, r)
                    .map(|(p, n)| (p, Some(r.rule), n)),
            ),
            Decider::Isolated | Decider::Default => (Tier::Network, None),
        }
    }
}

/// Rule hits as the control thread reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHits {
    /// The rule.
    pub key: RuleKey,
    /// Connections it decided (or, for an admin `Pass`, handed down), summed
    /// over workers and over the policy sets that held the rule.
    pub hits: u64,
}

/// What the workers share with the control thread about policy: the hit
/// blocks and the log (module docs). One per daemon.
#[derive(Debug)]
pub struct PolicyObserver {
    blocks: Mutex<Vec<Arc<HitBlock>>>,
    retired: Mutex<HashMap<RuleKey, u64>>,
    log: Mutex<VecDeque<DenyEvent>>,
    logged: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for PolicyObserver {
    fn default() -> Self {
        PolicyObserver::new()
    }
}

impl PolicyObserver {
    /// An observer with no blocks and an empty log (its ring allocated now).
    pub fn new() -> Self {
        PolicyObserver {
            blocks: Mutex::new(Vec::new()),
            retired: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::with_capacity(LOG_KEEP)),
            logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Adds a worker's new block, and folds the blocks no worker holds any
    /// more (a worker lets its old one go before it registers the new):
    /// without the fold here, a daemon whose hits nobody reads would keep
    /// every policy set it ever ran, each block holding its compiled
    /// policy. Runs on the worker, once per policy change, never per packet.
    fn register(&self, block: &Arc<HitBlock>) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.iter().any(|b| Arc::strong_count(b) == 1) {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retire(&mut blocks, &mut retired);
        }
        blocks.push(Arc::clone(block));
    }

    /// Hits per rule, summed over the workers and over time; sorted by tier,
    /// policy, direction and rule. A block no worker holds any more is
    /// folded into the running sums here (module docs).
    pub fn rule_hits(&self) -> Vec<RuleHits> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retire(&mut blocks, &mut retired);
        let mut sum = retired.clone();
        for b in blocks.iter() {
            b.fold(&mut sum);
        }
        drop(blocks);
        drop(retired);
        let mut out: Vec<RuleHits> = sum
            .into_iter()
            .map(|(key, hits)| RuleHits { key, hits })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The denied connections kept, oldest first, and how many were logged
    /// and suppressed since start.
    pub fn denied(&self) -> (Vec<DenyEvent>, u64, u64) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        (
            log.iter().cloned().collect(),
            self.logged.load(Relaxed),
            self.suppressed.load(Relaxed),
        )
    }

    fn push(&self, ev: DenyEvent) -> bool {
        let Ok(mut log) = self.log.try_lock() else {
            return false;
        };
        if log.len() == LOG_KEEP {
            log.pop_front();
        }
        log.push_back(ev);
        self.logged.fetch_add(1, Relaxed);
        true
    }
}

/// Folds the blocks only `blocks` holds into `retired`, and drops them.
fn retire(blocks: &mut Vec<Arc<HitBlock>>, retired: &mut HashMap<RuleKey, u64>) {
    blocks.retain(|b| {
        if Arc::strong_count(b) == 1 {
            b.fold(retired);
            false
        } else {
            true
        }
    });
}

/// The policy stage's per-worker state: the hit block of the policy the
/// worker runs, and the log's rate limit.
#[derive(Debug, Default)]
pub struct PolicyWorker {
    block: Option<Arc<HitBlock>>,
    obs: Option<Arc<PolicyObserver>>,
    window: u64,
    in_window: u32,
}

impl PolicyWorker {
    /// State that reports to `obs`.
    pub fn observed(obs: Arc<PolicyObserver>) -> Self {
        PolicyWorker {
            obs: Some(obs),
            ..PolicyWorker::default()
        }
    }

    /// Takes a new hit block when `policy` is not the one counted for (once
    /// a snapshot: the worker's bind). No block while no policy has a subject.
    pub fn bind(&mut self, policy: &Arc<CompiledPolicy>) {
        let current = self
            .block
            .as_ref()
            .is_some_and(|b| b.policy.stamp() == policy.stamp());
        if current {
            return;
        }
        self.block = None;
        if !policy.has_subjects() {
            return;
        }
        let block = Arc::new(HitBlock::new(policy));
        if let Some(obs) = &self.obs {
            obs.register(&block);
        }
        self.block = Some(block);
    }

    /// Counts a classification.
    #[inline]
    pub(crate) fn hit(&self, dir: Direction, id: DecisionId) {
        if let Some(b) = &self.block {
            b.count(dir, id);
        }
    }

    /// Logs a denied connection at `now_ms` (the worker's clock), within the
    /// rate limit. `make` builds the event only when it is kept.
    #[cold]
    pub(crate) fn denied(&mut self, now_ms: u64, make: impl FnOnce() -> DenyEvent) {
        let Some(obs) = &self.obs else {
            return;
        };
        if now_ms / 1000 != self.window {
            self.window = now_ms / 1000;
            self.in_window = 0;
        }
        if self.in_window >= LOG_PER_SECOND || !obs.push(make()) {
            obs.suppressed.fetch_add(1, Relaxed);
            return;
        }
        self.in_window += 1;
    }
}

/// The action a decision id stands for.
#[inline]
pub(crate) fn allows(p: &CompiledPolicy, id: DecisionId) -> bool {
    id == DecisionId::DEFAULT_ALLOW || p.decision(id).action == Action::Allow
}
