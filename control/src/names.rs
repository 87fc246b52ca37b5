//! The one grammar for names, and how errors quote what a caller sent.
//!
//! An API caller is not root, and what it names ends up in log lines, `vswitchctl`
//! tables, file names (per-pod directories, sockets) and other callers' error
//! messages. So every named resource — port, flooding group, network, tenant —
//! follows one grammar: **1 to 63 characters of ASCII letters, digits, `.`, `-`
//! and `_`, starting with a letter or a digit**. That rules out the empty name,
//! `.` and `..`, anything with `/`, NUL, a line break or a terminal escape, and a
//! leading `-` that a shell or CLI would read as a flag. Port names are shorter
//! still (32), because DPDK device names are built from them.
//!
//! Errors never echo input whole: [`quote`] keeps a short prefix, escaped, and
//! says how long the rest was, so a 10 KB name gives a one-line error a gRPC
//! client can show (a whole echo made clients fail with RESOURCE_EXHAUSTED).

use std::fmt::Write;

/// The longest name of a network, tenant or group.
pub const MAX_NAME: usize = 63;

/// The longest port name.
pub const MAX_PORT_NAME: usize = 32;

/// How many characters of a caller's input an error quotes.
pub const QUOTE_CHARS: usize = 40;

/// `s` as errors show it: in double quotes with control characters, quotes and
/// backslashes escaped, cut after [`QUOTE_CHARS`] characters with the length of
/// the whole.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars();
    for c in chars.by_ref().take(QUOTE_CHARS) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if chars.next().is_some() {
        let _ = write!(out, "… ({} bytes)", s.len());
    }
    out
}

/// Checks `name` against the grammar, at most `max` characters; the error says
/// what a name may be and quotes a prefix of the bad one.
///
/// # Errors
/// A one-line reason, for the caller to prefix with the item and field.
pub fn check_with(name: &str, max: usize) -> Result<(), String> {
    let first_ok = name
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if first_ok && rest_ok && name.len() <= max {
        return Ok(());
    }
    Err(format!(
        "{} is not a valid name: 1-{max} characters of letters, digits, '.', '-', '_', \
         starting with a letter or digit",
        quote(name)
    ))
}

/// [`check_with`] at [`MAX_NAME`].
///
/// # Errors
/// As [`check_with`].
pub fn check(name: &str) -> Result<(), String> {
    check_with(name, MAX_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for ok in ["a", "red", "blue-1", "t1.prod_x", "0abc", &"a".repeat(63)] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "red/../x",
            "-x",
            "_x",
            ".hidden",
            "a b",
            "red\nERROR forged",
            "nul\0",
            "tab\t",
            "é",
            "a:b",
            &"a".repeat(64),
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check_with(&"p".repeat(33), MAX_PORT_NAME).is_err());
        assert!(check_with(&"p".repeat(32), MAX_PORT_NAME).is_ok());
    }

    #[test]
    fn errors_quote_a_short_escaped_prefix() {
        let e = check(&"x".repeat(10_000)).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(e.contains("(10000 bytes)"), "{e}");
        let e = check("red\nERROR forged").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with(r#""red\nERROR forged""#), "{e}");
        assert_eq!(quote("a\"b"), r#""a\"b""#);
        assert_eq!(quote("\0"), r#""\0""#);
    }
}
