//! The flow table's side table of outer headers: per (network, VTEP), the
//! outer Ethernet/IP/UDP/tunnel header with every field that does not depend on
//! the packet already written and the IPv4 header checksum already summed, so
//! an encapsulation is one fixed-size copy and three length patches. The encap
//! stage fills it and pushes from it; a flow entry that encapsulates names its
//! template by slot and tag instead of holding a copy (70 bytes an entry saved,
//! and a relearned next hop rewrites one template, not every flow's).
//!
//! A template is valid for one generation of the underlay neighbour map
//! (checked per packet: the next hop's MAC is in the header) and while nothing
//! it was built from changed: it keeps the snapshot generation it was built at,
//! and is used only while its network's change generation (or the global one)
//! is not newer ([`OverlaySnapshot::changed_at`]). A VTEP's address and next hop
//! change only with a full build, which moves the global generation.
//!
//! Direct-mapped: a (network, VTEP) that lands on a taken slot replaces it, and
//! the slot's tag changes, so a flow entry naming the old one misses.

use super::super::reply;
use crate::buf::{PacketBuf, VecBuf};
use crate::overlay::{NetworkId, VtepIdx};
use crate::port::PortIdx;

/// Slots in the side table.
pub(crate) const TEMPLATE_SLOTS: usize = 1024;

/// The longest outer header: Ethernet 14 + IPv6 40 + UDP 8 + VXLAN/Geneve 8.
pub(crate) const MAX_OUTER: usize = 70;

/// One ready-made outer header.
#[derive(Clone, Copy)]
pub(crate) struct Template {
    valid: bool,
    net: NetworkId,
    vtep: VtepIdx,
    /// The neighbour map generation whose next-hop MAC is in `hdr`.
    neighbors: u64,
    /// The snapshot generation it was built from.
    stamp: u64,
    /// Changes whenever the slot is filled: a flow entry holds the slot and the
    /// tag, and finds the template it was compiled with or none.
    pub(crate) tag: u32,
    pub(crate) uplink: PortIdx,
    pub(crate) ipv6: bool,
    /// IPv4: the ones'-complement sum of the outer IP header without its total
    /// length and checksum words, so a packet's checksum is one add and a fold.
    pub(crate) ip_sum: u32,
    /// The header as built for an empty inner frame: lengths count only the outer
    /// headers, the IPv4 checksum is over those lengths, the source port is 0.
    pub(crate) hdr: [u8; MAX_OUTER],
}

impl Template {
    const EMPTY: Template = Template {
        valid: false,
        net: NetworkId(0),
        vtep: VtepIdx(0),
        neighbors: 0,
        stamp: 0,
        tag: 0,
        uplink: PortIdx(0),
        ipv6: false,
        ip_sum: 0,
        hdr: [0; MAX_OUTER],
    };

    /// The outer header's length.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        if self.ipv6 {
            MAX_OUTER
        } else {
            reply::OUTER4_LEN
        }
    }

    /// Whether a frame of `inner` bytes fits in one outer IP packet (the length
    /// field): what [`reply::push_cached`] refuses otherwise.
    #[inline(always)]
    pub(crate) fn fits(&self, inner: usize) -> bool {
        let ip_hdr = if self.ipv6 { 0 } else { 20 };
        8 + 8 + inner + ip_hdr <= usize::from(u16::MAX)
    }
}

/// Direct-mapped side table of outer headers (see the module docs).
pub(crate) struct Templates {
    entries: Box<[Template]>,
    live: usize,
    /// The next fill's tag.
    next_tag: u32,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub(crate) fn new() -> Self {
        Templates {
            entries: vec![Template::EMPTY; TEMPLATE_SLOTS].into_boxed_slice(),
            live: 0,
            next_tag: 1,
        }
    }

    /// Forgets every template.
    pub(crate) fn clear(&mut self) {
        if self.live > 0 {
            self.entries.iter_mut().for_each(|e| e.valid = false);
            self.live = 0;
        }
    }

    /// Templates held.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The slot of (`net`, `vtep`).
    #[inline]
    pub(crate) fn slot(net: NetworkId, vtep: VtepIdx) -> usize {
        // Consecutive VTEPs of one network land in consecutive slots.
        (usize::from(vtep.0) + usize::from(net.0) * 7) % TEMPLATE_SLOTS
    }

    /// The header for (`net`, `vtep`) built with neighbour map `neighbors`, if it
    /// was built at snapshot generation `valid_from` or later.
    #[inline]
    pub(crate) fn get(
        &self,
        net: NetworkId,
        vtep: VtepIdx,
        neighbors: u64,
        valid_from: u64,
    ) -> Option<&Template> {
        let e = &self.entries[Self::slot(net, vtep)];
        (e.valid
            && e.net == net
            && e.vtep == vtep
            && e.neighbors == neighbors
            && e.stamp >= valid_from)
            .then_some(e)
    }

    /// The template in `slot` if it still has `tag` and was built with neighbour
    /// map `neighbors`: what a flow entry compiled with it pushes.
    #[inline(always)]
    pub(crate) fn by_tag(&self, slot: u16, tag: u32, neighbors: u64) -> Option<&Template> {
        let e = self.entries.get(usize::from(slot))?;
        (e.valid && e.tag == tag && e.neighbors == neighbors).then_some(e)
    }

