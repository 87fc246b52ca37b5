//! A read-mostly hash map from 48-bit keys (MAC addresses) to 16-bit values, one
//! `u64` per entry: the classic L2 stage's MAC table, and each overlay network's.
//!
//! Why not [`FlatMap`](crate::flatmap::FlatMap): there a slot is a `u64` key and
//! its value side by side, 16 bytes, and the table is kept at most half full, so a
//! 64-byte line holds one or two keys. With 100k MACs that is a 4 MiB table, and
//! each of its lines is read again only after the worker has streamed about twelve
//! megabytes of packets and other lines through the caches: most lookups miss
//! the core's caches. Here key and value share one word and the table is filled to 80%,
//! so a line holds six keys or so and the same 100k MACs take 1 MiB, a quarter of
//! the lines, each read four times as often: far more of them are still cached
//! when they are read again. A lookup costs a mask and a shift more than in
//! `FlatMap`.
//!
//! The keys must be below 2^48 and not all ones (a unicast MAC never is: its I/G
//! bit is clear), so an empty slot, all ones, matches no key. The multiplier is a
//! random odd number per map, drawn again when the keys cluster under it, as in
//! `FlatMap` ([`flatmap::clustered`]). Tables are built once per snapshot and then
//! only read; a write that changes a few endpoints copies its network's table and
//! [`remove`](DenseMap::remove)s from the copy (backward-shift deletion: no
//! tombstones, so a lookup never probes further than in a freshly built table).

use crate::buf::PacketBuf;
use crate::flatmap;

/// An empty slot: its key bits are all ones, which no key is.
const EMPTY: u64 = u64::MAX;
/// The largest key bits: no key is this large (it is an empty slot's).
const KEY_MASK: u64 = (1 << 48) - 1;

/// A slot holding `key` and `value`: the key in the top 48 bits, so a slot's key
/// is one shift away (`s >> 16`), compared with no mask to keep in a register.
#[inline(always)]
const fn slot(key: u64, value: u16) -> u64 {
    key << 16 | value as u64
}

/// An open-addressing (linear probing) map from 48-bit keys to `u16`, one word per
/// entry, at most 80% full.
#[derive(Clone, Debug)]
pub struct DenseMap {
    /// `key << 16 | value` ([`slot`]), or [`EMPTY`].
    slots: Box<[u64]>,
    /// 64 minus log2 of the slot count: the product's top bits pick the slot.
    shift: u32,
    mul: u64,
    len: usize,
    /// Slots the keys sit past their home slots, in all ([`flatmap::clustered`]).
    displacement: usize,
    /// Multipliers drawn again at this size ([`flatmap::MAX_REDRAWS`]).
    redraws: u8,
}

/// A key [`DenseMap`] cannot hold: 48 bits or more, or all ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key {0:#x} is not a 48-bit key below 0xffff_ffff_ffff")]
pub struct BadKey(pub u64);

impl Default for DenseMap {
    fn default() -> Self {
        DenseMap::with_capacity(0)
    }
}

