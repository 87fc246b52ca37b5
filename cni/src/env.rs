//! The runtime's parameters: the `CNI_*` environment variables, each checked as
//! if an attacker wrote it (they end up in interface names, paths and commands).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{quoted, CniError, Result, INVALID_ENV, UNKNOWN_CONTAINER};

/// The operation the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    ///
    /// # Errors
    /// Code 4 for a missing or unknown command.
    pub fn parse(v: Option<&str>) -> Result<Command> {
        Ok(match v {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(CniError::new(
                    INVALID_ENV,
                    "invalid CNI_COMMAND",
                    format!(
                        "CNI_COMMAND {} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC",
                        quoted(other)
                    ),
                ))
            }
            None => return Err(missing("CNI_COMMAND")),
        })
    }
}

/// Everything an attachment command (ADD, DEL, CHECK) is given besides the config.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: required for ADD and CHECK, optional for DEL.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed (`K8S_POD_NAME`, `MAC`, …).
    pub args: BTreeMap<String, String>,
}

/// The longest container ID accepted (runtimes use 64 hex digits).
pub const CONTAINER_ID_MAX: usize = 256;
/// The longest `CNI_NETNS` accepted.
pub const NETNS_MAX: usize = 1024;
/// The longest `CNI_ARGS` accepted.
pub const ARGS_MAX: usize = 4096;

fn missing(var: &str) -> CniError {
    CniError::new(
        INVALID_ENV,
        format!("missing {var}"),
        format!("the environment variable {var} is required for this command"),
    )
}

fn invalid(var: &str, value: &str, why: &str) -> CniError {
    CniError::new(
        INVALID_ENV,
        format!("invalid {var}"),
        format!("{var} {}: {why}", quoted(value)),
    )
}

/// Checks a container ID: the spec's grammar (an alphanumeric, then
/// alphanumerics, `_`, `.`, `-`), at most [`CONTAINER_ID_MAX`] characters.
///
/// # Errors
/// Code 4 naming `CNI_CONTAINERID`.
pub fn check_container_id(v: &str) -> Result<()> {
    let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if v.is_empty() {
        return Err(invalid("CNI_CONTAINERID", v, "must not be empty"));
    }
    if v.len() > CONTAINER_ID_MAX {
        return Err(invalid(
            "CNI_CONTAINERID",
            v,
            &format!("longer than {CONTAINER_ID_MAX} characters"),
        ));
    }
    if !first_ok
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(invalid(
            "CNI_CONTAINERID",
            v,
            "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// Checks an interface name as the kernel and `ip` take it: 1–15 bytes of
/// letters, digits, `_`, `.`, `-`, not `.` or `..`.
///
/// # Errors
/// Code 4 naming `CNI_IFNAME`.
pub fn check_ifname(v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 15 {
        return Err(invalid(
            "CNI_IFNAME",
            v,
            "an interface name has 1 to 15 characters",
        ));
    }
    if v == "." || v == ".." || v.starts_with('-') {
        return Err(invalid("CNI_IFNAME", v, "not a usable interface name"));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(invalid(
            "CNI_IFNAME",
            v,
            "only letters, digits, '_', '.' and '-' are allowed",
        ));
    }
    Ok(())
}

/// Checks `CNI_NETNS` as text: an absolute path without `..`, NUL or line breaks.
///
/// # Errors
/// Code 4 naming `CNI_NETNS`.
pub fn check_netns_text(v: &str) -> Result<PathBuf> {
    if v.len() > NETNS_MAX {
        return Err(invalid(
            "CNI_NETNS",
            v,
            &format!("longer than {NETNS_MAX} bytes"),
        ));
    }
    if !v.starts_with('/') {
        return Err(invalid(
            "CNI_NETNS",
            v,
            "must be an absolute path to a network namespace",
        ));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) || v.split('/').any(|c| c == "..") {
        return Err(invalid(
            "CNI_NETNS",
            v,
            "must not contain '..', spaces or control characters",
        ));
    }
    Ok(PathBuf::from(v))
}

/// Checks that `path` is a network namespace that exists now (a bind mount under
/// `/run/netns` or `/proc/PID/ns/net`).
///
/// # Errors
/// Code 3 when it does not exist (the container is gone), 4 when it is not a
/// namespace file.
pub fn check_netns_exists(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(invalid(
            "CNI_NETNS",
            &path.to_string_lossy(),
            "is not a network namespace file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CniError::new(
            UNKNOWN_CONTAINER,
            "network namespace not found",
            format!(
                "CNI_NETNS {} does not exist",
                quoted(&path.to_string_lossy())
            ),
        )),
        Err(e) => Err(invalid(
            "CNI_NETNS",
            &path.to_string_lossy(),
            &format!("cannot be read: {e}"),
        )),
    }
}

/// Parses `CNI_ARGS` (`K=V;K=V`). Keys this plugin does not know are refused
/// unless `IgnoreUnknown` is true, as runtimes expect.
///
/// # Errors
/// Code 4 naming `CNI_ARGS`.
pub fn parse_args(v: &str) -> Result<BTreeMap<String, String>> {
    const KNOWN: &[&str] = &[
        "IgnoreUnknown",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
        "MAC",
    ];
    if v.len() > ARGS_MAX {
        return Err(invalid(
            "CNI_ARGS",
            v,
            &format!("longer than {ARGS_MAX} bytes"),
        ));
    }
    let mut out = BTreeMap::new();
    for pair in v.split(';').filter(|p| !p.is_empty()) {
        let Some((k, val)) = pair.split_once('=') else {
            return Err(invalid("CNI_ARGS", pair, "each argument is KEY=VALUE"));
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                "CNI_ARGS",
                pair,
                "a key is letters, digits and '_'",
            ));
        }
        if val.chars().any(|c| c.is_control()) {
            return Err(invalid("CNI_ARGS", pair, "control characters in a value"));
        }
        out.insert(k.to_owned(), val.to_owned());
    }
    let ignore = out
        .get("IgnoreUnknown")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if !ignore {
        if let Some(k) = out.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(
                "CNI_ARGS",
                k,
                "unknown argument (set IgnoreUnknown=1 to ignore it)",
            ));
        }
    }
    Ok(out)
}

