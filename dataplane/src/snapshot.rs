//! RCU-style publication of immutable pipeline snapshots.
//!
//! The control plane compiles a whole new snapshot and publishes it with one atomic
//! pointer swap; workers load the current snapshot once per poll round and use it for
//! the whole round. So a worker never sees half an update, publishing never waits for
//! a worker, and a worker never takes a lock. The old snapshot is freed when the last
//! guard on it is dropped, i.e. once every worker has finished the round that used it
//! (the grace period is "one poll round", tracked by `arc-swap`'s reference counting
//! instead of explicit epochs).
//!
//! The trade-off is that an update costs a full rebuild of the snapshot; updates are
//! rare compared with packets, and the rebuild happens off the fast path.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use arc_swap::cache::Cache;
use arc_swap::{ArcSwap, Guard};

/// A snapshot that carries a generation number, so workers (and their flow caches,
/// and operators reading stats) can tell which version they are running.
pub trait Versioned {
    /// The generation this snapshot was compiled for; higher is newer.
    fn generation(&self) -> u64;
}

/// A loaded snapshot. Hold it for one poll round, not longer: it keeps that
/// snapshot alive.
pub type SnapshotGuard<T> = Guard<Arc<T>>;

/// The published slot holding the current snapshot of type `T`.
#[derive(Debug)]
pub struct SnapshotCell<T> {
    current: ArcSwap<T>,
}

impl<T> SnapshotCell<T> {
    /// A cell holding `initial`.
    pub fn new(initial: T) -> Self {
        SnapshotCell {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// Makes `next` the current snapshot. Never blocks on readers: the previous
    /// snapshot lives on until its last guard is dropped.
    pub fn publish(&self, next: T) {
        self.current.store(Arc::new(next));
    }

    /// Like [`publish`](Self::publish), for a snapshot already in an `Arc` (e.g. one
    /// the control plane keeps for itself).
    pub fn publish_arc(&self, next: Arc<T>) {
        self.current.store(next);
    }

    /// The current snapshot, cheaply (no reference-count traffic in the common case).
    /// A worker calls this once per poll round.
    #[inline]
    pub fn load(&self) -> SnapshotGuard<T> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for holders that keep it longer.
    pub fn load_full(&self) -> Arc<T> {
        self.current.load_full()
    }
}

/// One worker's handle on a [`SnapshotCell`]: it keeps the snapshot it last saw
/// and, each round, only checks whether the cell still points at it (a plain load
/// of the pointer; `arc-swap`'s [`Cache`]). A cell's own [`load`](SnapshotCell::load)
/// takes and gives back a slot in `arc-swap`'s debt list with atomic
/// read-modify-writes, tens of cycles per round. The grace period stays one poll
/// round: the old snapshot is released at the first round after a publish.
pub struct SnapshotReader<T> {
    cache: Cache<CellRef<T>, Arc<T>>,
}

/// The cell, seen as the `ArcSwap` it wraps (what [`Cache`] reads).
struct CellRef<T>(Arc<SnapshotCell<T>>);

impl<T> Deref for CellRef<T> {
    type Target = ArcSwap<T>;

    fn deref(&self) -> &ArcSwap<T> {
        &self.0.current
    }
}

impl<T> SnapshotReader<T> {
    /// A reader of `cell`, starting from its current snapshot.
    pub fn new(cell: Arc<SnapshotCell<T>>) -> Self {
        SnapshotReader {
            cache: Cache::new(CellRef(cell)),
        }
    }

    /// The current snapshot: the one kept, unless the cell has moved on.
    #[inline]
    pub fn load(&mut self) -> &Arc<T> {
        self.cache.load()
    }
}

impl<T: fmt::Debug> fmt::Debug for SnapshotReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader").finish_non_exhaustive()
    }
}

impl<T: Versioned> SnapshotCell<T> {
    /// The generation of the current snapshot.
    pub fn generation(&self) -> u64 {
        self.current.load().generation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Tracked {
        generation: u64,
        freed: Arc<AtomicUsize>,
    }

    impl Versioned for Tracked {
        fn generation(&self) -> u64 {
            self.generation
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.freed.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn old_snapshot_lives_until_last_guard_drops() {
        let freed = Arc::new(AtomicUsize::new(0));
        let cell = SnapshotCell::new(Tracked {
            generation: 1,
            freed: freed.clone(),
        });
        let guard = cell.load();
        cell.publish(Tracked {
            generation: 2,
            freed: freed.clone(),
        });
        assert_eq!(cell.generation(), 2, "new loads see the new snapshot");
        assert_eq!(guard.generation(), 1, "an old guard keeps its snapshot");
        assert_eq!(freed.load(Ordering::SeqCst), 0, "not freed while guarded");
        drop(guard);
        assert_eq!(
            freed.load(Ordering::SeqCst),
            1,
            "freed after the last guard"
        );
        drop(cell);
        assert_eq!(freed.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn reader_keeps_its_snapshot_until_it_looks_again() {
        let freed = Arc::new(AtomicUsize::new(0));
        let tracked = |generation| Tracked {
            generation,
            freed: freed.clone(),
        };
        let cell = Arc::new(SnapshotCell::new(tracked(1)));
        let mut reader = SnapshotReader::new(cell.clone());
        assert_eq!(reader.load().generation(), 1);
        cell.publish(tracked(2));
        cell.publish(tracked(3));
        // Generation 2 was never seen by the reader: freed at once. Generation 1
        // is the reader's until its next look (the end of its poll round).
        assert_eq!(freed.load(Ordering::SeqCst), 1);
        assert_eq!(
            reader.load().generation(),
            3,
            "the next look sees the newest"
        );
        assert_eq!(
            freed.load(Ordering::SeqCst),
            2,
            "and lets go of the old one"
        );
        assert_eq!(reader.load().generation(), 3);
        drop(reader);
        drop(cell);
        assert_eq!(freed.load(Ordering::SeqCst), 3);
    }

    /// A reader thread loading as fast as it can while 1000 snapshots are
    /// published: generations never go back, its last look after the publisher
    /// is done sees the last one, and all but the current one are freed once it
    /// is gone. `cached`: through a [`SnapshotReader`], else the cell's own load.
    fn concurrent_reader_sees_generations_in_order(cached: bool) {
        let freed = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(SnapshotCell::new(Tracked {
            generation: 0,
            freed: freed.clone(),
        }));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (cell, done) = (cell.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reader = cached.then(|| SnapshotReader::new(cell.clone()));
                let mut look = || match reader.as_mut() {
                    Some(r) => r.load().generation(),
                    None => cell.load().generation(),
                };
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let g = look();
                    assert!(g >= last, "generation went back from {last} to {g}");
                    last = g;
                }
                look()
            })
        };
        for generation in 1..=1000 {
            cell.publish(Tracked {
                generation,
                freed: freed.clone(),
            });
        }
        done.store(true, Ordering::Release);
        assert_eq!(reader.join().unwrap(), 1000, "the last look sees the last");
        assert_eq!(
            freed.load(Ordering::SeqCst),
            1000,
            "all but the current freed"
        );
    }

    #[test]
    fn concurrent_guards_see_generations_in_order() {
        concurrent_reader_sees_generations_in_order(false);
    }

    #[test]
    fn concurrent_cached_reader_sees_generations_in_order() {
        concurrent_reader_sees_generations_in_order(true);
    }
}