    /// Builds and stores the header for (`net`, `vtep`) from `outer`, as of
    /// snapshot generation `stamp`, replacing whatever held the slot. `None` if
    /// the header cannot be built (mixed address families: nothing to cache,
    /// the packet is dropped by the caller).
    pub(crate) fn fill(
        &mut self,
        net: NetworkId,
        vtep: VtepIdx,
        neighbors: u64,
        stamp: u64,
        uplink: PortIdx,
        outer: &reply::OuterHeaders,
    ) -> Option<&Template> {
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
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let slot = Self::slot(net, vtep);
        let e = &mut self.entries[slot];
        if !e.valid {
            self.live += 1;
        }
        *e = Template {
            valid: true,
            net,
            vtep,
            neighbors,
            stamp,
            tag,
            uplink,
            ipv6,
            ip_sum,
            hdr,
        };
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    //! The cached header path against the reference builder, byte for byte.

    use std::net::IpAddr;

    use super::*;
    use crate::ethernet::MacAddr;
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
        let mut cache = Templates::new();
        let mut checked = 0;
        for ipv6 in [false, true] {
            for tunnel in [TunnelKind::Vxlan, TunnelKind::Geneve] {
                let template = outer(ipv6, tunnel, 0);
                let e = *cache.fill(NET, VTEP, 9, 0, UPLINK, &template).unwrap();
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
        let mut cache = Templates::new();
        let e = *cache
            .fill(NET, VTEP, 1, 0, UPLINK, &outer(true, TunnelKind::Geneve, 0))
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
        let mut cache = Templates::new();
        let template = outer(false, TunnelKind::Vxlan, 0);
        let e = *cache.fill(NET, VTEP, 1, 0, UPLINK, &template).unwrap();
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
        let mut cache = Templates::new();
        for ipv6 in [false, true] {
            let template = outer(ipv6, TunnelKind::Vxlan, 0);
            let before = cache.fill(NET, VTEP, 1, 0, UPLINK, &template).unwrap().hdr;
            for len in [9000, 0, 61, 1400, 14] {
                let e = *cache.get(NET, VTEP, 1, 0).unwrap();
                let mut cached = VecBuf::with_room(&inner(len, 7), 128, 0);
                let mut reference = cached.clone();
                assert!(reply::push_cached(&mut cached, &e, 50000));
                assert!(reply::push_outer(
                    &mut reference,
                    &outer(ipv6, TunnelKind::Vxlan, 50000)
                ));
                assert_eq!(cached.data(), reference.data(), "ipv6={ipv6} len={len}");
            }
            assert_eq!(cache.get(NET, VTEP, 1, 0).unwrap().hdr, before);
        }
    }

    #[test]
    fn too_little_headroom_changes_nothing() {
        let mut cache = Templates::new();
        for (ipv6, need) in [(false, 50), (true, 70)] {
            let e = *cache
                .fill(NET, VTEP, 1, 0, UPLINK, &outer(ipv6, TunnelKind::Geneve, 0))
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
        let mut cache = Templates::new();
        for (ipv6, ip_hdr) in [(false, 20), (true, 40)] {
            let e = *cache
                .fill(NET, VTEP, 1, 0, UPLINK, &outer(ipv6, TunnelKind::Vxlan, 0))
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
        let mut cache = Templates::new();
        let o = outer(false, TunnelKind::Vxlan, 0);
        assert!(cache.get(NET, VTEP, 4, 0).is_none());
        cache.fill(NET, VTEP, 4, 0, UPLINK, &o).unwrap();
        assert_eq!(cache.live(), 1);
        assert!(cache.get(NET, VTEP, 4, 0).is_some());
        assert!(
            cache.get(NET, VTEP, 5, 0).is_none(),
            "neighbour map changed"
        );
        assert!(cache.get(NET, VtepIdx(6), 4, 0).is_none());
        assert!(cache.get(NetworkId(4), VTEP, 4, 0).is_none());
        // A key that maps to the same slot replaces the entry, and the count stays.
        let other = (0..u16::MAX / 2)
            .map(VtepIdx)
            .find(|&v| v != VTEP && Templates::slot(NET, v) == Templates::slot(NET, VTEP));
        let clash = other.map_or((NetworkId(NET.0 + 64), VTEP), |v| (NET, v));
        assert_eq!(
            Templates::slot(clash.0, clash.1),
            Templates::slot(NET, VTEP)
        );
        cache.fill(clash.0, clash.1, 4, 0, UPLINK, &o).unwrap();
        assert_eq!(cache.live(), 1);
        assert!(cache.get(NET, VTEP, 4, 0).is_none());
        assert!(cache.get(clash.0, clash.1, 4, 0).is_some());
        // Mixed address families: nothing to cache.
        let mut mixed = outer(false, TunnelKind::Vxlan, 0);
        mixed.dst_ip = "2001:db8::2".parse().unwrap();
        assert!(cache.fill(NET, VtepIdx(9), 4, 0, UPLINK, &mixed).is_none());
        assert!(cache.get(NET, VtepIdx(9), 4, 0).is_none());
        assert_eq!(cache.live(), 1);
    }
}
