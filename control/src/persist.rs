//! The state file: the desired state and its generation, written atomically before
//! a write is acknowledged and restored at start.
//!
//! Format (JSON, version 1):
//!
//! ```json
//! {
//!   "format": 1,
//!   "generation": 7,
//!   "state": {
//!     "port": [{ "name": "pod1", "profile": "af_packet", "iface": "vsw-pod1" }],
//!     "network": [{ "name": "blue", "vni": 100, "gateway_mac": "02:00:00:00:aa:01", ... }],
//!     ...
//!   }
//! }
//! ```
//!
//! `state` holds the runtime sections of the configuration file (`port`, `patch`,
//! `l2`, `underlay`, `network`, `endpoint`, `remote_endpoint`, `route`, `service`, `policy`,
//! `cluster_policy`, `policy_endpoint`) with exactly
//! the file's keys and value types, as JSON: one schema for the file an operator
//! writes and the file the daemon keeps, checked at load by the same validation
//! ([`Fixed::parse_sections`](crate::state::Fixed::parse_sections)).
//!
//! A write goes to `<path>.tmp` in the same directory, is fsynced, renamed over
//! `<path>`, and the directory is fsynced: `<path>` is always either the old or the
//! new complete file. A crash before the rename leaves a stray `<path>.tmp`, which is
//! ignored at load and overwritten by the next write. Loading never writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api;

/// The newest format this code reads and the one it writes.
pub const FORMAT: u64 = 1;

/// Why the state file could not be read or written. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A system call failed.
    #[error("state file {}: {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The file is not a state file we understand (corrupt, or a newer format).
    #[error("state file {}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a state file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// The generation the state was published as.
    pub generation: u64,
    /// The runtime sections, with the configuration file's keys.
    pub sections: toml::Table,
}

/// The temporary file a write goes through: `<path>.tmp`, same directory.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> PersistError {
    let path = path.to_owned();
    move |source| PersistError::Io { path, op, source }
}

/// Reads the state file at `path`; `None` when there is none.
///
/// # Errors
/// An unreadable file, one that is not JSON of the expected shape, or one of a
/// format newer than [`FORMAT`].
pub fn load(path: &Path) -> Result<Option<Saved>, PersistError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "reading")(e)),
    };
    let bad = |reason: String| PersistError::Bad {
        path: path.to_owned(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let format = doc
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("missing or bad `format`".into()))?;
    if format > FORMAT {
        return Err(bad(format!(
            "format {format} is newer than this vswitchd understands ({FORMAT})"
        )));
    }
    if format != FORMAT {
        return Err(bad(format!("unknown format {format}")));
    }
    let generation = doc
        .get("generation")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("missing or bad `generation`".into()))?;
    let state = doc
        .get("state")
        .ok_or_else(|| bad("missing `state`".into()))?;
    let sections = toml::Table::deserialize(state).map_err(|e| bad(format!("state: {e}")))?;
    Ok(Some(Saved {
        generation,
        sections,
    }))
}

/// Writes `generation` and `sections` to `path` atomically and durably (temporary
/// file, fsync, rename, fsync of the directory). The file is created mode 0600.
///
/// # Errors
/// Any failing step; `path` is then unchanged.
pub fn store(path: &Path, generation: u64, sections: &toml::Table) -> Result<(), PersistError> {
    let doc = serde_json::json!({
        "format": FORMAT,
        "generation": generation,
        "state": sections,
    });
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| PersistError::Bad {
        path: path.to_owned(),
        reason: format!("encoding: {e}"),
    })?;
    text.push('\n');
    let tmp = temp_path(path);
    let write = || -> Result<(), PersistError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp, "creating"))?;
        f.write_all(text.as_bytes())
            .map_err(io_err(&tmp, "writing"))?;
        f.sync_all().map_err(io_err(&tmp, "syncing"))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, "renaming the new file into place")(e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path, "syncing its directory"))?;
    Ok(())
}

/// The journal beside the state file, `<path>.journal`: one line per write
/// acknowledged since the state file was last written whole, each a
/// [`JournalEntry`]. A write that changes only endpoints appends its line
/// (and syncs it) instead of writing the whole state again, so its cost follows
/// the write; the next whole write folds the journal into the state file and
/// removes it. A line cut short by a crash was never acknowledged and is
/// ignored at load.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    path.with_file_name(name)
}

/// One journalled write: its generation and its ops.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    /// The generation the write was published as.
    pub generation: u64,
    /// Its ops, in order.
    pub ops: Vec<JournalOp>,
}

