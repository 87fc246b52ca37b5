//! Arbitrary bytes through the NAT rewrite: the first bytes choose the
//! translation (which sides, the family, addresses and ports), the rest is the
//! IP packet. It must never panic, and a refused packet must be left unchanged.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::pipeline::conntrack::nat::{rewrite, NatRewrite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, packet)) = data.split_at_checked(37) else {
        return;
    };
    let endpoint = |b: &[u8]| {
        let a = if head[0] & 4 != 0 {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).unwrap()))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        (a, u16::from_be_bytes([b[16], b[17]]))
    };
    let rw = NatRewrite {
        src: (head[0] & 1 != 0).then(|| endpoint(&head[1..19])),
        dst: (head[0] & 2 != 0).then(|| endpoint(&head[19..37])),
    };
    let mut frame = packet.to_vec();
    if rewrite(&mut frame, 0, &rw).is_err() {
        assert_eq!(frame, packet, "a refused rewrite changed the frame");
    }
});
