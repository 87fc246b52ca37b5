//! The network configuration on stdin: the spec's fields, this plugin's own, and
//! `prevResult` when chained. Decoding failures are code 6, values outside their
//! rules code 7, well-known fields this plugin does not implement code 2.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{quoted, CniError, Result, DECODE, INVALID_CONFIG, UNSUPPORTED_FIELD};

/// The daemon's default API socket.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
/// The largest configuration read from stdin.
pub const STDIN_MAX: usize = 1 << 20;
/// A Unix socket path's limit (`sun_path` is 108 bytes with the final NUL).
pub const SUN_PATH_MAX: usize = 107;

/// How the pod is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A veth pair: one end in the pod, the other a `kernel` port of the switch.
    Kernel,
    /// A vhost-user socket for a DPDK pod (the switch's `vhost_user` port).
    Vhostuser,
}

impl Mode {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Vhostuser => "vhostuser",
        }
    }
}

/// The API over TCP with mutual TLS instead of the Unix socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConf {
    /// `HOST:PORT`.
    pub address: String,
    /// The name the daemon's certificate is for.
    pub server_name: String,
    /// This client's certificate, key, and the CA that signed the daemon's.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The `vhost` object of `vhostuser` mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VhostConf {
    /// Where the per-pod directories are made: one of vswitchd's `socket_dirs`.
    pub socket_dir: PathBuf,
    /// The group that may use the socket (QEMU's, or the pod's hugetlbfs users):
    /// a name from `/etc/group` or a numeric GID.
    #[serde(default)]
    pub group: Option<String>,
    /// The switch connects to a socket the pod serves (and so reconnects after a
    /// restart) instead of serving it.
    #[serde(default)]
    pub client: bool,
    /// Queue pairs.
    #[serde(default = "one")]
    pub queues: u16,
}

fn one() -> u16 {
    1
}

/// What this plugin reads of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The switch's virtual network the pods join.
    pub network: String,
    #[serde(default = "kernel")]
    pub mode: Mode,
    /// The API's Unix socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub tls: Option<TlsConf>,
    /// Bound on each API call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// The pod interface's MTU (the kernel's default when absent).
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub vhost: Option<VhostConf>,
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    #[serde(default)]
    pub ip_masq: Option<bool>,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    /// GC's list of attachments still valid.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

fn kernel() -> Mode {
    Mode::Kernel
}

fn default_timeout() -> u64 {
    10_000
}

fn bad(field: &str, value: &str, why: &str) -> CniError {
    CniError::new(
        INVALID_CONFIG,
        format!("invalid network configuration: {field}"),
        format!("{field} {}: {why}", quoted(value)),
    )
}

/// The switch's name grammar (networks, ports): 1–63 of letters, digits, `.`, `-`,
/// `_`, starting with a letter or digit. Checked here too so a bad name never
/// reaches a command line or the API.
pub fn check_switch_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            v,
            "1-63 letters, digits, '.', '-', '_', starting with a letter or digit",
        ))
    }
}

/// A plugin `type` (a file name looked up in `CNI_PATH`).
pub fn check_plugin_type(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            v,
            "a plugin file name: letters, digits, '.', '-', '_', no '/'",
        ))
    }
}

fn check_abs_path(field: &str, p: &std::path::Path) -> Result<()> {
    let s = p.to_string_lossy();
    if !s.starts_with('/')
        || s.chars().any(|c| c.is_control())
        || s.split('/').any(|c| c == "..")
        || s.len() > 1024
    {
        return Err(bad(
            field,
            &s,
            "must be an absolute path without '..' or control characters",
        ));
    }
    Ok(())
}

/// Decodes the configuration (`bytes` from stdin) without checking its values.
///
/// # Errors
/// Code 6 when it is not a JSON object of the right shape.
pub fn decode(bytes: &[u8]) -> Result<NetConf> {
    serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            DECODE,
            "cannot decode the network configuration",
            format!("stdin is not a valid configuration: {e}"),
        )
    })
}

