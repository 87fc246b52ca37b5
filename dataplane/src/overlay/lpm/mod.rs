//! Longest-prefix match for many VRFs at once, IPv4 and IPv6.
//!
//! IPv4: a multibit trie with 8-bit strides per VRF ([`trie4`]), whose leaves
//! index a table of the distinct route values. A lookup is at most four dependent
//! loads, the upper ones to plies that stay in L1, whatever the number of routes.
//!
//! IPv6: one hash table holding every route of every VRF, keyed by (VRF, prefix
//! length, masked address), plus per VRF a bitmap of the prefix lengths it uses.
//! A lookup walks that VRF's lengths from the longest down, masks the address and
//! probes the table; the first hit is the longest match. The cost is one probe per
//! *distinct* length present in the VRF, not per route and not per bit: overlay
//! VRFs use few lengths (pod subnets, a `/0`, host routes, a handful of
//! aggregates), and a 128-bit address would need up to 16 plies in a trie. If
//! a VRF with many lengths ever matters, the next step is binary search over
//! lengths with marker entries (Waldvogel et al.), which this layout allows.
//!
//! Every IPv4 route is also kept in a hash table by exact prefix, which answers
//! [`LpmTable::get_exact`] and tells an insert what it replaces; lookups never
//! read it.
//!
//! Host bits of inserted prefixes are ignored.

mod trie4;

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use ipnet::IpNet;

use trie4::Trie4;

/// A set of prefix lengths `0..=128`, iterated longest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LenSet([u64; 3]);

impl LenSet {
    fn insert(&mut self, len: u8) {
        self.0[usize::from(len / 64)] |= 1 << (len % 64);
    }

    #[inline]
    fn iter_desc(self) -> LensDesc {
        LensDesc(self.0)
    }
}

/// The lengths of a [`LenSet`], longest first.
struct LensDesc([u64; 3]);

impl Iterator for LensDesc {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        for w in (0..3).rev() {
            let bits = self.0[w];
            if bits != 0 {
                let bit = 63 - bits.leading_zeros();
                self.0[w] = bits & !(1 << bit);
                // w < 3 and bit < 64: at most 191, fits a u8.
                return Some((w as u8) * 64 + bit as u8);
            }
        }
        None
    }
}

