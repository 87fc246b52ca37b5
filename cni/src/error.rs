//! The spec's error result: a numeric code, a short message and details, printed
//! as JSON on stdout with a non-zero exit.
//!
//! Codes below 100 are the spec's; the plugin's own start at 100. The code tells
//! the runtime what to do next (retry on 11, give up on 1–7), so each failure maps
//! to the code of whoever is at fault, not of the call that failed.

use std::fmt;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// A field of the network configuration the plugin does not support.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// The container (its network namespace) is unknown or gone.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// A `CNI_*` environment variable is missing or invalid.
pub const INVALID_ENV: u32 = 4;
/// Reading stdin, running a delegated plugin, or a local file failed.
pub const IO_FAILURE: u32 = 5;
/// The input is not decodable (not JSON, wrong JSON types).
pub const DECODE: u32 = 6;
/// The network configuration is invalid (or the switch refused it).
pub const INVALID_CONFIG: u32 = 7;
/// A transient condition: the switch is not reachable or cannot serve yet.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot service ADD.
pub const NOT_AVAILABLE: u32 = 50;
/// The interface, address or switch state CHECK expected is missing or wrong.
pub const CHECK_FAILED: u32 = 100;
/// Setting up the pod's interface (veth, addresses, routes) failed.
pub const INTERFACE_SETUP: u32 = 101;

/// A CNI error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The spec's code (or ours, 100+).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// The longer explanation.
    pub details: String,
}

impl CniError {
    /// An error with `code`, `msg` and `details`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error result for protocol version `version`.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {}): {}", self.msg, self.code, self.details)
    }
}

impl std::error::Error for CniError {}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, CniError>;

/// At most this many characters of what a caller sent are quoted in a message.
pub const QUOTE_MAX: usize = 40;

/// `text` quoted, cut to [`QUOTE_MAX`] characters with its length when cut,
/// control characters escaped: one short line whatever the caller sent.
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_and_escaped() {
        let q = quoted(&"a\n".repeat(100));
        assert!(q.len() < 120, "{q}");
        assert!(q.contains("\\n") && q.contains("(200 bytes)"), "{q}");
        assert_eq!(quoted("eth0"), "\"eth0\"");
    }

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(INVALID_ENV, "invalid CNI_IFNAME", "too long");
        let j = e.to_json("1.0.0");
        assert_eq!(j["cniVersion"], "1.0.0");
        assert_eq!(j["code"], 4);
        assert_eq!(j["msg"], "invalid CNI_IFNAME");
        assert_eq!(j["details"], "too long");
    }
}
