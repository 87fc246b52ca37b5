//! Rate-limited logging for the packet path.
//!
//! Something that goes wrong on the packet path goes wrong for every burst: a
//! full tx ring or an exhausted pool would print thousands of lines a second,
//! flood the journal and cost the worker more than the event itself. Each call
//! site of [`warn_limited!`](crate::warn_limited) owns a token bucket: a burst
//! of [`BURST`] lines, then one per [`INTERVAL`]; the next line that passes says
//! how many were suppressed since the last one (`suppressed=N`). Counting stays
//! exact elsewhere: every drop is in the drop counters whether or not its line
//! was printed.
//!
//! The bucket is one atomic word (the generic cell rate algorithm: a
//! theoretical arrival time, moved one interval forward per admitted line), so
//! workers on several cores share a call site without a lock, and the clock is
//! read only when the event happens and the level is enabled.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines a call site may print back to back.
pub const BURST: u64 = 5;
/// Then one line per this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One call site's token bucket.
#[derive(Debug)]
pub struct RateLimit {
    /// When the bucket is full again, in nanoseconds since [`clock_ns`]'s epoch.
    tat_ns: AtomicU64,
    suppressed: AtomicU64,
    interval_ns: u64,
    burst: u64,
}

/// Nanoseconds on a monotonic clock since its first use in this process.
pub fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl RateLimit {
    /// A bucket of `burst` lines refilled with one per `interval`.
    pub const fn new(burst: u64, interval: Duration) -> Self {
        RateLimit {
            tat_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            interval_ns: interval.as_nanos() as u64,
            burst: if burst == 0 { 1 } else { burst },
        }
    }

    /// The call sites' default: [`BURST`], then one per [`INTERVAL`].
    pub const fn per_call_site() -> Self {
        Self::new(BURST, INTERVAL)
    }

    /// Whether a line may be printed now: `Some(n)` with the lines suppressed
    /// since the last one printed, or `None` (counted as suppressed).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(clock_ns())
    }

    /// [`admit`](Self::admit) at `now_ns` (for tests with made-up clocks).
    pub fn admit_at(&self, now_ns: u64) -> Option<u64> {
        let tolerance = self.interval_ns.saturating_mul(self.burst - 1);
        let mut tat = self.tat_ns.load(Relaxed);
        loop {
            let base = tat.max(now_ns);
            if base - now_ns > tolerance {
                self.suppressed.fetch_add(1, Relaxed);
                return None;
            }
            match self.tat_ns.compare_exchange_weak(
                tat,
                base.saturating_add(self.interval_ns),
                Relaxed,
                Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Relaxed)),
                Err(t) => tat = t,
            }
        }
    }
}

/// `tracing::warn!` behind a per-call-site [`RateLimit`]; the line carries
/// `suppressed`, the lines dropped since the previous one.
///
/// ```
/// dataplane::warn_limited!(port = 3, "tx ring full");
/// ```
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::RateLimit = $crate::log_limit::RateLimit::per_call_site();
        if ::tracing::enabled!(::tracing::Level::WARN) {
            if let Some(suppressed) = LIMIT.admit() {
                ::tracing::warn!(suppressed, $($arg)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_burst_passes_then_one_per_interval_with_the_suppressed_count() {
        let l = RateLimit::new(3, Duration::from_secs(10));
        let t0 = 100 * S;
        // Three back to back, none suppressed before them.
        for _ in 0..3 {
            assert_eq!(l.admit_at(t0), Some(0));
        }
        // A storm within the same second: all suppressed.
        for i in 0..1000 {
            assert_eq!(l.admit_at(t0 + i), None);
        }
        // One interval later one line passes and says how many it stood for.
        assert_eq!(l.admit_at(t0 + 10 * S), Some(1000));
        assert_eq!(l.admit_at(t0 + 10 * S + 1), None);
        assert_eq!(l.admit_at(t0 + 20 * S), Some(1));
        // A quiet spell refills the whole burst, no more.
        let later = t0 + 1000 * S;
        for _ in 0..3 {
            assert_eq!(l.admit_at(later), Some(0));
        }
        assert_eq!(l.admit_at(later), None);
    }

    #[test]
    fn a_steady_stream_below_the_rate_is_never_suppressed() {
        let l = RateLimit::new(1, Duration::from_secs(1));
        for i in 0..100 {
            assert_eq!(l.admit_at(i * 2 * S), Some(0), "line {i}");
        }
    }

    #[test]
    fn threads_sharing_a_call_site_admit_exactly_the_burst() {
        let l = std::sync::Arc::new(RateLimit::new(BURST, Duration::from_secs(3600)));
        let now = clock_ns();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = std::sync::Arc::clone(&l);
                std::thread::spawn(move || (0..1000).filter(|_| l.admit_at(now).is_some()).count())
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(admitted as u64, BURST);
        assert_eq!(l.suppressed.load(Relaxed), 4000 - BURST);
    }

    #[test]
    fn the_macro_compiles_at_a_call_site_and_counts() {
        for i in 0..20 {
            crate::warn_limited!(round = i, "test line");
        }
    }
}
