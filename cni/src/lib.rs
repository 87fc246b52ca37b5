//! `vswitch-cni`: the CNI plugin that attaches pods to `vswitchd`.
//!
//! The runtime runs the binary with `CNI_*` in the environment and the network
//! configuration on stdin; the plugin answers on stdout (a result, or the spec's
//! error object with a non-zero exit). It is a client of the switch's gRPC API,
//! as `vswitchctl` is: one transactional write adds the pod's port and its
//! endpoint in the configured virtual network, another removes both.
//!
//! Two modes: `kernel` (a veth pair; the host end is a `kernel` port: a packet
//! socket of the switch's, no DPDK device) and
//! `vhostuser` (a `vhost_user` port whose socket the pod mounts). Addresses come
//! from the IPAM plugin the configuration names. Everything an attachment makes is
//! named after `(CNI_CONTAINERID, CNI_IFNAME)` ([`names`]), so DEL and GC need no
//! state of the plugin's own, and an ADD that fails removes what it made.
#![forbid(unsafe_code)]

pub mod config;
pub mod env;
pub mod error;
pub mod ipam;
pub mod kernel;
pub mod names;
pub mod result;
pub mod switch;
pub mod timing;
pub mod version;
pub mod vhost;

use std::collections::BTreeMap;
use std::path::PathBuf;

use control::api;

use crate::config::{Mode, NetConf};
use crate::env::{Attachment, Command};
use crate::error::{CniError, Result, CHECK_FAILED, INVALID_CONFIG, INVALID_ENV, NOT_AVAILABLE};
use crate::ipam::Ipam;
use crate::names::AttachmentNames;
use crate::result::{CniResult, Interface};
use crate::switch::Switch;
use crate::vhost::PodDir;

/// One invocation: the command, its parameters and the configuration.
pub struct Request {
    pub command: Command,
    /// The configuration as sent (passed to the IPAM plugin unchanged).
    pub raw: serde_json::Value,
    pub conf: NetConf,
    /// `CNI_PATH`.
    pub path: Vec<PathBuf>,
}

/// Runs an attachment command or STATUS/GC; `Some(json)` is what goes on stdout.
///
/// # Errors
/// The spec's error for whatever failed.
pub async fn run(req: &Request, att: Option<&Attachment>) -> Result<Option<serde_json::Value>> {
    let v = req.conf.cni_version.as_str();
    match (req.command, att) {
        (Command::Add, Some(a)) => Ok(Some(add(req, a).await?.to_json(v))),
        (Command::Del, Some(a)) => del(req, a).await.map(|()| None),
        (Command::Check, Some(a)) => check(req, a).await.map(|()| None),
        (Command::Status, _) => status(req).await.map(|()| None),
        (Command::Gc, _) => gc(req).await.map(|()| None),
        _ => Err(CniError::new(
            INVALID_ENV,
            "invalid CNI_COMMAND",
            "no attachment parameters",
        )),
    }
}

fn ipam(req: &Request) -> Result<Option<Ipam>> {
    req.conf
        .ipam_type()
        .map(|t| Ipam::find(t, &req.path))
        .transpose()
}

/// The pod's MAC: `MAC=` of `CNI_ARGS`, or the attachment's own.
fn pod_mac(att: &Attachment, names: &AttachmentNames) -> Result<String> {
    match att.args.get("MAC") {
        Some(m) => names::check_mac(m).ok_or_else(|| {
            CniError::new(
                INVALID_ENV,
                "invalid CNI_ARGS",
                format!("MAC {}: not a unicast MAC address", error::quoted(m)),
            )
        }),
        None => Ok(names.mac.clone()),
    }
}

/// What an ADD has made so far, undone in reverse when a later step fails.
#[derive(Default)]
struct Undo {
    ipam: Option<Ipam>,
    veth: Option<String>,
    pod_dir: Option<PodDir>,
    port: Option<String>,
}

impl Undo {
    async fn run(self, req: &Request, sw: &mut Switch) {
        if let Some(p) = &self.port {
            if let Err(e) = sw.detach(p).await {
                eprintln!("vswitch-cni: undoing ADD: {e}");
            }
        }
        if let Some(d) = &self.pod_dir {
            let _ = d.remove();
        }
        if let Some(h) = &self.veth {
            let _ = kernel::delete(h).await;
        }
        if let Some(i) = &self.ipam {
            if let Err(e) = i.run("DEL", &req.raw) {
                eprintln!("vswitch-cni: undoing ADD: {e}");
            }
        }
    }
}

