//! How long a published snapshot takes to reach every worker.
//!
//! A write is acknowledged once its snapshot is published; packets follow it
//! only once each worker has picked the snapshot up at the start of a poll
//! round, which an idle worker does after its current sleep. This measures that
//! gap, from the publish to the moment every worker reports the new generation,
//! off the workers' path: a watcher thread wakes when a write publishes and
//! polls the workers' published generations every [`POLL`] until all have it.
//! Workers do nothing more than they already did (they publish their
//! generation after every round), so the measurement costs them nothing; its
//! resolution is the poll period plus the sleep's overshoot.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::WorkerStatsShared;

/// How often the watcher looks at the workers while a publish is pending.
pub const POLL: Duration = Duration::from_micros(20);

/// Upper bounds of the latency buckets, in seconds: from the watcher's
/// resolution to the liveness bound's order and beyond (a stuck worker).
pub const BUCKETS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0, 2.5,
    10.0,
];

/// Publishes not yet seen by every worker, at most this many (a stuck worker
/// under a stream of writes): the oldest are forgotten, counted in `forgotten`.
const MAX_PENDING: usize = 1024;

/// The latency histogram: per-bucket counts, the last one above every bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// One per bound in [`BUCKETS_S`], plus the overflow.
    pub counts: [u64; BUCKETS_S.len() + 1],
    /// The sum of the observations, in seconds.
    pub sum_s: f64,
    /// Publishes dropped from the pending list before every worker had them.
    pub forgotten: u64,
}

impl Histogram {
    /// Records one latency.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS_S.len());
        self.counts[i] += 1;
        self.sum_s += s;
    }
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<(u64, Instant)>,
    hist: Histogram,
    stop: bool,
}

/// Where writes say "published", and the histogram they fill.
#[derive(Debug, Default)]
pub struct PublishClock {
    state: Mutex<State>,
    wake: Condvar,
}

impl PublishClock {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Generation `generation` was just published.
    pub fn published(&self, generation: u64) {
        let mut st = self.lock();
        if st.pending.len() == MAX_PENDING {
            st.pending.pop_front();
            st.hist.forgotten += 1;
        }
        st.pending.push_back((generation, Instant::now()));
        self.wake.notify_one();
    }

    /// The histogram so far.
    pub fn histogram(&self) -> Histogram {
        self.lock().hist.clone()
    }

    /// Settles every pending publish that generation `reached` (the oldest
    /// generation any worker runs) covers, at `now`; whether any is left.
    fn settle(&self, reached: u64, now: Instant) -> bool {
        let mut st = self.lock();
        while let Some(&(g, at)) = st.pending.front() {
            if g > reached {
                break;
            }
            st.hist.observe(now.saturating_duration_since(at));
            st.pending.pop_front();
        }
        !st.pending.is_empty() && !st.stop
    }

    /// Starts the watcher over `workers`; it stops when the returned guard drops.
    ///
    /// # Errors
    /// No thread could be spawned.
    pub fn watch_workers(
        self: &Arc<Self>,
        workers: Vec<Arc<WorkerStatsShared>>,
    ) -> std::io::Result<Watcher> {
        self.watch(move || {
            workers
                .iter()
                .map(|w| w.snapshot_generation())
                .min()
                .unwrap_or(u64::MAX)
        })
    }

    /// Starts the watcher with `reached` telling the oldest generation a worker
    /// runs.
    ///
    /// # Errors
    /// No thread could be spawned.
    pub fn watch(
        self: &Arc<Self>,
        reached: impl Fn() -> u64 + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let clock = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("vsw-publish".into())
            .spawn(move || loop {
                {
                    let mut st = clock.lock();
                    while st.pending.is_empty() && !st.stop {
                        st = clock.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.stop {
                        return;
                    }
                }
                loop {
                    if !clock.settle(reached(), Instant::now()) {
                        break;
                    }
                    std::thread::sleep(POLL);
                }
            })?;
        Ok(Watcher {
            clock: Arc::clone(self),
            thread: Some(thread),
        })
    }
}

/// Stops the watcher thread on drop.
#[derive(Debug)]
pub struct Watcher {
    clock: Arc<PublishClock>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.clock.lock().stop = true;
        self.clock.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[4], 1); // 1 ms
        assert_eq!(h.counts[BUCKETS_S.len()], 1);
        assert!((h.sum_s - 60.00076).abs() < 1e-9);
    }

    #[test]
    fn a_publish_settles_when_the_slowest_worker_has_it() {
        let clock = PublishClock::default();
        let t0 = Instant::now();
        clock.published(5);
        clock.published(6);
        // One worker still on 4: nothing settles.
        assert!(clock.settle(4, t0 + Duration::from_millis(1)));
        assert_eq!(clock.histogram().counts.iter().sum::<u64>(), 0);
        // The slowest reaches 5: the first settles, 6 waits.
        assert!(clock.settle(5, t0 + Duration::from_millis(2)));
        assert!(!clock.settle(7, t0 + Duration::from_millis(3)));
        assert_eq!(clock.histogram().counts.iter().sum::<u64>(), 2);
    }

    #[test]
    fn the_watcher_settles_once_the_generation_is_reached() {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let clock = Arc::new(PublishClock::default());
        let running = Arc::new(AtomicU64::new(2));
        let seen = Arc::clone(&running);
        let watcher = clock.watch(move || seen.load(Relaxed)).unwrap();
        clock.published(3);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.histogram().counts.iter().sum::<u64>(), 0);
        running.store(3, Relaxed);
        let deadline = Instant::now() + Duration::from_secs(5);
        while clock.histogram().counts.iter().sum::<u64>() == 0 {
            assert!(Instant::now() < deadline, "never settled");
            std::thread::sleep(Duration::from_millis(1));
        }
        let h = clock.histogram();
        assert!(h.sum_s >= 0.005, "{h:?}");
        drop(watcher);
    }
}
