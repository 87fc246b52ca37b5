//! `vswitch-bench ab`: two vswitchd builds on the same scenario, alternated
//! round by round, and whether the second is faster than the first.
//!
//! On a shared or virtual machine the rate of one forwarder moves by 10-20 %
//! from minute to minute, more than most changes to the dataplane are worth. Two
//! builds measured one after the other therefore compare the machine's moods as
//! much as the builds. Alternating them in rounds pairs runs made seconds apart:
//! each round measures both, the order flips every round (baseline first in odd
//! rounds, candidate first in even ones, so neither always gets the warmer or the
//! colder slot), and the verdict comes from the pairs, not from two long runs.
//!
//! The verdict is a two-sided sign test over the rounds: under "no difference"
//! the candidate wins each round with probability 1/2, so k wins out of n rounds
//! (ties left out) is judged by the binomial tail. It assumes nothing about the
//! shape of the noise, which on this kind of machine is not normal (one slow
//! window in ten is common). Its price: with fewer than six rounds even a clean
//! sweep is not significant at 5 %, and the text says so.

use serde_json::{json, Value};

use crate::compare::{cycles_per_packet, frame_size_json, median, round};
use crate::memory::Memory;

/// The significance level of the verdict.
pub const ALPHA: f64 = 0.05;

/// Which build ran first in a round (1-based): the baseline in odd rounds.
pub fn baseline_first(round: u32) -> bool {
    round % 2 == 1
}

/// What the rounds say about the candidate against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The candidate won significantly more rounds.
    Faster,
    /// The candidate lost significantly more rounds.
    Slower,
    /// Neither: noise, or too few rounds to tell.
    NoClearChange,
}

impl Verdict {
    /// The verdict as a word for text and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Faster => "faster",
            Self::Slower => "slower",
            Self::NoClearChange => "no clear change",
        }
    }
}

/// Both builds' rates (Mpps), round by round: `baseline[i]` and `candidate[i]`
/// were measured in round `i + 1`, next to each other.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AbRounds {
    /// The baseline build's rate in each round.
    pub baseline: Vec<f64>,
    /// The candidate build's rate in each round.
    pub candidate: Vec<f64>,
}

/// The two-sided exact sign-test p-value of `wins` against `losses` (ties left
/// out beforehand): the probability, with a fair coin per round, of a split at
/// least this uneven. 1 when there are no rounds to judge.
pub fn sign_test_p(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    let k = wins.min(losses);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed from the pmf's recurrence;
    // 0.5^n stays a normal f64 for every n up to 1000.
    let mut pmf = 0.5f64.powi(n as i32);
    let mut tail = 0.0;
    for i in 0..=k {
        tail += pmf;
        pmf *= (n - i) as f64 / (i + 1) as f64;
    }
    (2.0 * tail).min(1.0)
}

impl AbRounds {
    /// Number of complete rounds.
    pub fn len(&self) -> usize {
        self.baseline.len().min(self.candidate.len())
    }

    /// True when no round completed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each round's candidate rate over its baseline rate.
    pub fn paired_ratios(&self) -> Vec<f64> {
        self.baseline
            .iter()
            .zip(&self.candidate)
            .filter(|(b, _)| **b > 0.0)
            .map(|(b, c)| c / b)
            .collect()
    }

    /// Rounds the candidate was faster in, slower in, and tied.
    pub fn tally(&self) -> (usize, usize, usize) {
        let mut t = (0, 0, 0);
        for (b, c) in self.baseline.iter().zip(&self.candidate) {
            match c.total_cmp(b) {
                std::cmp::Ordering::Greater => t.0 += 1,
                std::cmp::Ordering::Less => t.1 += 1,
                std::cmp::Ordering::Equal => t.2 += 1,
            }
        }
        t
    }

    /// The sign test's p-value over the rounds.
    pub fn p_value(&self) -> f64 {
        let (wins, losses, _) = self.tally();
        sign_test_p(wins, losses)
    }

    /// The change the rounds show: the median of the per-round ratios, minus 1
    /// (+0.05 is 5 % faster). Paired, so a slow minute of the machine moves both
    /// halves of a ratio and cancels.
    pub fn change(&self) -> Option<f64> {
        median(&self.paired_ratios()).map(|r| r - 1.0)
    }

