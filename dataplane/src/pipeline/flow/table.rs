//! The flow table: bounded, set-associative, allocated once.
//!
//! `capacity` entries (a power of two) in buckets of [`WAYS`] ways. A bucket's
//! header — one signature and one "last used" stamp per way — is one cache
//! line, so a lookup reads one line to find the way and one or two for the
//! entry. A full bucket evicts its least recently used way (the oldest stamp;
//! the clock moves once a burst). Nothing is allocated after [`FlowTable::new`].

use super::action::Action;
use super::key::FlowKey;
use crate::buf::PacketBuf;
use crate::overlay::{NetworkId, VrfId};

/// Ways per bucket.
pub(crate) const WAYS: usize = 8;

/// What an entry's action was compiled from, besides the key: checked against
/// the snapshot's change generations when the entry is hit with an older
/// generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deps {
    /// The network the packet is switched in, and the one it is routed into
    /// (the same when not routed).
    pub(crate) nets: [NetworkId; 2],
    /// The VRF whose routes routed it.
    pub(crate) vrf: Option<VrfId>,
}

/// One flow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) key: FlowKey,
    pub(crate) action: Action,
    pub(crate) deps: Deps,
    /// The snapshot generation the entry was last validated at.
    pub(crate) generation: u64,
}

impl Entry {
    const EMPTY: Entry = Entry {
        key: FlowKey([0; super::key::WORDS]),
        action: Action {
            out: crate::port::PortIdx(0),
            kind: super::action::Kind::Switch,
            pop: false,
            route: false,
            encap: false,
            hook: 0,
            nat: super::action::Nat {
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
        },
        deps: Deps {
            nets: [NetworkId(0); 2],
            vrf: None,
        },
        generation: 0,
    };
}

/// A bucket's header: per way, the signature (0: empty) and the clock when it
/// was last used. One cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Bucket {
    sigs: [u32; WAYS],
    used: [u32; WAYS],
}

/// The table's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets whose key was found with a valid entry (applied or not: a
    /// failed guard sends a hit to the stages).
    pub hits: u64,
    /// Packets whose key was looked up and not found, or found stale.
    pub misses: u64,
    /// Entries written after the stages decided a miss.
    pub installs: u64,
    /// Entries that made room for another in a full bucket.
    pub evictions: u64,
    /// Entries of an older snapshot found still valid and restamped.
    pub revalidations: u64,
    /// Entries held (when read through the worker's state).
    pub entries: u64,
    /// Entries the table can hold.
    pub capacity: u64,
}

/// The flow table (see the module docs).
pub(crate) struct FlowTable {
    buckets: Box<[Bucket]>,
    entries: Box<[Entry]>,
    /// Buckets - 1.
    mask: usize,
    clock: u32,
    live: usize,
    pub(crate) stats: FlowStats,
}

impl FlowTable {
    /// A table of `capacity` entries rounded up to a power of two (0: a table
    /// that holds nothing, every lookup misses).
    pub(crate) fn new(capacity: usize) -> Self {
        let buckets = if capacity == 0 {
            0
        } else {
            capacity.next_power_of_two().max(WAYS) / WAYS
        };
        FlowTable {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            entries: vec![Entry::EMPTY; buckets * WAYS].into_boxed_slice(),
            mask: buckets.saturating_sub(1),
            clock: 0,
            live: 0,
            stats: FlowStats::default(),
        }
    }

    /// Entries it can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Entries it holds.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Forgets every entry (the counters stay).
    pub(crate) fn clear(&mut self) {
        if self.live > 0 {
            self.buckets.fill(Bucket::default());
            self.live = 0;
        }
    }

    /// Moves the clock "last used" stamps are taken from: once a burst.
    #[inline(always)]
    pub(crate) fn tick(&mut self) {
        self.clock = self.clock.wrapping_add(1);
    }

    #[inline(always)]
    fn sig(hash: u64) -> u32 {
        (hash >> 32) as u32 | 1
    }

    /// Starts loading the bucket of `hash`.
    #[inline(always)]
    pub(crate) fn prefetch<B: PacketBuf>(&self, hash: u64) {
        if let Some(b) = self.buckets.get(hash as usize & self.mask) {
            B::prefetch_addr((b as *const Bucket).cast::<u8>());
        }
    }

    /// The index of `key`'s entry (whose hash is `hash`), if the table holds it.
    #[inline(always)]
    pub(crate) fn find(&self, key: &FlowKey, hash: u64) -> Option<usize> {
        let b = hash as usize & self.mask;
        let bucket = self.buckets.get(b)?;
        let sig = Self::sig(hash);
        for w in 0..WAYS {
            if bucket.sigs[w] == sig {
                let i = b * WAYS + w;
                if self.entries[i].key == *key {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The entry at `i` (from [`find`](Self::find)).
    #[inline(always)]
    pub(crate) fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// Marks the entry at `i` used now: once per run of a burst's frames
    /// that hit it.
    #[inline(always)]
    pub(crate) fn touch(&mut self, i: usize) {
        if let Some(b) = self.buckets.get_mut(i / WAYS) {
            b.used[i % WAYS] = self.clock;
        }
    }

    /// The entry at `i`, to restamp or count.
    #[inline(always)]
    pub(crate) fn entry_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.entries[i]
    }

    /// Writes the entry for `key` (hash `hash`): over its own if the table holds
    /// it, else into a free way of its bucket, else over the bucket's least
    /// recently used way (counted as an eviction). Returns its index; `None`
    /// for a table of capacity 0.
    pub(crate) fn install(
        &mut self,
        key: FlowKey,
        hash: u64,
        mut action: Action,
        deps: Deps,
        generation: u64,
    ) -> Option<usize> {
        action.kind = if action.nat.side != 0 {
            // The rewrite's parts one by one: its hits all take the hook's pass.
            super::action::Kind::Other
        } else {
            super::action::Kind::of(action.pop, action.route, action.encap)
        };
        let b = hash as usize & self.mask;
        let sig = Self::sig(hash);
        let i = match self.find(&key, hash) {
            Some(i) => i,
            None => {
                let bucket = self.buckets.get_mut(b)?;
                let way = match bucket.sigs.iter().position(|&s| s == 0) {
                    Some(w) => {
                        self.live += 1;
                        w
                    }
                    None => {
                        // The oldest stamp, read as an age so the clock may wrap.
                        let clock = self.clock;
                        let w = (0..WAYS)
                            .max_by_key(|&w| clock.wrapping_sub(bucket.used[w]))
                            .unwrap_or(0);
                        self.stats.evictions += 1;
                        w
                    }
                };
                bucket.sigs[way] = sig;
                b * WAYS + way
            }
        };
        self.buckets[b].used[i % WAYS] = self.clock;
        self.entries[i] = Entry {
            key,
            action,
            deps,
            generation,
        };
        self.stats.installs += 1;
        Some(i)
    }
}
