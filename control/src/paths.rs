//! Confining the file-system paths of API writes.
//!
//! A port's profile names files a PMD opens or creates as root: `net_pcap` writes
//! `tx_pcap` (truncating whatever is there) and reads `rx_pcap`; `net_vhost` and
//! `net_virtio_user` create or connect to a Unix socket at `path`. Whoever may
//! write through the API (root, members of `control.socket_group`) would hold root's
//! power over the file system if those paths were taken as given. So a port that an
//! API write adds or changes may name such a file only inside the directories
//! `[control]` lists for its kind: `pcap_dirs` for captures, `socket_dirs` for
//! vhost-user/virtio-user sockets. Ports that are running unchanged (the
//! configuration file's, written by root, or earlier API writes already checked)
//! are not checked again.
//!
//! The check is lexical first (absolute, no `..`, under an allowed directory), then
//! on the file system: the existing part of the path's directory is canonicalized
//! and must still be under an allowed directory (a symbolic link out is refused),
//! the final component must not be a symbolic link, and every directory from the
//! path's up to `/` must be writable only by root (or the daemon's user), sticky
//! directories above the allowed one excepted. The last rule is what makes the
//! check hold until the PMD opens the path: nobody who could call the API can swap a
//! checked component for a symbolic link in between.
//!
//! Interface names (`af_packet`, `tap`, `pcap` `rx_iface`/`tx_iface`) are not paths:
//! an API caller can attach a port to any existing interface, and `net_tap` creates
//! its own (an existing non-tap interface cannot be taken over by it).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::config::{ConfigError, ControlConfig, PortConfig, ProfileConfig, VswitchConfig};

/// At most this many characters of a caller's input are quoted in a message.
pub const QUOTE_MAX: usize = 64;

/// `text` in double quotes, cut to [`QUOTE_MAX`] characters (`…` marks a cut),
/// control characters escaped: one short line whatever the caller sent.
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn quoted_path(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

/// Which kind of file a parameter names, and so which directories confine it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A capture file (`rx_pcap`, `tx_pcap`): `control.pcap_dirs`.
    Pcap,
    /// A vhost-user or virtio-user socket (`path`): `control.socket_dirs`.
    Socket,
}

impl PathKind {
    /// The `[control]` key listing its directories.
    pub fn key(self) -> &'static str {
        match self {
            PathKind::Pcap => "control.pcap_dirs",
            PathKind::Socket => "control.socket_dirs",
        }
    }
}

/// The file-system paths of a profile that a PMD opens or creates: `(parameter,
/// path, kind)`. The match is exhaustive so that a new profile has to be
/// considered here.
pub fn profile_paths(profile: &ProfileConfig) -> Vec<(&'static str, &Path, PathKind)> {
    match profile {
        ProfileConfig::Pcap {
            rx_pcap, tx_pcap, ..
        } => [("rx_pcap", rx_pcap), ("tx_pcap", tx_pcap)]
            .into_iter()
            .filter_map(|(k, p)| p.as_deref().map(|p| (k, p, PathKind::Pcap)))
            .collect(),
        ProfileConfig::VhostUser { path, .. } | ProfileConfig::VirtioUser { path, .. } => {
            vec![("path", path.as_path(), PathKind::Socket)]
        }
        ProfileConfig::AfPacket { .. }
        | ProfileConfig::Kernel { .. }
        | ProfileConfig::Tap { .. }
        | ProfileConfig::Null { .. }
        | ProfileConfig::Ring {}
        | ProfileConfig::Mlx5 { .. } => Vec::new(),
    }
}

/// The directories API writes may use, from `[control]` (its defaults without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPolicy {
    /// `control.pcap_dirs`.
    pub pcap_dirs: Vec<PathBuf>,
    /// `control.socket_dirs`.
    pub socket_dirs: Vec<PathBuf>,
}

impl PathPolicy {
    /// The policy of `control`; without `[control]`, the defaults of its keys.
    pub fn of(control: Option<&ControlConfig>) -> PathPolicy {
        match control {
            Some(c) => PathPolicy {
                pcap_dirs: c.pcap_dirs.clone(),
                socket_dirs: c.socket_dirs.clone(),
            },
            None => PathPolicy {
                pcap_dirs: crate::config::default_pcap_dirs(),
                socket_dirs: crate::config::default_socket_dirs(),
            },
        }
    }

