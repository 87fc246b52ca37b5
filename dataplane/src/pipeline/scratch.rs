//! A worker's reusable working space for the per-packet pipeline: the parsed
//! metadata of the packet at hand (outer and inner) and a cache of ready-made outer
//! headers per (network, VTEP).
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
//!
//! The encap cache holds, per (network, VTEP), the outer Ethernet/IP/UDP/tunnel
//! header with every field that does not depend on the packet already written and
//! the IPv4 header checksum already summed, so an encapsulation is one fixed-size
//! copy and three length patches (DESIGN.md §3: cached actions). An entry is valid
//! for one pipeline snapshot (the cache is emptied when the worker binds another)
//! and one generation of the underlay neighbour map (checked per packet, since the
//! next hop's MAC is in the header).

use std::sync::Arc;

use super::{reply, Pipeline};
use crate::buf::{PacketBuf, VecBuf};
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::{L2Dest, NetworkId, VtepIdx};
use crate::port::PortIdx;
use crate::wire::PacketMeta;

/// Entries in the encap cache (direct-mapped by network and VTEP).
const ENCAP_SLOTS: usize = 64;

/// The longest outer header: Ethernet 14 + IPv6 40 + UDP 8 + VXLAN/Geneve 8.
const MAX_OUTER: usize = 70;

/// The reusable per-packet working space of one worker (see the module docs).
pub struct Scratch {
    /// The packet's (outer) metadata.
    pub(crate) outer: PacketMeta,
    /// The encapsulated packet's metadata, after a decap.
    pub(crate) inner: PacketMeta,
    pub(crate) encap: EncapCache,
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
            .field("encap_entries", &self.encap.live())
            .finish_non_exhaustive()
    }
}

impl Scratch {
    /// Empty working space.
    pub fn new() -> Self {
        Scratch {
            outer: PacketMeta::default(),
            inner: PacketMeta::default(),
            encap: EncapCache::new(),
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
        self.encap.clear();
        self.routes.clear();
        self.bound = Some(Arc::clone(snap));
    }

    /// Forgets every cached entry and the bound snapshot.
    pub fn clear(&mut self) {
        self.encap.clear();
        self.routes.clear();
        self.bound = None;
    }

    /// True if the caches were filled for `snap` (or are empty).
    pub(crate) fn is_bound_to(&self, snap: &Pipeline) -> bool {
        match &self.bound {
            Some(b) => std::ptr::eq(Arc::as_ptr(b), snap),
            None => self.encap.live() == 0 && self.routes.live == 0,
        }
    }
}

/// One ready-made outer header.
#[derive(Clone, Copy)]
pub(crate) struct EncapEntry {
    valid: bool,
    net: NetworkId,
    vtep: VtepIdx,
    /// The neighbour map generation whose next-hop MAC is in `hdr`.
    neighbors: u64,
    pub(crate) uplink: PortIdx,
    pub(crate) ipv6: bool,
    /// The header as built for an empty inner frame: lengths count only the outer
    /// headers, the IPv4 checksum is over those lengths, the source port is 0.
    pub(crate) hdr: [u8; MAX_OUTER],
}

impl EncapEntry {
    const EMPTY: EncapEntry = EncapEntry {
        valid: false,
        net: NetworkId(0),
        vtep: VtepIdx(0),
        neighbors: 0,
        uplink: PortIdx(0),
        ipv6: false,
        hdr: [0; MAX_OUTER],
    };
}

/// Direct-mapped cache of outer headers.
pub(crate) struct EncapCache {
    entries: Box<[EncapEntry; ENCAP_SLOTS]>,
    live: usize,
}

impl EncapCache {
    fn new() -> Self {
        EncapCache {
            entries: Box::new([EncapEntry::EMPTY; ENCAP_SLOTS]),
            live: 0,
        }
    }

    fn clear(&mut self) {
        if self.live > 0 {
            self.entries.iter_mut().for_each(|e| e.valid = false);
            self.live = 0;
        }
    }

    fn live(&self) -> usize {
        self.live
    }

    #[inline]
    fn slot(net: NetworkId, vtep: VtepIdx) -> usize {
        // Consecutive VTEPs of one network land in consecutive slots.
        (usize::from(vtep.0) + usize::from(net.0) * 7) % ENCAP_SLOTS
    }

