//! Where log lines go and what they look like.
//!
//! Plain lines by default, written for journald as much as for a terminal: ANSI
//! colours only when stderr is a terminal (escape codes are noise in the
//! journal and in files), and no timestamp when stderr is the journal's stream
//! (`JOURNAL_STREAM` names stderr's device and inode), since journald stamps
//! every line itself. JSON lines on request (`[log] format = "json"` or
//! `--log-format json`), one object per event with `timestamp` (UTC, ms),
//! `level`, `target`, `thread` and the event's `fields` (`message` among
//! them), for log shippers that parse rather than grep. The JSON layer is a
//! few lines over `serde_json` instead of `tracing-subscriber`'s `json`
//! feature, which would add a crate for the same result.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;

use control::config::LogFormat;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether stderr is the stream journald gave the service: `JOURNAL_STREAM`
/// is `device:inode` of that stream, and stderr may since have been
/// redirected elsewhere (then the timestamp is needed again).
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Installs the process's subscriber: level from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Plain => {
            let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            if journal {
                builder.without_time().init();
            } else {
                builder.init();
            }
        }
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(JsonLines)
            .init(),
    }
}

/// Writes each event as one JSON object on stderr.
struct JsonLines;

/// Collects an event's fields with their types (numbers stay numbers).
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The JSON object of one event.
pub fn event_object(
    timestamp: String,
    level: &tracing::Level,
    target: &str,
    thread: Option<&str>,
    fields: Map<String, Value>,
) -> Value {
    let mut o = Map::new();
    o.insert("timestamp".into(), Value::String(timestamp));
    o.insert("level".into(), Value::String(level.as_str().into()));
    o.insert("target".into(), Value::String(target.into()));
    if let Some(t) = thread {
        o.insert("thread".into(), Value::String(t.into()));
    }
    o.insert("fields".into(), Value::Object(fields));
    Value::Object(o)
}

/// An error as the JSON layer would write it, for errors found before logging
/// is set up.
pub fn error_line(message: &str) -> String {
    let mut fields = Map::new();
    fields.insert("message".into(), Value::String(message.into()));
    event_object(
        control::liveness::format_utc(std::time::SystemTime::now()),
        &tracing::Level::ERROR,
        "vswitchd",
        std::thread::current().name(),
        fields,
    )
    .to_string()
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = event_object(
            control::liveness::format_utc(std::time::SystemTime::now()),
            meta.level(),
            meta.target(),
            std::thread::current().name(),
            fields.0,
        );
        // One write per line under stderr's lock: lines from threads never mix.
        let mut text = line.to_string();
        text.push('\n');
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_json_object_with_typed_fields() {
        let mut f = Map::new();
        f.insert("message".into(), "port up".into());
        f.insert("index".into(), 3u64.into());
        let v = event_object(
            "2026-12-07T12:00:00.000Z".into(),
            &tracing::Level::WARN,
            "vswitchd::ports",
            Some("main"),
            f,
        );
        let line = v.to_string();
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["level"], "WARN");
        assert_eq!(back["fields"]["index"], 3);
        assert_eq!(back["fields"]["message"], "port up");
        assert_eq!(back["thread"], "main");
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(Some("1:2")));
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        let own = format!("{}:{}", m.dev(), m.ino());
        assert!(stderr_is_journal(Some(&own)));
    }
}
