//! Source-NAT port allocation.
//!
//! # Design
//! A [`PortPool`] hands out the ports of one (zone, external address, protocol)
//! from a range. The free ports wait in a FIFO ring and a bitmap says which are
//! taken: allocating pops the front, releasing (when the connection expires)
//! pushes the port to the back. Both are `O(1)`, and a released port is the last
//! to be reused, so a peer still holding the old connection in TIME_WAIT is
//! unlikely to see its tuple again soon. The ring is allocated when the pool is
//! built: no allocation per connection.
//!
//! The caller may refuse a port (the predicate of [`PortPool::allocate`]): with
//! one conntrack shard per worker, the stage wants a port whose reply tuple
//! hashes to its own worker (see the module doc of [`super`]). A refused port
//! goes to the back of the ring; after `max_tries` refusals the allocation gives
//! up, so a worker never spins when the ports run out or none suits it. The
//! stage counts that as `nat_no_port`.
//!
//! Ports are unique per external address and protocol (endpoint-independent
//! mapping, RFC 4787 §4.1): up to the range's size of connections per
//! external address, and a reply tuple can never collide.
//!
//! Not yet called: the LB/conntrack stage will take ports from it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Why a pool was not built or a port not released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnatError {
    /// An empty range, or one that includes port 0.
    #[error("SNAT port range {lo}..={hi} is empty or includes port 0")]
    BadRange {
        /// First port.
        lo: u16,
        /// Last port.
        hi: u16,
    },
    /// Released a port that is not in use (a double free).
    #[error("port {0} is not in use")]
    NotInUse(u16),
    /// No pool for this (zone, address, protocol).
    #[error("no SNAT pool for this zone, address and protocol")]
    NoPool,
    /// The pool has no free port, or none of the tried ones suited the caller.
    #[error("no SNAT port available")]
    Exhausted,
}

/// The ports of one external address and protocol.
#[derive(Clone, Debug)]
pub struct PortPool {
    lo: u16,
    hi: u16,
    free: VecDeque<u16>,
    used: Vec<u64>,
}

impl PortPool {
    /// A pool of the ports `lo..=hi`, all free.
    ///
    /// # Errors
    /// [`SnatError::BadRange`].
    pub fn new(lo: u16, hi: u16) -> Result<Self, SnatError> {
        if lo == 0 || lo > hi {
            return Err(SnatError::BadRange { lo, hi });
        }
        let n = usize::from(hi - lo) + 1;
        let mut free = VecDeque::with_capacity(n);
        free.extend(lo..=hi);
        Ok(PortPool {
            lo,
            hi,
            free,
            used: vec![0; n.div_ceil(64)],
        })
    }

    fn bit(&self, port: u16) -> Option<(usize, u64)> {
        (self.lo..=self.hi).contains(&port).then(|| {
            let k = usize::from(port - self.lo);
            (k / 64, 1u64 << (k % 64))
        })
    }

    /// True if `port` is handed out.
    pub fn in_use(&self, port: u16) -> bool {
        self.bit(port).is_some_and(|(w, b)| self.used[w] & b != 0)
    }

    /// Free ports.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// A free port that `accept` takes, trying at most `max_tries` ports.
    ///
    /// # Errors
    /// [`SnatError::Exhausted`].
    pub fn allocate(
        &mut self,
        max_tries: usize,
        mut accept: impl FnMut(u16) -> bool,
    ) -> Result<u16, SnatError> {
        for _ in 0..max_tries.min(self.free.len()) {
            let p = self.free.pop_front().ok_or(SnatError::Exhausted)?;
            if accept(p) {
                let (w, b) = self.bit(p).ok_or(SnatError::Exhausted)?;
                self.used[w] |= b;
                return Ok(p);
            }
            self.free.push_back(p);
        }
        Err(SnatError::Exhausted)
    }

    /// Gives `port` back (its connection expired).
    ///
    /// # Errors
    /// [`SnatError::NotInUse`]; nothing changes.
    pub fn release(&mut self, port: u16) -> Result<(), SnatError> {
        match self.bit(port) {
            Some((w, b)) if self.used[w] & b != 0 => {
                self.used[w] &= !b;
                // Cannot grow: the ring was built with room for every port.
                self.free.push_back(port);
                Ok(())
            }
            _ => Err(SnatError::NotInUse(port)),
        }
    }
}

/// The pools of every (zone, external address, protocol).
#[derive(Clone, Debug, Default)]
pub struct SnatPorts {
    pools: HashMap<(u32, IpAddr, u8), PortPool>,
}

impl SnatPorts {
    /// No pools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the pool of (zone, addr, proto) with ports `lo..=hi`.
    ///
    /// # Errors
    /// [`SnatError::BadRange`]; nothing changes.
    pub fn add(
        &mut self,
        zone: u32,
        addr: IpAddr,
        proto: u8,
        lo: u16,
        hi: u16,
    ) -> Result<(), SnatError> {
        let pool = PortPool::new(lo, hi)?;
        self.pools.insert((zone, addr, proto), pool);
        Ok(())
    }

