//! The ADD result (and `prevResult`), read from any supported version and written
//! in the version the runtime asked for: before 1.0.0 each IP carries its
//! `version` ("4"/"6"); `socketPath` exists from 1.1.0 on.

use serde::{Deserialize, Serialize};

use crate::error::{CniError, Result, DECODE};

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "pciID")]
    pub pci_id: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address and prefix.
    ///
    /// # Errors
    /// Code 6 when `address` is not an address in CIDR notation.
    pub fn net(&self) -> Result<ipnet::IpNet> {
        self.address.parse().map_err(|_| {
            CniError::new(
                DECODE,
                "bad address in a result",
                format!("{:?} is not an address in CIDR notation", self.address),
            )
        })
    }
}

/// One route of a result; fields besides `dst` and `gw` pass through as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A success result (also what an IPAM plugin returns, without interfaces).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub dns: serde_json::Value,
}

impl CniResult {
    /// Reads a result of any supported version (an `ips[].version` is ignored).
    ///
    /// # Errors
    /// Code 6 when it does not have a result's shape.
    pub fn from_value(v: &serde_json::Value) -> Result<CniResult> {
        let r: CniResult = serde_json::from_value(v.clone())
            .map_err(|e| CniError::new(DECODE, "cannot decode a result", format!("{e}")))?;
        for ip in &r.ips {
            ip.net()?;
            if ip.interface.is_some_and(|i| i >= r.interfaces.len()) {
                return Err(CniError::new(
                    DECODE,
                    "bad interface index in a result",
                    format!(
                        "ip {} names interface {:?} of {}",
                        ip.address,
                        ip.interface,
                        r.interfaces.len()
                    ),
                ));
            }
        }
        Ok(r)
    }

    /// The result as `version` shapes it.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let mut r = self.clone();
        if !crate::version::at_least(version, 1, 1) {
            for i in &mut r.interfaces {
                i.socket_path = None;
                i.pci_id = None;
            }
        }
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        v["cniVersion"] = version.into();
        if !crate::version::at_least(version, 1, 0) {
            if let Some(ips) = v["ips"].as_array_mut() {
                for (ip, parsed) in ips.iter_mut().zip(&r.ips) {
                    let fam = match parsed.net() {
                        Ok(ipnet::IpNet::V6(_)) => "6",
                        _ => "4",
                    };
                    ip["version"] = fam.into();
                }
            }
        }
        v
    }

    /// Appends `ours` (interfaces, and IPs pointing into them) after what a
    /// previous plugin reported.
    pub fn merge(mut self, ours: CniResult) -> CniResult {
        let base = self.interfaces.len();
        self.interfaces.extend(ours.interfaces);
        self.ips.extend(ours.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + base);
            ip
        }));
        for r in ours.routes {
            if !self.routes.contains(&r) {
                self.routes.push(r);
            }
        }
        if self.dns.is_null() {
            self.dns = ours.dns;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("02:00:00:00:00:01".into()),
                sandbox: Some("/run/netns/p".into()),
                socket_path: Some("/run/vsw/x/sock".into()),
                ..Default::default()
            }],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".into(),
                    gateway: Some("10.1.0.1".into()),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::5/64".into(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: None,
                other: Default::default(),
            }],
            dns: serde_json::Value::Null,
        }
    }

    #[test]
    fn shaped_per_version() {
        let old = sample().to_json("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["interfaces"][0].get("socketPath").is_none());
        let v10 = sample().to_json("1.0.0");
        assert!(v10["ips"][0].get("version").is_none());
        assert!(v10["interfaces"][0].get("socketPath").is_none());
        let v11 = sample().to_json("1.1.0");
        assert_eq!(v11["interfaces"][0]["socketPath"], "/run/vsw/x/sock");
        assert_eq!(v11["cniVersion"], "1.1.0");
        // What was written reads back the same, from any version.
        assert_eq!(CniResult::from_value(&old).unwrap().ips, sample().ips);
        assert_eq!(CniResult::from_value(&v11).unwrap(), sample());
    }

    #[test]
    fn merge_shifts_interface_indices() {
        let prev = CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = prev.merge(sample());
        assert_eq!(m.interfaces.len(), 2);
        assert_eq!(m.ips[0].interface, Some(1));
    }

    #[test]
    fn bad_results_are_decode_errors() {
        for bad in [
            serde_json::json!({"ips": [{"address": "10.1.0.5"}]}),
            serde_json::json!({"ips": [{"address": "10.1.0.5/24", "interface": 3}]}),
            serde_json::json!({"ips": "x"}),
        ] {
            assert_eq!(
                CniResult::from_value(&bad).unwrap_err().code,
                DECODE,
                "{bad}"
            );
        }
    }
}