async fn add(req: &Request, att: &Attachment) -> Result<CniResult> {
    let conf = &req.conf;
    let names = AttachmentNames::new(&att.container_id, &att.ifname);
    let mac = pod_mac(att, &names)?;
    let netns = att.netns.clone().unwrap_or_default();
    let prev = req
        .conf
        .prev_result
        .as_ref()
        .map(CniResult::from_value)
        .transpose()?;
    let ipam = ipam(req)?;
    // The switch first: when it is not there, nothing is made and the runtime
    // is told to retry.
    let t = timing::start();
    let mut sw = Switch::connect(conf).await?;
    timing::record("connect", t);
    let mut undo = Undo::default();
    let adding = Adding {
        req,
        att,
        names: &names,
        mac: &mac,
        netns: &netns,
    };
    let made = add_steps(&adding, ipam, &mut sw, &mut undo).await;
    match made {
        Ok(ours) => Ok(match prev {
            Some(p) => p.merge(ours),
            None => ours,
        }),
        Err(e) => {
            undo.run(req, &mut sw).await;
            Err(e)
        }
    }
}

/// What one ADD works from: the request and the attachment's derived names.
struct Adding<'a> {
    req: &'a Request,
    att: &'a Attachment,
    names: &'a AttachmentNames,
    mac: &'a str,
    netns: &'a std::path::Path,
}

async fn add_steps(
    a: &Adding<'_>,
    ipam: Option<Ipam>,
    sw: &mut Switch,
    undo: &mut Undo,
) -> Result<CniResult> {
    let (addrs, interfaces) = match a.req.conf.mode {
        Mode::Kernel => add_kernel(a, ipam, sw, undo).await?,
        Mode::Vhostuser => {
            let addrs = match ipam {
                Some(i) => {
                    // Registered before the call: a failed ADD is followed by DEL.
                    let i = undo.ipam.insert(i);
                    let t = timing::start();
                    let r = i.add(&a.req.raw)?;
                    timing::record("ipam", t);
                    r
                }
                None => CniResult::default(),
            };
            let pod_if = add_vhost(a, &addrs, sw, undo).await?;
            (addrs, vec![pod_if])
        }
    };
    let idx = interfaces.len() - 1;
    Ok(CniResult {
        routes: addrs.routes.clone(),
        dns: addrs.dns.clone(),
        interfaces,
        ips: addrs
            .ips
            .into_iter()
            .map(|mut ip| {
                ip.interface = Some(idx);
                ip
            })
            .collect(),
    })
}

/// The endpoint's addresses: the IPAM result's, without their prefixes.
fn endpoint_ips(addrs: &CniResult) -> Result<Vec<String>> {
    addrs
        .ips
        .iter()
        .map(|ip| ip.net().map(|n| n.addr().to_string()))
        .collect()
}

/// The switch profile of a kernel pod's host end: a packet socket of the
/// switch's own, no DPDK device (no `RTE_MAX_ETHPORTS` slot, no PMD probe).
const KERNEL_PROFILE: &str = "kernel";

/// Whether a port of `profile` is a kernel pod's host end: `kernel`, or
/// `af_packet` for pods attached before the switch had the `kernel` profile
/// (still in its persisted state), so CHECK and GC keep working for them.
fn is_kernel_profile(profile: &str) -> bool {
    profile == KERNEL_PROFILE || profile == "af_packet"
}

