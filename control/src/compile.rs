//! The compiler from desired state to the snapshot workers run: [`pipeline`]
//! builds the whole [`Pipeline`] (L2 stage, overlay, parse settings) in one call,
//! which is what `vswitchd` publishes at start and after a whole-state write.
//! (Incremental writes patch the running snapshot instead: [`crate::delta`].)
//!
//! Ports get dense indices in file order (the same order `vswitchd` creates them in),
//! and each distinct group name becomes a flooding domain. The dataplane builder
//! re-checks what it needs, so a snapshot is valid whoever built it.
//!
//! Ports that belong to the overlay ([`VswitchConfig::overlay_ports`]: the underlay
//! uplink and every port with an `[[endpoint]]`) are forwarded by the overlay, not by
//! L2 switching: the L2 pipeline puts each of them in a flooding group of its own,
//! whatever its `group` key says, so it neither receives floods from other ports nor
//! floods to them (validation already refuses patches and MAC entries on them).

use std::collections::HashMap;
use std::sync::Arc;

use dataplane::pipeline::lb::services::ServiceError;
use dataplane::pipeline::lb::Services;

use dataplane::overlay::{
    LocalEndpointSpec, OverlayBuilder, OverlayConfigError, OverlaySnapshot, UnderlaySpec,
};
use dataplane::wire::ParseConfig;
use dataplane::{GroupId, L2ConfigError, L2Pipeline, L2PipelineBuilder, Pipeline, PortIdx};

use crate::config::VswitchConfig;

/// Why a desired state did not compile: what the dataplane's builders refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The L2 stage (more ports than the dataplane supports, say).
    #[error("{0}")]
    L2(#[from] L2ConfigError),
    /// The overlay.
    #[error("{0}")]
    Overlay(#[from] OverlayConfigError),
}

/// Compiles the whole pipeline of `cfg` as snapshot `generation`, with the
/// daemon's port indices `index` ([`file_order`] for a daemon that creates every
/// port of the file at start).
///
/// # Errors
/// What the dataplane's builders refuse. A configuration that passed
/// [`VswitchConfig::parse`] has been through the overlay builder already.
pub fn pipeline(
    cfg: &VswitchConfig,
    generation: u64,
    index: &PortIndex,
) -> Result<Pipeline, CompileError> {
    let l2 = l2_pipeline_with(cfg, generation, index)?;
    let overlay = overlay_with(cfg, generation, index)?;
    // No parse setting is part of the desired state yet: the defaults.
    Ok(Pipeline::new(
        generation,
        l2,
        overlay,
        ParseConfig::default(),
    ))
}

/// The services of `cfg` for a snapshot whose overlay is `overlay` (network
/// ids), keeping every table of `prev` whose service's backends did not change:
/// a whole-state write rebuilds only the tables it changes. Built here, on the
/// control thread, before the snapshot is published.
///
/// # Errors
/// What the dataplane refuses (a state that passed validation builds).
pub fn services(
    cfg: &VswitchConfig,
    overlay: &OverlaySnapshot,
    prev: &Services,
) -> Result<Arc<Services>, ServiceError> {
    if cfg.services.is_empty() {
        return Ok(Arc::default());
    }
    Services::build(&cfg.services, |n| overlay.network_by_name(n), prev).map(Arc::new)
}

/// The network policy of `cfg`, validated and compiled here, on the control
/// thread, before the snapshot is published; `prev` (the running
/// configuration's policies and their compiled form) is shared when the
/// policies did not change, so a whole-state write that touches no policy
/// does not recompile them.
///
/// # Errors
/// What the validation or the compiler refuses (a state that passed
/// validation compiles).
pub fn policy(
    cfg: &VswitchConfig,
    prev: Option<(
        &crate::config::policy::Policies,
        &Arc<dataplane::pipeline::policy::CompiledPolicy>,
    )>,
) -> Result<Arc<dataplane::pipeline::policy::CompiledPolicy>, crate::config::ConfigError> {
    match prev {
        Some((p, compiled)) if *p == cfg.policies => Ok(Arc::clone(compiled)),
        _ => crate::config::policy::check_and_compile(&cfg.policies),
    }
}

/// Compiles the L2 pipeline of `cfg` as snapshot `generation`.
///
/// # Errors
/// What the dataplane refuses (e.g. more ports than it supports).
#[cfg(test)]
fn l2_pipeline(cfg: &VswitchConfig, generation: u64) -> Result<L2Pipeline, L2ConfigError> {
    l2_pipeline_with(cfg, generation, &file_order(cfg))
}

/// Port indices in file order: what a daemon that creates every port at start uses.
pub fn file_order(cfg: &VswitchConfig) -> PortIndex {
    cfg.ports
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), PortIdx(i as u16)))
        .collect()
}

