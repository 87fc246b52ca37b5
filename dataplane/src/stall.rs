//! A test-only fault hook that freezes a worker, so liveness checks can be tested
//! against a real daemon.
//!
//! **Not for production.** A stuck worker (a PMD that spins in `rx_burst`, a lock
//! that never comes free) cannot be produced on demand, and `SIGSTOP` stops the
//! whole process, control thread included, which is not what a stuck worker looks
//! like. So `vswitchd` hands its workers a [`StallHook`] when the environment
//! variable [`STALL_FILE_ENV`] names a file (it logs a warning when it does), and a
//! worker with a hook stops polling while that file exists: no rounds, no
//! heartbeat, no packets — until the file is removed.
//!
//! The file is empty (every worker stalls) or lists worker indices separated by
//! white space or commas (those workers stall).
//!
//! Cost: without a hook, one `Option` test per round. With one, a clock read per
//! round and a `stat` of the file at most every [`StallHook::CHECK_EVERY`]; never
//! anything per packet.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::worker::WorkerId;

/// The environment variable naming the stall file (test-only).
pub const STALL_FILE_ENV: &str = "VSWITCH_TEST_STALL_WORKER_FILE";

/// Stalls a worker while a file exists (see the module docs). Test-only.
#[derive(Debug, Clone)]
pub struct StallHook {
    path: PathBuf,
    next_check: Instant,
}

impl StallHook {
    /// How often a running worker looks at the file.
    pub const CHECK_EVERY: Duration = Duration::from_millis(100);
    /// How long a stalled worker sleeps between looks at the file (and at its stop
    /// flag, so a stalled switch still shuts down).
    pub const STALLED_SLEEP: Duration = Duration::from_millis(20);

    /// A hook on the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StallHook {
            path: path.into(),
            next_check: Instant::now(),
        }
    }

    /// The hook [`STALL_FILE_ENV`] asks for, if it is set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(STALL_FILE_ENV)
            .filter(|p| !p.is_empty())
            .map(Self::new)
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether the file tells `worker` to stall now: it exists and is empty or
    /// lists `worker`.
    pub fn stalls(&self, worker: WorkerId) -> bool {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => lists(&text, worker),
            // Not there (or unreadable): run.
            Err(_) => false,
        }
    }

    /// Called by the worker between rounds: at most every
    /// [`CHECK_EVERY`](Self::CHECK_EVERY), looks at the file and, while it says
    /// so, sleeps without polling — returning early when `stop` is set.
    pub fn between_rounds(&mut self, worker: WorkerId, stop: &AtomicBool) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + Self::CHECK_EVERY;
        if !self.stalls(worker) {
            return;
        }
        tracing::warn!(worker = worker.0, file = %self.path.display(), "test fault hook: worker stalled");
        while self.stalls(worker) && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Self::STALLED_SLEEP);
        }
        tracing::warn!(worker = worker.0, "test fault hook: worker resumed");
    }
}

/// Whether a stall file's `text` covers `worker`: empty covers every worker.
fn lists(text: &str, worker: WorkerId) -> bool {
    let mut items = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .peekable();
    if items.peek().is_none() {
        return true;
    }
    items.any(|s| s.parse::<u16>() == Ok(worker.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_stalls_everyone_a_list_only_those_listed() {
        assert!(lists("", WorkerId(3)));
        assert!(lists(" \n", WorkerId(0)));
        assert!(lists("1", WorkerId(1)));
        assert!(!lists("1", WorkerId(0)));
        assert!(lists("0, 2\n", WorkerId(2)));
        assert!(!lists("0,2", WorkerId(1)));
        assert!(!lists("x", WorkerId(0)));
    }

    #[test]
    fn stalls_while_the_file_exists() {
        let path = std::env::temp_dir().join(format!("vsw-stall-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut hook = StallHook::new(&path);
        let stop = AtomicBool::new(false);
        assert!(!hook.stalls(WorkerId(0)));
        hook.between_rounds(WorkerId(0), &stop); // returns at once
        std::fs::write(&path, "0").unwrap();
        assert!(hook.stalls(WorkerId(0)));
        assert!(!hook.stalls(WorkerId(1)));
        // Stalled, it still honours the stop flag.
        stop.store(true, Ordering::Release);
        hook.next_check = Instant::now();
        hook.between_rounds(WorkerId(0), &stop);
        std::fs::remove_file(&path).unwrap();
        assert!(!hook.stalls(WorkerId(0)));
    }
}