impl DenseMap {
    /// An empty map with room for `n` keys before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Self::empty(slots_for(n), flatmap::random_odd(), 0)
    }

    fn empty(slots: usize, mul: u64, redraws: u8) -> Self {
        DenseMap {
            slots: vec![EMPTY; slots].into_boxed_slice(),
            shift: 64 - slots.trailing_zeros(),
            mul,
            len: 0,
            displacement: 0,
            redraws,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: u64, value: u16) -> Result<Option<u16>, BadKey> {
        if key >= KEY_MASK {
            return Err(BadKey(key));
        }
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            // The same multiplier over twice the slots, and a fresh budget of
            // redraws for the new size (`flatmap::MAX_REDRAWS`).
            self.rebuild(self.slots.len() * 2, self.mul);
            self.redraws = 0;
        }
        let old = self.place(key, value);
        if old.is_none() {
            while self.redraws < flatmap::MAX_REDRAWS
                && flatmap::clustered(self.len, self.slots.len(), self.displacement)
            {
                self.redraws += 1;
                self.rebuild(self.slots.len(), flatmap::random_odd());
            }
        }
        Ok(old)
    }

    /// Puts `key` (a valid key) in its slot; the slots have room.
    fn place(&mut self, key: u64, value: u16) -> Option<u16> {
        let mask = self.slots.len() - 1;
        let home = self.reader().home(key);
        let mut i = home;
        loop {
            let s = &mut self.slots[i & mask];
            if *s == EMPTY {
                *s = slot(key, value);
                self.len += 1;
                self.displacement += i - home;
                return None;
            }
            if *s >> 16 == key {
                let old = *s as u16;
                *s = slot(key, value);
                return Some(old);
            }
            i += 1;
        }
    }

    /// Removes `key`; returns its value. The keys after it in its run move back
    /// into the hole (Knuth's algorithm R for linear probing), so the table is as
    /// if `key` had never been inserted.
    pub fn remove(&mut self, key: u64) -> Option<u16> {
        if key >= KEY_MASK {
            return None;
        }
        let mask = self.slots.len() - 1;
        let home = self.reader().home(key);
        let mut i = home;
        loop {
            let s = self.slots[i & mask];
            if s == EMPTY {
                return None;
            }
            if s >> 16 == key {
                break;
            }
            i += 1;
        }
        let old = self.slots[i & mask] as u16;
        self.len -= 1;
        self.displacement -= i - home;
        let mut hole = i;
        let mut j = i + 1;
        loop {
            let s = self.slots[j & mask];
            if s == EMPTY {
                break;
            }
            // The key at j may fill the hole when its home is not between the
            // hole and j: its distance from home is at least the hole's distance.
            let from_home = j.wrapping_sub(self.reader().home(s >> 16)) & mask;
            if from_home >= j - hole {
                self.slots[hole & mask] = s;
                self.displacement -= j - hole;
                hole = j;
            }
            j += 1;
        }
        self.slots[hole & mask] = EMPTY;
        Some(old)
    }

    /// Moves every key into `slots` slots, hashed with `mul`.
    fn rebuild(&mut self, slots: usize, mul: u64) {
        let mut fresh = DenseMap::empty(slots, mul, self.redraws);
        for (k, v) in self.iter() {
            fresh.place(k, v);
        }
        *self = fresh;
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u16> {
        self.reader().get(key)
    }

    /// The map as a burst loop reads it: the few fields a lookup needs, copied out
    /// so they stay in registers across the loop instead of being reloaded through
    /// `&self` for every frame.
    #[inline]
    pub fn reader(&self) -> DenseReader<'_> {
        DenseReader {
            slots: &self.slots,
            mul: self.mul,
            shift: self.shift,
        }
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s != EMPTY)
            .map(|&s| (s >> 16, s as u16))
    }
}

/// A [`DenseMap`] for reading, from [`DenseMap::reader`].
#[derive(Clone, Copy)]
pub struct DenseReader<'a> {
    slots: &'a [u64],
    mul: u64,
    shift: u32,
}

/// The slots of [`DenseReader::EMPTY`].
static NO_SLOTS: [u64; 8] = [EMPTY; 8];

impl DenseReader<'_> {
    /// A reader of no map, in which every lookup misses: for a caller with no
    /// table to read (a network id a snapshot did not hand out) that still wants
    /// a reader, not an `Option` to test per frame.
    pub const EMPTY: DenseReader<'static> = DenseReader {
        slots: &NO_SLOTS,
        mul: 1,
        shift: 64 - NO_SLOTS.len().trailing_zeros(),
    };

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(self.mul) >> self.shift) as usize
    }

    /// The value of `key` (any `u64`: one of 48 bits or more is never found).
    /// Always inlined: in the decapsulation loop the compiler had left it a call,
    /// 12 instructions per packet of call and register shuffling (counted under
    /// callgrind: vxlan-decap at 1k flows, 440.6 -> 428.8).
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u16> {
        if key >= KEY_MASK {
            return None;
        }
        let slots = self.slots;
        let mask = slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let s = *slots.get(i & mask)?;
            // An empty slot's key bits are all ones: no key's (checked above).
            if s >> 16 == key {
                return Some(s as u16);
            }
            if s == EMPTY {
                return None;
            }
            i += 1;
        }
    }

    /// Whether the slots outgrow what a core keeps close (more than 256 KiB): then
    /// a lookup is likely a miss to L3 or memory, and a burst loop whose per-frame
    /// work is too long for the core to overlap two frames' lookups gains by
    /// prefetching every frame's slot first ([`prefetch_burst`](Self::prefetch_burst)).
    #[inline]
    pub fn is_large(&self) -> bool {
        std::mem::size_of_val(self.slots) > 256 << 10
    }

    /// Prefetches the home slot of every frame's key (`key_of` on the frame's
    /// bytes; `None`: nothing to prefetch) through [`PacketBuf::prefetch_addr`],
    /// for a burst loop that looks them up next: the misses of a large table then
    /// overlap, where each would stall its own frame. A separate function, called
    /// only for a large table, so the loops keep their registers.
    #[inline(never)]
    pub fn prefetch_burst<B: PacketBuf>(
        &self,
        pkts: &[B],
        mut key_of: impl FnMut(&[u8]) -> Option<u64>,
    ) {
        for pkt in pkts {
            if let Some(key) = key_of(pkt.data()) {
                self.prefetch::<B>(key);
            }
        }
    }

    /// Prefetches the home slot of `key`, for a loop whose keys are spread over
    /// several maps (a burst from the uplink, one network per VNI).
    #[inline(always)]
    pub fn prefetch<B: PacketBuf>(&self, key: u64) {
        if let Some(s) = self.slots.get(self.home(key)) {
            B::prefetch_addr((s as *const u64).cast::<u8>());
        }
    }
}

