//! `vhostuser` mode's files: a directory per attachment under the configured
//! socket directory, holding the vhost-user socket and `interface.json` (what the
//! DPDK pod needs to bring its virtio port up: socket, MAC, addresses, mode).
//!
//! kubelet's pod directories are deeper than a Unix socket path may be (108 bytes
//! with the NUL), so the socket does not live under them: the per-attachment
//! directory is named by 12 hex digits of the attachment's hash, directly under
//! `vhost.socketDir`, and the configuration is refused when even that would not
//! fit. The pod mounts the directory (a `hostPath`).
//!
//! The directory is root's, mode 0750, group `vhost.group`: the switch's API
//! accepts a socket only in a directory nobody but root can write to (so nobody
//! can swap it for a link between the check and the PMD's open), and the group
//! reaches the socket through it. The socket itself is made 0660 with that group
//! by the switch, which creates it (the port's `socket_group` and `socket_mode`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{quoted, CniError, Result, INVALID_CONFIG, IO_FAILURE};

/// The socket's file name in the per-attachment directory.
pub const SOCKET_NAME: &str = "sock";
/// The details file's name.
pub const DETAILS_NAME: &str = "interface.json";
/// What the per-attachment part adds to `socketDir`: `/` + 12 hex + `/sock`.
pub const SUFFIX_LEN: usize = 1 + 12 + 1 + SOCKET_NAME.len();

/// The per-attachment directory and its socket.
#[derive(Debug, Clone)]
pub struct PodDir {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl PodDir {
    /// The directory of attachment `hash` under `socket_dir`.
    pub fn new(socket_dir: &Path, hash: &str) -> PodDir {
        let dir = socket_dir.join(hash);
        let socket = dir.join(SOCKET_NAME);
        PodDir { dir, socket }
    }

    /// Creates the directory (root's, 0750, group `gid`). An existing one is
    /// taken over only if it is a real directory, not a link.
    ///
    /// # Errors
    /// Code 5 when the file system refuses.
    pub fn create(&self, gid: Option<u32>) -> Result<()> {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(m) if !m.file_type().is_dir() => {
                return Err(io(&self.dir, "exists and is not a directory"))
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&self.dir).map_err(|e| io(&self.dir, &e.to_string()))?,
        }
        std::os::unix::fs::chown(&self.dir, Some(0), gid)
            .map_err(|e| io(&self.dir, &e.to_string()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o750))
            .map_err(|e| io(&self.dir, &e.to_string()))
    }

    /// Writes `details` as `interface.json` (0640, group `gid`), atomically.
    ///
    /// # Errors
    /// Code 5.
    pub fn write_details(&self, details: &serde_json::Value, gid: Option<u32>) -> Result<()> {
        let path = self.dir.join(DETAILS_NAME);
        let tmp = self.dir.join(".interface.json.tmp");
        let text = serde_json::to_vec_pretty(details).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, &e.to_string()))?;
        std::os::unix::fs::chown(&tmp, Some(0), gid).map_err(|e| io(&tmp, &e.to_string()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))
            .map_err(|e| io(&tmp, &e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, &e.to_string()))
    }

    /// The details file as written, if any.
    pub fn read_details(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.dir.join(DETAILS_NAME)).ok()?).ok()
    }

    /// Removes the directory and what is in it; gone already is fine.
    ///
    /// # Errors
    /// Code 5.
    pub fn remove(&self) -> Result<()> {
        match std::fs::symlink_metadata(&self.dir) {
            Err(_) => Ok(()),
            // Never follow a link planted in place of the directory.
            Ok(m) if !m.file_type().is_dir() => {
                std::fs::remove_file(&self.dir).map_err(|e| io(&self.dir, &e.to_string()))
            }
            Ok(_) => std::fs::remove_dir_all(&self.dir).map_err(|e| io(&self.dir, &e.to_string())),
        }
    }
}

fn io(p: &Path, why: &str) -> CniError {
    CniError::new(
        IO_FAILURE,
        "vhost-user directory",
        format!("{}: {why}", p.display()),
    )
}

/// The GID of group `g` (a name or a number listed in `/etc/group`).
///
/// # Errors
/// Code 7 naming `vhost.group`.
pub fn resolve_group(g: &str) -> Result<u32> {
    let bad = |why: &str| {
        CniError::new(
            INVALID_CONFIG,
            "invalid network configuration: vhost.group",
            format!("vhost.group {}: {why}", quoted(g)),
        )
    };
    if g.is_empty() || g.len() > 64 || g.contains(':') || g.chars().any(|c| c.is_control()) {
        return Err(bad("not a group name or GID"));
    }
    // A number must be listed too: the switch gives the socket only to groups
    // that exist, and refusing here says so before anything is made.
    let number = g.parse::<u32>().ok();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == g || number == Some(gid)).then_some(gid)
        })
        .next()
        .ok_or_else(|| bad("no such group in /etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert_eq!(resolve_group("0").unwrap(), 0);
        for bad in ["", "a:b", "no-such-group-x", "a\nb", "123456789"] {
            assert_eq!(resolve_group(bad).unwrap_err().code, INVALID_CONFIG);
        }
    }

    #[test]
    fn socket_path_fits_sun_path() {
        let dir = "/".to_owned() + &"d".repeat(crate::config::SUN_PATH_MAX - SUFFIX_LEN - 1);
        let p = PodDir::new(Path::new(&dir), "0123456789ab");
        assert_eq!(p.socket.as_os_str().len(), crate::config::SUN_PATH_MAX);
    }
}
