//! Per-phase timings of one invocation, for finding where an ADD's time goes
//! (`vswitch-bench cni` reads them). Off unless `VSWITCH_CNI_TIMINGS` is set in
//! the environment; then one line `vswitch-cni: timings {json}` goes to stderr
//! at exit, each phase in milliseconds. Runtimes pass the plugin their own
//! environment, so a node's operator can turn it on the same way.

use std::sync::Mutex;
use std::time::Instant;

/// The environment variable that turns the line on.
pub const ENV: &str = "VSWITCH_CNI_TIMINGS";

static PHASES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

/// A phase's start.
#[must_use]
pub fn start() -> Instant {
    Instant::now()
}

/// Records `name` as having taken the time since `since` (added to an earlier
/// phase of the same name).
pub fn record(name: &'static str, since: Instant) {
    let ms = since.elapsed().as_secs_f64() * 1e3;
    let mut p = PHASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match p.iter_mut().find(|(n, _)| *n == name) {
        Some((_, t)) => *t += ms,
        None => p.push((name, ms)),
    }
}

/// The phases recorded so far, as a JSON object.
#[must_use]
pub fn report() -> serde_json::Value {
    let p = PHASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    serde_json::Value::Object(
        p.iter()
            .map(|(n, t)| {
                (
                    (*n).to_owned(),
                    serde_json::json!((t * 1000.0).round() / 1000.0),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_of_one_name_add_up() {
        let t = Instant::now() - std::time::Duration::from_millis(5);
        record("x", t);
        record("x", t);
        let v = report();
        assert!(v["x"].as_f64().unwrap() >= 10.0, "{v}");
    }
}