    /// The cached header for (`net`, `vtep`) built with neighbour map `neighbors`.
    #[inline]
    pub(crate) fn get(&self, net: NetworkId, vtep: VtepIdx, neighbors: u64) -> Option<&EncapEntry> {
        let e = &self.entries[Self::slot(net, vtep)];
        (e.valid && e.net == net && e.vtep == vtep && e.neighbors == neighbors).then_some(e)
    }

    /// Builds and stores the header for (`net`, `vtep`) from `outer`, replacing
    /// whatever held the slot. `None` if the header cannot be built (mixed address
    /// families: nothing to cache, the packet is dropped by the caller).
    pub(crate) fn fill(
        &mut self,
        net: NetworkId,
        vtep: VtepIdx,
        neighbors: u64,
        uplink: PortIdx,
        outer: &reply::OuterHeaders,
    ) -> Option<&EncapEntry> {
        // The one builder of outer headers, run over an empty inner frame: the cache
        // and the flood path can never disagree on a header field.
        let mut b = VecBuf::with_room(&[], MAX_OUTER, 0);
        if !reply::push_outer(&mut b, outer) {
            return None;
        }
        let data = b.data();
        let mut hdr = [0u8; MAX_OUTER];
        hdr[..data.len()].copy_from_slice(data);
        let slot = Self::slot(net, vtep);
        let e = &mut self.entries[slot];
        if !e.valid {
            self.live += 1;
        }
        *e = EncapEntry {
            valid: true,
            net,
            vtep,
            neighbors,
            uplink,
            ipv6: data.len() == MAX_OUTER,
            hdr,
        };
        Some(e)
    }
}

/// Entries in the route cache (direct-mapped by source network and destination).
const ROUTE_SLOTS: usize = 4096;

/// What the routing stage decided for a (source network, destination) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// The destination is a gateway address of the source network: for the switch.
    ToGateway,
    /// Rewrite to `mac` from `dst_net`'s gateway MAC and send to `dest`.
    Forward {
        /// The network the frame leaves in.
        dst_net: NetworkId,
        /// The new destination MAC.
        mac: MacAddr,
        /// Where it goes.
        dest: L2Dest,
    },
    /// Dropped, for this reason.
    Drop(DropReason),
}

#[derive(Clone, Copy)]
struct RouteEntry {
    valid: bool,
    net: NetworkId,
    addr: u128,
    ipv6: bool,
    routed: Routed,
}

/// Direct-mapped cache of routing decisions, allocated on first use.
pub(crate) struct RouteCache {
    entries: Vec<RouteEntry>,
    live: usize,
}

impl RouteCache {
    fn new() -> Self {
        RouteCache {
            entries: Vec::new(),
            live: 0,
        }
    }

    fn clear(&mut self) {
        if self.live > 0 {
            self.entries.iter_mut().for_each(|e| e.valid = false);
            self.live = 0;
        }
    }

    #[inline]
    fn slot(net: NetworkId, addr: u128) -> usize {
        // Fold the address to 64 bits and multiply: the high bits mix every input bit.
        let x = (addr as u64) ^ ((addr >> 64) as u64) ^ (u64::from(net.0) << 48);
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % ROUTE_SLOTS
    }

    /// The cached decision for traffic from `net` to `addr`.
    #[inline]
    pub(crate) fn get(&self, net: NetworkId, addr: u128, ipv6: bool) -> Option<Routed> {
        let e = self.entries.get(Self::slot(net, addr))?;
        (e.valid && e.net == net && e.addr == addr && e.ipv6 == ipv6).then_some(e.routed)
    }

    /// Remembers `routed` for traffic from `net` to `addr`, replacing the slot.
    pub(crate) fn put(&mut self, net: NetworkId, addr: u128, ipv6: bool, routed: Routed) {
        if self.entries.is_empty() {
            self.entries = vec![
                RouteEntry {
                    valid: false,
                    net: NetworkId(0),
                    addr: 0,
                    ipv6: false,
                    routed: Routed::ToGateway,
                };
                ROUTE_SLOTS
            ];
        }
        let e = &mut self.entries[Self::slot(net, addr)];
        if !e.valid {
            self.live += 1;
        }
        *e = RouteEntry {
            valid: true,
            net,
            addr,
            ipv6,
            routed,
        };
    }
}
