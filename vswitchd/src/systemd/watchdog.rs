//! When to ping the service manager's watchdog.
//!
//! systemd restarts a service whose pings stop for `WatchdogSec`. A ping from a
//! thread that merely runs proves little: the control thread kept running while
//! a frozen worker lost every packet. So a ping is sent only while the workers'
//! liveness ([`control::liveness`]) says every heartbeat advances, and a worker
//! stuck for longer than the liveness bound withholds pings until it moves again:
//! stuck for `WatchdogSec`, the service is restarted.
//!
//! Pings go at half the interval systemd asks for (`WATCHDOG_USEC`), as
//! `sd_watchdog_enabled(3)` advises, so one late tick of the daemon's loop does
//! not cost a restart. The decision is pure ([`Watchdog::tick`]) and tested with
//! made-up clocks.

use std::time::{Duration, Instant};

/// The variable holding the watchdog interval in microseconds.
pub const WATCHDOG_USEC_ENV: &str = "WATCHDOG_USEC";
/// The variable naming the process the interval is meant for.
pub const WATCHDOG_PID_ENV: &str = "WATCHDOG_PID";

/// Reads the interval systemd asks for from `usec` and `pid` (the variables'
/// values) for process `me`: `None` when there is no watchdog, or it is meant
/// for another process (a parent's variables inherited).
///
/// # Errors
/// A value that is not a positive number of microseconds.
pub fn interval(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else { return Ok(None) };
    if let Some(pid) = pid {
        match pid.trim().parse::<u32>() {
            Ok(p) if p == me => {}
            Ok(_) => return Ok(None),
            Err(_) => return Err(format!("{WATCHDOG_PID_ENV}={pid:?} is not a process id")),
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(format!(
            "{WATCHDOG_USEC_ENV}={usec:?} is not a positive number of microseconds"
        )),
        Ok(us) => Ok(Some(Duration::from_micros(us))),
    }
}

/// What to do at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `WATCHDOG=1`.
    Ping,
    /// A ping is due but a worker is stuck: send nothing (and say why, once).
    Withhold,
    /// Nothing due.
    Wait,
}

/// The watchdog's state between ticks.
#[derive(Debug, Clone)]
pub struct Watchdog {
    period: Duration,
    last_ping: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for systemd's `interval`: pings every half of it.
    pub fn new(interval: Duration) -> Self {
        Watchdog {
            period: interval / 2,
            last_ping: None,
        }
    }

    /// How often pings go while every worker is alive.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Decides at `now`, with `serving` the workers' liveness verdict.
    pub fn tick(&mut self, now: Instant, serving: bool) -> Action {
        let due = match self.last_ping {
            Some(t) => now.saturating_duration_since(t) >= self.period,
            None => true,
        };
        match (due, serving) {
            (false, _) => Action::Wait,
            (true, true) => {
                self.last_ping = Some(now);
                Action::Ping
            }
            (true, false) => Action::Withhold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_interval_comes_from_the_environment_for_this_process_only() {
        assert_eq!(interval(None, None, 7), Ok(None));
        assert_eq!(interval(Some("2000000"), None, 7), Ok(Some(ms(2000))));
        assert_eq!(interval(Some("2000000"), Some("7"), 7), Ok(Some(ms(2000))));
        assert_eq!(interval(Some("2000000"), Some("8"), 7), Ok(None));
        for bad in ["0", "-1", "soon", ""] {
            let e = interval(Some(bad), None, 7).unwrap_err();
            assert!(e.starts_with("WATCHDOG_USEC="), "{e}");
        }
        assert!(interval(Some("1"), Some("me"), 7).is_err());
    }

    #[test]
    fn pings_go_at_half_the_interval_while_serving() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(ms(1000));
        assert_eq!(w.period(), ms(500));
        assert_eq!(w.tick(t0, true), Action::Ping);
        let mut pings = 1;
        for i in 1..=100u64 {
            if w.tick(t0 + ms(20 * i), true) == Action::Ping {
                pings += 1;
            }
        }
        // 2 s of 20 ms ticks: at 0, 500, 1000, 1500, 2000 ms.
        assert_eq!(pings, 5);
    }

    #[test]
    fn a_stuck_worker_withholds_pings_until_it_moves_again() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(ms(1000));
        assert_eq!(w.tick(t0, true), Action::Ping);
        assert_eq!(w.tick(t0 + ms(100), false), Action::Wait);
        // Due, but stuck: nothing sent, however long it lasts.
        for i in 5..50u64 {
            assert_eq!(w.tick(t0 + ms(100 * i), false), Action::Withhold);
        }
        // Alive again: a ping at once, then back to the period.
        assert_eq!(w.tick(t0 + ms(5000), true), Action::Ping);
        assert_eq!(w.tick(t0 + ms(5200), true), Action::Wait);
        assert_eq!(w.tick(t0 + ms(5500), true), Action::Ping);
    }
}