/// The `cniVersion` of a configuration, as far as it can be read (for the
/// error result of a configuration that does not decode).
pub fn version_hint(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

impl NetConf {
    /// Checks every value this plugin uses.
    ///
    /// # Errors
    /// Code 7 naming the field, 2 for `ipMasq` (not implemented).
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        let name_ok = !n.is_empty()
            && n.len() <= 255
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !name_ok {
            return Err(bad(
                "name",
                n,
                "a network name starts with a letter or digit, then letters, digits, '_', '.', '-'",
            ));
        }
        check_plugin_type("type", &self.plugin_type)?;
        check_switch_name("network", &self.network)?;
        if let Some(true) = self.ip_masq {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                "unsupported field: ipMasq",
                "ipMasq: true is not supported by vswitch-cni (the switch routes; masquerade is not its job)",
            ));
        }
        if let Some(s) = &self.socket {
            check_abs_path("socket", s)?;
            if s.as_os_str().len() > SUN_PATH_MAX {
                return Err(bad(
                    "socket",
                    &s.to_string_lossy(),
                    "longer than a Unix socket path may be (107 bytes)",
                ));
            }
        }
        if let Some(t) = &self.tls {
            if t.address.is_empty() || t.address.len() > 255 || t.address.contains('/') {
                return Err(bad("tls.address", &t.address, "HOST:PORT"));
            }
            check_switch_name("tls.serverName", &t.server_name)
                .map_err(|_| bad("tls.serverName", &t.server_name, "a DNS name"))?;
            for (f, p) in [
                ("tls.cert", &t.cert),
                ("tls.key", &t.key),
                ("tls.ca", &t.ca),
            ] {
                check_abs_path(f, p)?;
            }
        }
        if !(1..=120_000).contains(&self.timeout_ms) {
            return Err(bad(
                "timeoutMs",
                &self.timeout_ms.to_string(),
                "between 1 and 120000",
            ));
        }
        if let Some(m) = self.mtu {
            if !(576..=9216).contains(&m) {
                return Err(bad("mtu", &m.to_string(), "between 576 and 9216"));
            }
        }
        match (self.mode, &self.vhost) {
            (Mode::Vhostuser, None) => {
                return Err(bad(
                    "vhost",
                    "",
                    "mode \"vhostuser\" needs a vhost object with socketDir",
                ))
            }
            (_, Some(v)) => {
                check_abs_path("vhost.socketDir", &v.socket_dir)?;
                // The per-pod directory (16) and the socket's name (5) follow.
                if v.socket_dir.as_os_str().len() + crate::vhost::SUFFIX_LEN > SUN_PATH_MAX {
                    return Err(bad(
                        "vhost.socketDir",
                        &v.socket_dir.to_string_lossy(),
                        &format!(
                            "too long: a socket under it would pass the {SUN_PATH_MAX}-byte Unix socket path limit (at most {} bytes)",
                            SUN_PATH_MAX - crate::vhost::SUFFIX_LEN
                        ),
                    ));
                }
                if !(1..=16).contains(&v.queues) {
                    return Err(bad(
                        "vhost.queues",
                        &v.queues.to_string(),
                        "between 1 and 16",
                    ));
                }
                if let Some(g) = &v.group {
                    crate::vhost::resolve_group(g)?;
                }
            }
            (Mode::Kernel, None) => {}
        }
        if let Some(ipam) = &self.ipam {
            let Some(t) = ipam.get("type").and_then(|t| t.as_str()) else {
                return Err(bad(
                    "ipam.type",
                    "",
                    "an ipam object names its plugin in type",
                ));
            };
            check_plugin_type("ipam.type", t)?;
        }
        Ok(())
    }

    /// The API socket to use.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }

    /// The IPAM plugin's name, if any.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> Result<NetConf> {
        let net = if extra.contains(r#""network""#) {
            ""
        } else {
            r#","network":"blue""#
        };
        let text =
            format!(r#"{{"cniVersion":"1.0.0","name":"pods","type":"vswitch-cni"{net}{extra}}}"#);
        let c = decode(text.as_bytes())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn minimal_kernel_config() {
        let c = conf("").unwrap();
        assert_eq!(c.mode, Mode::Kernel);
        assert_eq!(c.socket_path(), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (extra, code, field) in [
            (r#","network":"../x""#, INVALID_CONFIG, "network"),
            (r#","mode":"sriov""#, DECODE, "unknown variant"),
            (r#","mtu":10"#, INVALID_CONFIG, "mtu"),
            (r#","socket":"relative.sock""#, INVALID_CONFIG, "socket"),
            (r#","mode":"vhostuser""#, INVALID_CONFIG, "vhost"),
            (
                r#","ipam":{"type":"../../bin/sh"}"#,
                INVALID_CONFIG,
                "ipam.type",
            ),
            (r#","ipam":{}"#, INVALID_CONFIG, "ipam.type"),
            (r#","ipMasq":true"#, UNSUPPORTED_FIELD, "ipMasq"),
            (r#","timeoutMs":0"#, INVALID_CONFIG, "timeoutMs"),
            (
                &format!(
                    r#","mode":"vhostuser","vhost":{{"socketDir":"/{}"}}"#,
                    "d".repeat(100)
                ),
                INVALID_CONFIG,
                "vhost.socketDir",
            ),
            (
                r#","mode":"vhostuser","vhost":{"socketDir":"/run/v","queues":0}"#,
                INVALID_CONFIG,
                "vhost.queues",
            ),
            (
                r#","mode":"vhostuser","vhost":{"socketDir":"/run/v","group":"no-such-group-x"}"#,
                INVALID_CONFIG,
                "vhost.group",
            ),
        ] {
            let e = conf(extra).unwrap_err();
            assert_eq!(e.code, code, "{extra}: {e}");
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
    }

    #[test]
    fn not_json_is_a_decode_error() {
        assert_eq!(decode(b"{").unwrap_err().code, DECODE);
        assert_eq!(decode(b"[]").unwrap_err().code, DECODE);
        assert_eq!(
            decode(br#"{"cniVersion":"1.0.0"}"#).unwrap_err().code,
            DECODE
        );
        assert_eq!(
            version_hint(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
    }
}
