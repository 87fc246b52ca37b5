//! What `[control]` needs from the host, checked before anything starts.
//!
//! Serving the API is the last step of a start, after EAL and the ports: a group
//! that does not exist or a TLS key that cannot be read used to fail only there,
//! which under systemd is a restart loop that takes the ports up and down. These
//! checks read and change nothing, so `vswitchd --check` runs them as they are and
//! a real start runs the same ones before EAL; [`create_allowed_dirs`] is the one
//! change, made by the start only.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ControlConfig;
use crate::paths::{self, PathKind};
use crate::service::resolve_group;

/// Why `[control]` cannot be served on this host. Each names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PreflightError {
    /// The `[control]` key concerned (`control.socket_group`, `control.tcp.key`).
    pub key: String,
    /// What is wrong, naming the file or group.
    pub reason: String,
}

fn refuse(key: &str, reason: String) -> PreflightError {
    PreflightError {
        key: key.to_owned(),
        reason,
    }
}

fn shown(p: &Path) -> String {
    paths::quoted(&p.to_string_lossy())
}

/// `dir` is a directory, or could be created: the nearest part of it that exists
/// is a directory.
fn dir_usable(key: &str, dir: &Path) -> Result<(), PreflightError> {
    let mut probe: Option<&Path> = Some(dir);
    while let Some(d) = probe {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(refuse(
                    key,
                    format!("{}: {} is not a directory", shown(dir), shown(d)),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => probe = d.parent(),
            Err(e) => return Err(refuse(key, format!("{}: {e}", shown(d)))),
        }
    }
    Ok(())
}

/// The directory a file of `key` goes in.
fn parent_usable(key: &str, file: &Path) -> Result<(), PreflightError> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => dir_usable(key, d),
        None => dir_usable(key, Path::new(".")),
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, PreflightError> {
    std::fs::read(path).map_err(|e| refuse(key, format!("{}: {e}", shown(path))))
}

fn certificates(key: &str, path: &Path) -> Result<(), PreflightError> {
    let pem = read(key, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        Ok(_) => Err(refuse(
            key,
            format!("{}: no PEM certificate in it", shown(path)),
        )),
        Err(e) => Err(refuse(
            key,
            format!("{}: not a valid PEM certificate: {e}", shown(path)),
        )),
    }
}

fn private_key(key: &str, path: &Path) -> Result<(), PreflightError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map(drop)
        .map_err(|e| refuse(key, format!("{}: no PEM private key: {e}", shown(path))))
}