#[inline]
fn mask4(addr: u32, len: u8) -> u32 {
    // `checked_shl` turns the /0 shift by 32 into an all-zero mask.
    addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

#[inline]
fn mask6(addr: u128, len: u8) -> u128 {
    addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[inline]
fn key4(vrf: u16, len: u8, addr: u32) -> u64 {
    (u64::from(vrf) << 40) | (u64::from(len) << 32) | u64::from(mask4(addr, len))
}

#[inline]
fn key6(vrf: u16, len: u8, addr: u128) -> (u32, u128) {
    ((u32::from(vrf) << 8) | u32::from(len), mask6(addr, len))
}

/// Why [`LpmTable::insert`] refused a route (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LpmFull {
    /// The IPv4 trie would need more plies than its memory bound allows.
    #[error("the IPv4 routes would need more than {max} trie plies ({} MiB)", max / 1024)]
    Plies {
        /// The bound, in 1 KiB plies.
        max: usize,
    },
    /// More distinct IPv4 route targets than a trie leaf can index.
    #[error("more than {max} distinct IPv4 route targets")]
    Values {
        /// The most.
        max: u32,
    },
}

/// Longest-prefix-match tables for VRFs `0..vrfs`, mapping prefixes to `V`.
#[derive(Clone, Debug)]
pub struct LpmTable<V> {
    trie4: Trie4,
    /// Every IPv4 route by (VRF, length, masked address): its value's index.
    exact4: HashMap<u64, u32>,
    /// The distinct IPv4 route values; a trie leaf is an index here + 1.
    values4: Vec<V>,
    /// Each value's index in `values4`.
    value_index4: HashMap<V, u32>,
    v6: HashMap<(u32, u128), V>,
    /// Per VRF: the IPv6 lengths in use.
    lens6: Vec<LenSet>,
}

impl<V: Clone + Eq + Hash> LpmTable<V> {
    /// Empty tables for VRFs `0..vrfs`.
    pub fn new(vrfs: u16) -> Self {
        LpmTable {
            trie4: Trie4::new(vrfs),
            exact4: HashMap::new(),
            values4: Vec::new(),
            value_index4: HashMap::new(),
            v6: HashMap::new(),
            lens6: vec![LenSet::default(); usize::from(vrfs)],
        }
    }

    /// Reserves room for `v4` more IPv4 and `v6` more IPv6 routes.
    pub fn reserve(&mut self, v4: usize, v6: usize) {
        self.exact4.reserve(v4);
        self.v6.reserve(v6);
    }

    /// Adds `prefix` → `value` in `vrf`, returning the value it replaces, if any.
    ///
    /// # Errors
    /// [`LpmFull`], with nothing changed, when the IPv4 trie would outgrow its
    /// bound or the IPv4 routes would have more than 2^24 - 1 distinct values.
    ///
    /// # Panics
    /// If `vrf` is not below the count given to [`new`](Self::new).
    pub fn insert(&mut self, vrf: u16, prefix: IpNet, value: V) -> Result<Option<V>, LpmFull> {
        let len = prefix.prefix_len();
        match prefix {
            IpNet::V4(p) => {
                let addr = p.addr().to_bits();
                let known = self.value_index4.get(&value).copied();
                let idx = known.unwrap_or(self.values4.len() as u32);
                if idx >= trie4::MAX_VALUE {
                    return Err(LpmFull::Values {
                        max: trie4::MAX_VALUE - 1,
                    });
                }
                self.trie4
                    .insert(vrf, addr, len, idx + 1)
                    .map_err(|trie4::Full(max)| LpmFull::Plies { max })?;
                if known.is_none() {
                    self.values4.push(value.clone());
                    self.value_index4.insert(value, idx);
                }
                Ok(self
                    .exact4
                    .insert(key4(vrf, len, addr), idx)
                    .map(|old| self.values4[old as usize].clone()))
            }
            IpNet::V6(p) => {
                self.lens6[usize::from(vrf)].insert(len);
                Ok(self.v6.insert(key6(vrf, len, p.addr().to_bits()), value))
            }
        }
    }

    /// The value of the longest prefix in `vrf` containing `dst`. `None` for no
    /// match or an unknown VRF.
    #[inline]
    pub fn lookup(&self, vrf: u16, dst: IpAddr) -> Option<&V> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(vrf, a),
            IpAddr::V6(a) => self.lookup_v6(vrf, a),
        }
    }

    /// [`lookup`](Self::lookup) for an IPv4 destination.
    #[inline]
    pub fn lookup_v4(&self, vrf: u16, dst: Ipv4Addr) -> Option<&V> {
        let leaf = self.trie4.lookup(vrf, dst.to_bits());
        self.values4.get((leaf as usize).checked_sub(1)?)
    }

    /// [`lookup`](Self::lookup) for an IPv6 destination.
    #[inline]
    pub fn lookup_v6(&self, vrf: u16, dst: Ipv6Addr) -> Option<&V> {
        let lens = self.lens6.get(usize::from(vrf))?;
        let addr = dst.to_bits();
        lens.iter_desc()
            .find_map(|len| self.v6.get(&key6(vrf, len, addr)))
    }

    /// The value stored for exactly `prefix` in `vrf` (no longest-match).
    pub fn get_exact(&self, vrf: u16, prefix: IpNet) -> Option<&V> {
        let len = prefix.prefix_len();
        match prefix {
            IpNet::V4(p) => {
                let idx = *self.exact4.get(&key4(vrf, len, p.addr().to_bits()))?;
                self.values4.get(idx as usize)
            }
            IpNet::V6(p) => self.v6.get(&key6(vrf, len, p.addr().to_bits())),
        }
    }

    /// Number of routes, all VRFs and families.
    pub fn len(&self) -> usize {
        self.exact4.len() + self.v6.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;

    fn naive<V>(routes: &[(u16, IpNet, V)], vrf: u16, dst: IpAddr) -> Option<&V> {
        // Last insert of a prefix wins, as in the table.
        routes
            .iter()
            .enumerate()
            .filter(|(_, (v, p, _))| *v == vrf && p.contains(&dst))
            .max_by_key(|(i, (_, p, _))| (p.prefix_len(), *i))
            .map(|(_, (_, _, val))| val)
    }

    #[test]
    fn a_refused_route_changes_nothing() {
        let mut t = LpmTable::new(1);
        t.trie4 = Trie4::with_max_plies(1, 3);
        t.insert(0, "10.0.0.0/8".parse().unwrap(), 1).unwrap();
        t.insert(0, "10.1.0.0/24".parse().unwrap(), 2).unwrap();
        let err = t.insert(0, "10.2.0.0/24".parse().unwrap(), 3).unwrap_err();
        assert_eq!(err, LpmFull::Plies { max: 3 });
        assert_eq!(
            err.to_string(),
            "the IPv4 routes would need more than 3 trie plies (0 MiB)"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.get_exact(0, "10.2.0.0/24".parse().unwrap()), None);
        assert_eq!(t.lookup(0, "10.2.0.1".parse().unwrap()), Some(&1));
        // The refused value was not kept: the next new one takes its index.
        assert_eq!(t.values4, [1, 2]);
        // IPv6 has no such bound.
        t.insert(0, "fd00::/64".parse().unwrap(), 3).unwrap();
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn len_set_iterates_longest_first() {
        let mut s = LenSet::default();
        for l in [0, 1, 32, 63, 64, 65, 127, 128] {
            s.insert(l);
        }
        let got: Vec<u8> = s.iter_desc().collect();
        assert_eq!(got, [128, 127, 65, 64, 63, 32, 1, 0]);
    }

    #[test]
    fn default_host_and_vrf_separation() {
        let mut t = LpmTable::new(2);
        t.insert(0, "0.0.0.0/0".parse().unwrap(), "default")
            .unwrap();
        t.insert(0, "10.0.0.0/8".parse().unwrap(), "ten").unwrap();
        t.insert(0, "10.1.2.3/32".parse().unwrap(), "host").unwrap();
        t.insert(1, "10.0.0.0/8".parse().unwrap(), "other-vrf")
            .unwrap();
        t.insert(0, "::/0".parse().unwrap(), "default6").unwrap();
        t.insert(0, "2001:db8::1/128".parse().unwrap(), "host6")
            .unwrap();
        let l = |vrf, s: &str| t.lookup(vrf, s.parse().unwrap()).copied();
        assert_eq!(l(0, "10.1.2.3"), Some("host"));
        assert_eq!(l(0, "10.1.2.4"), Some("ten"));
        assert_eq!(l(0, "11.0.0.1"), Some("default"));
        assert_eq!(l(1, "10.1.2.3"), Some("other-vrf"));
        assert_eq!(l(1, "11.0.0.1"), None);
        assert_eq!(l(0, "2001:db8::1"), Some("host6"));
        assert_eq!(l(0, "2001:db8::2"), Some("default6"));
        assert_eq!(l(1, "2001:db8::1"), None);
        assert_eq!(l(7, "10.1.2.3"), None, "unknown VRF");
        assert_eq!(t.len(), 6);
    }

    fn v4_route() -> impl Strategy<Value = (u16, IpNet, u32)> {
        // Few distinct high bits so that prefixes nest and collide often.
        (0u16..2, 0u32..16, any::<u32>(), 0u8..=32, any::<u32>()).prop_map(
            |(vrf, hi, lo, len, v)| {
                let addr = (hi << 28) | (lo & 0x00ff_ffff);
                let net = Ipv4Net::new(Ipv4Addr::from_bits(addr), len).unwrap();
                (vrf, IpNet::V4(net), v)
            },
        )
    }

    fn v6_route() -> impl Strategy<Value = (u16, IpNet, u32)> {
        (0u16..2, 0u128..16, any::<u128>(), 0u8..=128, any::<u32>()).prop_map(
            |(vrf, hi, lo, len, v)| {
                let addr = (hi << 124) | (lo & ((1 << 120) - 1));
                let net = Ipv6Net::new(Ipv6Addr::from_bits(addr), len).unwrap();
                (vrf, IpNet::V6(net), v)
            },
        )
    }

    /// Addresses whose every byte is one of a few values, so that prefixes of
    /// every length nest and share the trie's plies at every level.
    fn dense_v4() -> impl Strategy<Value = u32> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 127, 128, 255]), 4)
            .prop_map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn check(routes: &[(u16, IpNet, u32)], probes: &[(u16, IpAddr)]) {
        let mut t = LpmTable::new(2);
        for (i, &(vrf, p, v)) in routes.iter().enumerate() {
            // An insert returns what the same prefix held before, as get_exact did.
            let before = t.get_exact(vrf, p).copied();
            let earlier = routes[..i]
                .iter()
                .rev()
                .find(|(v2, p2, _)| *v2 == vrf && p2.trunc() == p.trunc())
                .map(|r| r.2);
            assert_eq!(before, earlier, "get_exact {p} in vrf {vrf}");
            assert_eq!(
                t.insert(vrf, p, v).unwrap(),
                earlier,
                "insert {p} in vrf {vrf}"
            );
        }
        for &(vrf, dst) in probes {
            assert_eq!(
                t.lookup(vrf, dst),
                naive(routes, vrf, dst),
                "vrf {vrf} dst {dst}"
            );
        }
        // Every route's own address and its neighbours must also agree.
        for &(vrf, p, _) in routes {
            for dst in [p.network(), p.broadcast()] {
                assert_eq!(
                    t.lookup(vrf, dst),
                    naive(routes, vrf, dst),
                    "vrf {vrf} dst {dst}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn v4_matches_linear_scan(
            routes in prop::collection::vec(v4_route(), 0..64),
            probes in prop::collection::vec((0u16..2, 0u32..16, any::<u32>()), 0..64),
        ) {
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, hi, lo)| (vrf, IpAddr::V4(Ipv4Addr::from_bits((hi << 28) | (lo & 0x00ff_ffff)))))
                .collect();
            check(&routes, &probes);
        }

        #[test]
        fn dense_v4_matches_linear_scan(
            routes in prop::collection::vec(
                (0u16..2, dense_v4(), 0u8..=32, 0u32..8)
                    .prop_map(|(vrf, a, len, v)| {
                        (vrf, IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(a), len).unwrap()), v)
                    }),
                0..48,
            ),
            probes in prop::collection::vec((0u16..3, dense_v4()), 0..64),
        ) {
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, a)| (vrf, IpAddr::V4(Ipv4Addr::from_bits(a))))
                .collect();
            check(&routes, &probes);
        }

        #[test]
        fn v6_matches_linear_scan(
            routes in prop::collection::vec(v6_route(), 0..64),
            probes in prop::collection::vec((0u16..2, 0u128..16, any::<u128>()), 0..64),
        ) {
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, hi, lo)| (vrf, IpAddr::V6(Ipv6Addr::from_bits((hi << 124) | (lo & ((1 << 120) - 1))))))
                .collect();
            check(&routes, &probes);
        }
    }
}
