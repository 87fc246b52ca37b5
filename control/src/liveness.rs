//! Liveness of the workers, judged from their heartbeats.
//!
//! A control thread that answers is no proof that packets move: with a worker
//! frozen, pings were lost while `Health` said serving. Each worker publishes a
//! heartbeat (rounds finished, bumped every round, idle ones included) and the
//! snapshot generation it runs; the daemon samples them (every 200 ms for
//! `grpc.health.v1`, and at each `Health` call) and a worker is **stuck** when
//!
//! - its heartbeat has not moved for longer than the bound, or
//! - it still runs an older generation longer than the bound after a newer one
//!   was seen published.
//!
//! The worker never reads a clock for this: the time a heartbeat last moved is
//! when the sampler saw it move, so ages are exact to the sampling period, and
//! the bound (default 1 s, at least a few idle sleeps, see
//! [`ControlConfig::liveness_timeout`](crate::config::ControlConfig::liveness_timeout))
//! absorbs that. The decision itself is pure ([`track`], [`judge`]) so it is
//! tested with made-up clocks; [`LivenessMonitor`] keeps the per-worker state
//! between samples.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::api;

/// What one worker published, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerBeat {
    /// The worker's index.
    pub index: u32,
    /// Its core.
    pub core: u32,
    /// Rounds finished.
    pub heartbeat: u64,
    /// The snapshot generation it runs.
    pub generation: u64,
}

/// Every worker's beat and the generation published to them, read together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivenessSample {
    /// The generation of the published pipeline snapshot.
    pub published_generation: u64,
    /// One per worker.
    pub workers: Vec<WorkerBeat>,
}

/// What the sampler remembers of one worker between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// The heartbeat last seen.
    pub heartbeat: u64,
    /// When it was first seen at that value.
    pub beat_at: Instant,
    /// A newer generation the worker has not picked up: the generation, and when
    /// it was first seen published while the worker ran an older one.
    pub lag: Option<(u64, Instant)>,
}

/// Folds one sample of a worker into what is known of it. Pure.
pub fn track(prev: Option<Track>, beat: &WorkerBeat, published: u64, now: Instant) -> Track {
    let beat_at = match prev {
        Some(p) if p.heartbeat == beat.heartbeat => p.beat_at,
        _ => now,
    };
    let lag = if beat.generation >= published {
        None
    } else {
        match prev.and_then(|p| p.lag) {
            // Still behind the generation it was first seen lagging: the clock
            // keeps running from then, even if newer ones were published since.
            Some((target, since)) if beat.generation < target => Some((target, since)),
            // Caught up with that one but a newer one is out: a new lag starts.
            _ => Some((published, now)),
        }
    };
    Track {
        heartbeat: beat.heartbeat,
        beat_at,
        lag,
    }
}

/// One worker's liveness at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLiveness {
    /// The worker's index.
    pub index: u32,
    /// Its core.
    pub core: u32,
    /// Rounds finished.
    pub heartbeat: u64,
    /// The generation it runs.
    pub generation: u64,
    /// Time since its heartbeat was last seen to move.
    pub heartbeat_age: Duration,
    /// `None` while alive; else since when it is stuck.
    pub stuck: Option<Stuck>,
}

/// Why and since when a worker is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// The heartbeat stood still since this moment (when it was last seen moving).
    NoHeartbeat {
        /// Since when.
        since: Instant,
    },
    /// The worker runs an older generation than `published`, seen published at
    /// `since`.
    Lagging {
        /// The generation it did not pick up.
        published: u64,
        /// Since when.
        since: Instant,
    },
}

impl Stuck {
    /// Since when the worker is stuck.
    pub fn since(&self) -> Instant {
        match *self {
            Stuck::NoHeartbeat { since } | Stuck::Lagging { since, .. } => since,
        }
    }
}

/// Judges a worker from what is known of it: stuck when its heartbeat stood still,
/// or it lagged a published generation, for longer than `timeout`. Pure.
pub fn judge(beat: &WorkerBeat, t: &Track, now: Instant, timeout: Duration) -> WorkerLiveness {
    let heartbeat_age = now.saturating_duration_since(t.beat_at);
    let stuck = if heartbeat_age > timeout {
        Some(Stuck::NoHeartbeat { since: t.beat_at })
    } else {
        match t.lag {
            Some((published, since)) if now.saturating_duration_since(since) > timeout => {
                Some(Stuck::Lagging { published, since })
            }
            _ => None,
        }
    };
    WorkerLiveness {
        index: beat.index,
        core: beat.core,
        heartbeat: beat.heartbeat,
        generation: beat.generation,
        heartbeat_age,
        stuck,
    }
}

