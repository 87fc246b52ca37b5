//! Arbitrary bytes through the parse-once path: `parse_with` (IANA and Linux VXLAN
//! ports, one known critical Geneve option), then the inner packet of a tunnel, then
//! the Geneve view and its options. Any panic is a bug: parsing promises none.
#![no_main]

use dataplane::wire::{
    ipv4_flow_hash, parse_inner, parse_with, GenevePacket, ParseConfig, TunnelKind, TunnelPorts,
    VxlanPacket,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The unparsed hash of the fast path reads any bytes without panicking, and
    // agrees with the parse wherever the parse accepts the frame.
    let fast = ipv4_flow_hash(data);
    let mut cfg = ParseConfig::new(TunnelPorts::WITH_LINUX_VXLAN);
    cfg.geneve_known_critical.push((0, 0x80));
    let Ok(m) = parse_with(data, &cfg) else {
        return;
    };
    assert!(usize::from(m.l3_end) <= data.len());
    if let Some(h) = fast {
        assert_eq!(h, m.flow_hash());
    }
    let _ = m.symmetric_flow_hash();
    if m.tunnel == TunnelKind::None {
        return;
    }
    assert!(m.inner_offset <= m.inner_end);
    let _ = parse_inner(data, &m, &cfg);
    let header = &data[usize::from(m.payload_offset)..usize::from(m.inner_end)];
    match m.tunnel {
        TunnelKind::Vxlan => {
            let v = VxlanPacket::new_checked(header).expect("meta accepted this VXLAN header");
            assert_eq!(v.vni(), m.vni);
        }
        TunnelKind::Geneve => {
            let g = GenevePacket::new_checked(header).expect("meta accepted this Geneve header");
            assert_eq!(g.vni(), m.vni);
            let opt_bytes: usize = g.options().map(|o| o.wire_len()).sum();
            assert_eq!(opt_bytes, g.opt_len());
            assert!(g.check_critical(|c, t| (c, t) == (0, 0x80)).is_ok());
        }
        TunnelKind::None => {}
    }
});
