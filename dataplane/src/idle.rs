//! Backing off when there is nothing to do.
//!
//! A poll-mode worker that spins on empty queues burns a whole core. That is right
//! for a benchmark or a dedicated DPU core, and wrong on a 2-core CI machine or a
//! node that also runs pods. Like OVS's `pmd-sleep-max`, a worker whose whole poll
//! round received nothing sleeps, starting short and doubling each empty round up to
//! `max_sleep`, and goes back to full speed on the first packet. The cost is latency
//! for the first packet after a quiet period: at most `max_sleep`.
//!
//! `std::thread::sleep` has a floor of tens of microseconds on Linux, so the first
//! sleep is [`IdleBackoff::MIN_SLEEP`] rather than something smaller that would
//! sleep just as long anyway.

use std::time::Duration;

/// Sleep policy for empty poll rounds. `max_sleep == 0` means busy-poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleBackoff {
    max_sleep: Duration,
    next: Duration,
}

impl IdleBackoff {
    /// The first sleep after a busy round.
    pub const MIN_SLEEP: Duration = Duration::from_micros(10);

    /// Sleeps growing from [`MIN_SLEEP`](Self::MIN_SLEEP) to `max_sleep`; zero means busy-poll.
    pub fn new(max_sleep: Duration) -> Self {
        IdleBackoff {
            max_sleep,
            next: Self::MIN_SLEEP.min(max_sleep),
        }
    }

    /// Never sleep: spin on empty queues (benchmarks, dedicated cores).
    pub fn busy_poll() -> Self {
        Self::new(Duration::ZERO)
    }

    /// The configured upper bound.
    pub fn max_sleep(&self) -> Duration {
        self.max_sleep
    }

    /// Back to full speed: the next empty round sleeps the minimum again.
    #[inline]
    pub fn reset(&mut self) {
        self.next = Self::MIN_SLEEP.min(self.max_sleep);
    }

    /// Records an empty round and returns how long to sleep for it (`None` when
    /// busy-polling), doubling the next sleep up to the bound.
    pub fn idle_round(&mut self) -> Option<Duration> {
        if self.max_sleep.is_zero() {
            return None;
        }
        let sleep = self.next;
        self.next = (self.next * 2).min(self.max_sleep);
        Some(sleep)
    }

    /// Applies the policy after a poll round that received `received` packets:
    /// resets on traffic, otherwise sleeps (or, busy-polling, hints the CPU).
    pub fn after_round(&mut self, received: usize) {
        if received > 0 {
            self.reset();
            return;
        }
        match self.idle_round() {
            Some(d) => std::thread::sleep(d),
            None => std::hint::spin_loop(),
        }
    }
}

impl Default for IdleBackoff {
    /// OVS's default of busy-polling is for dedicated hosts; ours bounds idle
    /// latency at 1 ms so a shared machine stays usable.
    fn default() -> Self {
        Self::new(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn grows_to_bound_and_resets() {
        let mut b = IdleBackoff::new(us(100));
        let seq: Vec<_> = (0..6).map(|_| b.idle_round().unwrap()).collect();
        assert_eq!(seq, [us(10), us(20), us(40), us(80), us(100), us(100)]);
        b.after_round(3);
        assert_eq!(b.idle_round(), Some(us(10)), "traffic resets the backoff");
    }

    #[test]
    fn zero_is_busy_poll() {
        let mut b = IdleBackoff::busy_poll();
        for _ in 0..10 {
            assert_eq!(b.idle_round(), None);
        }
        b.after_round(0); // spins, returns at once
    }

    #[test]
    fn bound_below_minimum_is_respected() {
        let mut b = IdleBackoff::new(us(3));
        assert_eq!(b.idle_round(), Some(us(3)));
        assert_eq!(b.idle_round(), Some(us(3)));
    }

    #[test]
    fn after_round_sleeps_when_idle() {
        let mut b = IdleBackoff::new(us(10));
        let t = std::time::Instant::now();
        b.after_round(0);
        assert!(t.elapsed() >= us(10));
    }
}