    /// The verdict at [`ALPHA`].
    pub fn verdict(&self) -> Verdict {
        let (wins, losses, _) = self.tally();
        if sign_test_p(wins, losses) >= ALPHA {
            Verdict::NoClearChange
        } else if wins > losses {
            Verdict::Faster
        } else {
            Verdict::Slower
        }
    }

    /// The fewest rounds in which a clean sweep is significant at [`ALPHA`].
    pub fn rounds_needed() -> usize {
        (1..)
            .find(|&n| sign_test_p(n, 0) < ALPHA)
            .unwrap_or(usize::MAX)
    }
}

/// An `ab` comparison: the scenario, the two builds and their rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct AbReport {
    /// Scenario name.
    pub scenario: String,
    /// Frame size setting (`64`, `imix`, ...).
    pub frame_size: String,
    /// Flow count.
    pub flows: u32,
    /// The baseline binary, as given.
    pub baseline: String,
    /// The candidate binary, as given.
    pub candidate: String,
    /// TSC frequency (0 if unknown), for cycles per packet.
    pub tsc_hz: f64,
    /// The memory both builds ran with.
    pub memory: Memory,
    /// The rates.
    pub rounds: AbRounds,
}

impl AbReport {
    fn cycles(&self, mpps: Option<f64>) -> Option<f64> {
        cycles_per_packet(self.tsc_hz, mpps?).map(|c| round(c, 1))
    }

    /// One JSON object.
    pub fn to_json(&self) -> Value {
        let r = &self.rounds;
        let (wins, losses, ties) = r.tally();
        let (mb, mc) = (median(&r.baseline), median(&r.candidate));
        let each = |xs: &[f64]| xs.iter().map(|&x| round(x, 3)).collect::<Vec<_>>();
        json!({
            "scenario": self.scenario,
            "frame_size": frame_size_json(&self.frame_size),
            "flows": self.flows,
            "memory": self.memory.label(),
            "baseline": self.baseline,
            "candidate": self.candidate,
            "rounds": r.len(),
            "per_round_mpps": {"baseline": each(&r.baseline), "candidate": each(&r.candidate)},
            "mpps": {"baseline": mb.map(|x| round(x, 3)), "candidate": mc.map(|x| round(x, 3))},
            "cycles_per_packet": {"baseline": self.cycles(mb), "candidate": self.cycles(mc)},
            "change": r.change().map(|x| round(x, 4)),
            "candidate_faster_rounds": wins,
            "candidate_slower_rounds": losses,
            "tied_rounds": ties,
            "p_value": round(r.p_value(), 4),
            "verdict": r.verdict().as_str(),
        })
    }