/// An op a journal line holds (the endpoint and route ops of the API, in
/// canonical text). A line reads, e.g.:
///
/// ```text
/// {"generation":8,"ops":[{"add_route":{"tenant":"t","prefix":"20.0.0.0/24","next_hop":{"network":"blue","ip":"10.1.0.5"}}}]}
/// {"generation":9,"ops":[{"del_route":{"tenant":"t","prefix":"20.0.0.0/24"}}]}
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalOp {
    /// `add_endpoint`: the API's message (its serde form, see [`crate::model`]).
    AddEndpoint(api::Endpoint),
    /// `add_remote_endpoint`.
    AddRemoteEndpoint(api::RemoteEndpoint),
    /// `del_endpoint`.
    DelEndpoint {
        /// The network.
        network: String,
        /// The MAC.
        mac: String,
    },
    /// `del_remote_endpoint`.
    DelRemoteEndpoint {
        /// The network.
        network: String,
        /// The MAC.
        mac: String,
    },
    /// `add_route`: through `next_hop`, or a blackhole without one.
    AddRoute {
        /// The tenant (`default` for none).
        tenant: String,
        /// The prefix.
        prefix: String,
        /// The next hop; absent for a blackhole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_hop: Option<JournalNextHop>,
    },
    /// `del_route`.
    DelRoute {
        /// The tenant.
        tenant: String,
        /// The prefix.
        prefix: String,
    },
    /// `add_port`, in the canonical form the state file keeps (its parameters
    /// in their TOML text, sorted by key).
    AddPort(api::Port),
    /// `del_port`.
    DelPort {
        /// The name.
        name: String,
    },
    /// `add_network`, in the canonical form the state file keeps.
    AddNetwork(api::Network),
    /// `add_service`, in the canonical form the state file keeps.
    AddService(api::Service),
    /// `del_service`.
    DelService {
        /// The name.
        name: String,
    },
    /// `add_backend`, the backend in canonical form.
    AddBackend(api::BackendOp),
    /// `del_backend`.
    DelBackend(api::BackendKey),
    /// `set_backend`.
    SetBackend(api::SetBackend),
    /// `add_policy`, in canonical form.
    AddPolicy(api::NetworkPolicy),
    /// `del_policy`.
    DelPolicy {
        /// The name.
        name: String,
    },
    /// `add_cluster_policy`, in canonical form.
    AddClusterPolicy(api::ClusterPolicy),
    /// `del_cluster_policy`.
    DelClusterPolicy {
        /// The name.
        name: String,
    },
    /// `add_policy_endpoint`, in canonical form.
    AddPolicyEndpoint(api::PolicyEndpoint),
    /// `del_policy_endpoint`.
    DelPolicyEndpoint {
        /// The name.
        name: String,
    },
}

/// A journalled route's next hop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalNextHop {
    /// The network it is on.
    pub network: String,
    /// Its address.
    pub ip: String,
}

/// Appends `entry` to the journal of the state file `path` and syncs it.
///
/// # Errors
/// A failing write or sync; the entry may then be partly written, which a load
/// ignores (the write is not acknowledged).
pub fn append(path: &Path, entry: &JournalEntry) -> Result<(), PersistError> {
    let jpath = journal_path(path);
    let mut line = serde_json::to_string(entry).map_err(|e| PersistError::Bad {
        path: jpath.clone(),
        reason: format!("encoding: {e}"),
    })?;
    line.push('\n');
    let created = !jpath.exists();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&jpath)
        .map_err(io_err(&jpath, "opening"))?;
    let mut before = f
        .metadata()
        .map_err(io_err(&jpath, "reading its size"))?
        .len();
    let mut last = [b'\n'];
    if before > 0 {
        use std::os::unix::fs::FileExt;
        File::open(&jpath)
            .and_then(|r| r.read_exact_at(&mut last, before - 1))
            .map_err(io_err(&jpath, "reading"))?;
    }
    if last != [b'\n'] {
        // A line cut short by a crash (never acknowledged) would swallow this one.
        let text = fs::read(&jpath).map_err(io_err(&jpath, "reading"))?;
        {
            before = text
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i as u64 + 1);
            f.set_len(before)
                .map_err(io_err(&jpath, "cutting a torn line"))?;
        }
    }
    let written = f
        .write_all(line.as_bytes())
        .map_err(io_err(&jpath, "appending"))
        .and_then(|()| f.sync_data().map_err(io_err(&jpath, "syncing")));
    if let Err(e) = written {
        // A half-written line would run into the next one: cut it off.
        let _ = f.set_len(before);
        return Err(e);
    }
    if created {
        let dir = match jpath.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&jpath, "syncing its directory"))?;
    }
    Ok(())
}

