//! A read-mostly hash map from `u64` keys to small values, for the per-packet
//! tables whose key and value do not fit one word together (VNI → network); the
//! MAC tables, whose do, are [`DenseMap`](crate::densemap::DenseMap)s.
//!
//! Why not `hashbrown`: a lookup there is a seeded hash, a load of a control group,
//! a SIMD match, then the bucket load and compare — a chain of dependent steps that
//! a worker pays in full on every packet, since the rest of a packet's work is too
//! long for the CPU to overlap two packets' lookups. Here a lookup is a multiply, a
//! shift and one load of a slot that holds key and value together; with the table
//! at most half full, a miss ends at the first or second empty slot.
//!
//! The multiplier is a random odd number per map, so which keys share a probe run
//! is not predictable from outside (the keys come from configuration, but a
//! tenant's MACs should not be able to make everyone's lookups slow), and it is
//! drawn again when the keys cluster under it ([`clustered`]): keys in sequence
//! meet a bad multiplier now and then.
//!
//! Tables are built once per snapshot and then only read, so there is no removal.

use std::hash::BuildHasher;

/// A slot's key when the slot is empty. A real key equal to it is kept aside.
const EMPTY: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Slot<V> {
    key: u64,
    value: V,
}

/// An open-addressing (linear probing) map from `u64` to a small `Copy` value.
#[derive(Clone, Debug)]
pub struct FlatMap<V: Copy> {
    slots: Box<[Slot<V>]>,
    /// `slots.len() - 1` (a power of two minus one).
    mask: usize,
    /// 64 minus log2 of the slot count: the product's top bits pick the slot.
    shift: u32,
    mul: u64,
    len: usize,
    /// The value of key `EMPTY`, if present.
    max_key: Option<V>,
    /// Slots wanted by `with_capacity`/`reserve` before the first insert: the
    /// slot array is made by the first insert, whose value fills the empty slots
    /// (their value is never read), so `V` needs no `Default`.
    want: usize,
    /// Slots the keys sit past their home slots, in all ([`clustered`]).
    displacement: usize,
    /// Multipliers drawn again at this size ([`MAX_REDRAWS`]).
    redraws: u8,
}

impl<V: Copy> Default for FlatMap<V> {
    fn default() -> Self {
        FlatMap::with_capacity(0)
    }
}

impl<V: Copy> FlatMap<V> {
    /// An empty map with room for `n` keys before it grows.
    pub fn with_capacity(n: usize) -> Self {
        FlatMap {
            slots: Box::new([]),
            mask: 0,
            shift: 64,
            mul: random_odd(),
            len: 0,
            max_key: None,
            want: slots_for(n),
            displacement: 0,
            redraws: 0,
        }
    }

    /// Makes room for `n` more keys.
    pub fn reserve(&mut self, n: usize) {
        let want = slots_for(self.len + n);
        if self.slots.is_empty() {
            self.want = self.want.max(want);
        } else if want > self.slots.len() {
            self.grow(want);
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

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(self.mul) >> self.shift) as usize
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        if key == EMPTY {
            return self.max_key.as_ref();
        }
        self.reader().slot_of(key).map(|s| &s.value)
    }

    /// The map as a burst loop reads it: the few fields a lookup needs, copied out
    /// so they stay in registers across the loop instead of being reloaded through
    /// `&self` for every packet.
    #[inline]
    pub fn reader(&self) -> FlatReader<'_, V> {
        FlatReader {
            slots: &self.slots,
            mul: self.mul,
            shift: self.shift,
            max_key: self.max_key,
        }
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        if key == EMPTY {
            let old = self.max_key.replace(value);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        if self.slots.is_empty() {
            self.make_slots(self.want, value);
        } else if (self.len + 1) * 2 > self.slots.len() {
            self.grow(self.slots.len() * 2);
        }
        let old = self.place(key, value);
        if old.is_none() {
            self.redraw_while_clustered();
        }
        old
    }

