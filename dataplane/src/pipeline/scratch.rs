//! A worker's reusable working space for the stages: the parsed metadata of the
//! packet at hand (outer and inner) and a cache of routing decisions.
//!
//! Why it exists: a `PacketMeta` is about a hundred bytes. Returned by value through
//! a `Result` it is written field by field and then copied in wide loads that cannot
//! be forwarded from the narrow stores — on the tunnel paths that copy cost more
//! than the parse. Parsing into space the worker owns writes each field once.
//!
//! The route cache holds, per (source network, destination address), what the
//! routing stage decided from the snapshot — the gateway check, the longest-prefix
//! match in the tenant's VRF and the host lookup behind a connected route — so a
//! routed packet of a known destination costs one probe instead of three to five
//! hash lookups. It is a pure function of the snapshot and the key, so it is
//! emptied when the worker binds another snapshot and needs no other invalidation.

use std::sync::Arc;

use super::Pipeline;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::{L2Dest, NetworkId};
use crate::wire::PacketMeta;

/// The reusable per-packet working space of one worker (see the module docs).
pub struct Scratch {
    /// The packet's (outer) metadata.
    pub(crate) outer: PacketMeta,
    /// The encapsulated packet's metadata, after a decap.
    pub(crate) inner: PacketMeta,
    pub(crate) routes: RouteCache,
    bound: Option<Arc<Pipeline>>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("routes", &self.routes.live)
            .finish_non_exhaustive()
    }
}

impl Scratch {
    /// Empty working space.
    pub fn new() -> Self {
        Scratch {
            outer: PacketMeta::default(),
            inner: PacketMeta::default(),
            routes: RouteCache::new(),
            bound: None,
        }
    }

    /// Makes `snap` the snapshot the cached entries belong to: if it is not the one
    /// bound before, the caches are emptied. Holding the `Arc` keeps the bound
    /// snapshot's address from being reused by a newer one (which would make a stale
    /// cache look valid); the worker rebinds every round, so it holds nothing older
    /// than the current snapshot for longer than a round.
    pub fn bind(&mut self, snap: &Arc<Pipeline>) {
        if self.bound.as_ref().is_some_and(|b| Arc::ptr_eq(b, snap)) {
            return;
        }
        self.routes.clear();
        self.bound = Some(Arc::clone(snap));
    }

    /// Forgets every cached entry and the bound snapshot.
    pub fn clear(&mut self) {
        self.routes.clear();
        self.bound = None;
    }

    /// True if the caches were filled for `snap` (or are empty).
    pub(crate) fn is_bound_to(&self, snap: &Pipeline) -> bool {
        match &self.bound {
            Some(b) => std::ptr::eq(Arc::as_ptr(b), snap),
            None => self.routes.live == 0,
        }
    }
}

/// Entries in the route cache (direct-mapped by source network and destination).
const ROUTE_SLOTS: usize = 4096;

/// What the routing stage decided for a (source network, destination) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// The destination is a gateway address of the source network: for the switch.
    ToGateway,
    /// Rewrite the Ethernet addresses to `macs` and send to `dest`.
    Forward {
        /// The network the frame leaves in.
        dst_net: NetworkId,
        /// The new Ethernet addresses.
        macs: RoutedMacs,
        /// Where it goes.
        dest: L2Dest,
    },
    /// Dropped, for this reason.
    Drop(DropReason),
}

/// The Ethernet addresses of a routed frame, as the header's first 12 bytes hold
/// them: the next hop's MAC, then the gateway MAC of the network the frame leaves
/// in (kept here so a routed frame is rewritten with one copy and without a look
/// at the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RoutedMacs(pub(crate) [u8; 12]);

impl RoutedMacs {
    /// To `dst` from `src`.
    pub(crate) fn new(dst: MacAddr, src: MacAddr) -> Self {
        let mut b = [0; 12];
        b[..6].copy_from_slice(&dst.0);
        b[6..].copy_from_slice(&src.0);
        RoutedMacs(b)
    }

    /// The new destination MAC.
    pub(crate) fn dst(&self) -> MacAddr {
        MacAddr([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ])
    }

    /// The new source MAC.
    pub(crate) fn src(&self) -> MacAddr {
        MacAddr([
            self.0[6], self.0[7], self.0[8], self.0[9], self.0[10], self.0[11],
        ])
    }
}

/// An IPv4 entry: source network and destination in one word, so a probe is one
/// compare, and 32 bytes a slot (the fast path for pods is IPv4).
#[derive(Clone, Copy)]
struct Route4Entry {
    /// [`RouteCache::key4`]; 0 when the slot is empty.
    key: u64,
    routed: Routed,
}

