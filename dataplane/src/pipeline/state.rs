//! A worker's state that survives a snapshot swap: the flow table and its
//! templates and the conntrack shard, beside the parse space.
//!
//! What is kept across a swap, and how it is revalidated:
//! - **Flow entries**: kept. Each is checked, when hit with a newer snapshot,
//!   against the generations at which the networks and the VRF it depends on
//!   last changed (`flow/mod.rs`): restamped if none did, else the packet runs
//!   the stages and the entry is reinstalled.
//! - **Templates**: kept; one is used only if built at or after its network's
//!   (or the global) change generation, and with the current underlay
//!   neighbour map.
//! - **Conntrack shard**: kept, whatever the snapshot: connections are the
//!   hosts' state, not the configuration's. Its table is allocated when the
//!   first snapshot with a tracked network is bound.
//! - **Route cache** (in [`Scratch`]): emptied, as before; it only spares the
//!   stages' slow path some lookups.
//! - Everything is forgotten when the new snapshot cannot be compared with the
//!   old: an older or equal generation that is another snapshot (tests build
//!   such), or another parse configuration (the tunnel ports decide what a
//!   key means).

use std::sync::Arc;

use super::conntrack::{CtConfig, CtShard};
use super::flow::table::FlowTable;
use super::flow::template::Templates;
use super::flow::{FlowStats, DEFAULT_FLOW_ENTRIES};
use super::{Pipeline, Scratch};

/// A worker's state (see the module docs). `!Sync` by use: one per worker.
pub struct WorkerState {
    pub(crate) scratch: Scratch,
    pub(crate) flows: FlowTable,
    pub(crate) templates: Templates,
    /// Whether the flow table is looked up and filled (it is; tests turn it
    /// off to get the stages' answer alone as the reference).
    pub(crate) use_flows: bool,
    /// The conntrack shard.
    pub(crate) ct: CtShard,
    bound: Option<Arc<Pipeline>>,
}

impl Default for WorkerState {
    fn default() -> Self {
        WorkerState::new()
    }
}

impl std::fmt::Debug for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerState")
            .field("flows", &self.flows.live())
            .field("templates", &self.templates.live())
            .finish_non_exhaustive()
    }
}

impl WorkerState {
    /// State with a flow table of the default size.
    pub fn new() -> Self {
        WorkerState::with_flow_entries(DEFAULT_FLOW_ENTRIES)
    }

    /// State with a flow table of `entries` entries (rounded up to a power of
    /// two; 0: no flow table, every packet runs the stages).
    pub fn with_flow_entries(entries: usize) -> Self {
        WorkerState {
            scratch: Scratch::new(),
            flows: FlowTable::new(entries),
            templates: Templates::new(),
            use_flows: entries > 0,
            // A small table for states made in passing (tests, one-off
            // packets): the worker sets its own with `with_conntrack`.
            ct: CtShard::new(CtConfig {
                capacity: 1024,
                ..CtConfig::default()
            }),
            bound: None,
        }
    }

    /// Makes `snap` the snapshot the next packets are processed with (see the
    /// module docs for what is kept). The worker calls it once a round.
    pub fn bind(&mut self, snap: &Arc<Pipeline>) {
        if let Some(old) = &self.bound {
            if Arc::ptr_eq(old, snap) {
                return;
            }
            let comparable =
                snap.overlay.generation() > old.overlay.generation() && snap.parse == old.parse;
            if !comparable {
                self.flows.clear();
                self.templates.clear();
            }
        }
        // A network with a service or a policy subject is tracked too
        // (`conntrack::tracked`).
        let tracks = !snap.services.is_empty()
            || snap.policed_any()
            || snap.overlay.networks().iter().any(|n| n.conntrack);
        if !self.ct.allocated() && tracks {
            self.ct.allocate();
        }
        self.ct.policy.bind(&snap.policy);
        self.scratch.bind(snap);
        self.bound = Some(Arc::clone(snap));
    }

    /// Gives the state a conntrack shard with `config` (its table allocated
    /// when a tracked network appears).
    pub fn with_conntrack(mut self, config: CtConfig) -> Self {
        let policy = std::mem::take(&mut self.ct.policy);
        self.ct = CtShard::new(config);
        self.ct.policy = policy;
        self
    }

    /// Reports the policy stage's hit counters and denied connections to
    /// `obs` (the daemon's, shared by its workers).
    pub fn with_policy_observer(mut self, obs: Arc<super::policy::PolicyObserver>) -> Self {
        self.ct.policy = super::policy::PolicyWorker::observed(obs);
        self
    }

    /// The conntrack shard.
    pub fn conntrack(&self) -> &CtShard {
        &self.ct
    }

    /// The conntrack shard, to expire or flush.
    pub fn conntrack_mut(&mut self) -> &mut CtShard {
        &mut self.ct
    }

    /// Forgets every entry, template and the bound snapshot.
    pub fn clear(&mut self) {
        self.flows.clear();
        self.templates.clear();
        self.scratch.clear();
        self.bound = None;
    }

    /// The flow table's counters, with the entries it holds and can hold.
    pub fn flow_stats(&self) -> FlowStats {
        FlowStats {
            entries: self.flows.live() as u64,
            capacity: self.flows.capacity() as u64,
            ..self.flows.stats
        }
    }

    /// Entries the flow table holds, and can hold.
    pub fn flow_entries(&self) -> (usize, usize) {
        (self.flows.live(), self.flows.capacity())
    }
}
