//! IPv4 longest-prefix match as a multibit trie with 8-bit strides (8-8-8-8): one
//! trie per VRF, each in an arena of its own, so that a write changing one VRF's
//! routes copies that VRF's plies and no other's.
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
//!
//! Removal: the entries a prefix wrote are exactly the leaves of its length
//! within its span (a leaf of a longer prefix has a longer length, and nothing
//! shorter can be there), and the answer for them without it is the longest
//! shorter route containing it, one answer for the whole span. So a removal
//! repaints those leaves with that route's leaf, and answers as a trie built
//! without the prefix would. A ply left holding one leaf is folded into its
//! parent entry and its slot reused.

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

/// [`Trie4::insert`] refused: the plies it would add do not fit the room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// The IPv4 trie of one VRF (see the module docs).
#[derive(Clone, Debug)]
pub(super) struct Trie4 {
    /// `PLY` | the root's index, or `EMPTY` before the first route.
    root: Entry,
    plies: Vec<[Entry; FANOUT]>,
    /// Plies a removal emptied, reused before the arena grows: a VRF whose
    /// routes come and go keeps the plies its routes need, not every ply its
    /// routes ever needed.
    free: Vec<u32>,
}

impl Default for Trie4 {
    fn default() -> Self {
        Trie4 {
            root: EMPTY,
            plies: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl Trie4 {
    /// The value of the longest prefix containing `addr`: 0 for no match.
    #[inline]
    pub(super) fn lookup(&self, addr: u32) -> u32 {
        let mut e = self.root;
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

    /// Plies in use (the arena less the free ones).
    pub(super) fn live_plies(&self) -> usize {
        self.plies.len() - self.free.len()
    }

    /// Makes `value` (a value index + 1, at most [`MAX_VALUE`]) the answer for
    /// the addresses of `addr/len` that no longer prefix already covers. Host
    /// bits of `addr` are ignored.
    ///
    /// # Errors
    /// [`Full`], with nothing changed, when it would add more than `room` plies.
    ///
    /// # Panics
    /// If `len` is over 32, or `value` is 0 or over [`MAX_VALUE`].
    pub(super) fn insert(
        &mut self,
        addr: u32,
        len: u8,
        value: u32,
        room: usize,
    ) -> Result<(), Full> {
        assert!(len <= 32, "IPv4 prefix length {len}");
        assert!(value != 0 && value <= MAX_VALUE, "value {value}");
        let bytes = addr.to_be_bytes();
        // Checked before anything changes.
        if self.plies_needed(&bytes, len) > room {
            return Err(Full);
        }
        let leaf = (u32::from(len) << LEN_SHIFT) | value;
        let (ply, depth) = self.descend(&bytes, len);
        let slots = span(&bytes, len, depth);
        self.paint(ply, slots, leaf);
        Ok(())
    }

    /// Takes back what [`insert`](Self::insert) of `addr/len` wrote: its entries
    /// get `below`, the leaf of the longest shorter prefix containing it (its
    /// length << `LEN_SHIFT` | its value), or `EMPTY`. The result is the trie
    /// the other routes alone would make, plies aside: a ply left holding one
    /// leaf a shorter prefix could hold is folded into its parent and reused.
    ///
    /// # Panics
    /// If `len` is over 32.
    pub(super) fn remove(&mut self, addr: u32, len: u8, below: (u8, u32)) {
        assert!(len <= 32, "IPv4 prefix length {len}");
        let bytes = addr.to_be_bytes();
        let leaf = (u32::from(below.0) << LEN_SHIFT) | below.1;
        if self.root & PLY == 0 {
            // A root folded into a leaf: a default route's, the only one.
            if self.root >> LEN_SHIFT == u32::from(len) {
                self.root = leaf;
            }
            return;
        }
        // The plies on the way down, to fold them on the way back up. A prefix
        // that was inserted has them all (insert made them; a fold never takes
        // a ply a longer prefix's leaf is in).
        let mut path = vec![(self.root & !PLY, 0u8)];
        let mut depth = 0usize;
        while usize::from(len) > 8 * (depth + 1) {
            let (ply, _) = path[depth];
            let e = self.plies[ply as usize][usize::from(bytes[depth])];
            if e & PLY == 0 {
                return;
            }
            path.push((e & !PLY, bytes[depth]));
            depth += 1;
        }
        let slots = span(&bytes, len, depth);
        self.repaint(path[depth].0, slots, len, leaf);
        // Fold, deepest first: a ply whose entries are one leaf no longer than
        // its parent entry's span becomes that leaf.
        for d in (0..=depth).rev() {
            let (ply, slot) = path[d];
            let first = self.plies[ply as usize][0];
            let uniform = first & PLY == 0
                && (first >> LEN_SHIFT) as usize <= 8 * d
                && self.plies[ply as usize].iter().all(|&e| e == first);
            if !uniform {
                break;
            }
            // The root may be a leaf too: a lookup then reads no ply at all.
            if d == 0 {
                self.root = first;
            } else {
                let parent = path[d - 1].0 as usize;
                self.plies[parent][usize::from(slot)] = first;
            }
            self.free.push(ply);
        }
    }

    /// The plies inserting a prefix of `len` bits of `bytes` would add: the
    /// root if there is none, and one for each byte above the prefix's last
    /// whose entry is not a ply yet.
    fn plies_needed(&self, bytes: &[u8; 4], len: u8) -> usize {
        // The bytes above the one the prefix ends in (none for /0 to /8).
        let above = usize::from(len.saturating_sub(1) / 8);
        let mut e = self.root;
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

    /// The ply a prefix of `len` bits of `bytes` ends in, made as needed, and
    /// its depth.
    fn descend(&mut self, bytes: &[u8; 4], len: u8) -> (u32, usize) {
        let mut ply = if self.root & PLY == 0 {
            let p = self.new_ply(self.root);
            self.root = PLY | p;
            p
        } else {
            self.root & !PLY
        };
        // Descend while the prefix is longer than the bytes above and in this ply.
        let mut depth = 0usize;
        while usize::from(len) > 8 * (depth + 1) {
            ply = self.child(ply, bytes[depth]);
            depth += 1;
        }
        (ply, depth)
    }

    /// A new ply whose every entry is `fill`: a freed one if there is one.
    fn new_ply(&mut self, fill: Entry) -> u32 {
        if let Some(idx) = self.free.pop() {
            self.plies[idx as usize] = [fill; FANOUT];
            return idx;
        }
        // Below the table's bound, far below `PLY`: the index fits an entry.
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

    /// Writes `leaf` into the entries of `slots` (and below) that the prefix of
    /// length `len` wrote: within its span, the leaves of exactly that length.
    fn repaint(&mut self, ply: u32, slots: std::ops::Range<usize>, len: u8, leaf: Entry) {
        let p = ply as usize;
        for slot in slots {
            let e = self.plies[p][slot];
            if e & PLY != 0 {
                self.repaint(e & !PLY, 0..FANOUT, len, leaf);
            } else if e >> LEN_SHIFT == u32::from(len) {
                self.plies[p][slot] = leaf;
            }
        }
    }

    /// Plies in the arena, free ones included.
    #[cfg(test)]
    fn plies(&self) -> usize {
        self.plies.len()
    }
}

/// The entries of the ply at `depth` that a prefix of `len` bits of `bytes`
/// covers: 2^(unfixed bits) of them.
fn span(bytes: &[u8; 4], len: u8, depth: usize) -> std::ops::Range<usize> {
    let fixed = u32::from(len) - 8 * depth as u32;
    let n = 1usize << (8 - fixed);
    let first = usize::from(bytes[depth]) & !(n - 1);
    first..first + n
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: usize = usize::MAX;

    fn ip(s: &str) -> u32 {
        s.parse::<std::net::Ipv4Addr>().unwrap().to_bits()
    }

    #[test]
    fn lengths_at_every_stride_boundary() {
        let mut t = Trie4::default();
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
            t.insert(ip(p), len, i as u32 + 1, ROOM).unwrap();
        }
        let l = |s| t.lookup(ip(s));
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
        let mut t = Trie4::default();
        for i in 0..100_000u32 {
            t.insert(ip("16.0.0.0") + (i << 8), 24, 1 + i % 16, ROOM)
                .unwrap();
        }
        assert_eq!(t.plies(), 1 + 2 + 391);
        assert_eq!(t.lookup(ip("16.0.0.9")), 1);
        assert_eq!(t.lookup(ip("17.134.159.1")), 1 + 99_999 % 16);
        assert_eq!(t.lookup(ip("17.134.160.1")), 0);
    }

    #[test]
    fn a_full_arena_refuses_and_changes_nothing() {
        let mut t = Trie4::default();
        t.insert(ip("10.0.0.0"), 8, 1, 6).unwrap(); // the root
        t.insert(ip("10.1.2.3"), 32, 2, 5).unwrap(); // three below it
        assert_eq!(t.live_plies(), 4);
        // Another /32 under 10/8 but in 10.2/16: two more plies.
        assert_eq!(t.insert(ip("10.2.0.1"), 32, 3, 1), Err(Full));
        t.insert(ip("10.2.0.1"), 32, 3, 2).unwrap();
        assert_eq!(t.live_plies(), 6);
        // No room: a prefix that needs a ply is refused, one that needs none is not.
        assert_eq!(t.insert(ip("10.2.1.1"), 32, 4, 0), Err(Full));
        t.insert(ip("10.2.0.7"), 32, 5, 0).unwrap();
        t.insert(ip("10.1.2.0"), 24, 6, 0).unwrap();
        assert_eq!(t.live_plies(), 6);
        assert_eq!(t.lookup(ip("10.2.1.1")), 1, "the refused /32 is not there");
        assert_eq!(t.lookup(ip("10.1.2.3")), 2);
        assert_eq!(t.lookup(ip("10.2.0.7")), 5);
        assert_eq!(t.lookup(ip("10.1.2.4")), 6);
        assert_eq!(Trie4::default().insert(0, 0, 1, 0), Err(Full), "a root");
    }

    #[test]
    fn shorter_prefix_after_longer_keeps_the_longer() {
        let mut t = Trie4::default();
        t.insert(ip("10.1.2.3"), 32, 1, ROOM).unwrap();
        t.insert(ip("10.1.0.0"), 16, 2, ROOM).unwrap();
        t.insert(ip("0.0.0.0"), 0, 3, ROOM).unwrap();
        assert_eq!(t.lookup(ip("10.1.2.3")), 1);
        assert_eq!(t.lookup(ip("10.1.2.4")), 2);
        assert_eq!(t.lookup(ip("10.2.0.0")), 3);
        assert_eq!(Trie4::default().lookup(ip("10.1.2.3")), 0, "empty");
    }

    #[test]
    fn reinserting_a_prefix_replaces_only_its_own_entries() {
        let mut t = Trie4::default();
        t.insert(ip("10.0.0.0"), 8, 1, ROOM).unwrap();
        t.insert(ip("10.1.0.0"), 16, 2, ROOM).unwrap();
        t.insert(ip("10.0.0.0"), 8, 3, ROOM).unwrap();
        assert_eq!(t.lookup(ip("10.2.0.0")), 3);
        assert_eq!(t.lookup(ip("10.1.0.0")), 2);
        // Host bits are ignored.
        t.insert(ip("10.1.255.255"), 16, 4, ROOM).unwrap();
        assert_eq!(t.lookup(ip("10.1.0.0")), 4);
        // The largest value beside the longest length: neither spills into the other.
        t.insert(ip("10.1.2.3"), 32, MAX_VALUE, ROOM).unwrap();
        assert_eq!(t.lookup(ip("10.1.2.3")), MAX_VALUE);
        assert_eq!(t.lookup(ip("10.1.2.4")), 4);
        t.insert(ip("10.1.2.0"), 24, 5, ROOM).unwrap();
        assert_eq!(t.lookup(ip("10.1.2.3")), MAX_VALUE, "the /32 stays");
    }

    #[test]
    fn a_removal_restores_the_shorter_route_and_folds_its_plies() {
        let mut t = Trie4::default();
        t.insert(ip("10.0.0.0"), 8, 1, ROOM).unwrap();
        t.insert(ip("10.1.2.3"), 32, 2, ROOM).unwrap();
        t.insert(ip("10.1.2.0"), 24, 3, ROOM).unwrap();
        assert_eq!(t.live_plies(), 4);
        // The /24 goes: its addresses fall back to the /8, the /32 stays.
        t.remove(ip("10.1.2.0"), 24, (8, 1));
        assert_eq!(t.lookup(ip("10.1.2.4")), 1);
        assert_eq!(t.lookup(ip("10.1.2.3")), 2);
        assert_eq!(t.live_plies(), 4);
        // The /32 goes: its three plies hold the /8 alone and fold away.
        t.remove(ip("10.1.2.3"), 32, (8, 1));
        assert_eq!(t.lookup(ip("10.1.2.3")), 1);
        assert_eq!(t.live_plies(), 1);
        // Their slots are reused, not grown.
        t.insert(ip("10.9.9.9"), 32, 4, ROOM).unwrap();
        assert_eq!((t.live_plies(), t.plies()), (4, 4));
        // Everything goes: nothing matches, nothing is left.
        t.remove(ip("10.9.9.9"), 32, (8, 1));
        t.remove(ip("10.0.0.0"), 8, (0, 0));
        assert_eq!(t.lookup(ip("10.9.9.9")), 0);
        assert_eq!(t.live_plies(), 0);
        // A default route in an otherwise empty trie folds into the root.
        t.insert(0, 0, 5, ROOM).unwrap();
        t.insert(ip("10.0.0.0"), 8, 6, ROOM).unwrap();
        t.remove(ip("10.0.0.0"), 8, (0, 5));
        assert_eq!((t.lookup(ip("10.0.0.1")), t.live_plies()), (5, 0));
    }
}
