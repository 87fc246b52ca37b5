//! The flow table's own tests: install, hit, a key that differs anywhere is
//! another flow, eviction of the least recently used way of a full bucket, the
//! capacity bound, the counters.

use super::action::Action;
use super::key::{FlowKey, WORDS};
use super::table::{Deps, FlowTable, WAYS};
use crate::overlay::NetworkId;
use crate::port::PortIdx;

const DEPS: Deps = Deps {
    nets: [NetworkId(0); 2],
    vrf: None,
};

fn key(n: u64) -> FlowKey {
    FlowKey([n | 1 << 24, n * 3, n * 5, n * 7, n * 11])
}

fn to(port: u16) -> Action {
    Action {
        out: PortIdx(port),
        ..Action::default()
    }
}

#[test]
fn an_installed_flow_is_found_and_no_other_key_finds_it() {
    let mut t = FlowTable::new(1024);
    let k = key(42);
    assert_eq!(t.find(&k, k.hash()), None);
    let i = t.install(k, k.hash(), to(3), DEPS, 7).unwrap();
    assert_eq!(t.find(&k, k.hash()), Some(i));
    let e = t.entry(i);
    assert_eq!((e.key, e.action, e.deps, e.generation), (k, to(3), DEPS, 7));
    // Any bit of any word changed: another flow, whether its hash lands in the
    // same bucket or not (probed with the original hash too).
    for w in 0..WORDS {
        for bit in [0, 17, 63] {
            let mut other = k;
            other.0[w] ^= 1 << bit;
            assert_eq!(t.find(&other, other.hash()), None, "word {w} bit {bit}");
            assert_eq!(
                t.find(&other, k.hash()),
                None,
                "word {w} bit {bit}, same bucket"
            );
        }
    }
    // Installing the same key again rewrites its entry in place.
    assert_eq!(t.install(k, k.hash(), to(5), DEPS, 8), Some(i));
    assert_eq!(t.entry(i).action.out, PortIdx(5));
    assert_eq!((t.live(), t.stats.installs, t.stats.evictions), (1, 2, 0));
}

#[test]
fn a_full_bucket_evicts_its_least_recently_used_way() {
    // One bucket: every key lands in it.
    let mut t = FlowTable::new(WAYS);
    assert_eq!(t.capacity(), WAYS);
    let keys: Vec<FlowKey> = (1..=WAYS as u64 + 1).map(key).collect();
    let mut at = Vec::new();
    for k in &keys[..WAYS] {
        t.tick();
        at.push(t.install(*k, k.hash(), to(1), DEPS, 1).unwrap());
    }
    assert_eq!((t.live(), t.stats.evictions), (WAYS, 0));
    // Every way used since but the third one installed.
    t.tick();
    for (n, &i) in at.iter().enumerate() {
        if n != 2 {
            t.touch(i);
        }
    }
    let new = keys[WAYS];
    t.tick();
    assert_eq!(t.install(new, new.hash(), to(2), DEPS, 1), Some(at[2]));
    assert_eq!(t.find(&keys[2], keys[2].hash()), None, "the LRU way went");
    for (n, k) in keys.iter().enumerate().filter(|(n, _)| *n != 2) {
        assert!(t.find(k, k.hash()).is_some(), "key {n} stays");
    }
    assert_eq!(
        (t.live(), t.stats.evictions, t.stats.installs),
        (WAYS, 1, WAYS as u64 + 1)
    );
}

#[test]
fn the_table_never_holds_more_than_its_capacity() {
    for (asked, capacity) in [(0, 0), (1, WAYS), (1000, 1024), (1024, 1024), (4096, 4096)] {
        let mut t = FlowTable::new(asked);
        assert_eq!(t.capacity(), capacity, "{asked}");
        let n = capacity * 3 + 5;
        for k in (0..n as u64).map(key) {
            let i = t.install(k, k.hash(), to(1), DEPS, 1);
            assert_eq!(i.is_some(), capacity > 0, "{asked}");
            assert!(t.live() <= capacity);
        }
        let found = (0..n as u64)
            .map(key)
            .filter(|k| t.find(k, k.hash()).is_some())
            .count();
        assert_eq!(found, t.live(), "{asked}");
        if capacity > 0 {
            // Each install either filled a free way or evicted one.
            assert_eq!(t.stats.installs, n as u64);
            assert_eq!(t.stats.evictions, (n - t.live()) as u64);
            assert!(
                t.live() > capacity / 2,
                "{asked}: {} of {capacity}",
                t.live()
            );
        }
        t.clear();
        assert_eq!(t.live(), 0);
        assert!((0..n as u64)
            .map(key)
            .all(|k| t.find(&k, k.hash()).is_none()));
    }
}

#[test]
fn an_entry_costs_what_the_module_docs_say() {
    // The entry and its share of the bucket header.
    let per_entry = std::mem::size_of::<super::table::Entry>() + 64 / WAYS;
    assert!(per_entry <= 128, "{per_entry} bytes an entry");
}

#[test]
fn keys_that_differ_in_a_few_low_bits_spread_over_the_buckets() {
    // 100k flows to sequential MACs and addresses that move together, as a
    // benchmark's (or a node's) traffic has them, in a table of 2^18: at 38%
    // load a bucket of eight ways overflows rarely (a Poisson bucket load of 3
    // passes 8 in about 0.5% of buckets), so evictions stay a small fraction
    // of the flows when the hash spreads such keys.
    let mut t = FlowTable::new(1 << 18);
    let n = 100_000u64;
    for i in 0..n {
        let k = FlowKey([
            (1 << 24) | (17 << 16) | 3,
            0x0200_0000_0000 | i,
            0x0a00_0001_0a01_0000 | i,
            40000 << 16 | 80,
            0,
        ]);
        t.install(k, k.hash(), to(1), DEPS, 1);
    }
    assert!(
        t.stats.evictions < n / 200,
        "{} evictions",
        t.stats.evictions
    );
}

#[test]
fn an_entry_and_its_bucket_header_are_120_bytes() {
    // The README and the config docs quote it: a change must show here.
    assert_eq!(
        std::mem::size_of::<super::table::Entry>() + 8,
        120,
        "entry size changed: update README, flow/mod.rs and config docs"
    );
}
