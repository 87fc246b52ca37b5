//! IPv4 longest-prefix match as a multibit trie with 8-bit strides (8-8-8-8), one
//! root per VRF, every ply in one arena.
//!
//! Why a trie for IPv4 and not the hash probe per prefix length that IPv6 keeps:
//! with many routes the hash's buckets outgrow the caches, so every lookup paid a
//! memory latency (the `l3` scenario at 100k /24 routes spent two thirds of its
//! cycles on that one load). A ply is 1 KiB, and a lookup reads one entry per
//! byte of the address until it meets a leaf: the upper plies are few and stay in
//! L1, and 100k /24 routes need about 400 plies at the third level (400 KiB)
//! instead of a 4 MiB hash table. A leaf holds an index into a small table of
//! distinct values, so the value costs no extra miss either.
//!
//! Why 8-bit strides at every level rather than a 16-bit root (VPP's mtrie) or
//! DPDK's 24-bit one: a root is per VRF, and a 16-bit root is 256 KiB for every
//! tenant, most of which have a handful of routes; the one extra load an 8-bit
//! root costs is to a line that stays in L1.
//!
//! Build: a leaf holds, beside the value, the length of the prefix that wrote it
//! (in the bits above the value: one 4-byte entry, no parallel array). Inserting
//! `p/len` writes the entries `p` covers whose leaf's length is no longer than
//! `len`, descending into the plies below them, so a prefix may be inserted before
//! or after the ones it contains. Memory is one ply per distinct (/8, /16, /24)
//! parent of a longer prefix: at most three plies per route, and in practice far
//! fewer, as routes share their upper bytes; [`MAX_PLIES`] bounds the total.

/// An entry: `PLY` | a ply's index in the arena, or a leaf: the length of the
/// prefix that wrote it << `LEN_SHIFT` | its value (a value index + 1; 0 for no
/// route).
type Entry = u32;

/// No route (a leaf of value 0, which any prefix may overwrite).
const EMPTY: Entry = 0;

/// Marks an entry that points to a ply.
const PLY: Entry = 1 << 31;

/// Where a leaf keeps its prefix's length (0..=32: six bits below `PLY`).
const LEN_SHIFT: u32 = 24;

/// A leaf's value bits; also the largest value.
pub(super) const MAX_VALUE: u32 = (1 << LEN_SHIFT) - 1;

/// Entries per ply: one per value of an address byte.
const FANOUT: usize = 256;

/// The most plies the tries of one table may hold: 256 MiB. A bound so that a
/// configuration of many long, scattered prefixes is refused with an error
/// instead of taking the host's memory; 100k routes need 100k plies at worst
/// when each /24 holds one route longer than /24 (the `l3` bench's 100k /24s
/// need 394).
pub(super) const MAX_PLIES: usize = 1 << 18;

/// [`Trie4::insert`] refused: the plies would outgrow their bound (this many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full(pub(super) usize);

/// The IPv4 tries of every VRF (see the module docs).
#[derive(Clone, Debug, Default)]
pub(super) struct Trie4 {
    /// Per VRF: `PLY` | its root's index, or `EMPTY` before its first route.
    roots: Vec<Entry>,
    plies: Vec<[Entry; FANOUT]>,
    /// The bound on `plies` ([`MAX_PLIES`]; tests set less).
    max_plies: usize,
}

impl Trie4 {
    /// Tries for VRFs `0..vrfs`, without routes.
    pub(super) fn new(vrfs: u16) -> Self {
        Trie4 {
            roots: vec![EMPTY; usize::from(vrfs)],
            plies: Vec::new(),
            max_plies: MAX_PLIES,
        }
    }

    /// The value of the longest prefix in `vrf` containing `addr`: 0 for no
    /// match or an unknown VRF.
    #[inline]
    pub(super) fn lookup(&self, vrf: u16, addr: u32) -> u32 {
        let Some(&root) = self.roots.get(usize::from(vrf)) else {
            return 0;
        };
        let mut e = root;
        for byte in addr.to_be_bytes() {
            if e & PLY == 0 {
                break;
            }
            let Some(ply) = self.plies.get((e & !PLY) as usize) else {
                return 0;
            };
            e = ply[usize::from(byte)];
        }
        // Plies exist for the first three bytes only, so the fourth read a leaf.
        if e & PLY == 0 {
            e & MAX_VALUE
        } else {
            0
        }
    }