    /// The directories of `kind`.
    pub fn dirs(&self, kind: PathKind) -> &[PathBuf] {
        match kind {
            PathKind::Pcap => &self.pcap_dirs,
            PathKind::Socket => &self.socket_dirs,
        }
    }
}

/// An API write names a path outside what it may use. Reported as
/// `PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port {port:?}: {param}: {reason}")]
pub struct PathError {
    /// The port.
    pub port: String,
    /// Its parameter holding the path (`tx_pcap`, `path`).
    pub param: &'static str,
    /// Why the path is refused (boxed: errors stay small on the `Ok` path).
    pub reason: Box<PathRefusal>,
}

/// Why a path is refused. Paths are quoted to at most [`QUOTE_MAX`] characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// A relative path (it would depend on the daemon's working directory).
    #[error("{path} is not an absolute path")]
    Relative {
        /// The path, quoted.
        path: String,
    },
    /// A `..` component.
    #[error("{path}: `..` is not allowed in a path")]
    DotDot {
        /// The path, quoted.
        path: String,
    },
    /// Not under any allowed directory of its kind.
    #[error("{path} is outside the allowed directories {dirs} ({key})")]
    Outside {
        /// The path, quoted.
        path: String,
        /// The allowed directories.
        dirs: String,
        /// Their `[control]` key.
        key: &'static str,
    },
    /// Its directory leads out of the allowed ones through a symbolic link.
    #[error("{path} leads to {target}, outside the allowed directories {dirs} ({key})")]
    Escapes {
        /// The path, quoted.
        path: String,
        /// Where its directory really is, quoted.
        target: String,
        /// The allowed directories.
        dirs: String,
        /// Their `[control]` key.
        key: &'static str,
    },
    /// The final component, or a missing directory on the way, is a symbolic link.
    #[error("{path}: {link} is a symbolic link")]
    Symlink {
        /// The path, quoted.
        path: String,
        /// The link, quoted.
        link: String,
    },
    /// A directory on the way can be changed by someone other than root, so the
    /// check would not hold until the PMD opens the path.
    #[error("{path}: directory {dir} {why}")]
    UnsafeDir {
        /// The path, quoted.
        path: String,
        /// The directory, quoted.
        dir: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The path could not be examined.
    #[error("{path}: {error}")]
    Io {
        /// The path, quoted.
        path: String,
        /// The system's error.
        error: String,
    },
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    let names: Vec<String> = dirs.iter().map(|d| quoted_path(d)).collect();
    format!("[{}]", names.join(", "))
}

/// `path` without `.` components and repeated slashes; `None` when it has a `..`.
fn normalized(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => return None,
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// `path` with its longest existing prefix canonicalized and the rest appended.
///
/// # Errors
/// A component that exists but cannot be resolved (a dangling symbolic link is
/// [`PathRefusal::Symlink`]), or an I/O error.
fn resolve(path: &Path, shown: &str) -> Result<PathBuf, PathRefusal> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<OsString> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut real) => {
                real.extend(rest.iter().rev());
                return Ok(real);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&existing).is_ok() {
                    // Present but unresolvable: a dangling link, which could be
                    // made to point anywhere later.
                    return Err(PathRefusal::Symlink {
                        path: shown.to_owned(),
                        link: quoted_path(&existing),
                    });
                }
                match existing.file_name() {
                    Some(name) => rest.push(name.to_owned()),
                    None => {
                        return Err(PathRefusal::Io {
                            path: shown.to_owned(),
                            error: e.to_string(),
                        })
                    }
                }
                existing.pop();
            }
            Err(e) => {
                return Err(PathRefusal::Io {
                    path: shown.to_owned(),
                    error: e.to_string(),
                })
            }
        }
    }
}

