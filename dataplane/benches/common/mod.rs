//! What the benches share: a deterministic generator and the addressing scheme of
//! their synthetic endpoints and MAC tables.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use dataplane::MacAddr;

/// A cheap deterministic generator (xorshift), so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `i`th MAC of the L2 and worker benches' tables: 02:00 and `i`'s four bytes.
pub fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
}

/// Endpoint `i` of network `n`: MAC 02:n:n:i:i:i.
pub fn ep_mac(n: u32, i: u32) -> MacAddr {
    let (n, i) = (n.to_be_bytes(), i.to_be_bytes());
    MacAddr([0x02, n[2], n[3], i[1], i[2], i[3]])
}

/// Endpoint `i` of network `n`: 10.n.x.y inside 10.n.0.0/16.
pub fn ep_ip(n: u32, i: u32) -> Ipv4Addr {
    Ipv4Addr::from_bits((10 << 24) | (n << 16) | (i + 10))
}