/// A kernel pod: the veth pair, then the switch plugs the host end while the
/// IPAM plugin runs and the pod end gets its addresses (the plug was most of
/// an ADD when it was an `af_packet` probe; a packet socket takes about a
/// millisecond, and the order still costs nothing), then the endpoint, then
/// the pod end comes up with its routes. The pod sends nothing
/// before the switch knows its endpoint. The IPAM result and the interfaces
/// (host end, pod end).
async fn add_kernel(
    a: &Adding<'_>,
    ipam: Option<Ipam>,
    sw: &mut Switch,
    undo: &mut Undo,
) -> Result<(CniResult, Vec<Interface>)> {
    let Adding {
        req,
        att,
        names,
        mac,
        netns,
    } = *a;
    let conf = &req.conf;
    undo.veth = Some(names.port.clone());
    kernel::create_pair(&kernel::VethSpec {
        host: &names.port,
        ifname: &att.ifname,
        netns,
        mac,
        mtu: conf.mtu,
    })
    .await?;
    let port = api::Port {
        name: names.port.clone(),
        profile: KERNEL_PROFILE.into(),
        params: BTreeMap::from([("iface".to_owned(), names.port.clone())])
            .into_iter()
            .collect(),
        group: String::new(),
        mtu: 0,
    };
    // Registered before the calls: a failed ADD is followed by DEL, and a write
    // whose reply is lost (a timeout) may still have been applied.
    undo.ipam.clone_from(&ipam);
    undo.port = Some(names.port.clone());
    let (raw, ns, ifname) = (req.raw.clone(), netns.to_path_buf(), att.ifname.clone());
    let addressing =
        tokio::task::spawn_blocking(move || -> Result<(CniResult, kernel::PodPlan)> {
            let addrs = match ipam {
                Some(i) => {
                    let t = timing::start();
                    let r = i.add(&raw)?;
                    timing::record("ipam", t);
                    r
                }
                None => CniResult::default(),
            };
            let plan = kernel::pod_plan(&addrs)?;
            kernel::pod_addresses(&ns, &ifname, &plan)?;
            Ok((addrs, plan))
        });
    let t = timing::start();
    let (plugged, addressed) = tokio::join!(sw.add_port(port), addressing);
    timing::record("port_write", t);
    // The addressing's error first: an IPAM plugin's refusal says more than a
    // switch that was asked for a port the ADD no longer needs.
    let (addrs, plan) = addressed.map_err(|e| {
        CniError::new(
            error::IO_FAILURE,
            "cannot set up the pod interface",
            format!("the addressing thread failed: {e}"),
        )
    })??;
    plugged?;
    let endpoint = api::Endpoint {
        network: conf.network.clone(),
        mac: mac.to_owned(),
        ips: endpoint_ips(&addrs)?,
        port: names.port.clone(),
    };
    let t = timing::start();
    sw.add_endpoint(endpoint).await?;
    timing::record("endpoint_write", t);
    kernel::pod_up(netns, &att.ifname, &plan)?;
    let host = Interface {
        name: names.port.clone(),
        mac: kernel::host_mac(&names.port),
        mtu: conf.mtu,
        ..Default::default()
    };
    let pod = Interface {
        name: att.ifname.clone(),
        mac: Some(mac.to_owned()),
        mtu: conf.mtu,
        sandbox: Some(netns.to_string_lossy().into_owned()),
        ..Default::default()
    };
    Ok((addrs, vec![host, pod]))
}

/// A vhost-user pod: its directory, the port and endpoint in one write, the
/// socket shared, the details written. The pod interface.
async fn add_vhost(
    a: &Adding<'_>,
    addrs: &CniResult,
    sw: &mut Switch,
    undo: &mut Undo,
) -> Result<Interface> {
    let Adding {
        req,
        att,
        names,
        mac,
        netns,
    } = *a;
    let conf = &req.conf;
    let v = conf.vhost.as_ref().ok_or_else(|| {
        CniError::new(
            INVALID_CONFIG,
            "invalid network configuration: vhost",
            "missing",
        )
    })?;
    let gid = v.group.as_deref().map(vhost::resolve_group).transpose()?;
    let dir = PodDir::new(&v.socket_dir, &names.hash);
    undo.pod_dir = Some(dir.clone());
    dir.create(gid)?;
    let mut params: std::collections::BTreeMap<String, String> = [
        ("path".to_owned(), dir.socket.display().to_string()),
        ("client".to_owned(), v.client.to_string()),
        ("queues".to_owned(), v.queues.to_string()),
    ]
    .into_iter()
    .collect();
    // In server mode the switch creates the socket and gives it to the group
    // itself, before the port is up: no window where the pod finds it root's.
    // In client mode the pod makes it.
    if !v.client {
        params.insert("socket_mode".into(), "0660".into());
        if let Some(g) = gid {
            params.insert("socket_group".into(), g.to_string());
        }
    }
    let port = api::Port {
        name: names.port.clone(),
        profile: "vhost_user".into(),
        params,
        group: String::new(),
        mtu: conf.mtu.unwrap_or(0),
    };
    attach(sw, undo, a, port, endpoint_ips(addrs)?).await?;
    let mut details = serde_json::json!({
        "socketPath": dir.socket,
        "mode": if v.client { "server" } else { "client" },
        "switchMode": if v.client { "client" } else { "server" },
        "mac": mac,
        "mtu": conf.mtu,
        "ips": addrs.ips,
        "routes": addrs.routes,
        "network": conf.network,
        "containerID": att.container_id,
        "ifname": att.ifname,
        "port": names.port,
    });
    if let Some(o) = details.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    dir.write_details(&details, gid)?;
    Ok(Interface {
        name: att.ifname.clone(),
        mac: Some(mac.to_owned()),
        mtu: conf.mtu,
        sandbox: Some(netns.to_string_lossy().into_owned()),
        socket_path: Some(dir.socket.display().to_string()),
        ..Default::default()
    })
}

