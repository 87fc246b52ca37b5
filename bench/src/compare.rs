//! `vswitch-bench compare`: one scenario through vswitchd, through
//! `dpdk-testpmd --forward-mode=io` (the I/O floor) and through OVS-DPDK
//! (`bench/scripts/ovs_dpdk.py`), one after the other on the same core, and
//! the figures side by side.
//!
//! Every rate is the median of one-second samples after a warm-up. Cycles
//! per packet are TSC Hz / median packets per second for all three (each
//! forwarder busy-polls its core, so every cycle of that core is spent on the
//! traffic); OVS's own `pmd-stats-show` figure is not used, so the three
//! columns share one definition.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::bundle::{Bundle, DESCRIPTOR_FILE, OVS_FLOWS_FILE};
use crate::memory::Memory;
use crate::runner::RunOptions;

/// Exit status of `ovs_dpdk.py` when OVS-DPDK is not installed.
pub const OVS_NOT_INSTALLED: i32 = 3;

/// One forwarder's result in a comparison: a median rate, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Median rate, Mpps.
    Mpps(f64),
    /// Deliberately not measured (OVS not installed, `--no-ovs`).
    Skipped(String),
    /// The measurement failed.
    Failed(String),
}

impl Outcome {
    /// The rate, if measured.
    pub fn mpps(&self) -> Option<f64> {
        match self {
            Self::Mpps(m) => Some(*m),
            _ => None,
        }
    }

    /// Why there is no rate.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Mpps(_) => None,
            Self::Skipped(r) | Self::Failed(r) => Some(r),
        }
    }
}

/// One forwarder's outcome over several rounds: the median of the rounds' rates
/// when every round measured one; otherwise the first failure, or else the first
/// reason it was skipped.
pub fn combine(rounds: &[Outcome]) -> Outcome {
    if let Some(failed) = rounds.iter().find(|o| matches!(o, Outcome::Failed(_))) {
        return failed.clone();
    }
    if let Some(skipped) = rounds.iter().find(|o| matches!(o, Outcome::Skipped(_))) {
        return skipped.clone();
    }
    let rates: Vec<f64> = rounds.iter().filter_map(Outcome::mpps).collect();
    median(&rates).map_or_else(
        || Outcome::Failed("no rounds ran".to_owned()),
        Outcome::Mpps,
    )
}

/// The median of `xs` (the mean of the middle two for an even count); `None`
/// when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

/// TSC cycles per packet at `mpps` (none below 1 kpps, where the worker is not
/// busy with packets, or without a known TSC frequency).
pub fn cycles_per_packet(tsc_hz: f64, mpps: f64) -> Option<f64> {
    let pps = mpps * 1e6;
    (pps >= 1000.0 && tsc_hz > 0.0).then(|| tsc_hz / pps)
}

/// A frame size setting as JSON: a number, or the string `imix`.
pub fn frame_size_json(frame_size: &str) -> Value {
    frame_size
        .parse::<u64>()
        .map_or_else(|_| json!(frame_size), |n| json!(n))
}

/// Each forwarder's outcome in every round of a comparison, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rounds {
    /// vswitchd.
    pub vswitch: Vec<Outcome>,
    /// OVS-DPDK.
    pub ovs: Vec<Outcome>,
    /// `dpdk-testpmd --forward-mode=io`.
    pub testpmd: Vec<Outcome>,
}

/// The three measurements of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Scenario name.
    pub scenario: String,
    /// Frame size setting (`64`, `imix`, ...).
    pub frame_size: String,
    /// Flow count.
    pub flows: u32,
    /// TSC frequency (0 if unknown).
    pub tsc_hz: f64,
    /// The memory all three ran with.
    pub memory: Memory,
    /// vswitchd.
    pub vswitch: Outcome,
    /// OVS-DPDK.
    pub ovs: Outcome,
    /// `dpdk-testpmd --forward-mode=io`.
    pub testpmd: Outcome,
    /// The rounds the three outcomes above combine ([`combine`]); one round
    /// unless `--rounds` asked for more.
    pub rounds: Rounds,
}

/// `x` rounded to `digits` decimals, for reports.
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

impl Comparison {
    /// TSC cycles per packet of one outcome (none below 1 kpps or without a
    /// known TSC frequency).
    pub fn cycles_per_packet(&self, outcome: &Outcome) -> Option<f64> {
        cycles_per_packet(self.tsc_hz, outcome.mpps()?)
    }

    /// vswitchd's rate over OVS-DPDK's.
    pub fn ratio_vs_ovs(&self) -> Option<f64> {
        ratio(self.vswitch.mpps(), self.ovs.mpps())
    }

    /// vswitchd's rate over testpmd io-forward's (the floor).
    pub fn ratio_vs_floor(&self) -> Option<f64> {
        ratio(self.vswitch.mpps(), self.testpmd.mpps())
    }

