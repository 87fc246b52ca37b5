//! Packet sockets made ahead of the `kernel` ports that will use them.
//!
//! Opening a `kernel` port is mostly setting up its socket's two rings, and
//! each of those waits for an RCU grace period in the kernel (~10-20 ms),
//! while binding a socket whose rings are ready takes tens of microseconds.
//! An unbound socket made with protocol 0 receives nothing, so a few can wait
//! ready: a thread of the control side keeps [`DEPTH`] of them, and a port
//! takes one (a CNI ADD then waits for no grace period), falling back to
//! making its own when a burst of ADDs has emptied the reserve.
//!
//! The thread starts with the first `kernel` port, so a switch without any
//! keeps neither a thread nor the reserve's rings (1.5 MiB each).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pmd_shims::packet_socket::PreparedSocket;
use tracing::warn;

/// Sockets kept ready: a few ADDs in a row find theirs made.
pub const DEPTH: usize = 4;

#[derive(Default)]
struct State {
    ready: Vec<PreparedSocket>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and a flag: whatever a panic left is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reserve and the thread that fills it.
pub struct SocketReserve {
    shared: Arc<Shared>,
    filler: Option<JoinHandle<()>>,
}

impl SocketReserve {
    /// Starts the thread that fills the reserve.
    pub fn start() -> SocketReserve {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let filler = std::thread::Builder::new()
            .name("socket-reserve".into())
            .spawn(move || fill(&s))
            .map_err(|e| warn!("no socket reserve (kernel ports open their own): {e}"))
            .ok();
        SocketReserve { shared, filler }
    }

    /// A ready socket, if the reserve has one (the thread then makes another).
    pub fn take(&self) -> Option<PreparedSocket> {
        let taken = self.shared.lock().ready.pop();
        self.shared.wake.notify_one();
        taken
    }
}

impl Drop for SocketReserve {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.filler.take() {
            let _ = t.join();
        }
    }
}

/// Keeps [`DEPTH`] sockets ready until told to stop. A socket that cannot be
/// made (no `CAP_NET_RAW`, no memory) is tried again a second later, logged
/// once: the ports then make their own and report the error themselves.
fn fill(shared: &Shared) {
    let mut failing = false;
    loop {
        {
            let mut st = shared.lock();
            while !st.stop && st.ready.len() >= DEPTH {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop {
                return;
            }
        }
        // Made without the lock held: a take() never waits for a grace period.
        match PreparedSocket::new() {
            Ok(s) => {
                failing = false;
                shared.lock().ready.push(s);
            }
            Err(e) => {
                if !failing {
                    warn!("socket reserve: {e}; kernel ports open their own sockets meanwhile");
                    failing = true;
                }
                let st = shared.lock();
                if st.stop {
                    return;
                }
                let _ = shared.wake.wait_timeout(st, Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With root (CAP_NET_RAW) the reserve fills to DEPTH, a take is answered
    /// at once and refilled; dropping it stops the thread and closes them.
    #[test]
    fn the_reserve_fills_and_refills() {
        if PreparedSocket::new().is_err() {
            eprintln!("skipped: cannot open a packet socket (needs CAP_NET_RAW)");
            return;
        }
        let r = SocketReserve::start();
        let full = |r: &SocketReserve| {
            for _ in 0..500 {
                if r.shared.lock().ready.len() == DEPTH {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(full(&r), "filled");
        assert!(r.take().is_some());
        assert!(full(&r), "refilled");
        drop(r);
    }
}