impl Route4Entry {
    const EMPTY: Route4Entry = Route4Entry {
        key: 0,
        routed: Routed::ToGateway,
    };
}

type Route4Table = [Route4Entry; ROUTE_SLOTS];

/// The IPv4 cache before its first entry: every key misses (no live key is 0).
static EMPTY4: Route4Table = [Route4Entry::EMPTY; ROUTE_SLOTS];

/// The IPv4 route cache, read-only, with the slot's bounds known from its type.
#[derive(Clone, Copy)]
pub(crate) struct Route4Reader<'a>(&'a Route4Table);

impl<'a> Route4Reader<'a> {
    /// [`RouteCache::get4`], by reference: the burst loop copies the rewritten
    /// addresses from the entry to the frame, not through a copy of the entry.
    #[inline]
    pub(crate) fn get(&self, net: NetworkId, addr: u32) -> Option<&'a Routed> {
        let key = RouteCache::key4(net, addr);
        let e = &self.0[route_slot(key)];
        (e.key == key).then_some(&e.routed)
    }
}

/// An IPv6 entry.
#[derive(Clone, Copy)]
struct Route6Entry {
    valid: bool,
    net: NetworkId,
    addr: u128,
    routed: Routed,
}

/// Direct-mapped caches of routing decisions (one per address family), allocated on
/// first use.
pub(crate) struct RouteCache {
    /// Allocated on the first IPv4 route; until then [`EMPTY4`] stands in.
    v4: Option<Box<Route4Table>>,
    v6: Vec<Route6Entry>,
    live: usize,
}

/// Spreads a 64-bit key over the slots: the product's high bits mix every input bit.
#[inline]
fn route_slot(x: u64) -> usize {
    const { assert!(ROUTE_SLOTS == 1 << 12) };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize
}

impl RouteCache {
    fn new() -> Self {
        RouteCache {
            v4: None,
            v6: Vec::new(),
            live: 0,
        }
    }

    fn clear(&mut self) {
        if self.live > 0 {
            if let Some(v4) = &mut self.v4 {
                v4.iter_mut().for_each(|e| e.key = 0);
            }
            self.v6.iter_mut().for_each(|e| e.valid = false);
            self.live = 0;
        }
    }

    /// The IPv4 key: a set top bit (no live key is 0), the network, the address.
    #[inline]
    fn key4(net: NetworkId, addr: u32) -> u64 {
        (1 << 63) | (u64::from(net.0) << 32) | u64::from(addr)
    }