    /// The JSON object of issue #4:
    /// `{"scenario", "frame_size", "mpps": {"vswitch", "ovs", "testpmd"},
    /// "cycles_per_packet": {...}, "ratio_vs_ovs", "ratio_vs_floor"}`, then
    /// `"memory"` (`hugepages` or `no-huge`, the same for all three) and
    /// `"rounds"` (how many times each ran; with more than one, the figures are
    /// medians over the rounds and `"per_round_mpps"` lists each round's); a
    /// missing figure is null, with `"ovs_skipped": reason` when OVS was not
    /// measured and `"errors": {forwarder: reason}` when vswitchd or testpmd
    /// failed.
    pub fn to_json(&self) -> Value {
        let mpps = |o: &Outcome| o.mpps().map(|m| round(m, 3));
        let cycles = |o: &Outcome| self.cycles_per_packet(o).map(|c| round(c, 1));
        let mut doc = json!({
            "scenario": self.scenario,
            "frame_size": frame_size_json(&self.frame_size),
            "mpps": {
                "vswitch": mpps(&self.vswitch),
                "ovs": mpps(&self.ovs),
                "testpmd": mpps(&self.testpmd),
            },
            "cycles_per_packet": {
                "vswitch": cycles(&self.vswitch),
                "ovs": cycles(&self.ovs),
                "testpmd": cycles(&self.testpmd),
            },
            "ratio_vs_ovs": self.ratio_vs_ovs().map(|r| round(r, 3)),
            "ratio_vs_floor": self.ratio_vs_floor().map(|r| round(r, 3)),
            "memory": self.memory.label(),
            "rounds": self.rounds.vswitch.len().max(1),
        });
        if self.rounds.vswitch.len() > 1 {
            let each = |v: &[Outcome]| v.iter().map(mpps).collect::<Vec<_>>();
            doc["per_round_mpps"] = json!({
                "vswitch": each(&self.rounds.vswitch),
                "ovs": each(&self.rounds.ovs),
                "testpmd": each(&self.rounds.testpmd),
            });
        }
        if let Some(reason) = self.ovs.reason() {
            doc["ovs_skipped"] = json!(reason);
        }
        let errors: serde_json::Map<String, Value> =
            [("vswitch", &self.vswitch), ("testpmd", &self.testpmd)]
                .into_iter()
                .filter_map(|(name, o)| match o {
                    Outcome::Failed(r) => Some((name.to_owned(), json!(r))),
                    _ => None,
                })
                .collect();
        if !errors.is_empty() {
            doc["errors"] = Value::Object(errors);
        }
        doc
    }

    /// [`Comparison::to_json`] on one line, keys in the issue's order
    /// (serde_json's maps sort them).
    pub fn to_json_line(&self) -> String {
        let doc = self.to_json();
        let keys = [
            "scenario",
            "frame_size",
            "mpps",
            "cycles_per_packet",
            "ratio_vs_ovs",
            "ratio_vs_floor",
            "memory",
            "rounds",
            "per_round_mpps",
            "ovs_skipped",
            "errors",
        ];
        let forwarders = ["vswitch", "ovs", "testpmd"];
        let fields: Vec<String> = keys
            .iter()
            .filter_map(|&key| {
                let value = doc.get(key)?;
                let text = if matches!(key, "mpps" | "cycles_per_packet" | "per_round_mpps") {
                    let inner: Vec<String> = forwarders
                        .iter()
                        .map(|f| format!("{}:{}", json!(f), value[*f]))
                        .collect();
                    format!("{{{}}}", inner.join(","))
                } else {
                    value.to_string()
                };
                Some(format!("{}:{text}", json!(key)))
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// The side-by-side table of `rows`, followed by the reason for every
/// missing figure.
pub fn table(rows: &[Comparison]) -> String {
    let mpps = |o: &Outcome| {
        o.mpps()
            .map_or_else(|| "n/a".to_owned(), |m| format!("{m:.2}"))
    };
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:>5} {:>6} | {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>6} {:>8}",
        "scenario",
        "size",
        "flows",
        "vswitch",
        "ovs",
        "testpmd",
        "cyc/vsw",
        "cyc/ovs",
        "cyc/io",
        "us/OVS",
        "us/floor"
    );
    let _ = writeln!(
        s,
        "{:<13} {:>5} {:>6} | {:>26} | {:>23} |",
        "", "", "", "Mpps (median)", "TSC cycles/packet"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<13} {:>5} {:>6} | {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>6} {:>8}",
            r.scenario,
            r.frame_size,
            r.flows,
            mpps(&r.vswitch),
            mpps(&r.ovs),
            mpps(&r.testpmd),
            opt(r.cycles_per_packet(&r.vswitch), 0),
            opt(r.cycles_per_packet(&r.ovs), 0),
            opt(r.cycles_per_packet(&r.testpmd), 0),
            opt(r.ratio_vs_ovs(), 2),
            opt(r.ratio_vs_floor(), 2),
        );
    }
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.memory.label()).collect();
    kinds.dedup();
    let _ = writeln!(s, "memory: {}", kinds.join(", "));
    if let Some(n) = rows
        .iter()
        .map(|r| r.rounds.vswitch.len())
        .max()
        .filter(|&n| n > 1)
    {
        let _ = writeln!(s, "rounds: {n}, each figure the median over them");
    }
    for r in rows {
        for (name, o) in [
            ("vswitch", &r.vswitch),
            ("ovs", &r.ovs),
            ("testpmd", &r.testpmd),
        ] {
            match o {
                Outcome::Mpps(_) => {}
                Outcome::Skipped(reason) => {
                    let _ = writeln!(
                        s,
                        "{} {}: {name} skipped: {reason}",
                        r.scenario, r.frame_size
                    );
                }
                Outcome::Failed(reason) => {
                    let _ = writeln!(s, "{} {}: {name} n/a: {reason}", r.scenario, r.frame_size);
                }
            }
        }
    }
    s
}

