//! The operations sections of the file: `[metrics]` and `[log]`.
//!
//! Both are fixed at start, like `[eal]`: where the metrics endpoint listens and
//! how the daemon writes its logs are not desired state, so the API never
//! changes them and a SIGHUP that does is refused.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// `[metrics]`: the Prometheus text endpoint. Absent, nothing listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port of `GET /metrics` (default `127.0.0.1:9478`).
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// Counters tell who talks to whom and how much: a scraper on another host
    /// must be asked for on purpose, not reached by a typo in `listen`.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// The default metrics address: loopback only.
pub fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9478))
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
            allow_non_loopback: false,
        }
    }
}

impl MetricsConfig {
    /// A non-loopback address needs `allow_non_loopback = true`.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming `metrics.listen`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::OutOfRange {
                field: "metrics.listen".into(),
                reason: format!(
                    "{} is not a loopback address: set metrics.allow_non_loopback = true to serve counters to other hosts",
                    self.listen
                ),
            });
        }
        Ok(())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event; colours only on a terminal, no
    /// timestamp under journald (which stamps every line itself).
    #[default]
    Plain,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?} (plain, json)")),
        }
    }
}

/// `[log]`: the daemon's log output.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `plain` (default) or `json`; `--log-format` overrides it.
    pub format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VswitchConfig;

    const BASE: &str = "[dataplane]\nworkers = [0]\n";

    #[test]
    fn metrics_are_off_unless_asked_and_default_to_loopback() {
        let c = VswitchConfig::parse(BASE, 1).unwrap();
        assert_eq!(c.metrics, None);
        assert_eq!(c.log.format, LogFormat::Plain);
        let c = VswitchConfig::parse(&format!("{BASE}[metrics]\n[log]\nformat = \"json\"\n"), 1)
            .unwrap();
        assert_eq!(c.metrics, Some(MetricsConfig::default()));
        assert!(c.metrics.unwrap().listen.ip().is_loopback());
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn a_non_loopback_metrics_address_needs_to_be_allowed() {
        let text = format!("{BASE}[metrics]\nlisten = \"0.0.0.0:9478\"\n");
        let e = VswitchConfig::parse(&text, 1).unwrap_err().to_string();
        assert!(
            e.starts_with("metrics.listen: 0.0.0.0:9478 is not a loopback"),
            "{e}"
        );
        let text = format!("{text}allow_non_loopback = true\n");
        let c = VswitchConfig::parse(&text, 1).unwrap();
        assert_eq!(c.metrics.unwrap().listen.port(), 9478);
        let v6 = format!("{BASE}[metrics]\nlisten = \"[::1]:9000\"\n");
        assert!(VswitchConfig::parse(&v6, 1).is_ok());
    }

    #[test]
    fn bad_operations_keys_are_refused_by_name() {
        for (text, want) in [
            (
                "[metrics]\nlisten = \"localhost\"\n",
                "invalid socket address",
            ),
            ("[metrics]\nport = 1\n", "unknown field `port`"),
            ("[log]\nformat = \"xml\"\n", "unknown variant `xml`"),
            ("[log]\nlevel = \"debug\"\n", "unknown field `level`"),
        ] {
            let e = VswitchConfig::parse(&format!("{BASE}{text}"), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!("json".parse::<LogFormat>().is_ok());
        assert_eq!(
            "xml".parse::<LogFormat>().unwrap_err(),
            "unknown log format \"xml\" (plain, json)"
        );
    }
}
