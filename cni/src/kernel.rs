//! `kernel` mode's interfaces: a veth pair whose pod end is created directly in
//! the pod's namespace under `CNI_IFNAME` (never visible on the host under a name
//! that could clash) and whose host end becomes the switch's `af_packet` port.
//!
//! Namespaces are entered through `ip … netns PATH` and `nsenter --net=PATH`, so
//! this crate needs no `setns(2)` and stays free of `unsafe`. Commands are batched
//! (`ip -batch`), one per namespace, to keep an ADD to a few short processes.
//!
//! DESIGN.md §6: TCP through `net_af_packet` needs `tx off` on the pod end (no
//! partially checksummed segments) and `gro off` on the host end.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{CniError, Result, CHECK_FAILED, INTERFACE_SETUP};
use crate::result::{CniResult, IpConfig};

fn run(cmd: &mut Command, stdin: Option<&str>) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that stops reading (an error on its first line) is judged by
        // its exit status and stderr, not by our broken pipe.
        match pipe.write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    child.wait_with_output()
}

fn setup_err(what: &str, out: std::io::Result<Output>) -> Result<()> {
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(CniError::new(
            INTERFACE_SETUP,
            "cannot set up the pod interface",
            format!("{what}: {}", String::from_utf8_lossy(&o.stderr).trim()),
        )),
        Err(e) => Err(CniError::new(
            INTERFACE_SETUP,
            "cannot set up the pod interface",
            format!("{what}: {e}"),
        )),
    }
}

/// What to make.
pub struct VethSpec<'a> {
    /// The host end (and switch port) name.
    pub host: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a Path,
    pub mac: &'a str,
    pub mtu: Option<u32>,
}

/// The gateway of `ipam`'s first address of `dst`'s family.
fn gateway_for(ipam: &CniResult, v6: bool) -> Option<String> {
    ipam.ips.iter().find_map(|ip| {
        let net = ip.net().ok()?;
        (matches!(net, ipnet::IpNet::V6(_)) == v6).then(|| ip.gateway.clone())?
    })
}

/// The `ip -batch` lines that configure the pod end: MAC, MTU, addresses, up,
/// routes (a route without `gw` goes via its family's gateway, if any).
pub fn pod_batch(spec: &VethSpec<'_>, ipam: &CniResult) -> Result<String> {
    let i = spec.ifname;
    let mut b = format!("link set dev {i} address {}\n", spec.mac);
    for ip in &ipam.ips {
        let net = ip.net()?;
        let nodad = if matches!(net, ipnet::IpNet::V6(_)) {
            " nodad"
        } else {
            ""
        };
        b.push_str(&format!("addr add {net} dev {i}{nodad}\n"));
    }
    b.push_str(&format!("link set dev {i} up\n"));
    for r in &ipam.routes {
        let dst: ipnet::IpNet = r.dst.parse().map_err(|_| {
            CniError::new(
                crate::error::DECODE,
                "bad route in the IPAM result",
                format!("{:?} is not a prefix", r.dst),
            )
        })?;
        let v6 = matches!(dst, ipnet::IpNet::V6(_));
        let gw = match &r.gw {
            Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
                CniError::new(
                    crate::error::DECODE,
                    "bad route in the IPAM result",
                    format!("gw {g:?} is not an address"),
                )
            })?),
            None => gateway_for(ipam, v6).and_then(|g| g.parse().ok()),
        };
        match gw {
            Some(g) => b.push_str(&format!("route add {dst} via {g} dev {i}\n")),
            None => b.push_str(&format!("route add {dst} dev {i}\n")),
        }
    }
    Ok(b)
}