    /// `n` empty slots (a power of two); `value` fills their unread value fields,
    /// so `V` needs no `Default`.
    fn make_slots(&mut self, n: usize, value: V) {
        self.slots = vec![Slot { key: EMPTY, value }; n].into_boxed_slice();
        self.mask = n - 1;
        self.shift = 64 - n.trailing_zeros();
    }

    /// Puts `key` (not `EMPTY`) in its slot; the slots have room.
    fn place(&mut self, key: u64, value: V) -> Option<V> {
        let home = self.home(key);
        let mut i = home;
        loop {
            let s = &mut self.slots[i & self.mask];
            if s.key == key {
                return Some(std::mem::replace(&mut s.value, value));
            }
            if s.key == EMPTY {
                *s = Slot { key, value };
                self.len += 1;
                self.displacement += i - home;
                return None;
            }
            i += 1;
        }
    }

    /// Moves every key into `slots` slots (a power of two, more than twice the
    /// keys), hashed with `mul`.
    fn rebuild(&mut self, slots: usize, mul: u64) {
        let mut fresh = FlatMap {
            want: slots,
            mul,
            redraws: self.redraws,
            ..FlatMap::with_capacity(0)
        };
        for s in self.slots.iter().filter(|s| s.key != EMPTY) {
            if fresh.slots.is_empty() {
                fresh.make_slots(slots, s.value);
            }
            fresh.place(s.key, s.value);
        }
        fresh.max_key = self.max_key;
        fresh.len = self.len;
        *self = fresh;
    }

    /// Moves every key into `slots` slots with the same multiplier; a fresh
    /// budget of redraws for the new size.
    fn grow(&mut self, slots: usize) {
        self.rebuild(slots, self.mul);
        self.redraws = 0;
    }

    /// Draws new multipliers while the keys cluster under this one.
    fn redraw_while_clustered(&mut self) {
        let in_slots = self.len - usize::from(self.max_key.is_some());
        while self.redraws < MAX_REDRAWS && clustered(in_slots, self.slots.len(), self.displacement)
        {
            self.redraws += 1;
            self.rebuild(self.slots.len(), random_odd());
        }
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY)
            .map(|s| (s.key, s.value))
            .chain(self.max_key.map(|v| (EMPTY, v)))
    }
}

/// A [`FlatMap`] for reading, from [`FlatMap::reader`].
#[derive(Clone, Copy)]
pub struct FlatReader<'a, V: Copy> {
    slots: &'a [Slot<V>],
    mul: u64,
    shift: u32,
    max_key: Option<V>,
}

impl<'a, V: Copy> FlatReader<'a, V> {
    /// The value of `key`, as [`FlatMap::get`] gives it.
    #[inline]
    pub fn get(&self, key: u64) -> Option<V> {
        if key == EMPTY {
            return self.max_key;
        }
        self.slot_of(key).map(|s| s.value)
    }

    /// The slot holding `key` (not `EMPTY`): the one probe loop of the map.
    #[inline]
    fn slot_of(&self, key: u64) -> Option<&'a Slot<V>> {
        // The home slot is below the slot count by construction (the product's top
        // log2(count) bits), so its bounds check is also the emptiness check: an
        // empty map has no slots, and its shift of 64 (`wrapping_shr`: by 0) gives
        // some index that `get` refuses.
        let slots = self.slots;
        let home = key.wrapping_mul(self.mul).wrapping_shr(self.shift) as usize;
        let s = slots.get(home)?;
        if s.key == key {
            return Some(s);
        }
        if s.key == EMPTY {
            return None;
        }
        let mask = slots.len() - 1;
        let mut i = home + 1;
        loop {
            let s = &slots[i & mask];
            if s.key == key {
                return Some(s);
            }
            if s.key == EMPTY {
                return None;
            }
            i += 1;
        }
    }
}

/// Slots for `n` keys: a power of two, at least twice `n`.
fn slots_for(n: usize) -> usize {
    (n.max(4) * 2).next_power_of_two()
}

/// The environment variable that fixes the tables' hash multipliers.
pub const HASH_SEED_ENV: &str = "VSWITCH_HASH_SEED";