/// Which dataplane port index each port name has. A daemon that adds and removes
/// ports at runtime keeps a port's index for as long as the port exists, so the
/// indices are its to hand out, not the file order's.
pub type PortIndex = HashMap<String, PortIdx>;

/// The L2 stage of [`pipeline`].
fn l2_pipeline_with(
    cfg: &VswitchConfig,
    generation: u64,
    index: &PortIndex,
) -> Result<L2Pipeline, L2ConfigError> {
    l2_pipeline_of(&cfg.ports, cfg, &cfg.overlay_ports(), generation, index)
}

/// The L2 stage for ports `ports` (with `cfg`'s patches and L2 table),
/// of which `overlay` belong to the overlay: what a write that adds or deletes
/// ports compiles without a copy of the whole configuration.
///
/// # Errors
/// What the dataplane refuses.
pub fn l2_pipeline_of(
    ports: &[crate::config::PortConfig],
    cfg: &VswitchConfig,
    overlay: &std::collections::BTreeSet<&str>,
    generation: u64,
    index: &PortIndex,
) -> Result<L2Pipeline, L2ConfigError> {
    let mut b = L2PipelineBuilder::new(generation);
    let mut groups: HashMap<&str, GroupId> = HashMap::new();
    // Group ids are handed out in order, named groups and isolated overlay ports
    // alike, so they never collide.
    let mut next = 0u16;
    let mut fresh = || {
        let g = GroupId(next);
        next += 1;
        g
    };
    let lookup = port_lookup(index);
    for p in ports {
        let group = if overlay.contains(p.name.as_str()) {
            fresh()
        } else {
            *groups.entry(p.group.as_str()).or_insert_with(&mut fresh)
        };
        b.port(lookup(&p.name), p.name.clone(), group);
    }
    for patch in &cfg.patches {
        b.patch(lookup(&patch.from), lookup(&patch.to));
    }
    for e in &cfg.l2 {
        b.mac(e.mac, lookup(&e.port));
    }
    b.build()
}

/// Resolves port names to their index. Validation already proved every name
/// resolves; a miss here is a bug upstream, so it falls back to an index the
/// dataplane builders reject rather than panic.
fn port_lookup(index: &PortIndex) -> impl Fn(&str) -> PortIdx + '_ {
    move |n| index.get(n).copied().unwrap_or(PortIdx(u16::MAX))
}

/// Compiles the virtual networks of `cfg` (`[underlay]`, `[[network]]`,
/// `[[endpoint]]`, `[[remote_endpoint]]`, `[[route]]`) as overlay snapshot
/// `generation`. Without any of those sections it is an empty snapshot.
///
/// # Errors
/// What the dataplane's [`OverlayBuilder`] refuses. A config that passed
/// [`VswitchConfig::parse`] has already been through the builder once, so this only
/// fails for a config built or changed by hand. Validation builds it this way
/// (and throws it away) to check the overlay as a whole.
pub(crate) fn overlay(
    cfg: &VswitchConfig,
    generation: u64,
) -> Result<OverlaySnapshot, OverlayConfigError> {
    overlay_with(cfg, generation, &file_order(cfg))
}

