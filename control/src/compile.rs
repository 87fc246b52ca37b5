//! The compiler from desired state to the snapshot workers run.
//!
//! Ports get dense indices in file order (the same order `vswitchd` creates them in),
//! and each distinct group name becomes a flooding domain. The dataplane builder
//! re-checks what it needs, so a snapshot is valid whoever built it.

use std::collections::HashMap;

use dataplane::{GroupId, L2ConfigError, L2Pipeline, L2PipelineBuilder, PortIdx};

use crate::config::VswitchConfig;

/// Compiles the L2 pipeline of `cfg` as snapshot `generation`.
///
/// # Errors
/// What the dataplane refuses (e.g. more ports than it supports).
pub fn l2_pipeline(cfg: &VswitchConfig, generation: u64) -> Result<L2Pipeline, L2ConfigError> {
    let mut b = L2PipelineBuilder::new(generation);
    let mut groups: HashMap<&str, GroupId> = HashMap::new();
    let mut index: HashMap<&str, PortIdx> = HashMap::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let next = GroupId(groups.len() as u16);
        let group = *groups.entry(p.group.as_str()).or_insert(next);
        let idx = PortIdx(i as u16);
        index.insert(p.name.as_str(), idx);
        b.port(idx, p.name.clone(), group);
    }
    // Validation already proved every name resolves; a miss here is a bug upstream,
    // so fall back to an index the builder will reject rather than panic.
    let lookup = |n: &str| index.get(n).copied().unwrap_or(PortIdx(u16::MAX));
    for patch in &cfg.patches {
        b.patch(lookup(&patch.from), lookup(&patch.to));
    }
    for e in &cfg.l2 {
        b.mac(e.mac, lookup(&e.port));
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
}