    /// Makes `value` (a value index + 1, at most [`MAX_VALUE`]) the answer for
    /// the addresses of `addr/len` in `vrf` that no longer prefix already
    /// covers. Host bits of `addr` are ignored.
    ///
    /// # Errors
    /// [`Full`], with nothing changed, when the plies would outgrow their bound.
    ///
    /// # Panics
    /// If `vrf` is not below the count given to [`new`](Self::new), `len` is over
    /// 32, or `value` is 0 or over [`MAX_VALUE`].
    pub(super) fn insert(&mut self, vrf: u16, addr: u32, len: u8, value: u32) -> Result<(), Full> {
        assert!(len <= 32, "IPv4 prefix length {len}");
        assert!(value != 0 && value <= MAX_VALUE, "value {value}");
        assert!(usize::from(vrf) < self.roots.len(), "VRF {vrf}");
        let bytes = addr.to_be_bytes();
        // Checked before anything changes.
        if self.plies.len() + self.plies_needed(vrf, &bytes, len) > self.max_plies {
            return Err(Full(self.max_plies));
        }
        let leaf = (u32::from(len) << LEN_SHIFT) | value;
        let root = self.roots[usize::from(vrf)];
        let mut ply = if root & PLY == 0 {
            let p = self.new_ply(EMPTY);
            self.roots[usize::from(vrf)] = PLY | p;
            p
        } else {
            root & !PLY
        };
        // Descend while the prefix is longer than the bytes above and in this ply.
        let mut depth = 0usize;
        while usize::from(len) > 8 * (depth + 1) {
            ply = self.child(ply, bytes[depth]);
            depth += 1;
        }
        // `len` ends in this ply's byte: it covers 2^(unfixed bits) entries.
        let fixed = u32::from(len) - 8 * depth as u32;
        let span = 1usize << (8 - fixed);
        let first = usize::from(bytes[depth]) & !(span - 1);
        self.paint(ply, first..first + span, leaf);
        Ok(())
    }

    /// Tries with room for `max` plies only (for tests of the bound).
    #[cfg(test)]
    pub(super) fn with_max_plies(vrfs: u16, max: usize) -> Self {
        Trie4 {
            max_plies: max,
            ..Trie4::new(vrfs)
        }
    }

    /// The plies inserting a prefix of `len` bits of `bytes` into `vrf` would add:
    /// the root if the VRF has none, and one for each byte above the prefix's
    /// last whose entry is not a ply yet.
    fn plies_needed(&self, vrf: u16, bytes: &[u8; 4], len: u8) -> usize {
        // The bytes above the one the prefix ends in (none for /0 to /8).
        let above = usize::from(len.saturating_sub(1) / 8);
        let mut e = self.roots[usize::from(vrf)];
        if e & PLY == 0 {
            return 1 + above;
        }
        for (depth, &byte) in bytes.iter().enumerate().take(above) {
            e = self.plies[(e & !PLY) as usize][usize::from(byte)];
            if e & PLY == 0 {
                return above - depth;
            }
        }
        0
    }

    /// A new ply whose every entry is `fill`.
    fn new_ply(&mut self, fill: Entry) -> u32 {
        // Below `max_plies`, far below `PLY`: the index fits an entry.
        let idx = self.plies.len() as u32;
        self.plies.push([fill; FANOUT]);
        idx
    }

    /// The ply below entry `slot` of `ply`, made (holding that entry's leaf for
    /// every address under it) if the entry is a leaf.
    fn child(&mut self, ply: u32, slot: u8) -> u32 {
        let (p, s) = (ply as usize, usize::from(slot));
        let e = self.plies[p][s];
        if e & PLY != 0 {
            return e & !PLY;
        }
        let c = self.new_ply(e);
        self.plies[p][s] = PLY | c;
        c
    }

    /// Writes `leaf` into the entries `slots` of `ply` and, for an entry that
    /// points to a ply, into every entry below it — wherever no longer prefix
    /// wrote the entry (a leaf's length is its top bits, so leaves compare by it).
    fn paint(&mut self, ply: u32, slots: std::ops::Range<usize>, leaf: Entry) {
        let p = ply as usize;
        for slot in slots {
            let e = self.plies[p][slot];
            if e & PLY != 0 {
                self.paint(e & !PLY, 0..FANOUT, leaf);
            } else if e >> LEN_SHIFT <= leaf >> LEN_SHIFT {
                self.plies[p][slot] = leaf;
            }
        }
    }

    /// Plies in the arena.
    #[cfg(test)]
    fn plies(&self) -> usize {
        self.plies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        s.parse::<std::net::Ipv4Addr>().unwrap().to_bits()
    }

    #[test]
    fn lengths_at_every_stride_boundary() {
        let mut t = Trie4::new(1);
        for (i, (p, len)) in [
            ("0.0.0.0", 0),
            ("10.0.0.0", 7),
            ("10.0.0.0", 8),
            ("10.1.0.0", 16),
        ]
        .into_iter()
        .chain([("10.1.2.0", 24), ("10.1.2.3", 32), ("10.1.2.128", 25)])
        .enumerate()
        {
            t.insert(0, ip(p), len, i as u32 + 1).unwrap();
        }
        let l = |s| t.lookup(0, ip(s));
        assert_eq!(l("11.0.0.0"), 2, "/7 covers 11/8");
        assert_eq!(l("12.0.0.0"), 1, "default");
        assert_eq!(l("10.9.0.0"), 3);
        assert_eq!(l("10.1.9.9"), 4);
        assert_eq!(l("10.1.2.4"), 5);
        assert_eq!(l("10.1.2.3"), 6);
        assert_eq!(l("10.1.2.200"), 7);
        assert_eq!(l("10.1.2.127"), 5);
        // Three plies below the root on the way to the /32; the /7 and /8 none.
        assert_eq!(t.plies(), 4);
    }

