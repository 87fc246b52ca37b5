//! Protocol versions: which ones the plugin speaks, and VERSION's answer.

use crate::error::{quoted, CniError, Result, INCOMPATIBLE_VERSION};

/// The versions this plugin speaks, oldest first. 0.3.0 is the first with the
/// result shape (interfaces, ips, routes) the plugin returns.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A version as `(major, minor, patch)`.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

/// Checks that `v` is one of [`SUPPORTED`].
///
/// # Errors
/// Code 1, listing the supported versions.
pub fn check(v: &str) -> Result<()> {
    if SUPPORTED.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!(
                "cniVersion {} is not supported; vswitch-cni supports {}",
                quoted(v),
                SUPPORTED.join(", ")
            ),
        ))
    }
}

/// True when `v` is at least `(major, minor, 0)`.
pub fn at_least(v: &str, major: u32, minor: u32) -> bool {
    parse(v).is_some_and(|(a, b, _)| (a, b) >= (major, minor))
}

/// VERSION's answer to a request in `version`.
pub fn answer(version: &str) -> serde_json::Value {
    serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse("1.1.0"), Some((1, 1, 0)));
        assert_eq!(parse("1.1"), None);
        assert_eq!(parse("1.1.0.0"), None);
        check("0.3.1").unwrap();
        assert_eq!(check("0.2.0").unwrap_err().code, INCOMPATIBLE_VERSION);
        assert_eq!(check("2.0.0").unwrap_err().code, INCOMPATIBLE_VERSION);
        assert!(at_least("1.1.0", 1, 1) && !at_least("1.0.0", 1, 1));
        assert!(at_least("1.0.0", 1, 0) && !at_least("0.4.0", 1, 0));
    }
}