/// The daemon's effective user (the owner of `/proc/self`), read without `unsafe`.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// The first directory from `real` (canonical) up to `/` that someone other than
/// root or the daemon's user could change, and why. `allowed` is the canonical
/// allowed directory: above it, sticky directories (`/tmp`) are fine, since others
/// cannot rename or remove what they do not own there.
fn unsafe_dir(real: &Path, allowed: &Path) -> Option<(PathBuf, &'static str)> {
    let uid = own_uid();
    let mut dir = Some(real);
    while let Some(d) = dir {
        dir = d.parent();
        let Ok(m) = std::fs::metadata(d) else {
            // Not there yet: the PMD will fail on it, with its own message.
            continue;
        };
        if m.uid() != 0 && m.uid() != uid {
            return Some((d.to_owned(), "is not owned by root"));
        }
        let sticky_above = m.mode() & 0o1000 != 0 && !d.starts_with(allowed);
        if m.mode() & 0o022 != 0 && !sticky_above {
            return Some((d.to_owned(), "is writable by group or others"));
        }
    }
    None
}

fn check_dirs_safe(real: &Path, allowed: &Path, shown: &str) -> Result<(), PathRefusal> {
    match unsafe_dir(real, allowed) {
        None => Ok(()),
        Some((d, why)) => Err(PathRefusal::UnsafeDir {
            path: shown.to_owned(),
            dir: quoted_path(&d),
            why,
        }),
    }
}

/// Checks that an existing allowed directory, and every directory above it, can be
/// changed only by root or the daemon's user (at start: a directory API callers
/// could write to would let them swap a checked path for a symbolic link).
///
/// # Errors
/// The directory that is not safe, and why; or why it cannot be resolved.
pub fn check_allowed_dir(dir: &Path) -> Result<(), String> {
    let real = dir.canonicalize().map_err(|e| e.to_string())?;
    match unsafe_dir(&real, &real) {
        None => Ok(()),
        Some((d, why)) => Err(format!("directory {} {why}", quoted_path(&d))),
    }
}

/// Checks one path of kind `kind` against `policy`.
///
/// # Errors
/// Why the path is refused.
pub fn confine(path: &Path, kind: PathKind, policy: &PathPolicy) -> Result<(), PathRefusal> {
    let shown = quoted_path(path);
    let dirs = policy.dirs(kind);
    if !path.is_absolute() {
        return Err(PathRefusal::Relative { path: shown });
    }
    let Some(norm) = normalized(path) else {
        return Err(PathRefusal::DotDot { path: shown });
    };
    let outside = || PathRefusal::Outside {
        path: shown.clone(),
        dirs: dirs_text(dirs),
        key: kind.key(),
    };
    let parent = norm.parent().ok_or_else(outside)?;
    let lexically_inside = dirs
        .iter()
        .filter_map(|d| normalized(d))
        .any(|d| parent.starts_with(&d));
    if !lexically_inside {
        return Err(outside());
    }
    let real_parent = resolve(parent, &shown)?;
    let mut real_dir = None;
    for d in dirs.iter().filter_map(|d| normalized(d)) {
        let real = resolve(&d, &shown)?;
        if real_parent.starts_with(&real) {
            real_dir = Some(real);
            break;
        }
    }
    let Some(real_dir) = real_dir else {
        return Err(PathRefusal::Escapes {
            path: shown.clone(),
            target: quoted_path(&real_parent),
            dirs: dirs_text(dirs),
            key: kind.key(),
        });
    };
    match std::fs::symlink_metadata(&norm) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(PathRefusal::Symlink {
                link: shown.clone(),
                path: shown,
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(PathRefusal::Io {
                path: shown,
                error: e.to_string(),
            })
        }
    }
    check_dirs_safe(&real_parent, &real_dir, &shown)
}

/// Checks every path of `port` against `policy`.
///
/// # Errors
/// The first refused path, naming the port and parameter.
pub fn confine_port(port: &PortConfig, policy: &PathPolicy) -> Result<(), PathError> {
    for (param, path, kind) in profile_paths(&port.profile) {
        confine(path, kind, policy).map_err(|reason| PathError {
            port: port.name.clone(),
            param,
            reason: Box::new(reason),
        })?;
    }
    Ok(())
}

/// Checks the ports of `next` (a state an API write leads to) that are not in
/// `trusted` exactly as they are there (the running ports: the configuration
/// file's, or earlier writes already checked). Changing any setting of a port, or
/// adding one again after removing it, makes it new.
///
/// # Errors
/// The first refused path, naming the port and parameter.
pub fn confine_new_ports(trusted: &[PortConfig], next: &VswitchConfig) -> Result<(), PathError> {
    let policy = PathPolicy::of(next.control.as_ref());
    next.ports
        .iter()
        .filter(|p| !trusted.contains(p))
        .try_for_each(|p| confine_port(p, &policy))
}

