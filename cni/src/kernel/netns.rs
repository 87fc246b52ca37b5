//! Running work inside a pod's network namespace without `nsenter`.
//!
//! `setns(2)` changes the namespace of the calling thread only, so the work
//! runs on a thread made for it, which ends with it: no other thread of the
//! plugin (the runtime talking to the switch) ever changes namespace, and no
//! thread is ever handed back to a pool in the pod's namespace. Netlink sockets
//! belong to the namespace of the thread that made them, which is what makes
//! everything the closure opens talk to the pod's kernel tables.

use std::path::Path;

use nix::sched::{setns, CloneFlags};

/// Runs `work` on a new thread in the network namespace at `netns` (a
/// `/proc/PID/ns/net` or a bind mount under `/run/netns`); its result.
///
/// # Errors
/// The namespace cannot be opened or entered (the message names it); `work`'s
/// own error otherwise.
pub fn run_in<T, F>(netns: &Path, work: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce() -> Result<T, String> + Send,
{
    let file = std::fs::File::open(netns)
        .map_err(|e| format!("cannot open network namespace {}: {e}", netns.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter network namespace {}: {e}", netns.display()))?;
            work()
        })
        .join()
        .unwrap_or_else(|_| Err("the namespace thread panicked".into()))
    })
}

/// Runs async `work` on its own single-threaded runtime inside `netns`.
///
/// # Errors
/// As [`run_in`], or the runtime cannot start.
pub fn block_on_in<T, Fut, F>(netns: &Path, work: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    run_in(netns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        rt.block_on(work())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named() {
        let e = run_in(Path::new("/nonexistent/ns"), || Ok(())).unwrap_err();
        assert!(e.contains("/nonexistent/ns"), "{e}");
    }
}