/// Checks everything serving `c` needs from the host: the socket's group exists,
/// the socket's and the state file's directories exist or can be created and the
/// socket path is free or a socket, the TLS files are readable PEM (certificate,
/// key, client CA), and every allowed directory exists or can be created and, if
/// it exists, is safe (see [`paths`]) and does not hold `config_file` (the
/// configuration file itself, which a capture could overwrite). Changes nothing.
///
/// # Errors
/// The first problem, naming its key.
pub fn check(c: &ControlConfig, config_file: &Path) -> Result<(), PreflightError> {
    let config_real = config_file.canonicalize().ok();
    if let Some(g) = &c.socket_group {
        resolve_group(g).map_err(|_| {
            refuse(
                "control.socket_group",
                format!("group {}: no such group in /etc/group", paths::quoted(g)),
            )
        })?;
    }
    match std::fs::symlink_metadata(&c.socket) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(refuse(
                "control.socket",
                format!("{} exists and is not a socket", shown(&c.socket)),
            ))
        }
        _ => {}
    }
    parent_usable("control.socket", &c.socket)?;
    parent_usable("control.state_file", &c.state_file)?;
    if let Some(t) = &c.tcp {
        certificates("control.tcp.cert", &t.cert)?;
        private_key("control.tcp.key", &t.key)?;
        certificates("control.tcp.client_ca", &t.client_ca)?;
    }
    for kind in [PathKind::Pcap, PathKind::Socket] {
        for d in dirs(c, kind) {
            dir_usable(kind.key(), d)?;
            if d.exists() {
                paths::check_allowed_dir(d)
                    .map_err(|why| refuse(kind.key(), format!("{}: {why}", shown(d))))?;
                let holds_config = d
                    .canonicalize()
                    .ok()
                    .zip(config_real.as_ref())
                    .is_some_and(|(dir, file)| file.starts_with(dir));
                if holds_config {
                    return Err(refuse(
                        kind.key(),
                        format!(
                            "{} holds the configuration file: API callers could overwrite it",
                            shown(d)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn dirs(c: &ControlConfig, kind: PathKind) -> &[PathBuf] {
    match kind {
        PathKind::Pcap => &c.pcap_dirs,
        PathKind::Socket => &c.socket_dirs,
    }
}

/// Creates the allowed directories that do not exist yet: capture directories
/// mode 0750 and, with `socket_group`, that group (captures hold traffic: callers
/// may read what they asked for, other users may not); socket directories mode
/// 0755 (pods connect to the sockets in them). Existing ones are left as they are.
///
/// # Errors
/// A directory that cannot be created or given its mode or group.
pub fn create_allowed_dirs(c: &ControlConfig) -> Result<(), PreflightError> {
    let gid = c
        .socket_group
        .as_deref()
        .map(resolve_group)
        .transpose()
        .map_err(|e| refuse("control.socket_group", e.to_string()))?;
    for (kind, mode, group) in [
        (PathKind::Pcap, 0o750, gid),
        (PathKind::Socket, 0o755, None),
    ] {
        for d in dirs(c, kind) {
            if d.exists() {
                continue;
            }
            let fail = |what: &str, e: std::io::Error| {
                refuse(kind.key(), format!("{}: {what}: {e}", shown(d)))
            };
            std::fs::create_dir_all(d).map_err(|e| fail("creating it", e))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fail("setting its mode", e))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(d, None, Some(gid))
                    .map_err(|e| fail("giving it to socket_group", e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VswitchConfig;
    use crate::testutil::TempDir;

    fn control(dir: &Path, extra: &str) -> ControlConfig {
        let text = format!(
            "[control]\nsocket = \"{d}/run/api.sock\"\nstate_file = \"{d}/state.json\"\n\
             pcap_dirs = [\"{d}/pcap\"]\nsocket_dirs = [\"{d}/vhost\"]\n{extra}",
            d = dir.display()
        );
        VswitchConfig::parse(&text, 2).unwrap().control.unwrap()
    }

    #[test]
    fn a_good_section_passes_and_creates_its_dirs() {
        let none = Path::new("/nonexistent.toml");
        let dir = TempDir::new("pre-ok");
        let c = control(dir.path(), "socket_group = \"0\"\n");
        check(&c, none).unwrap();
        create_allowed_dirs(&c).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!((mode("pcap"), mode("vhost")), (0o750, 0o755));
        check(&c, none).unwrap();
    }

    #[test]
    fn each_problem_names_its_key() {
        let none = Path::new("/nonexistent.toml");
        let dir = TempDir::new("pre-bad");
        let d = dir.path();
        let e = check(&control(d, "socket_group = \"no-such-group-x\"\n"), none).unwrap_err();
        assert_eq!(e.key, "control.socket_group");
        assert!(
            e.to_string().contains("\"no-such-group-x\": no such group"),
            "{e}"
        );

        std::fs::write(d.join("file"), b"").unwrap();
        let c = control(d, "");
        let c = ControlConfig {
            state_file: d.join("file/state.json"),
            ..c
        };
        let e = check(&c, none).unwrap_err().to_string();
        assert!(
            e.starts_with("control.state_file:") && e.contains("is not a directory"),
            "{e}"
        );

        std::fs::write(d.join("run-file"), b"").unwrap();
        let c = ControlConfig {
            socket: d.join("run-file"),
            ..control(d, "")
        };
        let e = check(&c, none).unwrap_err().to_string();
        assert!(
            e.contains("control.socket:") && e.contains("is not a socket"),
            "{e}"
        );

        let tls = |cert: &str, key: &str| {
            control(
                d,
                &format!(
                    "[control.tcp]\nlisten = \"127.0.0.1:1\"\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{cert}\"\n"
                ),
            )
        };
        let e = check(&tls("/nonexistent/c.pem", "/nonexistent/k.pem"), none).unwrap_err();
        assert_eq!(e.key, "control.tcp.cert");
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
        let junk = d.join("junk.pem");
        std::fs::write(&junk, b"not pem at all").unwrap();
        let e = check(&tls(junk.to_str().unwrap(), "/x"), none).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let cert = d.join("c.pem");
        std::fs::write(
            &cert,
            b"-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = check(&tls(cert.to_str().unwrap(), junk.to_str().unwrap()), none).unwrap_err();
        assert_eq!(e.key, "control.tcp.key");
        assert!(e.to_string().contains("no PEM private key"), "{e}");

        std::fs::create_dir_all(d.join("pcap")).unwrap();
        std::fs::set_permissions(d.join("pcap"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&control(d, ""), none).unwrap_err().to_string();
        assert!(
            e.starts_with("control.pcap_dirs:") && e.contains("writable by group"),
            "{e}"
        );
        std::fs::set_permissions(d.join("pcap"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = d.join("pcap/vswitchd.toml");
        std::fs::write(&conf, "").unwrap();
        let e = check(&control(d, ""), &conf).unwrap_err().to_string();
        assert!(
            e.starts_with("control.pcap_dirs:") && e.contains("holds the configuration file"),
            "{e}"
        );
    }
}