/// Every worker's liveness at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// When it was judged.
    pub at: Instant,
    /// The bound used.
    pub timeout: Duration,
    /// The generation published to the workers.
    pub published_generation: u64,
    /// One per worker, in the sample's order.
    pub workers: Vec<WorkerLiveness>,
}

impl Liveness {
    /// Serving: no worker is stuck.
    pub fn serving(&self) -> bool {
        self.workers.iter().all(|w| w.stuck.is_none())
    }

    /// Why a worker is not alive, one line naming it and since when; `None`
    /// while it is. `wall` is the wall clock at [`at`](Self::at).
    pub fn worker_reason(&self, w: &WorkerLiveness, wall: SystemTime) -> Option<String> {
        let stuck = w.stuck?;
        let for_s = self
            .at
            .saturating_duration_since(stuck.since())
            .as_secs_f64();
        let since = format_utc(self.wall_of(stuck.since(), wall));
        Some(match stuck {
            Stuck::NoHeartbeat { .. } => format!(
                "worker {} (core {}) stuck: no heartbeat for {for_s:.1} s (since {since}, round {})",
                w.index, w.core, w.heartbeat
            ),
            Stuck::Lagging { published, .. } => format!(
                "worker {} (core {}) stuck: still runs generation {}, {published} was published {for_s:.1} s ago (since {since})",
                w.index, w.core, w.generation
            ),
        })
    }

