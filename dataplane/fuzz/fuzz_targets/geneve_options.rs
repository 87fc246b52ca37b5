//! Arbitrary bytes as a Geneve header: the checked view, option iteration, the
//! critical-option check, and re-emitting the parsed header (with one option added),
//! which must parse back to the same header.
#![no_main]

use dataplane::wire::{GeneveOption, GenevePacket, GeneveRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = GenevePacket::new_checked(data) else {
        return;
    };
    let n = g.options().count();
    let opt_bytes: usize = g.options().map(|o| o.wire_len()).sum();
    assert_eq!(opt_bytes, g.opt_len());
    let _ = g.check_critical(|c, _| c == 0x0132);

    let extra = [GeneveOption::new(0xffff, 0x01, &[1, 2, 3, 4])];
    let repr = GeneveRepr {
        add: &extra,
        ..GeneveRepr::parse(&g)
    };
    let mut out = vec![0u8; repr.buffer_len()];
    match repr.emit(&mut out) {
        Ok(len) => {
            let g2 = GenevePacket::new_checked(&out[..len]).expect("emitted header parses");
            assert_eq!(
                (g2.vni(), g2.protocol(), g2.oam()),
                (g.vni(), g.protocol(), g.oam())
            );
            assert_eq!(g2.options().count(), n + 1);
            assert_eq!(g2.options().last(), Some(extra[0]));
        }
        // Only when the existing options leave no room for 8 more bytes.
        Err(_) => assert!(g.opt_len() + 8 > 252),
    }
});