/// The seed of [`HASH_SEED_ENV`]: `None` when it is not set, an error naming the
/// variable when it is set to anything but an unsigned integer.
///
/// # Errors
/// The variable set to something else than a decimal `u64`.
pub fn hash_seed() -> Result<Option<u64>, String> {
    match std::env::var(HASH_SEED_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            format!("{HASH_SEED_ENV}={v:?}: expected an unsigned integer (or leave it unset)")
        }),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!(
            "{HASH_SEED_ENV}={v:?}: expected an unsigned integer (or leave it unset)"
        )),
    }
}

/// A random odd multiplier, from the standard library's per-process random keys
/// (a new one per call).
///
/// With [`HASH_SEED_ENV`] set to a number the multipliers are a fixed sequence
/// from it instead, so that two builds, or two runs, lay out the same tables the
/// same way: for benchmarks (`vswitch-bench instructions` sets it), where the
/// draw would otherwise move a lookup's cost by a few instructions between runs.
/// Not for production: whoever knows the seed knows which keys share slots.
/// (vswitchd refuses a value that is not a number; here it counts as unset.)
pub(crate) fn random_odd() -> u64 {
    static SEED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match *SEED.get_or_init(|| hash_seed().ok().flatten()) {
        Some(seed) => {
            let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            splitmix64(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))) | 1
        }
        None => std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1,
    }
}

/// SplitMix64's output function: a well-mixed 64-bit value from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// New multipliers a map draws at each size when its keys cluster under the one
/// it has ([`clustered`]); growing gives it as many again, since a multiplier
/// that spread the keys over the old slots may not over the new. Nine bad draws
/// in a row happen by chance about once in 10^7 tables; under keys chosen against
/// the map the last draw stays, slow but correct.
pub(crate) const MAX_REDRAWS: u8 = 8;