/// Creates the pair and configures both ends.
///
/// # Errors
/// Code 101 naming the step; the caller removes what was made.
pub fn create(spec: &VethSpec<'_>, ipam: &CniResult) -> Result<()> {
    let mtu = spec.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
    let host_batch = format!(
        "link add {h}{mtu} type veth peer name {i}{mtu} netns {ns}\nlink set dev {h} up\n",
        h = spec.host,
        i = spec.ifname,
        ns = spec.netns.display(),
    );
    let t = crate::timing::start();
    let created = run(Command::new("ip").args(["-batch", "-"]), Some(&host_batch));
    crate::timing::record("veth", t);
    if let Ok(o) = &created {
        if !o.status.success() && pod_if_exists(spec.netns, spec.ifname) {
            return Err(CniError::new(
                INTERFACE_SETUP,
                "interface already exists",
                format!("{} already exists in {}", spec.ifname, spec.netns.display()),
            ));
        }
    }
    setup_err("creating the veth pair", created)?;
    // No IPv6 of the host's own on the switch's side (router solicitations, MLD).
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", spec.host),
        "1",
    );
    // The two ends are independent: the host end's offload is set while the pod
    // end is configured (each command is a process start, most of an ADD).
    let host_gro = Command::new("ethtool")
        .args(["-K", spec.host, "gro", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let pod = configure_pod(spec, ipam);
    let t = crate::timing::start();
    let host = setup_err(
        "ethtool gro off (host end)",
        host_gro.and_then(|c| c.wait_with_output()),
    );
    crate::timing::record("host_offload_wait", t);
    pod.and(host)
}

fn configure_pod(spec: &VethSpec<'_>, ipam: &CniResult) -> Result<()> {
    let batch = pod_batch(spec, ipam)?;
    let t = crate::timing::start();
    let r = setup_err(
        "configuring the pod end",
        run(
            Command::new("nsenter")
                .arg(format!("--net={}", spec.netns.display()))
                .args(["ip", "-batch", "-"]),
            Some(&batch),
        ),
    );
    crate::timing::record("pod_addr_route", t);
    r?;
    let t = crate::timing::start();
    let r = setup_err(
        "ethtool tx off (pod end)",
        run(
            Command::new("nsenter")
                .arg(format!("--net={}", spec.netns.display()))
                .args(["ethtool", "-K", spec.ifname, "tx", "off"]),
            None,
        ),
    );
    crate::timing::record("pod_offload", t);
    r
}

fn pod_if_exists(netns: &Path, ifname: &str) -> bool {
    run(
        Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "link", "show", "dev", ifname]),
        None,
    )
    .is_ok_and(|o| o.status.success())
}

/// True when the host interface `name` exists.
pub fn host_if_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The MAC of host interface `name`.
pub fn host_mac(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("address"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Removes the pair by its host end (the pod end goes with it); gone already is
/// fine.
///
/// # Errors
/// Code 101 when the interface exists and cannot be removed.
pub fn delete(host: &str) -> Result<()> {
    if !host_if_exists(host) {
        return Ok(());
    }
    let out = run(Command::new("ip").args(["link", "del", "dev", host]), None);
    if !host_if_exists(host) {
        return Ok(());
    }
    setup_err("removing the veth pair", out)
}

/// CHECK of the pod end: it exists, is up, has `mac` and every address of `ips`.
///
/// # Errors
/// Code 100 naming what differs.
pub fn check_pod(netns: &Path, ifname: &str, mac: Option<&str>, ips: &[&IpConfig]) -> Result<()> {
    let fail = |why: String| CniError::new(CHECK_FAILED, "pod interface check failed", why);
    let out = run(
        Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "-j", "addr", "show", "dev", ifname]),
        None,
    )
    .map_err(|e| fail(format!("nsenter: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{ifname} does not exist in {}",
            netns.display()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let link = &v[0];
    if let Some(m) = mac {
        if !link["address"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(m))
        {
            return Err(fail(format!(
                "{ifname} has MAC {}, not {m}",
                link["address"]
            )));
        }
    }
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    if !up {
        return Err(fail(format!("{ifname} is down")));
    }
    let have: Vec<String> = link["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some(format!(
                        "{}/{}",
                        x["local"].as_str()?,
                        x["prefixlen"].as_u64()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    for ip in ips {
        let want = ip.net()?.to_string();
        if !have.contains(&want) {
            return Err(fail(format!(
                "{ifname} lacks address {want} (has {have:?})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Route;

    #[test]
    fn pod_batch_routes_via_the_family_gateway() {
        let ipam = CniResult {
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".into(),
                    gateway: Some("10.1.0.1".into()),
                    interface: None,
                },
                IpConfig {
                    address: "fd00::5/64".into(),
                    gateway: Some("fd00::1".into()),
                    interface: None,
                },
            ],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".into(),
                    gw: None,
                    other: Default::default(),
                },
                Route {
                    dst: "::/0".into(),
                    gw: None,
                    other: Default::default(),
                },
                Route {
                    dst: "10.9.0.0/16".into(),
                    gw: Some("10.1.0.9".into()),
                    other: Default::default(),
                },
            ],
            ..Default::default()
        };
        let spec = VethSpec {
            host: "vsw0",
            ifname: "eth0",
            netns: Path::new("/run/netns/p"),
            mac: "02:00:00:00:00:05",
            mtu: None,
        };
        let b = pod_batch(&spec, &ipam).unwrap();
        assert!(b.contains("addr add 10.1.0.5/24 dev eth0\n"), "{b}");
        assert!(b.contains("addr add fd00::5/64 dev eth0 nodad\n"), "{b}");
        assert!(
            b.contains("route add 0.0.0.0/0 via 10.1.0.1 dev eth0\n"),
            "{b}"
        );
        assert!(b.contains("route add ::/0 via fd00::1 dev eth0\n"), "{b}");
        assert!(
            b.contains("route add 10.9.0.0/16 via 10.1.0.9 dev eth0\n"),
            "{b}"
        );
        // A route that is not a prefix never reaches `ip`.
        let mut bad = ipam.clone();
        bad.routes[0].dst = "default\nlink del eth0".into();
        assert!(pod_batch(&spec, &bad).is_err());
    }
}