async fn attach(
    sw: &mut Switch,
    undo: &mut Undo,
    a: &Adding<'_>,
    port: api::Port,
    ips: Vec<String>,
) -> Result<()> {
    let (conf, names, mac) = (&a.req.conf, a.names, a.mac);
    let endpoint = api::Endpoint {
        network: conf.network.clone(),
        mac: mac.to_owned(),
        ips,
        port: names.port.clone(),
    };
    // Registered before the write: a write whose reply is lost (a timeout) may
    // still have been applied, and removing what is not there costs a read.
    undo.port = Some(names.port.clone());
    let t = timing::start();
    let r = sw.attach(port, endpoint).await;
    timing::record("write", t);
    r
}

async fn del(req: &Request, att: &Attachment) -> Result<()> {
    let names = AttachmentNames::new(&att.container_id, &att.ifname);
    // The switch first, and nothing else while it cannot be reached: its
    // persisted state still names the port, so the host interface and the
    // socket directory stay for it to start with (a switch refused to start on
    // a port whose interface is gone), and the lease stays while its endpoint
    // still holds the address. The runtime retries the DEL (code 11).
    let mut sw = Switch::connect(&req.conf).await?;
    sw.detach(&names.port).await?;
    // Then best effort on every local part, the first failure reported.
    let mut first: Option<CniError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            eprintln!("vswitch-cni: DEL: {e}");
            first.get_or_insert(e);
        }
    };
    if req.conf.mode == Mode::Kernel {
        note(kernel::delete(&names.port).await);
    }
    if let Some(v) = &req.conf.vhost {
        note(PodDir::new(&v.socket_dir, &names.hash).remove());
    }
    match ipam(req) {
        Ok(Some(i)) => note(i.run("DEL", &req.raw)),
        Ok(None) => {}
        Err(e) => note(Err(e)),
    }
    first.map_or(Ok(()), Err)
}

fn check_fail(why: String) -> CniError {
    CniError::new(CHECK_FAILED, "attachment check failed", why)
}