/// Reads and checks the attachment parameters for `cmd` from `get` (the process
/// environment, or a map in tests).
///
/// # Errors
/// Code 4 naming the variable; code 3 when ADD or CHECK name a namespace that
/// does not exist.
pub fn attachment(cmd: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<Attachment> {
    let container_id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
    check_container_id(&container_id)?;
    let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
    check_ifname(&ifname)?;
    let netns = match get("CNI_NETNS").filter(|s| !s.is_empty()) {
        Some(n) => Some(check_netns_text(&n)?),
        None if cmd == Command::Del => None,
        None => return Err(missing("CNI_NETNS")),
    };
    if cmd != Command::Del {
        if let Some(n) = &netns {
            check_netns_exists(n)?;
        }
    }
    let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    Ok(Attachment {
        container_id,
        netns,
        ifname,
        args,
    })
}

/// The directories of `CNI_PATH` (absolute ones only; others are refused).
///
/// # Errors
/// Code 4 naming `CNI_PATH`.
pub fn cni_path(v: Option<&str>) -> Result<Vec<PathBuf>> {
    let Some(v) = v.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    v.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| {
            if d.starts_with('/') && !d.chars().any(|c| c.is_control()) {
                Ok(PathBuf::from(d))
            } else {
                Err(invalid(
                    "CNI_PATH",
                    d,
                    "each directory must be an absolute path",
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for ok in ["abc", "0123456789abcdef", "a.b-c_d"] {
            check_container_id(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "a\nb", &"a".repeat(300)] {
            assert_eq!(
                check_container_id(bad).unwrap_err().code,
                INVALID_ENV,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "net1", "a", "a-b.c_d"] {
            check_ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "sixteen-chars-xx",
            "é",
        ] {
            let e = check_ifname(bad).unwrap_err();
            assert_eq!(e.code, INVALID_ENV, "{bad:?}");
            assert!(e.details.contains("CNI_IFNAME"), "{e}");
        }
    }

    #[test]
    fn netns_paths() {
        check_netns_text("/run/netns/x").unwrap();
        for bad in ["run/netns/x", "/run/../etc", "/a\nb", "/a b"] {
            assert_eq!(check_netns_text(bad).unwrap_err().code, INVALID_ENV);
        }
        let e = check_netns_exists(Path::new("/run/netns/does-not-exist-ever")).unwrap_err();
        assert_eq!(e.code, UNKNOWN_CONTAINER);
        assert_eq!(
            check_netns_exists(Path::new("/")).unwrap_err().code,
            INVALID_ENV
        );
    }

    #[test]
    fn args() {
        let a = parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar").unwrap();
        assert_eq!(a["K8S_POD_NAME"], "web");
        assert_eq!(parse_args("FOO=bar").unwrap_err().code, INVALID_ENV);
        assert_eq!(parse_args("novalue").unwrap_err().code, INVALID_ENV);
        assert!(parse_args("").unwrap().is_empty());
    }

    #[test]
    fn del_needs_no_netns_but_add_does() {
        let env = |k: &str| match k {
            "CNI_CONTAINERID" => Some("c1".to_owned()),
            "CNI_IFNAME" => Some("eth0".to_owned()),
            _ => None,
        };
        assert!(attachment(Command::Del, &env).unwrap().netns.is_none());
        let e = attachment(Command::Add, &env).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENV, "missing CNI_NETNS"));
    }
}
