//! Delegating address management to the IPAM plugin the configuration names
//! (`ipam.type`), found in `CNI_PATH` and run with this plugin's environment and
//! configuration, as the spec's delegation asks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{quoted, CniError, Result, INCOMPATIBLE_VERSION, INVALID_CONFIG, IO_FAILURE};
use crate::result::CniResult;

/// The delegated plugin: its executable.
#[derive(Debug, Clone)]
pub struct Ipam {
    pub exe: PathBuf,
}

impl Ipam {
    /// Finds plugin `name` in the `CNI_PATH` directories.
    ///
    /// # Errors
    /// Code 7 when it is in none of them.
    pub fn find(name: &str, path: &[PathBuf]) -> Result<Ipam> {
        path.iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|exe| Ipam { exe })
            .ok_or_else(|| {
                CniError::new(
                    INVALID_CONFIG,
                    "IPAM plugin not found",
                    format!(
                        "ipam.type {} is in none of CNI_PATH's directories {:?}",
                        quoted(name),
                        path
                    ),
                )
            })
    }

    /// Runs the plugin with `command` and `config` on stdin; its stdout on success.
    fn exec(&self, command: &str, config: &[u8]) -> Result<Vec<u8>> {
        let mut child = Command::new(&self.exe)
            .env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io_err(&self.exe, &e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin may exit without reading all of stdin (VERSION needs one
            // field): its exit status and stdout tell, not our broken pipe.
            match stdin.write_all(config) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(io_err(&self.exe, &e.to_string()))
                }
                _ => {}
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| io_err(&self.exe, &e.to_string()))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // The delegate's own error result, code and all, when it wrote one.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let code = v["code"].as_u64().and_then(|c| u32::try_from(c).ok());
        let msg = v["msg"].as_str().unwrap_or("");
        let details = v["details"].as_str().unwrap_or("");
        Err(CniError::new(
            code.unwrap_or(IO_FAILURE),
            format!("IPAM plugin {} failed", self.name()),
            format!(
                "{} {command}: {msg}{}{details} ({})",
                self.name(),
                if details.is_empty() { "" } else { ": " },
                out.status
            ),
        ))
    }

    fn name(&self) -> String {
        self.exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The versions the plugin speaks (its VERSION answer).
    fn versions(&self) -> Vec<String> {
        self.exec("VERSION", br#"{"cniVersion":"0.3.0"}"#)
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o).ok())
            .and_then(|v| {
                v["supportedVersions"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Runs `command` with `config`; a plugin older than the configuration's
    /// version (Debian 12's plugins stop at 1.0.0) is given the same configuration
    /// at the newest version it speaks instead of failing the whole attachment.
    fn call(&self, command: &str, config: &serde_json::Value) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(config).unwrap_or_default();
        match self.exec(command, &bytes) {
            Err(e) if e.code == INCOMPATIBLE_VERSION => {
                let ours = config["cniVersion"].as_str().unwrap_or_default();
                let ours_t = crate::version::parse(ours);
                let best = self
                    .versions()
                    .into_iter()
                    .filter(|v| {
                        crate::version::parse(v).is_some() && crate::version::parse(v) <= ours_t
                    })
                    .filter(|v| crate::version::SUPPORTED.contains(&v.as_str()))
                    .max_by_key(|v| crate::version::parse(v));
                let Some(best) = best else { return Err(e) };
                let mut older = config.clone();
                older["cniVersion"] = best.into();
                self.exec(command, &serde_json::to_vec(&older).unwrap_or_default())
            }
            other => other,
        }
    }

    /// ADD: the addresses, routes and DNS for the attachment.
    ///
    /// # Errors
    /// The plugin's error, or code 6 for a result that does not decode.
    pub fn add(&self, config: &serde_json::Value) -> Result<CniResult> {
        let out = self.call("ADD", config)?;
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                crate::error::DECODE,
                "cannot decode the IPAM result",
                format!("{}: {e}", self.name()),
            )
        })?;
        let r = CniResult::from_value(&v)?;
        if r.ips.is_empty() {
            return Err(CniError::new(
                INVALID_CONFIG,
                "IPAM gave no address",
                format!("{} returned no ips", self.name()),
            ));
        }
        Ok(r)
    }

    /// DEL, CHECK, STATUS or GC: success or the plugin's error.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn run(&self, command: &str, config: &serde_json::Value) -> Result<()> {
        self.call(command, config).map(|_| ())
    }

    /// True when the plugin speaks `version` (STATUS and GC are 1.1.0 commands).
    pub fn speaks(&self, version: &str) -> bool {
        self.versions().iter().any(|v| v == version)
    }
}

fn io_err(exe: &Path, e: &str) -> CniError {
    CniError::new(
        IO_FAILURE,
        "cannot run the IPAM plugin",
        format!("{}: {e}", exe.display()),
    )
}
