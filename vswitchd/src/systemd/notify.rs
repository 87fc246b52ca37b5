//! The service manager's notification socket (`sd_notify`'s protocol).
//!
//! systemd passes `NOTIFY_SOCKET`: a datagram socket, named by a path or, with a
//! leading `@`, in the abstract namespace. A notification is one datagram of
//! `KEY=value` lines. That is all the protocol there is, so it is spoken here
//! with std's `UnixDatagram` rather than through libsystemd (a C library and
//! `unsafe` this crate forbids).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

/// Parses `NOTIFY_SOCKET`'s value into the address to send to.
///
/// # Errors
/// A value that is neither an absolute path nor `@name` (systemd's `vsock:`
/// addresses are for virtual machines' managers, not services).
pub fn parse_address(value: &str) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET_ENV}={value:?}: neither an absolute path nor @abstract-name"),
        ))
    }
}

impl Notifier {
    /// A notifier that sends nowhere (not started by a service manager).
    pub fn none() -> Self {
        Notifier { target: None }
    }

    /// The notifier `NOTIFY_SOCKET` asks for, or one that sends nowhere when it
    /// is unset.
    ///
    /// # Errors
    /// A malformed `NOTIFY_SOCKET`, or no datagram socket to send from.
    pub fn from_env() -> io::Result<Self> {
        match std::env::var_os(NOTIFY_SOCKET_ENV) {
            None => Ok(Self::none()),
            Some(v) => {
                let v = v.to_string_lossy();
                if v.is_empty() {
                    return Ok(Self::none());
                }
                let addr = parse_address(&v)?;
                Ok(Notifier {
                    target: Some((UnixDatagram::unbound()?, addr)),
                })
            }
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (`READY=1`, `STATUS=…`, lines joined by `\n`) as one
    /// datagram; nothing when no manager listens.
    ///
    /// # Errors
    /// The send's failure (the manager went away, the socket is full).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(state.as_bytes(), addr).map(drop),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_addresses_and_nothing_else_is() {
        let p = parse_address("/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        use std::os::linux::net::SocketAddrExt;
        let a = parse_address("@vsw-notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"vsw-notify"[..]));
        for bad in ["relative/path", "vsock:2:1234", ""] {
            let e = parse_address(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn datagrams_reach_a_bound_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("vsw-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                parse_address(path.to_str().unwrap()).unwrap(),
            )),
        };
        n.notify("READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("vsw-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                parse_address(&format!("@{name}")).unwrap(),
            )),
        };
        n.notify("WATCHDOG=1").unwrap();
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        assert!(!Notifier::none().enabled());
        Notifier::none().notify("READY=1").unwrap();
    }
}
