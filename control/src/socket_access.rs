//! Who may open a vhost-user socket the switch creates: the `vhost_user`
//! profile's `socket_owner`, `socket_group` and `socket_mode`.
//!
//! `net_vhost` creates its socket as root, mode 0755 less the umask, so a QEMU
//! or hugetlbfs user outside root could not connect without these. They are
//! resolved (names to ids) and bounded when the configuration or an API write is
//! validated, so a bad value changes nothing; vswitchd resolves them again and
//! applies them right after the PMD created the socket, before the port is up.
//!
//! Only ids that exist on this machine are taken, by name or number: an API
//! caller is not root and must not hand a socket to an account nobody has yet.
//! The mode has no setuid/setgid/sticky bits and no write for "other": whoever
//! can write to the socket can attach a guest to the switch.

use std::path::Path;

use crate::paths::quoted;

/// The resolved owner, group and mode of a socket; `None` leaves that one as
/// the PMD made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketAccess {
    /// Owner's uid.
    pub uid: Option<u32>,
    /// Group's gid.
    pub gid: Option<u32>,
    /// Permission bits (at most 0o775, never world-writable).
    pub mode: Option<u32>,
}

impl SocketAccess {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        *self == SocketAccess::default()
    }

    /// Resolves the three keys. Errors are `(key, reason)`, the reason quoting a
    /// short prefix of the value.
    ///
    /// # Errors
    /// An unknown user or group, or a mode out of bounds.
    pub fn resolve(
        owner: Option<&str>,
        group: Option<&str>,
        mode: Option<&str>,
    ) -> Result<SocketAccess, (&'static str, String)> {
        let passwd = || std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let groups = || std::fs::read_to_string("/etc/group").unwrap_or_default();
        Ok(SocketAccess {
            uid: owner
                .map(|o| id_in(&passwd(), o, "user", "/etc/passwd"))
                .transpose()
                .map_err(|e| ("socket_owner", e))?,
            gid: group
                .map(|g| id_in(&groups(), g, "group", "/etc/group"))
                .transpose()
                .map_err(|e| ("socket_group", e))?,
            mode: mode
                .map(parse_mode)
                .transpose()
                .map_err(|e| ("socket_mode", e))?,
        })
    }

    /// Gives the socket at `path` its owner, group and mode. The path's last
    /// component must be a socket (never a link followed).
    ///
    /// # Errors
    /// The path is not a socket, or a system call failed.
    pub fn apply(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::other("not a socket"));
        }
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::lchown(path, self.uid, self.gid)?;
        }
        if let Some(m) = self.mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))?;
        }
        Ok(())
    }
}

/// The id of `who` (a name, or a number) in the text of an `/etc/passwd` or
/// `/etc/group` file (`name:x:id:…`); it must be listed there either way.
fn id_in(table: &str, who: &str, kind: &str, file: &str) -> Result<u32, String> {
    if who.is_empty()
        || who.len() > 64
        || who.contains(':')
        || who.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!("{} is not a {kind} name or id", quoted(who)));
    }
    let number = who.parse::<u32>().ok();
    table
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.trim().parse::<u32>().ok()?;
            (name == who || number == Some(id)).then_some(id)
        })
        .ok_or_else(|| format!("no {kind} {} in {file}", quoted(who)))
}

/// An octal mode string, `"0660"` or `"660"`, within the bounds above.
fn parse_mode(text: &str) -> Result<u32, String> {
    let octal = |d: &str| d.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let digits = text
        .strip_prefix('0')
        .filter(|d| d.len() == 3)
        .unwrap_or(text);
    if digits.len() == 4 && octal(digits) {
        return Err(format!(
            "{} has setuid, setgid or sticky bits, which a socket has no use for",
            quoted(text)
        ));
    }
    if digits.len() != 3 || !octal(digits) {
        return Err(format!(
            "{} is not an octal mode like \"0660\"",
            quoted(text)
        ));
    }
    let m = u32::from_str_radix(digits, 8).unwrap_or(0o7777);
    if m & 0o002 != 0 {
        return Err(format!(
            "{} lets every local user write to the socket (attach a guest); give a group access instead, like \"0660\"",
            quoted(text)
        ));
    }
    if m & 0o600 != 0o600 {
        return Err(format!(
            "{} takes read and write from the owner, who could then not use the socket",
            quoted(text)
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nqemu:x:64055:64055::/:/bin/false\n";

    #[test]
    fn good_values_resolve() {
        assert_eq!(id_in(PASSWD, "qemu", "user", "p"), Ok(64055));
        assert_eq!(id_in(PASSWD, "64055", "user", "p"), Ok(64055));
        assert_eq!(id_in(PASSWD, "0", "user", "p"), Ok(0));
        for (text, m) in [
            ("0660", 0o660),
            ("660", 0o660),
            ("0600", 0o600),
            ("0775", 0o775),
        ] {
            assert_eq!(parse_mode(text), Ok(m), "{text}");
        }
        let a = SocketAccess::resolve(Some("root"), Some("root"), Some("0640")).unwrap();
        assert_eq!(
            a,
            SocketAccess {
                uid: Some(0),
                gid: Some(0),
                mode: Some(0o640)
            }
        );
        assert!(SocketAccess::resolve(None, None, None).unwrap().is_empty());
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let long = "u".repeat(500);
        // (owner, group, mode, key, words of the message)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a [&'a str],
        );
        let cases: [Case<'_>; 13] = [
            (
                Some("no-such-user-x"),
                None,
                None,
                "socket_owner",
                &["no user", "no-such-user-x", "/etc/passwd"],
            ),
            (
                Some("4000000000"),
                None,
                None,
                "socket_owner",
                &["no user", "4000000000"],
            ),
            (Some(""), None, None, "socket_owner", &["not a user name"]),
            (
                Some("a:b"),
                None,
                None,
                "socket_owner",
                &["not a user name"],
            ),
            (
                Some(&long),
                None,
                None,
                "socket_owner",
                &["not a user name", "…"],
            ),
            (
                None,
                Some("no-such-group-x"),
                None,
                "socket_group",
                &["no group", "/etc/group"],
            ),
            (
                None,
                Some("a\nb"),
                None,
                "socket_group",
                &["not a group name", "\\n"],
            ),
            (
                None,
                None,
                Some("0666"),
                "socket_mode",
                &["\"0666\"", "every local user"],
            ),
            (
                None,
                None,
                Some("4660"),
                "socket_mode",
                &["\"4660\"", "setuid"],
            ),
            (None, None, Some("1770"), "socket_mode", &["sticky"]),
            (
                None,
                None,
                Some("0960"),
                "socket_mode",
                &["not an octal mode"],
            ),
            (
                None,
                None,
                Some("rw-rw----"),
                "socket_mode",
                &["not an octal mode"],
            ),
            (None, None, Some("0460"), "socket_mode", &["owner"]),
        ];
        for (owner, group, mode, key, words) in cases {
            let (k, msg) = SocketAccess::resolve(owner, group, mode).unwrap_err();
            assert_eq!(k, key, "{owner:?} {group:?} {mode:?}");
            for w in words {
                assert!(msg.contains(w), "{msg:?} lacks {w:?}");
            }
            assert!(msg.len() < 200, "{msg}");
        }
    }
}