async fn check(req: &Request, att: &Attachment) -> Result<()> {
    let conf = &req.conf;
    let names = AttachmentNames::new(&att.container_id, &att.ifname);
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            INVALID_CONFIG,
            "CHECK needs prevResult",
            "the configuration of a CHECK must carry the ADD's result in prevResult",
        ));
    };
    let prev = CniResult::from_value(prev)?;
    let netns = att.netns.as_ref().map(|p| p.to_string_lossy().into_owned());
    let (idx, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == att.ifname && i.sandbox == netns)
        .ok_or_else(|| {
            check_fail(format!(
                "prevResult has no interface {} in {}",
                att.ifname,
                netns.as_deref().unwrap_or("")
            ))
        })?;
    let ips: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(idx))
        .collect();
    let mac = iface.mac.clone().unwrap_or_else(|| names.mac.clone());
    let mut sw = Switch::connect(conf).await?;
    let (_, port, eps) = sw.find(&names.port).await?;
    let port = port.ok_or_else(|| check_fail(format!("the switch has no port {}", names.port)))?;
    match conf.mode {
        Mode::Kernel => {
            if !is_kernel_profile(&port.profile) || port.params.get("iface") != Some(&names.port) {
                return Err(check_fail(format!(
                    "port {} is not the kernel port of {}",
                    names.port, names.port
                )));
            }
            if !kernel::host_if_exists(&names.port) {
                return Err(check_fail(format!(
                    "host interface {} is missing",
                    names.port
                )));
            }
            let ns = att.netns.as_deref().unwrap_or(std::path::Path::new(""));
            kernel::check_pod(ns, &att.ifname, iface.mac.as_deref(), &ips)?;
        }
        Mode::Vhostuser => {
            let v = conf
                .vhost
                .as_ref()
                .ok_or_else(|| check_fail("no vhost object".into()))?;
            let dir = PodDir::new(&v.socket_dir, &names.hash);
            if port.profile != "vhost_user"
                || port.params.get("path").map(String::as_str) != dir.socket.to_str()
            {
                return Err(check_fail(format!(
                    "port {} is not the vhost-user port at {}",
                    names.port,
                    dir.socket.display()
                )));
            }
            if !v.client && !dir.socket.exists() {
                return Err(check_fail(format!(
                    "socket {} is missing",
                    dir.socket.display()
                )));
            }
            let details = dir.read_details().ok_or_else(|| {
                check_fail(format!(
                    "{} is missing",
                    dir.dir.join(vhost::DETAILS_NAME).display()
                ))
            })?;
            if details["mac"] != mac.as_str() {
                return Err(check_fail(format!(
                    "interface.json has MAC {}, not {mac}",
                    details["mac"]
                )));
            }
        }
    }
    // The endpoint: in the configured network, on this port, with these addresses.
    let want: Vec<String> = ips
        .iter()
        .map(|ip| ip.net().map(|n| n.addr().to_string()))
        .collect::<Result<_>>()?;
    let ep = eps
        .iter()
        .find(|e| e.network == conf.network && e.mac.eq_ignore_ascii_case(&mac))
        .ok_or_else(|| {
            check_fail(format!(
                "the switch has no endpoint {mac} in network {} on port {}",
                conf.network, names.port
            ))
        })?;
    let mut have = ep.ips.clone();
    let mut want_sorted = want.clone();
    have.sort();
    want_sorted.sort();
    if have != want_sorted {
        return Err(check_fail(format!(
            "endpoint {mac} has addresses {have:?}, not {want_sorted:?}"
        )));
    }
    if sw.port_status(&names.port).await?.is_none() {
        return Err(check_fail(format!("port {} is not running", names.port)));
    }
    if let Some(i) = ipam(req)? {
        i.run("CHECK", &req.raw)?;
    }
    Ok(())
}

async fn status(req: &Request) -> Result<()> {
    let unavailable = |why: String| CniError::new(NOT_AVAILABLE, "vswitchd is not available", why);
    let mut sw = Switch::connect(&req.conf)
        .await
        .map_err(|e| unavailable(e.details))?;
    if !sw.healthy().await.map_err(|e| unavailable(e.details))? {
        return Err(unavailable(
            "the switch's workers are not serving (vswitchctl health)".into(),
        ));
    }
    if let Some(i) = ipam(req)? {
        if i.speaks(&req.conf.cni_version) {
            i.run("STATUS", &req.raw)?;
        }
    }
    Ok(())
}

/// GC: ports of this network that the plugin made for attachments the runtime no
/// longer lists are removed, with their host interface or socket directory.
async fn gc(req: &Request) -> Result<()> {
    let conf = &req.conf;
    let valid: std::collections::HashSet<String> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| AttachmentNames::new(&a.container_id, &a.ifname).port)
        .collect();
    let mut sw = Switch::connect(conf).await?;
    let state = sw.state().await?;
    let mut first: Option<CniError> = None;
    for p in &state.ports {
        let in_network = state
            .endpoints
            .iter()
            .any(|e| e.port == p.name && e.network == conf.network);
        if !AttachmentNames::is_ours(&p.name) || !in_network || valid.contains(&p.name) {
            continue;
        }
        let mut r = sw.detach(&p.name).await.map(|_| ());
        if r.is_ok() && is_kernel_profile(&p.profile) {
            r = kernel::delete(&p.name).await;
        }
        if r.is_ok() {
            if let Some(v) = &conf.vhost {
                r = PodDir::new(&v.socket_dir, &p.name[names::PORT_PREFIX.len()..]).remove();
            }
        }
        if let Err(e) = r {
            eprintln!("vswitch-cni: GC of {}: {e}", p.name);
            first.get_or_insert(e);
        }
    }
    if let Some(i) = ipam(req)? {
        if i.speaks(&conf.cni_version) {
            if let Err(e) = i.run("GC", &req.raw) {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}