/// Slots for `n` keys: a power of two, at most 80% full, at least 8.
fn slots_for(n: usize) -> usize {
    (n * 5 / 4 + 1).max(8).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The displacement a map should record: every key's distance from home.
    fn displacement(m: &DenseMap) -> usize {
        let mask = m.slots.len() - 1;
        m.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != EMPTY)
            .map(|(i, s)| i.wrapping_sub(m.reader().home(s >> 16)) & mask)
            .sum()
    }

    proptest! {
        #[test]
        fn removal_leaves_the_map_as_if_never_inserted(
            ops in proptest::collection::vec((any::<bool>(), 0u64..64), 1..400),
            mul in any::<u64>(),
        ) {
            // Few distinct keys and a fixed multiplier make long runs and wraps.
            let mut m = DenseMap::empty(64, mul | 1, flatmap::MAX_REDRAWS);
            let mut model = HashMap::new();
            for (insert, k) in ops {
                let key = k * 0x1_0000_0001;
                if insert && model.len() < 50 {
                    prop_assert_eq!(m.place(key, k as u16), model.insert(key, k as u16));
                } else {
                    prop_assert_eq!(m.remove(key), model.remove(&key));
                }
                prop_assert_eq!(m.len(), model.len());
                prop_assert_eq!(m.displacement, displacement(&m));
            }
            for k in 0..64u64 {
                let key = k * 0x1_0000_0001;
                prop_assert_eq!(m.get(key), model.get(&key).copied());
            }
        }
    }

    #[test]
    fn insert_get_replace_and_bad_keys() {
        let mut m = DenseMap::default();
        assert!(m.is_empty());
        assert_eq!(m.get(7), None);
        assert_eq!(m.insert(7, 1), Ok(None));
        assert_eq!(m.insert(7, 2), Ok(Some(1)));
        assert_eq!(m.get(7), Some(2));
        assert_eq!(
            m.insert(0, 0xffff),
            Ok(None),
            "key 0 and value 0xffff are fine"
        );
        assert_eq!(m.get(0), Some(0xffff));
        assert_eq!(m.len(), 2);
        // The empty slot's pattern and anything of 48 bits or more: refused, not found.
        for bad in [KEY_MASK, KEY_MASK + 1, u64::MAX, 7 | 1 << 48] {
            assert_eq!(m.insert(bad, 3), Err(BadKey(bad)));
            assert_eq!(m.get(bad), None, "{bad:#x}");
        }
        assert_eq!(m.len(), 2);
        let mut all: Vec<_> = m.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![(0, 0xffff), (7, 2)]);
    }

    #[test]
    fn a_hundred_thousand_macs_take_one_mebibyte() {
        let mut m = DenseMap::with_capacity(100_000);
        for k in 0..100_000u64 {
            m.insert(0x0200_0000_0000 | k, k as u16).unwrap();
        }
        assert_eq!(m.slots.len(), 131_072, "80% full at most, not grown");
        assert!(m.reader().is_large());
        for k in 0..100_000u64 {
            assert_eq!(m.get(0x0200_0000_0000 | k), Some(k as u16));
            assert_eq!(m.get(0x0400_0000_0000 | k), None);
        }
    }

    #[test]
    fn the_empty_reader_finds_nothing() {
        let r = DenseReader::EMPTY;
        assert!(!r.is_large());
        for k in [0, 7, KEY_MASK - 1, KEY_MASK, u64::MAX] {
            assert_eq!(r.get(k), None, "{k:#x}");
            r.prefetch::<crate::buf::VecBuf>(k);
        }
    }

    use crate::buf::recording::{take_prefetched, Recording};

    #[test]
    fn prefetch_burst_prefetches_each_frames_home_slot() {
        let mut small = DenseMap::default();
        for k in 0..1000u64 {
            small.insert(k, 0).unwrap();
        }
        assert!(!small.reader().is_large(), "1000 keys: 16 KiB of slots");
        let mut m = DenseMap::default();
        for k in 0..40_000u64 {
            m.insert(k << 16, k as u16).unwrap();
        }
        let r = m.reader();
        assert!(r.is_large());
        // Frames carry their key; a short one has none and is skipped.
        let keys = [5u64 << 16, 77 << 16, 123_456_789, 5 << 16];
        let mut frames: Vec<Recording> = keys
            .iter()
            .map(|k| Recording(crate::buf::VecBuf::new(&k.to_be_bytes())))
            .collect();
        frames.insert(2, Recording(crate::buf::VecBuf::new(&[1, 2, 3])));
        let home = |k: u64| &r.slots[r.home(k)] as *const u64 as usize;
        let want: Vec<usize> = keys.iter().map(|&k| home(k)).collect();
        take_prefetched();
        r.prefetch_burst(&frames, |d| Some(u64::from_be_bytes(d.try_into().ok()?)));
        assert_eq!(take_prefetched(), want);
        // One key at a time, as the uplink's loop does across networks.
        take_prefetched();
        keys.iter().for_each(|&k| r.prefetch::<Recording>(k));
        assert_eq!(take_prefetched(), want);
    }

    #[test]
    fn grows_past_its_capacity() {
        let mut m = DenseMap::with_capacity(1);
        for k in 0..10_000u64 {
            m.insert(k << 8, k as u16).unwrap();
        }
        assert_eq!(m.len(), 10_000);
        assert!(m.slots.len() * 4 >= 10_000 * 5);
        assert!((0..10_000u64).all(|k| m.get(k << 8) == Some(k as u16)));
    }

    /// 1000 MACs in sequence, as a deployment or a benchmark hands them out.
    fn sequential_macs() -> impl Iterator<Item = u64> {
        (0..1000u64).map(|i| 0x0200_0000_0000 | i)
    }

    #[test]
    fn keys_clustered_by_the_multiplier_get_a_new_one() {
        // Multiplier 1 puts every sequential MAC in the same home slot (the
        // product's top bits are all zero): a lookup would walk the whole run.
        let mut m = DenseMap::empty(slots_for(1000), 1, 0);
        for (i, k) in sequential_macs().enumerate() {
            m.insert(k, i as u16).unwrap();
        }
        assert_ne!(m.mul, 1);
        assert!(m.redraws >= 1);
        assert!(!flatmap::clustered(m.len, m.slots.len(), m.displacement));
        assert_eq!(m.slots.len(), 2048, "drawn again, not grown");
        assert!(sequential_macs()
            .enumerate()
            .all(|(i, k)| m.get(k) == Some(i as u16)));
    }

    #[test]
    fn out_of_redraws_a_clustered_map_is_slow_but_right() {
        let mut m = DenseMap::empty(slots_for(1000), 1, flatmap::MAX_REDRAWS);
        for (i, k) in sequential_macs().enumerate() {
            m.insert(k, i as u16).unwrap();
        }
        assert_eq!(m.mul, 1, "no redraw left at this size");
        assert!(flatmap::clustered(m.len, m.slots.len(), m.displacement));
        assert!(sequential_macs()
            .enumerate()
            .all(|(i, k)| m.get(k) == Some(i as u16)));
        assert_eq!(m.get(0x0200_0000_0000 | 5000), None);
        // Growing gives it a new budget, and the keys are spread again.
        for k in 1000..1700u64 {
            m.insert(0x0200_0000_0000 | k, 0).unwrap();
        }
        assert_eq!(m.slots.len(), 4096);
        assert!(!flatmap::clustered(m.len, m.slots.len(), m.displacement));
    }

    #[test]
    fn sequential_macs_never_stay_clustered() {
        // Without the redraw about one table in nine came out at over 2 probes
        // per key (a random hash: 1.5), and one in two hundred at over 50.
        for _ in 0..300 {
            let mut m = DenseMap::with_capacity(1000);
            for k in sequential_macs() {
                m.insert(k, 1).unwrap();
            }
            let probes = 1.0 + m.displacement as f64 / m.len as f64;
            assert!(
                probes < 1.8,
                "{probes} probes per key, multiplier {:#x}",
                m.mul
            );
        }
    }

    proptest! {
        /// Against a `HashMap`: every inserted key found with its last value, and
        /// random other keys (any 64 bits) answered as the `HashMap` answers them.
        #[test]
        fn agrees_with_a_hashmap(
            entries in proptest::collection::vec((0..KEY_MASK, any::<u16>()), 0..600),
            probes in proptest::collection::vec(any::<u64>(), 0..100),
        ) {
            let mut m = DenseMap::with_capacity(entries.len() / 3);
            let mut h = HashMap::new();
            for &(k, v) in &entries {
                prop_assert_eq!(m.insert(k, v), Ok(h.insert(k, v)));
            }
            prop_assert_eq!(m.len(), h.len());
            for (&k, &v) in &h {
                prop_assert_eq!(m.get(k), Some(v));
            }
            for k in probes {
                prop_assert_eq!(m.get(k), h.get(&k).copied());
            }
        }
    }
}