    /// The human report.
    pub fn to_text(&self) -> String {
        let r = &self.rounds;
        let (wins, losses, ties) = r.tally();
        let fmt = |x: Option<f64>, digits: usize| {
            x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
        };
        let mut s = format!(
            "ab: {} size {} {} flow(s), {} rounds (order flips every round)\n",
            self.scenario,
            self.frame_size,
            self.flows,
            r.len()
        );
        for (name, rates, binary) in [
            ("baseline", &r.baseline, &self.baseline),
            ("candidate", &r.candidate, &self.candidate),
        ] {
            let m = median(rates);
            let each: Vec<String> = rates.iter().map(|x| format!("{x:.2}")).collect();
            s += &format!(
                "  {name:<9}  {:>8} Mpps median  {:>6} cycles/pkt  [{}]  {binary}\n",
                fmt(m, 3),
                fmt(self.cycles(m), 1),
                each.join(" "),
            );
        }
        s += &format!(
            "  change (median of per-round ratios): {}; candidate faster in {wins}, slower in {losses}, tied in {ties} round(s); sign test p = {:.3}\n",
            r.change()
                .map_or_else(|| "n/a".to_owned(), |c| format!("{:+.1}%", c * 100.0)),
            r.p_value()
        );
        s += &format!("  verdict: {}", r.verdict().as_str());
        let needed = AbRounds::rounds_needed();
        if r.verdict() == Verdict::NoClearChange && r.len() < needed {
            s += &format!(" (a sign test needs at least {needed} rounds to find one at 5%)");
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(b: &[f64], c: &[f64]) -> AbRounds {
        AbRounds {
            baseline: b.to_vec(),
            candidate: c.to_vec(),
        }
    }

    #[test]
    fn sign_test_matches_the_binomial_tail() {
        // 6 of 6: 2 * (1/64).
        assert!((sign_test_p(6, 0) - 0.03125).abs() < 1e-12);
        assert!((sign_test_p(0, 6) - 0.03125).abs() < 1e-12);
        // 5 of 5 is not enough at 5 %: 2/32.
        assert!((sign_test_p(5, 0) - 0.0625).abs() < 1e-12);
        // 9 of 10: 2 * (1 + 10) / 1024.
        assert!((sign_test_p(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        // An even split, and nothing to judge, are p = 1.
        assert_eq!(sign_test_p(5, 5), 1.0);
        assert_eq!(sign_test_p(0, 0), 1.0);
        // Large counts stay finite and in range.
        let p = sign_test_p(600, 400);
        assert!(p > 0.0 && p < 1e-9, "{p}");
        assert_eq!(AbRounds::rounds_needed(), 6);
    }

    #[test]
    fn a_consistent_gain_is_faster_and_noise_is_not() {
        // The machine's mood moves both builds; the candidate is ahead in every
        // round by 5 %, although its worst round is below the baseline's best.
        let base = [40.0, 48.0, 44.0, 39.0, 47.0, 45.0];
        let cand: Vec<f64> = base.iter().map(|b| b * 1.05).collect();
        let r = rounds(&base, &cand);
        assert_eq!(r.tally(), (6, 0, 0));
        assert_eq!(r.verdict(), Verdict::Faster);
        assert!((r.change().unwrap() - 0.05).abs() < 1e-9);
        let r = rounds(&cand, &base);
        assert_eq!(r.verdict(), Verdict::Slower);
        assert!(r.change().unwrap() < 0.0);
        // Alternating wins: no verdict, whatever the medians say.
        let r = rounds(&[40.0, 40.0, 40.0, 40.0], &[41.0, 39.0, 45.0, 39.5]);
        assert_eq!(r.verdict(), Verdict::NoClearChange);
        // Ties are left out of the test, and counted.
        let r = rounds(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r.tally(), (0, 0, 3));
        assert_eq!(r.verdict(), Verdict::NoClearChange);
        assert_eq!(r.change(), Some(0.0));
    }

    #[test]
    fn order_flips_every_round() {
        assert!(baseline_first(1));
        assert!(!baseline_first(2));
        assert!(baseline_first(3));
    }

    #[test]
    fn reports_carry_the_rounds_and_the_verdict() {
        let report = AbReport {
            scenario: "l2".into(),
            frame_size: "64".into(),
            flows: 1000,
            baseline: "/a/vswitchd".into(),
            candidate: "/b/vswitchd".into(),
            tsc_hz: 2.6e9,
            memory: Memory::Hugepages,
            rounds: rounds(
                &[40.0, 41.0, 42.0, 43.0, 44.0],
                &[42.0, 43.0, 44.0, 45.0, 46.123_456],
            ),
        };
        let j = report.to_json();
        assert_eq!(j["frame_size"], 64);
        assert_eq!(j["rounds"], 5);
        assert_eq!(j["mpps"]["baseline"], 42.0);
        assert_eq!(j["mpps"]["candidate"], 44.0);
        assert_eq!(j["cycles_per_packet"]["baseline"], 61.9);
        assert_eq!(j["candidate_faster_rounds"], 5);
        assert_eq!(j["p_value"], 0.0625);
        assert_eq!(j["verdict"], "no clear change");
        assert_eq!(j["per_round_mpps"]["candidate"][4], 46.123);
        let text = report.to_text();
        assert!(text.contains("needs at least 6 rounds"), "{text}");
        assert!(text.contains("faster in 5, slower in 0"), "{text}");
        let imix = AbReport {
            frame_size: "imix".into(),
            rounds: AbRounds::default(),
            ..report
        };
        let j = imix.to_json();
        assert_eq!(j["frame_size"], "imix");
        assert_eq!(j["mpps"]["baseline"], Value::Null);
        assert_eq!(j["verdict"], "no clear change");
    }
}