/// Load-time checks of `control.pcap_dirs` and `control.socket_dirs`: absolute,
/// without `..`, and not holding the state file or the API socket (a capture
/// written over the state file would be read back at the next start).
///
/// # Errors
/// The first bad directory, naming its key.
pub fn validate_allowed_dirs(c: &ControlConfig) -> Result<(), ConfigError> {
    for (kind, dirs) in [
        (PathKind::Pcap, &c.pcap_dirs),
        (PathKind::Socket, &c.socket_dirs),
    ] {
        for d in dirs {
            let bad = |reason: String| ConfigError::OutOfRange {
                field: kind.key().into(),
                reason: format!("{} {reason}", quoted_path(d)),
            };
            if !d.is_absolute() {
                return Err(bad("is not an absolute path".into()));
            }
            let Some(norm) = normalized(d) else {
                return Err(bad("has a `..` component".into()));
            };
            for (key, file) in [
                ("control.state_file", &c.state_file),
                ("control.socket", &c.socket),
            ] {
                if normalized(file).is_some_and(|f| f.starts_with(&norm)) {
                    return Err(bad(format!(
                        "holds {key}: API callers could overwrite it; use a directory of its own"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory of its own under the system temp dir, mode 0755, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("vsw-paths-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("pcap")).unwrap();
            std::fs::create_dir_all(p.join("outside")).unwrap();
            for d in [&p, &p.join("pcap"), &p.join("outside")] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            Scratch(p)
        }
        fn policy(&self) -> PathPolicy {
            PathPolicy {
                pcap_dirs: vec![self.0.join("pcap")],
                socket_dirs: vec![],
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn refusal(s: &Scratch, path: &Path) -> String {
        confine(path, PathKind::Pcap, &s.policy())
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn quoting_is_short_and_one_line() {
        assert_eq!(quoted("abc"), "\"abc\"");
        let long = "x".repeat(10_000);
        let q = quoted(&long);
        assert!(q.chars().count() <= QUOTE_MAX + 3, "{q}");
        assert!(q.ends_with('…'));
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        // A cut never splits a character.
        let wide = "é".repeat(100);
        assert!(quoted(&wide).starts_with("\"éé"));
    }

    #[test]
    fn inside_the_allowed_dir_is_accepted() {
        let s = Scratch::new("in");
        let p = s.policy();
        for f in ["pcap/a.pcap", "pcap/./b.pcap", "pcap//c.pcap"] {
            confine(&s.0.join(f), PathKind::Pcap, &p).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        std::fs::write(s.0.join("pcap/exists.pcap"), b"x").unwrap();
        confine(&s.0.join("pcap/exists.pcap"), PathKind::Pcap, &p).unwrap();
    }

    #[test]
    fn every_way_out_is_refused() {
        let s = Scratch::new("out");
        let e = refusal(&s, Path::new("/etc/shadow"));
        assert!(
            e.contains("\"/etc/shadow\" is outside the allowed directories")
                && e.contains("control.pcap_dirs"),
            "{e}"
        );
        let e = refusal(&s, Path::new("relative.pcap"));
        assert!(e.contains("is not an absolute path"), "{e}");
        let e = refusal(&s, &s.0.join("pcap/../outside/x.pcap"));
        assert!(e.contains("`..` is not allowed"), "{e}");
        // The allowed directory itself is not a file name.
        let e = refusal(&s, &s.0.join("pcap"));
        assert!(e.contains("is outside"), "{e}");
        // A sibling with the allowed name as a prefix.
        std::fs::create_dir_all(s.0.join("pcap2")).unwrap();
        let e = refusal(&s, &s.0.join("pcap2/x.pcap"));
        assert!(e.contains("is outside"), "{e}");
        // A final symlink, wherever it points.
        std::os::unix::fs::symlink(s.0.join("outside/t"), s.0.join("pcap/link.pcap")).unwrap();
        let e = refusal(&s, &s.0.join("pcap/link.pcap"));
        assert!(e.contains("is a symbolic link"), "{e}");
        // A directory symlink out of the allowed directory.
        std::os::unix::fs::symlink(s.0.join("outside"), s.0.join("pcap/sub")).unwrap();
        let e = refusal(&s, &s.0.join("pcap/sub/x.pcap"));
        assert!(e.contains("leads to") && e.contains("outside\""), "{e}");
        // A dangling directory symlink (could be pointed anywhere later).
        std::os::unix::fs::symlink(s.0.join("nowhere"), s.0.join("pcap/dang")).unwrap();
        let e = refusal(&s, &s.0.join("pcap/dang/x.pcap"));
        assert!(e.contains("is a symbolic link"), "{e}");
        // A long hostile path is quoted short.
        let long = format!("/{}", "a/".repeat(5000));
        let e = refusal(&s, Path::new(&long));
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn a_writable_allowed_dir_is_refused() {
        let s = Scratch::new("perm");
        std::fs::set_permissions(s.0.join("pcap"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = refusal(&s, &s.0.join("pcap/x.pcap"));
        assert!(e.contains("is writable by group or others"), "{e}");
        // Sticky does not make the allowed directory itself safe: a caller could
        // plant a link there.
        std::fs::set_permissions(s.0.join("pcap"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let e = refusal(&s, &s.0.join("pcap/x.pcap"));
        assert!(e.contains("is writable by group or others"), "{e}");
    }

    #[test]
    fn every_path_parameter_is_listed() {
        let pcap = ProfileConfig::Pcap {
            rx_pcap: Some("/a".into()),
            tx_pcap: Some("/b".into()),
            rx_iface: Some("eth0".into()),
            tx_iface: None,
            infinite_rx: false,
        };
        let params: Vec<_> = profile_paths(&pcap).into_iter().map(|p| p.0).collect();
        assert_eq!(params, ["rx_pcap", "tx_pcap"]);
        let vhost = ProfileConfig::VhostUser {
            path: "/s".into(),
            client: false,
            queues: 1,
            socket_owner: None,
            socket_group: None,
            socket_mode: None,
        };
        assert_eq!(profile_paths(&vhost)[0].2, PathKind::Socket);
        let virtio = ProfileConfig::VirtioUser {
            path: "/s".into(),
            server: false,
            queues: 1,
            mac: None,
        };
        assert_eq!(profile_paths(&virtio)[0].0, "path");
    }

    #[test]
    fn only_new_or_changed_ports_are_confined() {
        let text = "[[port]]\nname = \"file\"\nprofile = \"pcap\"\nrx_pcap = \"/etc/x.pcap\"\n";
        let running = VswitchConfig::parse(text, 2).unwrap();
        // Unchanged: trusted.
        confine_new_ports(&running.ports, &running).unwrap();
        // The same port with another path: checked.
        let changed = VswitchConfig::parse(&text.replace("/etc/x", "/etc/y"), 2).unwrap();
        let e = confine_new_ports(&running.ports, &changed).unwrap_err();
        assert_eq!(e.port, "file");
        assert_eq!(e.param, "rx_pcap");
        assert!(e
            .to_string()
            .starts_with("port \"file\": rx_pcap: \"/etc/y.pcap\" is outside"));
    }

    #[test]
    fn allowed_dirs_are_checked_at_load() {
        let err = |extra: &str| {
            VswitchConfig::parse(&format!("[control]\n{extra}"), 2)
                .unwrap_err()
                .to_string()
        };
        let e = err("pcap_dirs = [\"pcap\"]\n");
        assert!(
            e.contains("control.pcap_dirs: \"pcap\" is not an absolute path"),
            "{e}"
        );
        let e = err("socket_dirs = [\"/run/x/../y\"]\n");
        assert!(
            e.contains("control.socket_dirs") && e.contains("`..`"),
            "{e}"
        );
        let e = err("pcap_dirs = [\"/var/lib/vswitch\"]\n");
        assert!(e.contains("holds control.state_file"), "{e}");
        let e = err("socket_dirs = [\"/\"]\n");
        assert!(e.contains("control.socket_dirs: \"/\" holds"), "{e}");
        let c = VswitchConfig::parse("[control]\n", 2)
            .unwrap()
            .control
            .unwrap();
        assert_eq!(c.pcap_dirs, [PathBuf::from("/var/lib/vswitch/pcap")]);
        assert_eq!(c.socket_dirs, [PathBuf::from("/run/vswitch/vhost")]);
    }
}