    /// The IPv4 cache, for a loop that keeps the table's address in a register.
    #[inline]
    pub(crate) fn reader4(&self) -> Route4Reader<'_> {
        Route4Reader(self.v4.as_deref().unwrap_or(&EMPTY4))
    }

    /// The cached decision for IPv4 traffic from `net` to `addr`.
    #[inline]
    pub(crate) fn get4(&self, net: NetworkId, addr: u32) -> Option<Routed> {
        self.reader4().get(net, addr).copied()
    }

    /// The cached decision for traffic from `net` to `addr` (an IPv4 address in
    /// the low 32 bits unless `ipv6`).
    #[inline]
    pub(crate) fn get(&self, net: NetworkId, addr: u128, ipv6: bool) -> Option<Routed> {
        if !ipv6 {
            return self.get4(net, addr as u32);
        }
        let e = self.v6.get(Self::slot6(net, addr))?;
        (e.valid && e.net == net && e.addr == addr).then_some(e.routed)
    }

    #[inline]
    fn slot6(net: NetworkId, addr: u128) -> usize {
        route_slot((addr as u64) ^ ((addr >> 64) as u64) ^ (u64::from(net.0) << 48))
    }

    /// Remembers `routed` for traffic from `net` to `addr`, replacing the slot.
    pub(crate) fn put(&mut self, net: NetworkId, addr: u128, ipv6: bool, routed: Routed) {
        let was_live = if ipv6 {
            if self.v6.is_empty() {
                self.v6 = vec![
                    Route6Entry {
                        valid: false,
                        net: NetworkId(0),
                        addr: 0,
                        routed: Routed::ToGateway,
                    };
                    ROUTE_SLOTS
                ];
            }
            let e = &mut self.v6[Self::slot6(net, addr)];
            let was = e.valid;
            *e = Route6Entry {
                valid: true,
                net,
                addr,
                routed,
            };
            was
        } else {
            let v4 = self.v4.get_or_insert_with(|| {
                vec![Route4Entry::EMPTY; ROUTE_SLOTS]
                    .into_boxed_slice()
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("ROUTE_SLOTS entries"))
            });
            let key = Self::key4(net, addr as u32);
            let e = &mut v4[route_slot(key)];
            let was = e.key != 0;
            *e = Route4Entry { key, routed };
            was
        };
        if !was_live {
            self.live += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId(3);
    const VTEP: crate::overlay::VtepIdx = crate::overlay::VtepIdx(5);

    #[test]
    fn routes_are_keyed_by_network_address_and_family() {
        let mut routes = RouteCache::new();
        let fwd = Routed::Forward {
            dst_net: NetworkId(1),
            macs: RoutedMacs::new(MacAddr([2, 0, 0, 0, 0, 9]), MacAddr([2, 0xaa, 0, 0, 0, 1])),
            dest: L2Dest::Remote(VTEP),
        };
        assert_eq!(routes.get(NET, 0x0a02_000a, false), None, "empty");
        routes.put(NET, 0x0a02_000a, false, fwd);
        assert_eq!(routes.live, 1);
        assert_eq!(routes.get(NET, 0x0a02_000a, false), Some(fwd));
        assert_eq!(routes.get(NET, 0x0a02_000a, true), None);
        assert_eq!(routes.get(NET, 0x0a02_000b, false), None);
        assert_eq!(routes.get(NetworkId(4), 0x0a02_000a, false), None);
        // Other networks whose key lands in the same slot (tenants reuse addresses):
        // a hit needs the network to match, and a put replaces the slot.
        let slot4 = |n| route_slot(RouteCache::key4(n, 0x0a02_000a));
        let other = (0..u16::MAX)
            .map(NetworkId)
            .find(|&n| n != NET && slot4(n) == slot4(NET))
            .expect("4096 slots: some network shares the slot");
        assert_eq!(routes.get(other, 0x0a02_000a, false), None, "{other:?}");
        let drop = Routed::Drop(DropReason::NoRoute);
        routes.put(other, 0x0a02_000a, false, drop);
        assert_eq!(routes.live, 1);
        assert_eq!(routes.get(other, 0x0a02_000a, false), Some(drop));
        assert_eq!(routes.get(NET, 0x0a02_000a, false), None);
        routes.clear();
        assert_eq!(
            (routes.live, routes.get(other, 0x0a02_000a, false)),
            (0, None)
        );
        // The families are kept apart, an IPv6 key in full; get4 is get for IPv4.
        let v6 = 0x2001_0db8_0000_0000_0000_0000_0a02_000a_u128;
        routes.put(NET, 0x0a02_000a, true, drop);
        routes.put(NET, v6, true, fwd);
        routes.put(NET, 0x0a02_000a, false, fwd);
        assert_eq!(routes.live, 3);
        assert_eq!(routes.get(NET, 0x0a02_000a, true), Some(drop));
        assert_eq!(routes.get(NET, v6, true), Some(fwd));
        assert_eq!(routes.get(NET, v6 ^ (1 << 100), true), None);
        assert_eq!(routes.get(NetworkId(4), v6, true), None);
        assert_eq!(routes.get4(NET, 0x0a02_000a), Some(fwd));
        assert_eq!(
            routes.get(NET, v6, false),
            Some(fwd),
            "IPv4: the low 32 bits"
        );
        routes.clear();
        assert_eq!((routes.live, routes.get(NET, v6, true)), (0, None));
    }

    #[test]
    fn bind_empties_the_caches_only_for_another_snapshot() {
        let p = Arc::new(Pipeline::l2_only(
            crate::l2::L2PipelineBuilder::new(1).build().unwrap(),
        ));
        let q = Arc::new(Pipeline::l2_only(
            crate::l2::L2PipelineBuilder::new(2).build().unwrap(),
        ));
        let mut s = Scratch::new();
        assert!(s.is_bound_to(&p) && s.is_bound_to(&q), "empty: fits any");
        s.bind(&p);
        let routed = Routed::Drop(DropReason::NoRoute);
        s.routes.put(NET, 0x0a01_0014, false, routed);
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), Some(routed));
        assert_eq!(
            s.routes.get(NET, 0x0a01_0014, true),
            None,
            "family is keyed"
        );
        s.bind(&p);
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), Some(routed));
        assert!(s.is_bound_to(&p) && !s.is_bound_to(&q));
        s.bind(&q);
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), None);
        assert!(s.is_bound_to(&q) && !s.is_bound_to(&p));
        s.routes.put(NET, 0x0a01_0014, false, routed);
        s.clear();
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), None);
        assert!(s.is_bound_to(&p), "cleared: fits any again");
    }
}