    /// Why not serving: every stuck worker's reason, joined; empty when serving.
    pub fn reason(&self, wall: SystemTime) -> String {
        self.workers
            .iter()
            .filter_map(|w| self.worker_reason(w, wall))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The wall-clock time of `instant`, given that [`at`](Self::at) is `wall`.
    fn wall_of(&self, instant: Instant, wall: SystemTime) -> SystemTime {
        wall.checked_sub(self.at.saturating_duration_since(instant))
            .unwrap_or(UNIX_EPOCH)
    }

    /// The workers as the API reports them (`wall`: the wall clock at `at`).
    pub fn to_api(&self, wall: SystemTime) -> Vec<api::WorkerHealth> {
        self.workers
            .iter()
            .map(|w| api::WorkerHealth {
                index: w.index,
                core: w.core,
                alive: w.stuck.is_none(),
                heartbeat_age_ms: millis(w.heartbeat_age),
                generation: w.generation,
                stuck_since_unix_ms: w
                    .stuck
                    .map(|s| {
                        millis(
                            self.wall_of(s.since(), wall)
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or_default(),
                        )
                    })
                    .unwrap_or(0),
                reason: self.worker_reason(w, wall).unwrap_or_default(),
                heartbeat: w.heartbeat,
            })
            .collect()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Keeps what is known of each worker between samples.
#[derive(Debug, Clone)]
pub struct LivenessMonitor {
    timeout: Duration,
    tracks: HashMap<u32, Track>,
}

impl LivenessMonitor {
    /// A monitor with bound `timeout`.
    pub fn new(timeout: Duration) -> Self {
        LivenessMonitor {
            timeout,
            tracks: HashMap::new(),
        }
    }

    /// The bound.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the bound.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Folds `sample`, taken at `now`, in and judges every worker.
    pub fn observe(&mut self, sample: &LivenessSample, now: Instant) -> Liveness {
        let workers = sample
            .workers
            .iter()
            .map(|b| {
                let t = track(
                    self.tracks.get(&b.index).copied(),
                    b,
                    sample.published_generation,
                    now,
                );
                self.tracks.insert(b.index, t);
                judge(b, &t, now, self.timeout)
            })
            .collect();
        Liveness {
            at: now,
            timeout: self.timeout,
            published_generation: sample.published_generation,
            workers,
        }
    }
}

/// `2026-12-07T12:01:02.345Z`: a wall-clock time in UTC, without a time-zone
/// database (the daemon's and the operator's zones may differ anyway).
pub fn format_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn beat(heartbeat: u64, generation: u64) -> WorkerBeat {
        WorkerBeat {
            index: 1,
            core: 3,
            heartbeat,
            generation,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_beating_worker_on_the_published_generation_is_alive() {
        let t0 = Instant::now();
        let mut t = track(None, &beat(1, 5), 5, t0);
        for i in 1..20u64 {
            let now = t0 + ms(200 * i);
            t = track(Some(t), &beat(1 + i, 5), 5, now);
            let l = judge(&beat(1 + i, 5), &t, now, TIMEOUT);
            assert_eq!(l.stuck, None);
            assert_eq!(l.heartbeat_age, Duration::ZERO);
        }
    }

    #[test]
    fn a_heartbeat_standing_still_longer_than_the_bound_is_stuck_since_its_last_move() {
        let t0 = Instant::now();
        let t = track(None, &beat(7, 5), 5, t0);
        // Standing still up to the bound: an idle worker between two sleeps.
        let at_bound = t0 + TIMEOUT;
        let t = track(Some(t), &beat(7, 5), 5, at_bound);
        assert_eq!(judge(&beat(7, 5), &t, at_bound, TIMEOUT).stuck, None);
        let later = t0 + ms(1400);
        let t = track(Some(t), &beat(7, 5), 5, later);
        let l = judge(&beat(7, 5), &t, later, TIMEOUT);
        assert_eq!(l.stuck, Some(Stuck::NoHeartbeat { since: t0 }));
        assert_eq!(l.heartbeat_age, ms(1400));
        // One beat and it is alive again.
        let resumed = later + ms(200);
        let t = track(Some(t), &beat(8, 5), 5, resumed);
        let l = judge(&beat(8, 5), &t, resumed, TIMEOUT);
        assert_eq!(l.stuck, None);
        assert_eq!(l.heartbeat_age, Duration::ZERO);
    }

    #[test]
    fn lagging_a_published_generation_longer_than_the_bound_is_stuck() {
        let t0 = Instant::now();
        let t = track(None, &beat(1, 4), 4, t0);
        // Generation 5 is published; the worker beats but stays on 4.
        let t = track(Some(t), &beat(2, 4), 5, t0 + ms(100));
        assert_eq!(t.lag, Some((5, t0 + ms(100))));
        let now = t0 + ms(900);
        let t = track(Some(t), &beat(3, 4), 5, now);
        assert_eq!(judge(&beat(3, 4), &t, now, TIMEOUT).stuck, None);
        // Newer generations keep coming: the clock runs from the first one missed.
        let now = t0 + ms(1200);
        let t = track(Some(t), &beat(4, 4), 6, now);
        let l = judge(&beat(4, 4), &t, now, TIMEOUT);
        assert_eq!(
            l.stuck,
            Some(Stuck::Lagging {
                published: 5,
                since: t0 + ms(100)
            })
        );
        // It picks up 5 but 6 is out: a fresh lag, not stuck.
        let now = t0 + ms(1300);
        let t = track(Some(t), &beat(5, 5), 6, now);
        assert_eq!(t.lag, Some((6, now)));
        assert_eq!(judge(&beat(5, 5), &t, now, TIMEOUT).stuck, None);
        // Caught up: no lag at all.
        let t = track(Some(t), &beat(6, 6), 6, now + ms(10));
        assert_eq!(t.lag, None);
    }

    #[test]
    fn a_worker_that_keeps_up_with_frequent_writes_is_never_lagging_long() {
        // Writes every 50 ms, samples every 200 ms that always catch the worker
        // one generation behind: each sample finds the previous target reached.
        let t0 = Instant::now();
        let mut t = track(None, &beat(0, 0), 0, t0);
        for i in 1..40u64 {
            let now = t0 + ms(200 * i);
            let published = 4 * i;
            t = track(Some(t), &beat(i, published - 1), published, now);
            assert_eq!(judge(&beat(i, published - 1), &t, now, TIMEOUT).stuck, None);
        }
    }

    #[test]
    fn monitor_names_the_stuck_worker_and_since_when() {
        let t0 = Instant::now();
        let mut m = LivenessMonitor::new(TIMEOUT);
        let sample = |hb0, hb1| LivenessSample {
            published_generation: 2,
            workers: vec![
                WorkerBeat {
                    index: 0,
                    core: 0,
                    heartbeat: hb0,
                    generation: 2,
                },
                WorkerBeat {
                    index: 1,
                    core: 1,
                    heartbeat: hb1,
                    generation: 2,
                },
            ],
        };
        assert!(m.observe(&sample(1, 1), t0).serving());
        let l = m.observe(&sample(50, 1), t0 + ms(1500));
        assert!(!l.serving());
        assert!(l.workers[0].stuck.is_none());
        let wall = UNIX_EPOCH + Duration::from_secs(1_796_644_862) + ms(1500);
        let reason = l.reason(wall);
        assert!(
            reason.starts_with("worker 1 (core 1) stuck: no heartbeat for 1.5 s"),
            "{reason}"
        );
        assert!(reason.contains("since 2026-12-07T"), "{reason}");
        let api = l.to_api(wall);
        assert!(api[0].alive && api[0].reason.is_empty() && api[0].stuck_since_unix_ms == 0);
        assert!(!api[1].alive);
        assert_eq!(api[1].heartbeat_age_ms, 1500);
        assert_eq!(api[1].stuck_since_unix_ms, 1_796_644_862_000);
        assert!(m.observe(&sample(51, 2), t0 + ms(1700)).serving());
    }

    #[test]
    fn utc_format_matches_known_dates() {
        let at = |s: u64| format_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_796_644_862), "2026-12-07T12:01:02.000Z");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_millis(4_102_444_799_999)),
            "2099-12-31T23:59:59.999Z"
        );
    }
}
