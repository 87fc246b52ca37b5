//! The flow table: bounded, set-associative, allocated once.
//!
//! `capacity` entries (a power of two) in buckets of [`WAYS`] ways. A bucket's
//! header — one signature and one "last used" stamp per way — is one cache
//! line, so a lookup reads one line to find the way and one or two for the
//! entry. A full bucket evicts its least recently used way (the oldest stamp;
//! the clock moves once a burst). Nothing is allocated after [`FlowTable::new`].
//!
//! **Admission under thrash.** When the flows outnumber the table (a million
//! flows through 65,536 entries), nearly every lookup misses and every miss
//! would install over the least recently used way: a second cold line written
//! per packet for an entry evicted before its flow comes back. So the table
//! watches its hit rate over windows of [`WINDOW`] lookups, counted once a burst
//! ([`FlowTable::observe`]: no work on a hit); while a window's hit rate is below
//! 1/[`THROTTLE_BELOW`], a new key is admitted with probability
//! 1/[`ADMIT_ONE_IN`] and the others are counted as `skipped_installs`. A
//! rewrite of a key already held is always done (its line is the one the
//! lookup read).
//!
//! The draw is a per-table xorshift, not a subset of the key's hash. A hash
//! subset would cache a stable 1/N of a cyclic replay (a benchmark's shape),
//! but it would also keep an elephant whose hash falls outside the subset on the
//! stages for as long as the mice keep the hit rate low — and a flood of mice
//! (a scan, a SYN flood) is what makes a real table thrash. With a random draw
//! every flow gets in after about N misses, and a flow that comes back before
//! its way is reused stays: its hits refresh its stamp, while the admitted mice
//! age out. Under a cyclic replay it still caches about as much as a subset
//! would (the admitted flows live about as long as the table takes to fill).
//!
//! **Lookup bypass.** A throttled table's hits are too few to pay for the
//! lookups that miss (the key, its hash and a cold bucket read for each
//! frame): at 1M flows through 65,536 entries the lookups alone made the
//! switch slower than no table. So while throttled, [`SAMPLE_EVERY`] - 1
//! bursts in [`SAMPLE_EVERY`] skip the table and run the stages, as a table of
//! capacity 0 does (`bypassed`, counted in packets); the sampled bursts look
//! up, install and fill the windows, so the hit rate is still measured and an
//! elephant still gets in (it then hits in the sampled bursts only, no slower
//! than without a table in the others).
//!
//! A throttled table probes: every [`PROBE_EVERY`]th window it admits every
//! miss again and looks up every burst: traffic of short flows (two or three
//! packets each) hits well only when every miss installs, so a window with
//! full admission is what shows that throttling is not needed any more.

use super::action::Action;
use super::key::FlowKey;
use crate::buf::PacketBuf;
use crate::overlay::{NetworkId, VrfId};

/// Ways per bucket.
pub(crate) const WAYS: usize = 8;

/// Lookups per window over which the hit rate is measured.
pub(crate) const WINDOW: u32 = 1024;

/// A window whose hit rate is below 1/this throttles admission.
pub(crate) const THROTTLE_BELOW: u32 = 8;

/// A throttled table admits one new key in this many (on average).
pub(crate) const ADMIT_ONE_IN: u32 = 32;

/// A throttled table admits every miss for one window in this many.
pub(crate) const PROBE_EVERY: u32 = 64;

/// A throttled table is looked up for one burst in this many.
pub(crate) const SAMPLE_EVERY: u32 = 16;

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
    /// Misses the stages decided but the table did not install: admission was
    /// throttled (a low hit rate, see the module docs).
    pub skipped_installs: u64,
    /// Entries of an older snapshot found still valid and restamped.
    pub revalidations: u64,
    /// Packets that skipped the table for the stages while throttled (see
    /// the module docs: lookup bypass).
    pub bypassed: u64,
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
    /// Admission (see the module docs): the current window's lookups and hits,
    /// windows since the last probe, whether new keys are admitted one in
    /// [`ADMIT_ONE_IN`], and the draw's state.
    window_lookups: u32,
    window_hits: u32,
    windows: u32,
    throttled: bool,
    rng: u32,
    /// Bursts since the last sampled one, while throttled.
    skipped_bursts: u32,
    /// Tests: admission stays throttled whatever the hit rate.
    #[cfg(test)]
    pinned: bool,
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
            window_lookups: 0,
            window_hits: 0,
            windows: 0,
            throttled: false,
            // Any non-zero seed: xorshift never leaves zero.
            rng: 0x9e37_79b9,
            skipped_bursts: 0,
            #[cfg(test)]
            pinned: false,
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

    /// Counts a burst's lookups: `hits` found, `misses` not. Once a burst, not
    /// per packet, so a hit costs nothing more. At the end of each window,
    /// decides whether the next one admits every miss.
    #[inline(always)]
    pub(crate) fn observe(&mut self, hits: u64, misses: u64) {
        self.stats.hits += hits;
        self.stats.misses += misses;
        // A burst is at most 32 lookups: the sums stay far from overflow.
        self.window_hits += hits as u32;
        self.window_lookups += (hits + misses) as u32;
        if self.window_lookups >= WINDOW {
            self.end_window();
        }
    }

    #[cold]
    #[inline(never)]
    fn end_window(&mut self) {
        let low = self.window_hits.saturating_mul(THROTTLE_BELOW) < self.window_lookups;
        self.windows = self.windows.wrapping_add(1);
        // A throttled table probes: the next window admits everything, and its
        // own hit rate decides.
        self.throttled = low && !self.windows.is_multiple_of(PROBE_EVERY);
        #[cfg(test)]
        {
            self.throttled |= self.pinned;
        }
        self.window_hits = 0;
        self.window_lookups = 0;
    }

    /// Whether a burst of `n` frames skips the table for the stages (counted):
    /// while throttled, all but one burst in [`SAMPLE_EVERY`]. One load and
    /// one branch a burst otherwise.
    #[inline(always)]
    pub(crate) fn bypass(&mut self, n: usize) -> bool {
        if !self.throttled {
            return false;
        }
        self.skipped_bursts += 1;
        if self.skipped_bursts >= SAMPLE_EVERY {
            self.skipped_bursts = 0;
            return false;
        }
        self.stats.bypassed += n as u64;
        true
    }

    /// Tests: throttles admission from now on, whatever the hit rate.
    #[cfg(test)]
    pub(crate) fn pin_throttled(&mut self) {
        self.pinned = true;
        self.throttled = true;
    }

    /// Whether new keys are admitted one in [`ADMIT_ONE_IN`] (a low hit rate).
    #[cfg(test)]
    pub(crate) fn throttled(&self) -> bool {
        self.throttled
    }

    /// Whether a new key may take a way: always, unless throttled; then one
    /// draw in [`ADMIT_ONE_IN`].
    #[inline(always)]
    fn admit(&mut self) -> bool {
        if !self.throttled {
            return true;
        }
        // xorshift32 (Marsaglia): three shifts, no multiply.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x.is_multiple_of(ADMIT_ONE_IN)
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
    /// recently used way (counted as an eviction). A new key is not written
    /// while admission is throttled and its draw fails (counted in
    /// `skipped_installs`). Returns its index; `None` for a table of capacity
    /// 0 or a key not admitted.
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
                if self.buckets.is_empty() {
                    return None;
                }
                if !self.admit() {
                    self.stats.skipped_installs += 1;
                    return None;
                }
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