/// Whether `len` keys in `slots` slots, `displacement` slots in all past their
/// home slots (the probes a lookup of each costs beyond the first), cluster:
/// more than a quarter of a slot per key beyond what a random hash gives at
/// this load, `a / (2 (1 - a))` for linear probing (Knuth).
///
/// Why this is checked: a multiply-shift hash with a random multiplier spreads
/// keys well on average, but structured keys — MACs handed out in sequence, or
/// with a stride, as most deployments and the benchmarks' scenarios do — meet a
/// multiplier close to a fraction with a small denominator now and then, and
/// then fall on a few runs of slots. With 1000 sequential MACs in 2048 slots one
/// draw in nine needs over 2 probes per lookup (a random hash: 1.5) and one in
/// two hundred over 50 (a 0.5% chance, on every start, of a switch that forwards
/// at a fraction of its rate). Drawing again costs a rebuild now and then; the
/// lookups stay a multiply and a shift.
pub(crate) fn clustered(len: usize, slots: usize, displacement: usize) -> bool {
    // Small tables fluctuate too much to judge, and their runs are short anyway.
    if len < 32 || slots == 0 {
        return false;
    }
    let load = len as f64 / slots as f64;
    let expected = load / (2.0 * (1.0 - load));
    displacement as f64 > (expected + 0.25) * len as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn clustering_is_judged_against_a_random_hashs_probes() {
        // 1000 keys in 2048 slots: a random hash puts them 0.48 slots past home
        // on average; past 0.73 they cluster.
        assert!(!clustered(1000, 2048, 700));
        assert!(clustered(1000, 2048, 740));
        // At 80% a random hash gives 2 slots per key.
        assert!(!clustered(800, 1000, 1800));
        assert!(clustered(800, 1000, 1900));
        // Too few keys to judge.
        assert!(!clustered(31, 64, 1000));
        assert!(!clustered(0, 0, 0));
    }

    #[test]
    fn a_flatmap_draws_a_new_multiplier_when_its_keys_cluster() {
        let mut m: FlatMap<u32> = FlatMap::with_capacity(100);
        m.mul = 1;
        // VNIs in sequence: all in home slot 0 under multiplier 1.
        for vni in 0..100u64 {
            m.insert(vni, vni as u32);
        }
        m.insert(EMPTY, 7);
        assert_ne!(m.mul, 1);
        assert!(m.redraws >= 1);
        assert!(!clustered(m.len - 1, m.slots.len(), m.displacement));
        assert!((0..100u64).all(|vni| m.get(vni) == Some(&(vni as u32))));
        assert_eq!(m.get(EMPTY), Some(&7));
        assert_eq!(m.len(), 101);
    }

    #[test]
    fn insert_get_replace() {
        let mut m: FlatMap<u32> = FlatMap::default();
        assert!(m.is_empty());
        assert_eq!(m.get(7), None);
        assert_eq!(m.insert(7, 1), None);
        assert_eq!(m.insert(7, 2), Some(1));
        assert_eq!(m.get(7), Some(&2));
        assert_eq!(m.len(), 1);
        // The empty marker is a key like any other.
        assert_eq!(m.get(u64::MAX), None);
        assert_eq!(m.insert(u64::MAX, 9), None);
        assert_eq!(m.get(u64::MAX), Some(&9));
        assert_eq!(m.len(), 2);
        let mut all: Vec<_> = m.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![(7, 2), (u64::MAX, 9)]);
    }

    #[test]
    fn grows_and_keeps_everything() {
        let mut m: FlatMap<u64> = FlatMap::with_capacity(1);
        for k in 0..100_000u64 {
            m.insert(k * 0x1_0000, k);
        }
        assert_eq!(m.len(), 100_000);
        for k in 0..100_000u64 {
            assert_eq!(m.get(k * 0x1_0000), Some(&k));
            assert_eq!(m.get(k * 0x1_0000 + 1), None);
        }
        assert!(m.slots.len() >= 200_000, "at most half full");
    }

    #[test]
    fn reserve_then_fill_never_rebuilds_and_empty_maps_answer() {
        let mut m: FlatMap<u8> = FlatMap::default();
        assert_eq!(m.get(1), None);
        assert_eq!(m.get(u64::MAX), None);
        m.reserve(1000);
        m.insert(1, 1);
        let slots = m.slots.len();
        assert!(slots >= 2000);
        for k in 2..=1000 {
            m.insert(k, 0);
        }
        assert_eq!(m.slots.len(), slots);
        m.reserve(5000);
        assert!(m.slots.len() >= 12_000);
        assert_eq!(m.get(1), Some(&1));
        assert_eq!(m.len(), 1000);
    }

    #[test]
    fn reader_answers_like_the_map() {
        let mut m: FlatMap<u16> = FlatMap::default();
        assert_eq!(m.reader().get(3), None);
        assert_eq!(m.reader().get(EMPTY), None);
        for k in 0..300u64 {
            m.insert(k << 16, k as u16);
        }
        m.insert(EMPTY, 7);
        let r = m.reader();
        for k in 0..300u64 {
            assert_eq!(r.get(k << 16), Some(k as u16));
            assert_eq!(r.get((k << 16) | 1), None);
        }
        assert_eq!(r.get(EMPTY), Some(7));
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_map(
            ops in proptest::collection::vec((any::<u64>(), any::<u16>()), 0..400),
            probes in proptest::collection::vec(any::<u64>(), 0..50),
        ) {
            let mut m: FlatMap<u16> = FlatMap::default();
            let mut reference = HashMap::new();
            // Small keys collide in the table often; keep some of them.
            for (k, v) in ops {
                let k = if v % 3 == 0 { k % 64 } else { k };
                prop_assert_eq!(m.insert(k, v), reference.insert(k, v));
            }
            prop_assert_eq!(m.len(), reference.len());
            for (k, v) in &reference {
                prop_assert_eq!(m.get(*k), Some(v));
            }
            for p in probes {
                prop_assert_eq!(m.get(p), reference.get(&p));
                prop_assert_eq!(m.reader().get(p), reference.get(&p).copied());
            }
            let r = m.reader();
            for (k, v) in &reference {
                prop_assert_eq!(r.get(*k), Some(*v));
            }
        }
    }
}
