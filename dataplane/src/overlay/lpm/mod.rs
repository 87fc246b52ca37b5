//! Longest-prefix match for many VRFs at once, IPv4 and IPv6.
//!
//! Each VRF's routes are a table of their own behind an [`Arc`]: a copy of the
//! whole [`LpmTable`] shares every VRF's, and a change to one VRF copies that
//! VRF's alone (a write of one route at 100k routes over ten tenants copies a
//! tenth of them). A lookup pays for it with one load, of the VRF's pointer, to
//! a line that stays in L1.
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
//! [`LpmTable::get_exact`], tells an insert what it replaces and a removal what
//! answers in its place; lookups never read it. Values are counted by the
//! routes holding them, and a value no route holds any more frees its slot.
//!
//! A removal leaves the table answering every lookup as one built without the
//! route would (a property test holds it to that).
//!
//! Host bits of inserted prefixes are ignored.

mod trie4;

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

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

    fn remove(&mut self, len: u8) {
        self.0[usize::from(len / 64)] &= !(1 << (len % 64));
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
fn key4(len: u8, addr: u32) -> u64 {
    (u64::from(len) << 32) | u64::from(mask4(addr, len))
}

#[inline]
fn key6(len: u8, addr: u128) -> (u8, u128) {
    (len, mask6(addr, len))
}

/// Why [`LpmTable::insert`] refused a route (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LpmFull {
    /// The IPv4 tries would need more plies than their memory bound allows.
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

/// One VRF's routes.
#[derive(Clone, Debug)]
struct VrfRoutes<V> {
    trie4: Trie4,
    /// Every IPv4 route by (length, masked address): its value's index.
    exact4: HashMap<u64, u32>,
    /// The IPv4 route values; a trie leaf is an index here + 1. A slot whose
    /// count in `refs4` is 0 is free (listed in `free4`), its value stale.
    values4: Vec<V>,
    /// Routes holding each value of `values4`.
    refs4: Vec<u32>,
    free4: Vec<u32>,
    /// Each value's index in `values4`.
    value_index4: HashMap<V, u32>,
    v6: HashMap<(u8, u128), V>,
    /// The IPv6 lengths in use, and how many routes of each.
    lens6: LenSet,
    count6: Vec<u32>,
}

impl<V> Default for VrfRoutes<V> {
    fn default() -> Self {
        VrfRoutes {
            trie4: Trie4::default(),
            exact4: HashMap::new(),
            values4: Vec::new(),
            refs4: Vec::new(),
            free4: Vec::new(),
            value_index4: HashMap::new(),
            v6: HashMap::new(),
            lens6: LenSet::default(),
            count6: Vec::new(),
        }
    }
}

impl<V: Clone + Eq + Hash> VrfRoutes<V> {
    /// Takes a reference to value `idx` back, freeing its slot with the last.
    fn release4(&mut self, idx: u32) {
        let n = &mut self.refs4[idx as usize];
        *n -= 1;
        if *n == 0 {
            self.value_index4.remove(&self.values4[idx as usize]);
            self.free4.push(idx);
        }
    }

    /// The leaf of the longest IPv4 route shorter than `len` containing `addr`:
    /// its length and value (index + 1), or (0, 0).
    fn below4(&self, addr: u32, len: u8) -> (u8, u32) {
        (0..len)
            .rev()
            .find_map(|l| self.exact4.get(&key4(l, addr)).map(|&i| (l, i + 1)))
            .unwrap_or((0, 0))
    }
}

/// Longest-prefix-match tables for VRFs `0..vrfs`, mapping prefixes to `V`.
#[derive(Clone, Debug)]
pub struct LpmTable<V> {
    vrfs: Vec<Arc<VrfRoutes<V>>>,
    /// IPv4 plies in use over every VRF: the memory bound is the table's.
    plies: usize,
    /// The bound ([`trie4::MAX_PLIES`]; tests set less).
    max_plies: usize,
}

impl<V: Clone + Eq + Hash> Default for LpmTable<V> {
    fn default() -> Self {
        LpmTable::new(0)
    }
}

impl<V: Clone + Eq + Hash> LpmTable<V> {
    /// Empty tables for VRFs `0..vrfs`.
    pub fn new(vrfs: u16) -> Self {
        LpmTable {
            vrfs: (0..vrfs).map(|_| Arc::default()).collect(),
            plies: 0,
            max_plies: trie4::MAX_PLIES,
        }
    }

    /// Adds an empty VRF, numbered the count of VRFs before it.
    pub fn push_vrf(&mut self) {
        self.vrfs.push(Arc::default());
    }

    /// Removes the last VRF, which must have no route.
    ///
    /// # Panics
    /// If it has routes.
    pub fn pop_vrf(&mut self) {
        if let Some(t) = self.vrfs.pop() {
            assert!(t.exact4.is_empty() && t.v6.is_empty(), "a VRF with routes");
        }
    }

    /// Number of VRFs.
    pub fn vrf_count(&self) -> usize {
        self.vrfs.len()
    }

    /// Reserves room for `v4` more IPv4 and `v6` more IPv6 routes in `vrf`.
    ///
    /// # Panics
    /// If `vrf` is not below the count given to [`new`](Self::new).
    pub fn reserve(&mut self, vrf: u16, v4: usize, v6: usize) {
        let t = Arc::make_mut(&mut self.vrfs[usize::from(vrf)]);
        t.exact4.reserve(v4);
        t.v6.reserve(v6);
    }

    /// Adds `prefix` → `value` in `vrf`, returning the value it replaces, if any.
    /// Copies `vrf`'s routes if another table shares them, and no other VRF's.
    ///
    /// # Errors
    /// [`LpmFull`], with nothing changed, when the IPv4 tries would outgrow
    /// their bound or a VRF's IPv4 routes would have more than 2^24 - 1
    /// distinct values.
    ///
    /// # Panics
    /// If `vrf` is not below the VRF count.
    pub fn insert(&mut self, vrf: u16, prefix: IpNet, value: V) -> Result<Option<V>, LpmFull> {
        let len = prefix.prefix_len();
        let room = self.max_plies.saturating_sub(self.plies);
        let t = Arc::make_mut(&mut self.vrfs[usize::from(vrf)]);
        match prefix {
            IpNet::V4(p) => {
                let addr = p.addr().to_bits();
                let known = t.value_index4.get(&value).copied();
                let idx = known
                    .or_else(|| t.free4.last().copied())
                    .unwrap_or(t.values4.len() as u32);
                if idx >= trie4::MAX_VALUE {
                    return Err(LpmFull::Values {
                        max: trie4::MAX_VALUE - 1,
                    });
                }
                let before = t.trie4.live_plies();
                t.trie4
                    .insert(addr, len, idx + 1, room)
                    .map_err(|trie4::Full| LpmFull::Plies {
                        max: self.max_plies,
                    })?;
                self.plies += t.trie4.live_plies() - before;
                if known.is_none() {
                    if t.free4.last() == Some(&idx) {
                        t.free4.pop();
                        t.values4[idx as usize] = value.clone();
                        t.refs4[idx as usize] = 0;
                    } else {
                        t.values4.push(value.clone());
                        t.refs4.push(0);
                    }
                    t.value_index4.insert(value, idx);
                }
                t.refs4[idx as usize] += 1;
                let Some(old) = t.exact4.insert(key4(len, addr), idx) else {
                    return Ok(None);
                };
                let replaced = t.values4[old as usize].clone();
                t.release4(old);
                Ok(Some(replaced))
            }
            IpNet::V6(p) => {
                t.lens6.insert(len);
                let old = t.v6.insert(key6(len, p.addr().to_bits()), value);
                if old.is_none() {
                    if t.count6.is_empty() {
                        t.count6 = vec![0; 129];
                    }
                    t.count6[usize::from(len)] += 1;
                }
                Ok(old)
            }
        }
    }

    /// Removes exactly `prefix` from `vrf`, returning its value; `None`, with
    /// nothing changed, when `vrf` has no such route. Afterwards every lookup
    /// answers as if the route had never been inserted. Copies `vrf`'s routes
    /// if another table shares them, and no other VRF's.
    pub fn remove(&mut self, vrf: u16, prefix: IpNet) -> Option<V> {
        self.get_exact(vrf, prefix)?;
        let len = prefix.prefix_len();
        let t = Arc::make_mut(self.vrfs.get_mut(usize::from(vrf))?);
        match prefix {
            IpNet::V4(p) => {
                let addr = p.addr().to_bits();
                let idx = t.exact4.remove(&key4(len, addr))?;
                let value = t.values4[idx as usize].clone();
                let below = t.below4(addr, len);
                let before = t.trie4.live_plies();
                t.trie4.remove(addr, len, below);
                self.plies -= before - t.trie4.live_plies();
                t.release4(idx);
                Some(value)
            }
            IpNet::V6(p) => {
                let value = t.v6.remove(&key6(len, p.addr().to_bits()))?;
                let n = &mut t.count6[usize::from(len)];
                *n -= 1;
                if *n == 0 {
                    t.lens6.remove(len);
                }
                Some(value)
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
        let t = self.vrfs.get(usize::from(vrf))?;
        let leaf = t.trie4.lookup(dst.to_bits());
        t.values4.get((leaf as usize).checked_sub(1)?)
    }

    /// [`lookup`](Self::lookup) for an IPv6 destination.
    #[inline]
    pub fn lookup_v6(&self, vrf: u16, dst: Ipv6Addr) -> Option<&V> {
        let t = self.vrfs.get(usize::from(vrf))?;
        let addr = dst.to_bits();
        t.lens6
            .iter_desc()
            .find_map(|len| t.v6.get(&key6(len, addr)))
    }

    /// The value stored for exactly `prefix` in `vrf` (no longest-match).
    pub fn get_exact(&self, vrf: u16, prefix: IpNet) -> Option<&V> {
        let t = self.vrfs.get(usize::from(vrf))?;
        let len = prefix.prefix_len();
        match prefix {
            IpNet::V4(p) => {
                let idx = *t.exact4.get(&key4(len, p.addr().to_bits()))?;
                t.values4.get(idx as usize)
            }
            IpNet::V6(p) => t.v6.get(&key6(len, p.addr().to_bits())),
        }
    }

    /// A route of `vrf` whose value `pick` accepts, if any, in no particular
    /// order (a scan: control-plane use).
    pub fn find_in(&self, vrf: u16, mut pick: impl FnMut(&V) -> bool) -> Option<(IpNet, &V)> {
        let t = self.vrfs.get(usize::from(vrf))?;
        let v4 = t.exact4.iter().find_map(|(&k, &i)| {
            let v = &t.values4[i as usize];
            pick(v).then(|| {
                let net = ipnet::Ipv4Net::new(Ipv4Addr::from_bits(k as u32), (k >> 32) as u8);
                (IpNet::V4(net.expect("a stored length")), v)
            })
        });
        v4.or_else(|| {
            t.v6.iter().find_map(|(&(len, a), v)| {
                let net = ipnet::Ipv6Net::new(Ipv6Addr::from_bits(a), len);
                pick(v).then(|| (IpNet::V6(net.expect("a stored length")), v))
            })
        })
    }

    /// Whether `self` and `other` share `vrf`'s routes (the same allocation):
    /// what a change to other VRFs leaves.
    pub fn shares_vrf(&self, other: &LpmTable<V>, vrf: u16) -> bool {
        match (
            self.vrfs.get(usize::from(vrf)),
            other.vrfs.get(usize::from(vrf)),
        ) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Number of routes, all VRFs and families.
    pub fn len(&self) -> usize {
        self.vrfs.iter().map(|t| t.exact4.len() + t.v6.len()).sum()
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
        t.max_plies = 3;
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
        assert_eq!(t.vrfs[0].values4, [1, 2]);
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

    /// Inserts and removals in any order: every lookup answers as a table
    /// built from the routes left, and the plies in use are counted right.
    fn check_removals(ops: &[(bool, u16, IpNet, u32)], probes: &[(u16, IpAddr)]) {
        let mut t = LpmTable::new(2);
        let mut live: Vec<(u16, IpNet, u32)> = Vec::new();
        for &(add, vrf, p, v) in ops {
            // Most removals take a route that is there (one of `v`'s choosing).
            let (vrf, p) = match live.get(v as usize % live.len().max(1)) {
                Some(r) if !add && v % 4 != 0 => (r.0, r.1),
                _ => (vrf, p.trunc()),
            };
            let at = live.iter().position(|r| r.0 == vrf && r.1 == p);
            if add {
                let old = t.insert(vrf, p, v).unwrap();
                assert_eq!(old, at.map(|i| live[i].2), "insert {p} in vrf {vrf}");
                match at {
                    Some(i) => live[i].2 = v,
                    None => live.push((vrf, p, v)),
                }
            } else {
                let old = t.remove(vrf, p);
                assert_eq!(old, at.map(|i| live[i].2), "remove {p} in vrf {vrf}");
                if let Some(i) = at {
                    live.remove(i);
                }
            }
        }
        let mut fresh = LpmTable::new(2);
        for &(vrf, p, v) in &live {
            fresh.insert(vrf, p, v).unwrap();
        }
        let edges = live
            .iter()
            .flat_map(|&(vrf, p, _)| [(vrf, p.network()), (vrf, p.broadcast())]);
        let all: Vec<(u16, IpAddr)> = probes.iter().copied().chain(edges).collect();
        let removed = ops.iter().map(|&(_, vrf, p, _)| (vrf, p.network()));
        for (vrf, dst) in all.into_iter().chain(removed) {
            assert_eq!(
                t.lookup(vrf, dst),
                naive(&live, vrf, dst),
                "vrf {vrf} dst {dst}"
            );
        }
        assert_eq!(t.len(), live.len());
        // Counted plies are the tries' own, and no more than a fresh build's
        // plus what a removal cannot fold (a ply still holding a longer route).
        let counted: usize = t.vrfs.iter().map(|v| v.trie4.live_plies()).sum();
        assert_eq!(t.plies, counted);
        let values: usize = t.vrfs.iter().map(|v| v.value_index4.len()).sum();
        let distinct: std::collections::HashSet<_> = live
            .iter()
            .filter(|r| r.1.addr().is_ipv4())
            .map(|r| (r.0, r.2))
            .collect();
        assert_eq!(values, distinct.len(), "values held");
        if live.is_empty() {
            assert_eq!(t.plies, 0, "an empty table holds no ply");
        }
    }

    #[test]
    fn a_removed_route_answers_as_never_inserted() {
        let mut t = LpmTable::new(2);
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        t.insert(0, p("10.0.0.0/8"), "ten").unwrap();
        t.insert(0, p("10.1.0.0/16"), "ten-one").unwrap();
        t.insert(1, p("10.1.0.0/16"), "other").unwrap();
        t.insert(0, p("fd00::/16"), "v6").unwrap();
        t.insert(0, p("fd00:1::/32"), "v6-long").unwrap();
        let copy = t.clone();
        assert_eq!(t.remove(0, p("10.1.0.0/16")), Some("ten-one"));
        assert_eq!(t.remove(0, p("10.1.0.0/16")), None, "gone already");
        assert_eq!(t.remove(0, p("10.2.0.0/16")), None, "never there");
        assert_eq!(t.remove(0, p("fd00:1::/32")), Some("v6-long"));
        let l =
            |t: &LpmTable<&'static str>, vrf, s: &str| t.lookup(vrf, s.parse().unwrap()).copied();
        assert_eq!(l(&t, 0, "10.1.2.3"), Some("ten"));
        assert_eq!(l(&t, 1, "10.1.2.3"), Some("other"));
        assert_eq!(l(&t, 0, "fd00:1::1"), Some("v6"));
        // The copy taken before is untouched, and shares the VRF not changed.
        assert_eq!(l(&copy, 0, "10.1.2.3"), Some("ten-one"));
        assert_eq!(l(&copy, 0, "fd00:1::1"), Some("v6-long"));
        assert!(t.shares_vrf(&copy, 1));
        assert!(!t.shares_vrf(&copy, 0));
        assert_eq!((t.len(), copy.len()), (3, 5));
    }

    fn op_of(add: bool, r: (u16, IpNet, u32)) -> (bool, u16, IpNet, u32) {
        (add, r.0, r.1, r.2)
    }

    proptest! {
        #[test]
        fn v4_removals_match_a_fresh_build(
            ops in prop::collection::vec((prop::bool::weighted(0.6), v4_route()), 0..96),
            probes in prop::collection::vec((0u16..2, 0u32..16, any::<u32>()), 0..32),
        ) {
            let ops: Vec<_> = ops.into_iter().map(|(a, r)| op_of(a, (r.0, r.1, r.2 % 64))).collect();
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, hi, lo)| (vrf, IpAddr::V4(Ipv4Addr::from_bits((hi << 28) | (lo & 0x00ff_ffff)))))
                .collect();
            check_removals(&ops, &probes);
        }

        #[test]
        fn dense_v4_removals_match_a_fresh_build(
            ops in prop::collection::vec(
                (prop::bool::weighted(0.6), 0u16..2, dense_v4(), 0u8..=32, 0u32..16)
                    .prop_map(|(add, vrf, a, len, v)| {
                        (add, vrf, IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(a), len).unwrap()), v)
                    }),
                0..96,
            ),
            probes in prop::collection::vec((0u16..2, dense_v4()), 0..64),
        ) {
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, a)| (vrf, IpAddr::V4(Ipv4Addr::from_bits(a))))
                .collect();
            check_removals(&ops, &probes);
        }

        #[test]
        fn v6_removals_match_a_fresh_build(
            ops in prop::collection::vec((prop::bool::weighted(0.6), v6_route()), 0..96),
            probes in prop::collection::vec((0u16..2, 0u128..16, any::<u128>()), 0..32),
        ) {
            let ops: Vec<_> = ops.into_iter().map(|(a, r)| op_of(a, r)).collect();
            let probes: Vec<_> = probes
                .into_iter()
                .map(|(vrf, hi, lo)| (vrf, IpAddr::V6(Ipv6Addr::from_bits((hi << 124) | (lo & ((1 << 120) - 1))))))
                .collect();
            check_removals(&ops, &probes);
        }
    }
}