/// The overlay of [`pipeline`].
fn overlay_with(
    cfg: &VswitchConfig,
    generation: u64,
    index: &PortIndex,
) -> Result<OverlaySnapshot, OverlayConfigError> {
    let lookup = port_lookup(index);
    let mut b = OverlayBuilder::new(generation);
    if let Some(u) = &cfg.underlay {
        b.underlay(UnderlaySpec {
            uplink: lookup(&u.uplink),
            local_vtep_ip: u.local_vtep_ip,
            local_mac: u.local_mac,
            mtu: u.mtu,
            on_link: u.on_link,
            gateway: u.gateway,
        });
    }
    for n in &cfg.networks {
        b.network(n.clone());
    }
    for e in &cfg.endpoints {
        b.local_endpoint(LocalEndpointSpec {
            network: e.network.clone(),
            mac: e.mac,
            ips: e.ips.clone(),
            port: lookup(&e.port),
        });
    }
    for e in &cfg.remote_endpoints {
        b.remote_endpoint(e.clone());
    }
    for r in &cfg.routes {
        b.route(r.clone());
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::L2Verdict;

    #[test]
    fn compiles_groups_patches_and_macs() {
        let cfg = VswitchConfig::parse(
            r#"
[[port]]
name = "a"
profile = "null"
[[port]]
name = "b"
profile = "null"
[[port]]
name = "c"
profile = "null"
group = "other"
[[port]]
name = "d"
profile = "null"
group = "other"
[[patch]]
from = "c"
to = "d"
[[l2]]
mac = "02:00:00:00:00:02"
port = "b"
"#,
            2,
        )
        .unwrap();
        let p = l2_pipeline(&cfg, 7).unwrap();
        assert_eq!(p.generation(), 7);
        assert_eq!(p.port_group(PortIdx(0)), p.port_group(PortIdx(1)));
        assert_ne!(p.port_group(PortIdx(0)), p.port_group(PortIdx(2)));
        assert_eq!(p.patch_of(PortIdx(2)), Some(PortIdx(3)));
        assert_eq!(p.flood_ports(PortIdx(0)), &[PortIdx(1)]);
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        assert!(matches!(
            p.classify(PortIdx(0), &frame),
            L2Verdict::Output(PortIdx(1))
        ));
    }

    const OVERLAY: &str = r#"
[[port]]
name = "a"
profile = "null"
[[port]]
name = "uplink"
profile = "null"
[[port]]
name = "pod1"
profile = "null"
[[port]]
name = "b"
profile = "null"
[[port]]
name = "pod2"
profile = "null"
group = "other"
[[port]]
name = "c"
profile = "null"
group = "other"
[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
on_link = "192.0.2.0/24"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
vteps = ["192.0.2.2"]
[[endpoint]]
network = "blue"
mac = "02:00:00:00:01:01"
ips = ["10.1.0.2"]
port = "pod1"
[[endpoint]]
network = "blue"
mac = "02:00:00:00:01:02"
ips = ["10.1.0.4"]
port = "pod2"
[[remote_endpoint]]
network = "blue"
mac = "02:00:00:00:02:01"
ips = ["10.1.0.3"]
vtep = "192.0.2.2"
[[route]]
prefix = "0.0.0.0/0"
next_hop = { network = "blue", ip = "10.1.0.3" }
"#;

    #[test]
    fn compiles_the_overlay_with_ports_in_file_order() {
        use dataplane::overlay::{L2Dest, RouteResult};
        let cfg = VswitchConfig::parse(OVERLAY, 2).unwrap();
        let s = overlay(&cfg, 9).unwrap();
        assert_eq!(s.generation(), 9);
        assert_eq!(s.underlay().unwrap().uplink, PortIdx(1));
        let blue = s.network_by_vni(100).unwrap();
        assert_eq!(s.network_by_name("blue"), Some(blue));
        assert_eq!(s.network_of_port(PortIdx(2)), Some(blue));
        assert_eq!(s.network_of_port(PortIdx(4)), Some(blue));
        assert_eq!(s.network_of_port(PortIdx(0)), None);
        assert_eq!(
            s.network(blue).unwrap().local_ports.as_ref(),
            &[PortIdx(2), PortIdx(4)]
        );
        let mac = |b: u8| dataplane::MacAddr([2, 0, 0, 0, 1, b]);
        assert_eq!(s.l2_lookup(blue, mac(1)), Some(L2Dest::Local(PortIdx(2))));
        assert!(matches!(
            s.l2_lookup(blue, dataplane::MacAddr([2, 0, 0, 0, 2, 1])),
            Some(L2Dest::Remote(_))
        ));
        let vrf = s.vrf_by_name("default").unwrap();
        assert!(matches!(
            s.route(vrf, "8.8.8.8".parse().unwrap()),
            Some(RouteResult::NextHop { network, .. }) if network == blue
        ));
        assert_eq!(s.endpoint_count(), 3);
    }

    #[test]
    fn no_overlay_sections_compile_to_an_empty_snapshot() {
        let cfg = VswitchConfig::parse("[[port]]\nname = \"a\"\nprofile = \"null\"\n", 2).unwrap();
        let s = overlay(&cfg, 3).unwrap();
        assert_eq!((s.generation(), s.network_count()), (3, 0));
        assert!(s.underlay().is_none());
    }

    #[test]
    fn overlay_ports_are_isolated_from_l2_flooding() {
        let cfg = VswitchConfig::parse(OVERLAY, 2).unwrap();
        let p = l2_pipeline(&cfg, 1).unwrap();
        let (a, uplink, pod1, b, pod2, c) = (
            PortIdx(0),
            PortIdx(1),
            PortIdx(2),
            PortIdx(3),
            PortIdx(4),
            PortIdx(5),
        );
        // "a" and "b" share the default group; the overlay ports left it.
        assert_eq!(p.flood_ports(a), &[b]);
        assert_eq!(p.flood_ports(b), &[a]);
        // pod2 asked for group "other" but is an endpoint port: "c" floods alone.
        assert_eq!(p.flood_ports(c), &[] as &[PortIdx]);
        for port in [uplink, pod1, pod2] {
            assert_eq!(p.flood_ports(port), &[] as &[PortIdx]);
            for other in [a, uplink, pod1, b, pod2, c] {
                if other != port {
                    assert_ne!(p.port_group(port), p.port_group(other));
                }
            }
        }
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[0xff; 6]);
        assert!(matches!(p.classify(a, &frame), L2Verdict::Flood));
        assert!(matches!(p.classify(pod1, &frame), L2Verdict::Drop(_)));
    }
}