    #[test]
    fn routes_sharing_upper_bytes_share_plies() {
        // The `l3` bench's table: 100k consecutive /24s from 16.0.0.0 span 391
        // /16s over two /8s, so one ply per /8 and per /16 below the root:
        // 394 KiB of plies.
        let mut t = Trie4::new(1);
        for i in 0..100_000u32 {
            t.insert(0, ip("16.0.0.0") + (i << 8), 24, 1 + i % 16)
                .unwrap();
        }
        assert_eq!(t.plies(), 1 + 2 + 391);
        assert_eq!(t.lookup(0, ip("16.0.0.9")), 1);
        assert_eq!(t.lookup(0, ip("17.134.159.1")), 1 + 99_999 % 16);
        assert_eq!(t.lookup(0, ip("17.134.160.1")), 0);
    }

    #[test]
    fn a_full_arena_refuses_and_changes_nothing() {
        let mut t = Trie4::with_max_plies(2, 6);
        t.insert(0, ip("10.0.0.0"), 8, 1).unwrap(); // the root
        t.insert(0, ip("10.1.2.3"), 32, 2).unwrap(); // three below it
        assert_eq!(t.plies(), 4);
        // Another /32 under 10/8 but in 10.2/16: two more plies, which fit.
        t.insert(0, ip("10.2.0.1"), 32, 3).unwrap();
        assert_eq!(t.plies(), 6);
        // Full: a prefix that needs a ply is refused, one that needs none is not.
        assert_eq!(t.insert(0, ip("10.2.1.1"), 32, 4), Err(Full(6)));
        assert_eq!(t.insert(1, ip("0.0.0.0"), 0, 4), Err(Full(6)), "a root");
        t.insert(0, ip("10.2.0.7"), 32, 5).unwrap();
        t.insert(0, ip("10.1.2.0"), 24, 6).unwrap();
        assert_eq!(t.plies(), 6);
        assert_eq!(
            t.lookup(0, ip("10.2.1.1")),
            1,
            "the refused /32 is not there"
        );
        assert_eq!(t.lookup(0, ip("10.1.2.3")), 2);
        assert_eq!(t.lookup(0, ip("10.2.0.7")), 5);
        assert_eq!(t.lookup(0, ip("10.1.2.4")), 6);
    }

    #[test]
    fn shorter_prefix_after_longer_keeps_the_longer() {
        let mut t = Trie4::new(2);
        t.insert(1, ip("10.1.2.3"), 32, 1).unwrap();
        t.insert(1, ip("10.1.0.0"), 16, 2).unwrap();
        t.insert(1, ip("0.0.0.0"), 0, 3).unwrap();
        assert_eq!(t.lookup(1, ip("10.1.2.3")), 1);
        assert_eq!(t.lookup(1, ip("10.1.2.4")), 2);
        assert_eq!(t.lookup(1, ip("10.2.0.0")), 3);
        assert_eq!(t.lookup(0, ip("10.1.2.3")), 0, "other VRF");
        assert_eq!(t.lookup(9, ip("10.1.2.3")), 0, "unknown VRF");
    }

    #[test]
    fn reinserting_a_prefix_replaces_only_its_own_entries() {
        let mut t = Trie4::new(1);
        t.insert(0, ip("10.0.0.0"), 8, 1).unwrap();
        t.insert(0, ip("10.1.0.0"), 16, 2).unwrap();
        t.insert(0, ip("10.0.0.0"), 8, 3).unwrap();
        assert_eq!(t.lookup(0, ip("10.2.0.0")), 3);
        assert_eq!(t.lookup(0, ip("10.1.0.0")), 2);
        // Host bits are ignored.
        t.insert(0, ip("10.1.255.255"), 16, 4).unwrap();
        assert_eq!(t.lookup(0, ip("10.1.0.0")), 4);
        // The largest value beside the longest length: neither spills into the other.
        t.insert(0, ip("10.1.2.3"), 32, MAX_VALUE).unwrap();
        assert_eq!(t.lookup(0, ip("10.1.2.3")), MAX_VALUE);
        assert_eq!(t.lookup(0, ip("10.1.2.4")), 4);
        t.insert(0, ip("10.1.2.0"), 24, 5).unwrap();
        assert_eq!(t.lookup(0, ip("10.1.2.3")), MAX_VALUE, "the /32 stays");
    }
}