/// The journal of the state file `path`: its complete lines, in order (none
/// when there is no journal).
///
/// # Errors
/// An unreadable journal, or a complete line that is not a [`JournalEntry`].
pub fn load_journal(path: &Path) -> Result<Vec<JournalEntry>, PersistError> {
    let jpath = journal_path(path);
    let text = match fs::read_to_string(&jpath) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&jpath, "reading")(e)),
    };
    // Only lines that end in a newline were written whole.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| PersistError::Bad {
                path: jpath.clone(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Removes the journal of `path` (after the state file was written whole).
///
/// # Errors
/// A journal that exists and cannot be removed.
pub fn clear_journal(path: &Path) -> Result<(), PersistError> {
    let jpath = journal_path(path);
    match fs::remove_file(&jpath) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&jpath, "removing")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn sections() -> toml::Table {
        r#"
[[port]]
name = "pod1"
profile = "af_packet"
iface = "vsw-pod1"
mtu = 1500

[[network]]
name = "blue"
vni = 100
flood_unknown = true
subnets = ["10.1.0.0/24"]
gateway_mac = "02:00:00:00:aa:01"

[[route]]
prefix = "10.0.0.0/8"
next_hop = { network = "blue", ip = "10.1.0.9" }
"#
        .parse()
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = TempDir::new("persist-rt");
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        store(&path, 7, &sections()).unwrap();
        let got = load(&path).unwrap().unwrap();
        assert_eq!(got.generation, 7);
        assert_eq!(got.sections, sections());
        assert!(!temp_path(&path).exists());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"format\": 1"), "{text}");
        store(&path, 8, &toml::Table::new()).unwrap();
        let got = load(&path).unwrap().unwrap();
        assert_eq!((got.generation, got.sections.len()), (8, 0));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_and_kept() {
        let dir = TempDir::new("persist-bad");
        let path = dir.path().join("state.json");
        let cases: &[(&str, &str)] = &[
            ("{\"format\": 1, \"generation\": 3, \"sta", "not valid JSON"),
            ("", "not valid JSON"),
            (
                "{\"format\": 2, \"generation\": 3, \"state\": {}}",
                "format 2 is newer than this vswitchd understands (1)",
            ),
            (
                "{\"format\": 0, \"generation\": 3, \"state\": {}}",
                "unknown format 0",
            ),
            (
                "{\"generation\": 3, \"state\": {}}",
                "missing or bad `format`",
            ),
            (
                "{\"format\": 1, \"state\": {}}",
                "missing or bad `generation`",
            ),
            ("{\"format\": 1, \"generation\": 3}", "missing `state`"),
            (
                "{\"format\": 1, \"generation\": 3, \"state\": [1]}",
                "state:",
            ),
            (
                "{\"format\": 1, \"generation\": 3, \"state\": {\"port\": [{\"name\": null}]}}",
                "state:",
            ),
        ];
        for (text, want) in cases {
            fs::write(&path, text).unwrap();
            let e = load(&path).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("state file {}: ", path.display())),
                "{e}"
            );
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                *text,
                "load must not touch the file"
            );
        }
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file() {
        let dir = TempDir::new("persist-crash");
        let path = dir.path().join("state.json");
        store(&path, 4, &sections()).unwrap();
        // What a crash between writing the temporary file and renaming it leaves.
        fs::write(temp_path(&path), "{\"format\": 1, \"generation\": 5, \"st").unwrap();
        let got = load(&path).unwrap().unwrap();
        assert_eq!(got.generation, 4);
        assert_eq!(got.sections, sections());
        // The next write goes through the stray file and replaces it.
        store(&path, 5, &toml::Table::new()).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().generation, 5);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = TempDir::new("persist-fail");
        let path = dir.path().join("state.json");
        store(&path, 4, &sections()).unwrap();
        // The temporary file's name is taken by a directory: creating it fails.
        fs::create_dir(temp_path(&path)).unwrap();
        let e = store(&path, 5, &toml::Table::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("creating"), "{e}");
        assert_eq!(load(&path).unwrap().unwrap().generation, 4);
    }
}
