//! The Prometheus text exposition format (version 0.0.4) and OpenMetrics 1.0
//! text, written by hand.
//!
//! The format is a few rules: one `# HELP` and one `# TYPE` line per family
//! before its samples, label values quoted with `\\`, `"` and newlines escaped,
//! one sample per line. OpenMetrics differs where we touch it in two places: a
//! counter family is named without its samples' `_total`, and the page ends
//! with `# EOF`. A client library would bring a registry and global
//! state for what is a single rendering function over counters that live
//! elsewhere (the workers' published blocks).

use std::fmt::Write;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Which text format a page is written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    #[default]
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The page's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    format: Format,
}

/// Appends `v` to `out` as a quoted label value.
fn quote(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Exposition {
    /// An empty page in `format`.
    pub fn new(format: Format) -> Self {
        Exposition {
            out: String::new(),
            format,
        }
    }

    /// Starts a family: its help and type lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let name = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family (`name` with a histogram's suffix).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push('=');
                quote(&mut self.out, v);
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram family's samples, from per-bucket (not cumulative) counts:
    /// `bounds[i]` is bucket `i`'s upper bound, `counts` has one more entry
    /// for what lies above the last bound.
    pub fn histogram(&mut self, name: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        let mut cumulative = 0u64;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += counts.get(i).copied().unwrap_or(0);
            self.sample(
                &format!("{name}_bucket"),
                &[("le", &bound.to_string())],
                cumulative,
            );
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], cumulative);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], cumulative);
    }

    /// The page.
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family(
            "vswitch_port_rx_packets_total",
            Kind::Counter,
            "Packets received.",
        );
        e.sample(
            "vswitch_port_rx_packets_total",
            &[("port", "pod\"1\\\n")],
            42u64,
        );
        e.family("vswitch_up", Kind::Gauge, "One.");
        e.sample("vswitch_up", &[], 1);
        assert_eq!(
            e.finish(),
            "# HELP vswitch_port_rx_packets_total Packets received.\n\
             # TYPE vswitch_port_rx_packets_total counter\n\
             vswitch_port_rx_packets_total{port=\"pod\\\"1\\\\\\n\"} 42\n\
             # HELP vswitch_up One.\n\
             # TYPE vswitch_up gauge\n\
             vswitch_up 1\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_in_eof() {
        let mut e = Exposition::new(Format::OpenMetrics);
        e.family("vswitch_drops_total", Kind::Counter, "Drops.");
        e.sample("vswitch_drops_total", &[("reason", "x")], 3u64);
        e.family("vswitch_up", Kind::Gauge, "One.");
        e.sample("vswitch_up", &[], 1);
        assert_eq!(
            e.finish(),
            "# HELP vswitch_drops Drops.\n\
             # TYPE vswitch_drops counter\n\
             vswitch_drops_total{reason=\"x\"} 3\n\
             # HELP vswitch_up One.\n\
             # TYPE vswitch_up gauge\n\
             vswitch_up 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut e = Exposition::default();
        e.family("x_seconds", Kind::Histogram, "h");
        e.histogram("x_seconds", &[0.0001, 0.5], &[2, 0, 1], 0.75);
        let page = e.finish();
        let lines: Vec<&str> = page.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "x_seconds_bucket{le=\"0.0001\"} 2",
                "x_seconds_bucket{le=\"0.5\"} 2",
                "x_seconds_bucket{le=\"+Inf\"} 3",
                "x_seconds_sum 0.75",
                "x_seconds_count 3",
            ]
        );
    }
}