/// Runs `python3 <script> run` on the bundle (its pcap, OVS flows and
/// descriptor) and returns OVS-DPDK's median rate: [`Outcome::Skipped`] if the
/// script says OVS-DPDK is not installed (exit 3), [`Outcome::Failed`] with
/// its first error line otherwise. The script's stderr is passed through.
pub fn run_ovs(script: &Path, bundle: &Bundle, opts: &RunOptions) -> Outcome {
    match ovs_result(script, bundle, opts) {
        Ok(doc) => match doc["mpps"].as_f64() {
            Some(mpps) => Outcome::Mpps(mpps),
            None => Outcome::Failed("ovs_dpdk.py printed no JSON result with \"mpps\"".to_owned()),
        },
        Err(outcome) => outcome,
    }
}

/// [`run_ovs`]'s run, giving the script's whole JSON result. Under
/// `opts.wrapper` (callgrind) ovs-vswitchd runs under it (`--wrapper`, as a JSON
/// list) and the result has `tx_packets_total`.
///
/// # Errors
/// [`Outcome::Skipped`] or [`Outcome::Failed`], as [`run_ovs`] says.
pub fn ovs_result(script: &Path, bundle: &Bundle, opts: &RunOptions) -> Result<Value, Outcome> {
    if !script.exists() {
        return Err(Outcome::Skipped(format!(
            "{} not found (--ovs-script)",
            script.display()
        )));
    }
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("run")
        .arg("--pcap")
        .arg(bundle.pcap())
        .arg("--flows")
        .arg(bundle.dir.join(OVS_FLOWS_FILE))
        .arg("--setup")
        .arg(bundle.dir.join(DESCRIPTOR_FILE))
        .args([
            "--core",
            &opts.core.to_string(),
            "--seconds",
            &opts.seconds.to_string(),
            "--warmup",
            &opts.warmup.to_string(),
            "--json",
            "--memory",
            opts.memory.label(),
        ]);
    if !opts.wrapper.is_empty() {
        cmd.arg("--wrapper").arg(json!(opts.wrapper).to_string());
    }
    let output = match cmd.output() {
        Ok(o) => o,
        Err(err) => return Err(Outcome::Skipped(format!("cannot run python3: {err}"))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    match output.status.code() {
        Some(0) => {}
        Some(OVS_NOT_INSTALLED) => {
            let msg = stdout.trim();
            return Err(Outcome::Skipped(if msg.is_empty() {
                "OVS-DPDK not installed: make bench-deps".to_owned()
            } else {
                msg.to_owned()
            }));
        }
        code => {
            let line = stderr
                .lines()
                .find(|l| l.starts_with("ovs_dpdk.py:"))
                .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("no message");
            let code = code.map_or_else(|| "a signal".to_owned(), |c| c.to_string());
            return Err(Outcome::Failed(format!(
                "ovs_dpdk.py exited with {code}: {}",
                line.trim()
            )));
        }
    }
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .ok_or_else(|| Outcome::Failed("ovs_dpdk.py printed no JSON result".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    fn row(ovs: Outcome) -> Comparison {
        Comparison {
            scenario: "l2".into(),
            frame_size: "64".into(),
            flows: 1,
            tsc_hz: 3e9,
            memory: Memory::Hugepages,
            vswitch: Outcome::Mpps(30.0),
            ovs,
            testpmd: Outcome::Mpps(40.0),
            rounds: Rounds::default(),
        }
    }

    #[test]
    fn rounds_combine_to_the_median_or_the_first_reason() {
        use Outcome::{Failed, Mpps, Skipped};
        assert_eq!(combine(&[Mpps(3.0), Mpps(1.0), Mpps(2.0)]), Mpps(2.0));
        assert_eq!(
            combine(&[Mpps(4.0), Mpps(1.0), Mpps(2.0), Mpps(3.0)]),
            Mpps(2.5)
        );
        assert_eq!(combine(&[Mpps(5.0)]), Mpps(5.0));
        assert_eq!(
            combine(&[Mpps(1.0), Skipped("--no-ovs".into()), Failed("boom".into())]),
            Failed("boom".into())
        );
        assert_eq!(
            combine(&[Skipped("a".into()), Skipped("b".into())]),
            Skipped("a".into())
        );
        assert!(matches!(combine(&[]), Failed(_)));
    }

    #[test]
    fn several_rounds_list_each_in_json() {
        let mut r = row(Outcome::Mpps(10.0));
        r.rounds = Rounds {
            vswitch: vec![
                Outcome::Mpps(29.0),
                Outcome::Mpps(30.0),
                Outcome::Mpps(31.0),
            ],
            ovs: vec![Outcome::Mpps(10.0); 3],
            testpmd: vec![
                Outcome::Mpps(40.0),
                Outcome::Failed("x".into()),
                Outcome::Mpps(41.0),
            ],
        };
        let j = r.to_json();
        assert_eq!(j["rounds"], 3);
        assert_eq!(j["per_round_mpps"]["vswitch"], json!([29.0, 30.0, 31.0]));
        assert_eq!(j["per_round_mpps"]["testpmd"], json!([40.0, null, 41.0]));
        let line = r.to_json_line();
        assert!(
            line.contains(r#""rounds":3,"per_round_mpps":{"vswitch":[29.0,30.0,31.0],"#),
            "{line}"
        );
        assert!(table(&[r.clone()]).contains("rounds: 3, each figure the median"));
        assert!(!table(&[row(Outcome::Mpps(1.0))]).contains("rounds:"));
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), j);
    }

    #[test]
    fn json_has_the_issue_shape() {
        let j = row(Outcome::Mpps(10.0)).to_json();
        assert_eq!(j["scenario"], "l2");
        assert_eq!(j["frame_size"], 64);
        assert_eq!(j["mpps"]["vswitch"], 30.0);
        assert_eq!(j["mpps"]["ovs"], 10.0);
        assert_eq!(j["mpps"]["testpmd"], 40.0);
        assert_eq!(j["cycles_per_packet"]["vswitch"], 100.0);
        assert_eq!(j["cycles_per_packet"]["ovs"], 300.0);
        assert_eq!(j["cycles_per_packet"]["testpmd"], 75.0);
        assert_eq!(j["ratio_vs_ovs"], 3.0);
        assert_eq!(j["ratio_vs_floor"], 0.75);
        assert!(j.get("ovs_skipped").is_none());
        assert!(j.get("errors").is_none());
        assert_eq!(j["memory"], "hugepages");
        assert_eq!(j["rounds"], 1);
        assert!(j.get("per_round_mpps").is_none());
        assert_eq!(j.as_object().unwrap().len(), 8);
        let line = row(Outcome::Mpps(10.0)).to_json_line();
        assert!(
            line.starts_with(r#"{"scenario":"l2","frame_size":64,"mpps":{"vswitch":30.0,"ovs":10.0,"testpmd":40.0},"cycles_per_packet":{"vswitch":100.0,"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), j);
    }

    #[test]
    fn skipped_ovs_is_null_with_a_reason() {
        let j = row(Outcome::Skipped(
            "OVS-DPDK not installed: make bench-deps".into(),
        ))
        .to_json();
        assert!(j["mpps"]["ovs"].is_null());
        assert!(j["cycles_per_packet"]["ovs"].is_null());
        assert!(j["ratio_vs_ovs"].is_null());
        assert_eq!(j["ovs_skipped"], "OVS-DPDK not installed: make bench-deps");
        let mut r = row(Outcome::Failed("boom".into()));
        r.testpmd = Outcome::Failed("no samples".into());
        r.frame_size = "imix".into();
        let j = r.to_json();
        assert_eq!(j["ovs_skipped"], "boom");
        assert_eq!(j["errors"]["testpmd"], "no samples");
        assert!(j["ratio_vs_floor"].is_null());
        assert_eq!(j["frame_size"], "imix");
        assert_eq!(serde_json::from_str::<Value>(&r.to_json_line()).unwrap(), j);
        let t = table(&[r]);
        assert!(t.contains("n/a"), "{t}");
        assert!(t.contains("l2 imix: testpmd n/a: no samples"), "{t}");
        assert!(t.contains("memory: hugepages"), "{t}");
    }
}