    /// The pool of (zone, addr, proto).
    pub fn pool(&mut self, zone: u32, addr: IpAddr, proto: u8) -> Option<&mut PortPool> {
        self.pools.get_mut(&(zone, addr, proto))
    }

    /// A port of (zone, addr, proto); see [`PortPool::allocate`].
    ///
    /// # Errors
    /// [`SnatError::NoPool`] or [`SnatError::Exhausted`].
    pub fn allocate(
        &mut self,
        zone: u32,
        addr: IpAddr,
        proto: u8,
        max_tries: usize,
        accept: impl FnMut(u16) -> bool,
    ) -> Result<u16, SnatError> {
        self.pool(zone, addr, proto)
            .ok_or(SnatError::NoPool)?
            .allocate(max_tries, accept)
    }

    /// Gives a port back.
    ///
    /// # Errors
    /// [`SnatError::NoPool`] or [`SnatError::NotInUse`].
    pub fn release(
        &mut self,
        zone: u32,
        addr: IpAddr,
        proto: u8,
        port: u16,
    ) -> Result<(), SnatError> {
        self.pool(zone, addr, proto)
            .ok_or(SnatError::NoPool)?
            .release(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(
            PortPool::new(0, 10).unwrap_err(),
            SnatError::BadRange { lo: 0, hi: 10 }
        );
        assert_eq!(
            PortPool::new(11, 10).unwrap_err(),
            SnatError::BadRange { lo: 11, hi: 10 }
        );
        assert_eq!(PortPool::new(65535, 65535).unwrap().available(), 1);
    }

    #[test]
    fn runs_out_then_reuses_after_release() {
        let mut p = PortPool::new(1024, 1027).unwrap();
        let got: Vec<u16> = (0..4).map(|_| p.allocate(1, |_| true).unwrap()).collect();
        assert_eq!(got, [1024, 1025, 1026, 1027]);
        assert_eq!(p.allocate(100, |_| true), Err(SnatError::Exhausted));
        p.release(1026).unwrap();
        assert_eq!(p.release(1026), Err(SnatError::NotInUse(1026)));
        assert_eq!(p.release(80), Err(SnatError::NotInUse(80)));
        assert_eq!(p.allocate(1, |_| true), Ok(1026));
    }

    #[test]
    fn a_released_port_is_the_last_reused() {
        let mut p = PortPool::new(1, 3).unwrap();
        let a = p.allocate(1, |_| true).unwrap();
        p.release(a).unwrap();
        assert_eq!(p.allocate(1, |_| true), Ok(2));
        assert_eq!(p.allocate(1, |_| true), Ok(3));
        assert_eq!(p.allocate(1, |_| true), Ok(a));
    }

    /// A predicate that refuses everything gives up after `max_tries` calls.
    #[test]
    fn refusals_are_bounded() {
        let mut p = PortPool::new(1, 60_000).unwrap();
        let mut calls = 0;
        assert_eq!(
            p.allocate(16, |_| {
                calls += 1;
                false
            }),
            Err(SnatError::Exhausted)
        );
        assert_eq!(calls, 16);
        assert_eq!(p.available(), 60_000);
        let mut only_even = |x: u16| x.is_multiple_of(2);
        assert_eq!(p.allocate(16, &mut only_even).map(|x| x % 2), Ok(0));
    }

    #[test]
    fn pools_are_per_zone_address_and_protocol() {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut s = SnatPorts::new();
        s.add(1, a, 6, 1000, 1000).unwrap();
        s.add(1, a, 17, 1000, 1000).unwrap();
        assert_eq!(s.allocate(1, a, 6, 1, |_| true), Ok(1000));
        assert_eq!(s.allocate(1, a, 17, 1, |_| true), Ok(1000));
        assert_eq!(s.allocate(1, a, 6, 1, |_| true), Err(SnatError::Exhausted));
        assert_eq!(s.allocate(2, a, 6, 1, |_| true), Err(SnatError::NoPool));
        s.release(1, a, 6, 1000).unwrap();
        assert_eq!(s.allocate(1, a, 6, 1, |_| true), Ok(1000));
    }

    proptest! {
        /// Against a set of ports in use: never a port twice, every release of a
        /// port in use accepted, and a port always found while one is free.
        #[test]
        fn never_hands_out_a_port_in_use(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..400)) {
            let mut p = PortPool::new(100, 163).unwrap();
            let mut used: HashSet<u16> = HashSet::new();
            for (alloc, k) in ops {
                if alloc {
                    match p.allocate(1, |_| true) {
                        Ok(x) => prop_assert!(used.insert(x), "{} handed out twice", x),
                        Err(_) => prop_assert_eq!(used.len(), 64),
                    }
                } else {
                    let x = 100 + u16::from(k % 64);
                    prop_assert_eq!(p.release(x).is_ok(), used.remove(&x));
                }
                prop_assert_eq!(p.available(), 64 - used.len());
            }
        }
    }
}
