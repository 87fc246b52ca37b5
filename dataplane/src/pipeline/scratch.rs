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
    /// Whether the unparsed fast paths for plain IPv4 pod traffic run (they do;
    /// tests turn them off to get the full path's answer as the reference).
    pub(crate) fast_paths: bool,
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
            fast_paths: true,
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
    /// IPv4: the ones'-complement sum of the outer IP header without its total
    /// length and checksum words, so a packet's checksum is one add and a fold.
    pub(crate) ip_sum: u32,
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
        ip_sum: 0,
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
        let ipv6 = data.len() == MAX_OUTER;
        let ip_sum = if ipv6 {
            0
        } else {
            let mut ip = [0u8; 20];
            ip.copy_from_slice(&hdr[14..34]);
            ip[2..4].fill(0);
            ip[10..12].fill(0);
            // 10 words of at most 0xffff: fits a u32.
            crate::wire::checksum::sum_raw(0, &ip) as u32
        };
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
            ipv6,
            ip_sum,
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

    /// The rewritten addresses and the port, when the cache holds that traffic
    /// from `net` to `addr` is routed to a local port: the case the burst loops
    /// take without the per-packet pipeline.
    #[inline]
    pub(crate) fn local(&self, net: NetworkId, addr: u32) -> Option<(&'a RoutedMacs, PortIdx)> {
        match self.get(net, addr)? {
            Routed::Forward {
                macs,
                dest: L2Dest::Local(port),
                ..
            } => Some((macs, *port)),
            _ => None,
        }
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
    /// Entries written since [`take_fills`](Self::take_fills) last read it.
    fills: u32,
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
            fills: 0,
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

    /// The entries written since the last call: how often lookups missed.
    #[inline]
    pub(crate) fn take_fills(&mut self) -> u32 {
        std::mem::take(&mut self.fills)
    }

    /// Remembers `routed` for traffic from `net` to `addr`, replacing the slot.
    pub(crate) fn put(&mut self, net: NetworkId, addr: u128, ipv6: bool, routed: Routed) {
        self.fills = self.fills.saturating_add(1);
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
    //! The cached header path against the reference builder, byte for byte.

    use std::net::IpAddr;

    use super::*;
    use crate::wire::checksum::{fold, sum_raw};
    use crate::wire::{self, TunnelKind};

    const NET: NetworkId = NetworkId(3);
    const VTEP: VtepIdx = VtepIdx(5);
    const UPLINK: PortIdx = PortIdx(7);

    /// Inner lengths from empty to jumbo, odd and even (the IPv6 UDP checksum pads
    /// an odd payload), around the Ethernet minimum and the usual MTUs.
    const INNER_LENS: [usize; 13] = [0, 1, 13, 14, 59, 60, 61, 1399, 1400, 1450, 1451, 8999, 9000];

    fn outer(ipv6: bool, tunnel: TunnelKind, src_port: u16) -> reply::OuterHeaders {
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8:ffff::2:fe".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.254".parse().unwrap(),
            )
        };
        reply::OuterHeaders {
            src_mac: MacAddr([2, 0, 0, 0, 0xff, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0xff, 2]),
            src_ip,
            dst_ip,
            src_port,
            dst_port: match tunnel {
                TunnelKind::Geneve => wire::GENEVE_PORT,
                _ => wire::VXLAN_PORT,
            },
            tunnel,
            vni: 0x00ab_cdef,
        }
    }

    /// An inner frame of `len` bytes whose content varies with `seed`.
    fn inner(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// The IPv4 header at 14 sums to 0xffff with its checksum.
    fn ipv4_header_ok(f: &[u8]) -> bool {
        fold(sum_raw(0, &f[14..34])) == 0xffff
    }

    /// The IPv6 UDP checksum verifies over the pseudo-header and the UDP datagram.
    fn ipv6_udp_ok(f: &[u8]) -> bool {
        let udp_len = u16::from_be_bytes([f[58], f[59]]);
        let mut acc = sum_raw(0, &f[22..54]);
        acc += u64::from(udp_len) + u64::from(wire::IPPROTO_UDP);
        u16::from_be_bytes([f[60], f[61]]) != 0 && fold(sum_raw(acc, &f[54..])) == 0xffff
    }

    #[test]
    fn cached_header_equals_the_reference_builder() {
        let mut cache = EncapCache::new();
        let mut checked = 0;
        for ipv6 in [false, true] {
            for tunnel in [TunnelKind::Vxlan, TunnelKind::Geneve] {
                let template = outer(ipv6, tunnel, 0);
                let e = *cache.fill(NET, VTEP, 9, UPLINK, &template).unwrap();
                assert_eq!((e.ipv6, e.uplink), (ipv6, UPLINK));
                let hdr = if ipv6 { 70 } else { 50 };
                for (i, &len) in INNER_LENS.iter().enumerate() {
                    for src_port in [49152, 0xc0de, 0xffff, 0] {
                        let frame = inner(len, i as u8);
                        let mut cached = VecBuf::with_room(&frame, 128, 0);
                        let mut reference = cached.clone();
                        assert!(reply::push_cached(&mut cached, &e, src_port));
                        assert!(reply::push_outer(
                            &mut reference,
                            &outer(ipv6, tunnel, src_port)
                        ));
                        let (c, r) = (cached.data(), reference.data());
                        let what = format!("ipv6={ipv6} {tunnel:?} len={len} port={src_port}");
                        assert_eq!(c, r, "{what}");
                        assert_eq!(c.len(), hdr + len, "{what}");
                        assert_eq!(&c[hdr..], &frame[..], "{what}: inner untouched");
                        let udp = hdr - 16;
                        assert_eq!(&c[udp..udp + 2], &src_port.to_be_bytes(), "{what}");
                        let udp_len = u16::from_be_bytes([c[udp + 4], c[udp + 5]]);
                        assert_eq!(usize::from(udp_len), 16 + len, "{what}");
                        if ipv6 {
                            let plen = u16::from_be_bytes([c[18], c[19]]);
                            assert_eq!(plen, udp_len, "{what}: payload length");
                            assert!(ipv6_udp_ok(c), "{what}: UDP checksum");
                        } else {
                            let total = u16::from_be_bytes([c[16], c[17]]);
                            assert_eq!(usize::from(total), 36 + len, "{what}: total length");
                            assert!(ipv4_header_ok(c), "{what}: header checksum");
                            assert_eq!(&c[40..42], &[0, 0], "{what}: no UDP checksum on IPv4");
                        }
                        // The wire parser agrees on every field it reads.
                        let m = wire::parse(c).unwrap();
                        assert_eq!((m.tunnel, m.vni), (tunnel, 0x00ab_cdef), "{what}");
                        assert_eq!(m.src_port, src_port, "{what}");
                        assert_eq!(usize::from(m.inner_offset), hdr, "{what}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * INNER_LENS.len() * 4);
    }

    #[test]
    fn ipv6_udp_checksum_that_sums_to_zero_is_sent_as_ffff() {
        // The source port is summed into the UDP checksum: choosing it as the
        // checksum computed with port 0 makes the sum 0xffff, whose complement 0 must
        // go out as 0xffff (RFC 8200 §8.1), on both paths.
        let mut cache = EncapCache::new();
        let e = *cache
            .fill(NET, VTEP, 1, UPLINK, &outer(true, TunnelKind::Geneve, 0))
            .unwrap();
        for len in [0, 1, 60, 1400] {
            let frame = inner(len, 42);
            let mut probe = VecBuf::with_room(&frame, 128, 0);
            assert!(reply::push_outer(
                &mut probe,
                &outer(true, TunnelKind::Geneve, 0)
            ));
            let port = u16::from_be_bytes([probe.data()[60], probe.data()[61]]);
            let mut cached = VecBuf::with_room(&frame, 128, 0);
            let mut reference = cached.clone();
            assert!(reply::push_cached(&mut cached, &e, port));
            assert!(reply::push_outer(
                &mut reference,
                &outer(true, TunnelKind::Geneve, port)
            ));
            assert_eq!(&reference.data()[60..62], &[0xff, 0xff], "len={len}");
            assert_eq!(cached.data(), reference.data(), "len={len}");
            assert!(ipv6_udp_ok(cached.data()), "len={len}");
        }
    }

    #[test]
    fn ipv4_header_checksum_of_zero_matches_the_reference() {
        // The one inner length whose total length word brings the header's sum to
        // 0xffff: the checksum field is 0x0000, the edge of every shortcut sum.
        let mut cache = EncapCache::new();
        let template = outer(false, TunnelKind::Vxlan, 0);
        let e = *cache.fill(NET, VTEP, 1, UPLINK, &template).unwrap();
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&e.hdr[14..34]);
        ip[2..4].fill(0);
        ip[10..12].fill(0);
        let total = 0xffff - usize::from(fold(sum_raw(0, &ip)));
        assert!(total >= 36, "pick other addresses for this test");
        let len = total - 36;
        let mut cached = VecBuf::with_room(&inner(len, 9), 128, 0);
        let mut reference = cached.clone();
        assert!(reply::push_cached(&mut cached, &e, 51000));
        assert!(reply::push_outer(
            &mut reference,
            &outer(false, TunnelKind::Vxlan, 51000)
        ));
        assert_eq!(&reference.data()[24..26], &[0, 0], "len={len}");
        assert_eq!(cached.data(), reference.data(), "len={len}");
        assert!(ipv4_header_ok(cached.data()));
    }

    #[test]
    fn one_entry_serves_many_packets_unchanged() {
        // The patching happens in the packet, never in the template: after a big
        // packet, a small one still gets the right lengths and checksum.
        let mut cache = EncapCache::new();
        for ipv6 in [false, true] {
            let template = outer(ipv6, TunnelKind::Vxlan, 0);
            let before = cache.fill(NET, VTEP, 1, UPLINK, &template).unwrap().hdr;
            for len in [9000, 0, 61, 1400, 14] {
                let e = *cache.get(NET, VTEP, 1).unwrap();
                let mut cached = VecBuf::with_room(&inner(len, 7), 128, 0);
                let mut reference = cached.clone();
                assert!(reply::push_cached(&mut cached, &e, 50000));
                assert!(reply::push_outer(
                    &mut reference,
                    &outer(ipv6, TunnelKind::Vxlan, 50000)
                ));
                assert_eq!(cached.data(), reference.data(), "ipv6={ipv6} len={len}");
            }
            assert_eq!(cache.get(NET, VTEP, 1).unwrap().hdr, before);
        }
    }

    #[test]
    fn too_little_headroom_changes_nothing() {
        let mut cache = EncapCache::new();
        for (ipv6, need) in [(false, 50), (true, 70)] {
            let e = *cache
                .fill(NET, VTEP, 1, UPLINK, &outer(ipv6, TunnelKind::Geneve, 0))
                .unwrap();
            let frame = inner(60, 1);
            let mut short = VecBuf::with_room(&frame, need - 1, 0);
            let before = short.clone();
            assert!(!reply::push_cached(&mut short, &e, 50000), "ipv6={ipv6}");
            assert_eq!(short, before, "ipv6={ipv6}: packet and headroom unchanged");
            // Exactly enough is enough.
            let mut exact = VecBuf::with_room(&frame, need, 0);
            assert!(reply::push_cached(&mut exact, &e, 50000), "ipv6={ipv6}");
            assert_eq!(exact.headroom(), 0);
        }
    }

    #[test]
    fn too_long_for_an_ip_packet_is_refused_like_the_reference() {
        let mut cache = EncapCache::new();
        for (ipv6, ip_hdr) in [(false, 20), (true, 40)] {
            let e = *cache
                .fill(NET, VTEP, 1, UPLINK, &outer(ipv6, TunnelKind::Vxlan, 0))
                .unwrap();
            // The IP length field (total or payload) must hold UDP + tunnel + inner.
            let max = usize::from(u16::MAX) - ip_hdr - 16;
            for len in [max, max + 1] {
                let mut cached = VecBuf::with_room(&inner(len, 3), 128, 0);
                let mut reference = cached.clone();
                let before = cached.clone();
                let ok = reply::push_cached(&mut cached, &e, 49999);
                let ref_ok =
                    reply::push_outer(&mut reference, &outer(ipv6, TunnelKind::Vxlan, 49999));
                assert_eq!(ok, len == max, "ipv6={ipv6} len={len}");
                assert_eq!(ok, ref_ok, "ipv6={ipv6} len={len}");
                if ok {
                    assert_eq!(cached.data(), reference.data(), "ipv6={ipv6} len={len}");
                } else {
                    assert_eq!(cached, before, "refused: unchanged");
                }
            }
        }
    }

    #[test]
    fn entries_are_keyed_by_network_vtep_and_neighbour_generation() {
        let mut cache = EncapCache::new();
        let o = outer(false, TunnelKind::Vxlan, 0);
        assert!(cache.get(NET, VTEP, 4).is_none());
        cache.fill(NET, VTEP, 4, UPLINK, &o).unwrap();
        assert_eq!(cache.live(), 1);
        assert!(cache.get(NET, VTEP, 4).is_some());
        assert!(cache.get(NET, VTEP, 5).is_none(), "neighbour map changed");
        assert!(cache.get(NET, VtepIdx(6), 4).is_none());
        assert!(cache.get(NetworkId(4), VTEP, 4).is_none());
        // A key that maps to the same slot replaces the entry, and the count stays.
        let other = (0..ENCAP_SLOTS as u16)
            .map(VtepIdx)
            .find(|&v| v != VTEP && EncapCache::slot(NET, v) == EncapCache::slot(NET, VTEP));
        let clash = other.map_or((NetworkId(NET.0 + 64), VTEP), |v| (NET, v));
        assert_eq!(
            EncapCache::slot(clash.0, clash.1),
            EncapCache::slot(NET, VTEP)
        );
        cache.fill(clash.0, clash.1, 4, UPLINK, &o).unwrap();
        assert_eq!(cache.live(), 1);
        assert!(cache.get(NET, VTEP, 4).is_none());
        assert!(cache.get(clash.0, clash.1, 4).is_some());
        // Mixed address families: nothing to cache.
        let mut mixed = outer(false, TunnelKind::Vxlan, 0);
        mixed.dst_ip = "2001:db8::2".parse().unwrap();
        assert!(cache.fill(NET, VtepIdx(9), 4, UPLINK, &mixed).is_none());
        assert!(cache.get(NET, VtepIdx(9), 4).is_none());
        assert_eq!(cache.live(), 1);
    }

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
        s.encap
            .fill(NET, VTEP, 1, UPLINK, &outer(false, TunnelKind::Vxlan, 0))
            .unwrap();
        let routed = Routed::Drop(DropReason::NoRoute);
        s.routes.put(NET, 0x0a01_0014, false, routed);
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), Some(routed));
        assert_eq!(
            s.routes.get(NET, 0x0a01_0014, true),
            None,
            "family is keyed"
        );
        s.bind(&p);
        assert!(s.encap.get(NET, VTEP, 1).is_some(), "same snapshot: kept");
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), Some(routed));
        assert!(s.is_bound_to(&p) && !s.is_bound_to(&q));
        s.bind(&q);
        assert!(s.encap.get(NET, VTEP, 1).is_none(), "new snapshot: emptied");
        assert_eq!(s.routes.get(NET, 0x0a01_0014, false), None);
        assert!(s.is_bound_to(&q) && !s.is_bound_to(&p));
        s.encap
            .fill(NET, VTEP, 1, UPLINK, &outer(false, TunnelKind::Vxlan, 0))
            .unwrap();
        s.clear();
        assert!(s.encap.get(NET, VTEP, 1).is_none());
        assert!(s.is_bound_to(&p), "cleared: fits any again");
    }
}
