//! `kernel` mode's interfaces: a veth pair whose pod end is created directly in
//! the pod's namespace under `CNI_IFNAME` (never visible on the host under a name
//! that could clash) and whose host end becomes the switch's `kernel` port.
//!
//! Everything is done over netlink from this process (rtnetlink for links,
//! addresses and routes; the ethtool family for offloads): no `ip`, `ethtool` or
//! `nsenter` is forked, which was most of an ADD's time. The pod end is reached
//! through sockets made on a thread that entered the pod's namespace ([`netns`]),
//! so the crate stays free of `unsafe` and the rest of the plugin never changes
//! namespace.
//!
//! DESIGN.md §6: TCP through a packet socket (`net_af_packet`, or the switch's
//! own `kernel` port) needs `tx off` on the pod end (no
//! partially checksummed segments) and `gro off` on the host end.

pub mod netns;
pub mod offload;

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{CniError, Result, CHECK_FAILED, INTERFACE_SETUP};
use crate::result::{CniResult, IpConfig};

fn setup(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        INTERFACE_SETUP,
        "cannot set up the pod interface",
        format!("{what}: {e}"),
    )
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

/// The pod end's configuration: its addresses, then its routes (a route
/// without `gw` goes via its family's gateway, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub addrs: Vec<ipnet::IpNet>,
    pub routes: Vec<(ipnet::IpNet, Option<IpAddr>)>,
}

/// The pod end's plan from the IPAM result; a route that is not a prefix or a
/// gateway that is not an address is refused before anything is made.
///
/// # Errors
/// Code 6 naming the bad field.
pub fn pod_plan(ipam: &CniResult) -> Result<PodPlan> {
    let addrs = ipam
        .ips
        .iter()
        .map(IpConfig::net)
        .collect::<Result<Vec<_>>>()?;
    let mut routes = Vec::new();
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
        routes.push((dst, gw));
    }
    Ok(PodPlan { addrs, routes })
}

fn parse_mac(mac: &str) -> Result<Vec<u8>> {
    let b: Vec<u8> = mac
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    if b.len() == 6 {
        Ok(b)
    } else {
        Err(setup("pod MAC", format!("{mac:?} is not a MAC address")))
    }
}

/// A route-netlink handle in the calling thread's namespace, its connection
/// served on the current runtime.
fn handle() -> std::result::Result<Handle, String> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn index_of(h: &Handle, name: &str) -> std::result::Result<Option<LinkMessage>, String> {
    match h
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(l) => Ok(l),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(format!("looking up {name}: {e}")),
    }
}

/// Creates the pair: the pod end in the pod's namespace with its MAC and MTU
/// (down), the host end up with GRO off. The pod end is configured by
/// [`pod_addresses`] and [`pod_up`].
///
/// # Errors
/// Code 101 naming the step; the caller removes what was made.
pub async fn create_pair(spec: &VethSpec<'_>) -> Result<()> {
    let mac = parse_mac(spec.mac)?;
    let ns = std::fs::File::open(spec.netns)
        .map_err(|e| setup("opening the pod's network namespace", e))?;
    let t = crate::timing::start();
    let h = handle().map_err(|e| setup("creating the veth pair", e))?;
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.ifname.to_owned())
        .setns_by_fd(ns.as_raw_fd())
        .address(mac);
    let mut host = LinkVeth::new(spec.host, spec.ifname);
    if let Some(m) = spec.mtu {
        peer = peer.mtu(m);
        host = host.mtu(m);
    }
    let host = host
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    if let Err(e) = h.link().add(host).execute().await {
        if pod_if_exists(spec.netns, spec.ifname) {
            return Err(CniError::new(
                INTERFACE_SETUP,
                "interface already exists",
                format!("{} already exists in {}", spec.ifname, spec.netns.display()),
            ));
        }
        return Err(setup("creating the veth pair", e));
    }
    // No IPv6 of the host's own on the switch's side (router solicitations,
    // MLD): set before the end comes up, so it never sends any.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", spec.host),
        "1",
    );
    h.link()
        .set(LinkUnspec::new_with_name(spec.host).up().build())
        .execute()
        .await
        .map_err(|e| setup("setting the host end up", e))?;
    crate::timing::record("veth", t);
    let t = crate::timing::start();
    offload::clear(spec.host, offload::GRO).map_err(|e| setup("gro off (host end)", e))?;
    crate::timing::record("host_offload", t);
    Ok(())
}

/// Gives the pod end (still down) its addresses. Blocking: it runs on a
/// thread of its own in the pod's namespace.
///
/// # Errors
/// Code 101 naming the address.
pub fn pod_addresses(netns: &Path, ifname: &str, plan: &PodPlan) -> Result<()> {
    let t = crate::timing::start();
    let (name, addrs) = (ifname.to_owned(), plan.addrs.clone());
    let r = netns::block_on_in(netns, || async move {
        let h = handle()?;
        let index = pod_index(&h, &name).await?;
        for net in &addrs {
            let mut req = h.address().add(index, net.addr(), net.prefix_len());
            if net.addr().is_ipv6() {
                // No duplicate address detection: the address is the pod's by
                // IPAM, and DAD would hold it tentative (unusable) for a second
                // or more.
                req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            req.execute()
                .await
                .map_err(|e| format!("address {net} on {name}: {e}"))?;
        }
        Ok(())
    })
    .map_err(|e| setup("configuring the pod end", e));
    crate::timing::record("pod_addr", t);
    r
}

/// Brings the pod end up, adds its routes (which need it up) and turns its
/// transmit checksum offload off. Blocking, as [`pod_addresses`].
///
/// # Errors
/// Code 101 naming the step.
pub fn pod_up(netns: &Path, ifname: &str, plan: &PodPlan) -> Result<()> {
    let t = crate::timing::start();
    let (name, routes) = (ifname.to_owned(), plan.routes.clone());
    let r = netns::block_on_in(netns, || async move {
        let h = handle()?;
        let index = pod_index(&h, &name).await?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| format!("setting {name} up: {e}"))?;
        for (dst, gw) in &routes {
            let mut b = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .map_err(|e| e.to_string())?
                .output_interface(index);
            b = match gw {
                Some(g) => b.gateway(*g).map_err(|e| e.to_string())?,
                // A route straight out of the interface, as `ip route add … dev`.
                None => b.scope(RouteScope::Link),
            };
            h.route()
                .add(b.build())
                .execute()
                .await
                .map_err(|e| format!("route {dst} on {name}: {e}"))?;
        }
        offload::clear(&name, offload::TX_CHECKSUM).map_err(|e| format!("tx off on {name}: {e}"))
    })
    .map_err(|e| setup("configuring the pod end", e));
    crate::timing::record("pod_up_route_offload", t);
    r
}

async fn pod_index(h: &Handle, name: &str) -> std::result::Result<u32, String> {
    index_of(h, name)
        .await?
        .map(|l| l.header.index)
        .ok_or_else(|| format!("{name} is not in the namespace"))
}

fn pod_if_exists(netns: &Path, ifname: &str) -> bool {
    let name = ifname.to_owned();
    netns::block_on_in(netns, || async move {
        let h = handle()?;
        index_of(&h, &name).await
    })
    .is_ok_and(|l| l.is_some())
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
pub async fn delete(host: &str) -> Result<()> {
    if !host_if_exists(host) {
        return Ok(());
    }
    let h = handle().map_err(|e| setup("removing the veth pair", e))?;
    let out = match index_of(&h, host).await {
        Ok(Some(l)) => h
            .link()
            .del(l.header.index)
            .execute()
            .await
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if !host_if_exists(host) {
        return Ok(());
    }
    out.map_err(|e| setup("removing the veth pair", e))
}

/// What CHECK reads of the pod end.
struct PodIf {
    mac: Option<String>,
    up: bool,
    addrs: Vec<String>,
}

async fn read_pod_if(ifname: String) -> std::result::Result<Option<PodIf>, String> {
    let h = handle()?;
    let Some(link) = index_of(&h, &ifname).await? else {
        return Ok(None);
    };
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => Some(
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        _ => None,
    });
    let up = link.header.flags.contains(LinkFlags::Up);
    let mut addrs = Vec::new();
    let mut s = h
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute();
    while let Some(a) = s.try_next().await.map_err(|e| e.to_string())? {
        // IPv4 carries its own address as IFA_LOCAL, IPv6 as IFA_ADDRESS.
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = addr {
            addrs.push(format!("{ip}/{}", a.header.prefix_len));
        }
    }
    Ok(Some(PodIf { mac, up, addrs }))
}

/// CHECK of the pod end: it exists, is up, has `mac` and every address of `ips`.
///
/// # Errors
/// Code 100 naming what differs.
pub fn check_pod(netns: &Path, ifname: &str, mac: Option<&str>, ips: &[&IpConfig]) -> Result<()> {
    let fail = |why: String| CniError::new(CHECK_FAILED, "pod interface check failed", why);
    let name = ifname.to_owned();
    let pod = netns::block_on_in(netns, || read_pod_if(name)).map_err(fail)?;
    let Some(pod) = pod else {
        return Err(fail(format!(
            "{ifname} does not exist in {}",
            netns.display()
        )));
    };
    if let Some(m) = mac {
        if !pod
            .mac
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(m))
        {
            return Err(fail(format!(
                "{ifname} has MAC {}, not {m}",
                pod.mac.as_deref().unwrap_or("none")
            )));
        }
    }
    if !pod.up {
        return Err(fail(format!("{ifname} is down")));
    }
    for ip in ips {
        let want = ip.net()?.to_string();
        if !pod.addrs.contains(&want) {
            return Err(fail(format!(
                "{ifname} lacks address {want} (has {:?})",
                pod.addrs
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
    fn pod_plan_routes_via_the_family_gateway() {
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
        let p = pod_plan(&ipam).unwrap();
        let n = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        let a = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(p.addrs, vec![n("10.1.0.5/24"), n("fd00::5/64")]);
        assert_eq!(
            p.routes,
            vec![
                (n("0.0.0.0/0"), a("10.1.0.1")),
                (n("::/0"), a("fd00::1")),
                (n("10.9.0.0/16"), a("10.1.0.9")),
            ]
        );
        // A route that is not a prefix is refused before anything is made.
        let mut bad = ipam.clone();
        bad.routes[0].dst = "default\nlink del eth0".into();
        assert!(pod_plan(&bad).is_err());
    }
}
