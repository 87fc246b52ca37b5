//! The L2 pipeline: static MAC forwarding, flooding domains and port patches.
//!
//! An [`L2Pipeline`] is an immutable, compiled snapshot: the control plane builds it
//! with [`L2PipelineBuilder`], which validates the whole configuration and names the
//! offending item on error, then publishes it through a
//! [`SnapshotCell`](crate::snapshot::SnapshotCell). Everything a packet needs is
//! precomputed at build time — per ingress port its group, its patch peer and its
//! flood list (the group minus itself) — so the per-packet work is one header check
//! and at most one hash lookup.
//!
//! Forwarding rules, in order:
//! 1. a frame shorter than an Ethernet header is dropped (`runt_frame`);
//! 2. a patched port sends everything to its peer, whatever the MAC table says;
//! 3. a unicast destination in the MAC table, on a port of the ingress port's group,
//!    goes to that port (`hairpin` drop if that is the ingress port);
//! 4. everything else — unknown unicast, broadcast, multicast, and unicast to a MAC
//!    that lives in another group (groups are separate L2 domains, like VLANs) — is
//!    flooded to the ingress port's flood list (`no_output` drop if it is empty).
//!
//! [`L2Pipeline::classify_burst`] runs over a whole burst and writes one
//! [`L2Verdict`] per packet; the worker then moves the buffers. Classification never
//! allocates, locks or calls through a trait object.

use arrayvec::ArrayVec;
use hashbrown::HashMap;
use thiserror::Error;

use crate::buf::PacketBuf;
use crate::densemap::{DenseMap, DenseReader};
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::io::BURST;
use crate::port::{BurstPorts, PortIdx, MAX_PORTS};
use crate::snapshot::Versioned;

/// A flooding domain: ports that share broadcast, multicast and unknown unicast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u16);

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Verdict {
    /// Send to this one port.
    Output(PortIdx),
    /// Send to every port of [`L2Pipeline::flood_ports`] for the ingress port.
    Flood,
    /// Drop, counting the reason.
    Drop(DropReason),
}

/// One verdict per packet of a burst.
pub type Verdicts = ArrayVec<L2Verdict, BURST>;

/// A port as configured: its index, its name (for operators and errors) and its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2PortConfig {
    /// The port's dense index.
    pub idx: PortIdx,
    /// The port's name.
    pub name: String,
    /// The flooding domain it belongs to.
    pub group: GroupId,
}

/// A configuration the builder rejects, naming the offending item.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum L2ConfigError {
    /// A port index is `MAX_PORTS` or more.
    #[error("port {port} ({name}): index out of range, at most {max} ports")]
    PortOutOfRange {
        /// The index given.
        port: PortIdx,
        /// The port's name.
        name: String,
        /// [`MAX_PORTS`].
        max: usize,
    },
    /// Two ports share an index.
    #[error("port {port} is declared twice, as {first:?} and {second:?}")]
    DuplicatePort {
        /// The index.
        port: PortIdx,
        /// The first port's name.
        first: String,
        /// The second port's name.
        second: String,
    },
    /// Two ports share a name.
    #[error("port name {name:?} is used by port {first} and port {second}")]
    DuplicatePortName {
        /// The name.
        name: String,
        /// The first port with it.
        first: PortIdx,
        /// The second port with it.
        second: PortIdx,
    },
    /// A patch starts at a port that is not declared.
    #[error("patch {from} -> {to}: port {from} does not exist")]
    PatchFromUnknownPort {
        /// The patch's source.
        from: PortIdx,
        /// The patch's destination.
        to: PortIdx,
    },
    /// A patch leads to a port that is not declared.
    #[error("patch {from} -> {to}: port {to} does not exist")]
    PatchToUnknownPort {
        /// The patch's source.
        from: PortIdx,
        /// The patch's destination.
        to: PortIdx,
    },
    /// A port is patched to itself.
    #[error("patch {port} -> {port}: a port cannot be patched to itself")]
    SelfPatch {
        /// The port.
        port: PortIdx,
    },
    /// A port has two patches.
    #[error("port {from} is patched twice, to {first} and to {second}")]
    DuplicatePatch {
        /// The patch's source.
        from: PortIdx,
        /// The first destination.
        first: PortIdx,
        /// The second destination.
        second: PortIdx,
    },
    /// A MAC table entry names a port that is not declared.
    #[error("MAC {mac} points at port {port}, which does not exist")]
    MacUnknownPort {
        /// The MAC.
        mac: MacAddr,
        /// The port it names.
        port: PortIdx,
    },
    /// A MAC appears twice in the table.
    #[error("MAC {mac} is given twice, on port {first} and on port {second}")]
    DuplicateMac {
        /// The MAC.
        mac: MacAddr,
        /// The first port given.
        first: PortIdx,
        /// The second port given.
        second: PortIdx,
    },
    /// A MAC table entry is a group address, which the table never matches.
    #[error("MAC {mac} on port {port} is a multicast address; only unicast MACs can be learned")]
    MulticastMac {
        /// The MAC.
        mac: MacAddr,
        /// The port it names.
        port: PortIdx,
    },
}

/// Collects ports, patches and MAC entries, then validates and compiles them.
#[derive(Debug, Clone, Default)]
pub struct L2PipelineBuilder {
    generation: u64,
    ports: Vec<L2PortConfig>,
    patches: Vec<(PortIdx, PortIdx)>,
    macs: Vec<(MacAddr, PortIdx)>,
}

impl L2PipelineBuilder {
    /// An empty configuration that will compile to snapshot `generation`.
    pub fn new(generation: u64) -> Self {
        L2PipelineBuilder {
            generation,
            ..Default::default()
        }
    }

    /// Declares port `idx` named `name` in flooding domain `group`.
    pub fn port(&mut self, idx: PortIdx, name: impl Into<String>, group: GroupId) -> &mut Self {
        self.ports.push(L2PortConfig {
            idx,
            name: name.into(),
            group,
        });
        self
    }

    /// Sends everything received on `from` to `to` (one direction; patch both ways
    /// for a wire).
    pub fn patch(&mut self, from: PortIdx, to: PortIdx) -> &mut Self {
        self.patches.push((from, to));
        self
    }

    /// A static MAC table entry: frames to `mac` go to `port`.
    pub fn mac(&mut self, mac: MacAddr, port: PortIdx) -> &mut Self {
        self.macs.push((mac, port));
        self
    }

    /// Validates the configuration and compiles the snapshot.
    ///
    /// # Errors
    /// The first [`L2ConfigError`] found: ports are checked first, then patches,
    /// then MAC entries, each in the order given.
    pub fn build(&self) -> Result<L2Pipeline, L2ConfigError> {
        let mut slots: Vec<Option<&L2PortConfig>> = Vec::new();
        let mut names: HashMap<&str, PortIdx> = HashMap::new();
        for p in &self.ports {
            if p.idx.index() >= MAX_PORTS {
                return Err(L2ConfigError::PortOutOfRange {
                    port: p.idx,
                    name: p.name.clone(),
                    max: MAX_PORTS,
                });
            }
            if slots.len() <= p.idx.index() {
                slots.resize(p.idx.index() + 1, None);
            }
            if let Some(first) = slots[p.idx.index()] {
                return Err(L2ConfigError::DuplicatePort {
                    port: p.idx,
                    first: first.name.clone(),
                    second: p.name.clone(),
                });
            }
            if let Some(&first) = names.get(p.name.as_str()) {
                return Err(L2ConfigError::DuplicatePortName {
                    name: p.name.clone(),
                    first,
                    second: p.idx,
                });
            }
            names.insert(&p.name, p.idx);
            slots[p.idx.index()] = Some(p);
        }
        let known = |port: PortIdx| slots.get(port.index()).is_some_and(Option::is_some);

        let mut patch_of: Vec<Option<PortIdx>> = vec![None; slots.len()];
        for &(from, to) in &self.patches {
            if !known(from) {
                return Err(L2ConfigError::PatchFromUnknownPort { from, to });
            }
            if !known(to) {
                return Err(L2ConfigError::PatchToUnknownPort { from, to });
            }
            if from == to {
                return Err(L2ConfigError::SelfPatch { port: from });
            }
            if let Some(first) = patch_of[from.index()] {
                return Err(L2ConfigError::DuplicatePatch {
                    from,
                    first,
                    second: to,
                });
            }
            patch_of[from.index()] = Some(to);
        }

        // Each port's group as a small index, in the order the ports name the
        // groups: at most one group per port, so it fits the MAC table's 8 bits.
        // Worked out once per port, for the MAC entries and the port entries.
        let mut groups: Vec<GroupId> = Vec::new();
        let group_index: Vec<u8> = slots
            .iter()
            .map(|slot| {
                let Some(cfg) = slot else { return 0 };
                let i = groups
                    .iter()
                    .position(|&g| g == cfg.group)
                    .unwrap_or_else(|| {
                        groups.push(cfg.group);
                        groups.len() - 1
                    });
                i as u8
            })
            .collect();
        let mut macs = DenseMap::with_capacity(self.macs.len());
        for &(mac, port) in &self.macs {
            let Some(Some(_)) = slots.get(port.index()) else {
                return Err(L2ConfigError::MacUnknownPort { mac, port });
            };
            if mac.is_multicast() {
                return Err(L2ConfigError::MulticastMac { mac, port });
            }
            if let Some(first) = macs.get(mac.to_u64()) {
                return Err(L2ConfigError::DuplicateMac {
                    mac,
                    first: MacDest(first).port(),
                    second: port,
                });
            }
            let dest = MacDest::new(port, group_index[port.index()]);
            let inserted = macs.insert(mac.to_u64(), dest.0);
            debug_assert!(
                inserted.is_ok(),
                "a unicast MAC is a 48-bit key, not all ones"
            );
        }

        let ports = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                slot.map(|cfg| {
                    let flood = slots
                        .iter()
                        .flatten()
                        .filter(|o| o.group == cfg.group && o.idx != cfg.idx)
                        .map(|o| o.idx)
                        .collect();
                    PortEntry {
                        name: cfg.name.clone().into_boxed_str(),
                        group: cfg.group,
                        group_index: group_index[i],
                        patch: patch_of[i],
                        flood,
                    }
                })
            })
            .collect();

        Ok(L2Pipeline {
            generation: self.generation,
            ports,
            macs,
        })
    }
}

#[derive(Debug, Clone)]
struct PortEntry {
    name: Box<str>,
    group: GroupId,
    /// The group's index in the MAC table's entries.
    group_index: u8,
    patch: Option<PortIdx>,
    /// Every other port of the group, ascending.
    flood: Box<[PortIdx]>,
}

/// Where a MAC lives: its port (below [`MAX_PORTS`], so 8 bits) and the index of
/// that port's group (at most one group per port), packed in the 16 bits a MAC
/// table entry holds beside its MAC, so the burst loop checks both against the
/// ingress port with one XOR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MacDest(u16);

const _: () = assert!(MAX_PORTS <= 256, "a port and a group index fit 8 bits each");

impl MacDest {
    fn new(port: PortIdx, group_index: u8) -> Self {
        MacDest(u16::from(group_index) << 8 | (port.0 & 0xff))
    }

    fn port(self) -> PortIdx {
        PortIdx(self.0 & 0xff)
    }

    fn group_index(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The port to send to, for a frame from `ingress` (its port and group): this
    /// MAC's port when it is in the same group (the high bytes match) and is not
    /// the ingress port itself (the low bytes differ). `None` means "not a plain
    /// output": flood, or a hairpin drop.
    #[inline]
    fn output_from(self, ingress: MacDest) -> Option<PortIdx> {
        let x = self.0 ^ ingress.0;
        (x.wrapping_sub(1) < 0xff).then_some(self.port())
    }
}

/// [`L2Pipeline`] from one ingress port (see [`L2Pipeline::ingress`]).
#[derive(Clone, Copy)]
pub struct L2Ingress<'a> {
    pipeline: &'a L2Pipeline,
    in_port: PortIdx,
    entry: Option<&'a PortEntry>,
}

impl L2Ingress<'_> {
    /// The verdict for one frame from this ingress port.
    #[inline]
    pub fn classify(&self, frame: &[u8]) -> L2Verdict {
        match self.entry {
            Some(entry) => self.pipeline.classify_frame(self.in_port, entry, frame),
            None => L2Verdict::Drop(DropReason::NoPipelinePort),
        }
    }

    /// The verdicts of a whole burst: `out[i]` for `pkts[i]`, the same as
    /// [`classify`](Self::classify) on each frame, for as many frames as `out` has
    /// room for, at most [`BURST`]. Returns the port when every verdict is an
    /// output to that one port, so the worker can hand the burst over whole
    /// without looking at the verdicts again.
    ///
    /// The loop keeps the ingress port and group (one packed word) and the MAC
    /// table's fields in registers (through `&self` they would be reloaded for
    /// every frame) and writes into a slice (no capacity check per frame). Never
    /// inlined: inside the worker's large poll function the same loop ran out of
    /// registers and reloaded half of those values from the stack for every frame.
    /// A burst whose frames all have one destination is decided by one lookup.
    #[inline(never)]
    pub fn classify_burst<B: PacketBuf, V: From<L2Verdict>>(
        &self,
        pkts: &[B],
        out: &mut [V],
    ) -> Option<PortIdx> {
        // At most a burst: `left` below has a bit per frame.
        let n = pkts.len().min(out.len()).min(BURST);
        let (pkts, out) = (&pkts[..n], &mut out[..n]);
        let Some(entry) = self.entry else {
            out.fill_with(|| L2Verdict::Drop(DropReason::NoPipelinePort).into());
            return None;
        };
        let in_port = self.in_port;
        if let Some(peer) = entry.patch {
            let mut runts = false;
            for (o, p) in out.iter_mut().zip(pkts) {
                let runt = p.len() < crate::ethernet::HEADER_LEN;
                runts |= runt;
                *o = if runt {
                    L2Verdict::Drop(DropReason::RuntFrame)
                } else {
                    L2Verdict::Output(peer)
                }
                .into();
            }
            return (!runts && n > 0).then_some(peer);
        }
        let macs = self.pipeline.macs.reader();
        let ingress = MacDest::new(in_port, entry.group_index);
        // A burst whose frames all go to one MAC (a bulk flow's run, the common
        // case between two endpoints) takes one lookup for all, as VPP's l2fwd
        // reuses its last key's answer. Traffic with many destinations pays for
        // one compare: the check stops at the first frame that differs.
        if let Some(port) = same_destination(pkts).and_then(|f| fast_output(macs, ingress, f)) {
            for o in out.iter_mut() {
                *o = L2Verdict::Output(port).into();
            }
            return Some(port);
        }
        // A table too large for the caches: its slots prefetched for the whole
        // burst first, so the lookups' misses overlap.
        if macs.is_large() {
            macs.prefetch_burst(pkts, MacAddr::dst_bits);
        }
        // Two passes: the straight path for every frame first (`fast_pass`); then
        // the full decision for the frames it left. Each output port is written
        // down in `ports` and compared once after the loop.
        let mut ports = BurstPorts::new();
        let left = fast_pass(macs, ingress, pkts, out, &mut ports.0);
        if left == 0 {
            return ports.one(n);
        }
        // `classify_frame` outputs exactly where `fast` does, so these frames
        // are floods or drops and the burst is not all for one port.
        self.pipeline.classify_left(in_port, entry, pkts, out, left);
        None
    }

    /// Where this port's floods go.
    #[inline]
    pub fn flood_ports(&self) -> &[PortIdx] {
        self.entry.map_or(&[], |e| &e.flood)
    }
}

/// The straight path of a frame from the port and group of `ingress`: a unicast
/// frame to a MAC of that group on another port gets that port; anything else
/// (`None`) is decided in full by `classify_frame`.
#[inline(always)]
fn fast_output(macs: DenseReader<'_>, ingress: MacDest, frame: &[u8]) -> Option<PortIdx> {
    if frame.len() < crate::ethernet::HEADER_LEN {
        return None;
    }
    // The frame's first 8 bytes as they lie in memory: the I/G bit (group
    // addresses are flooded) is then bit 0, tested with an immediate; after the
    // byte swap it would be bit 56, a constant the loop keeps in a register.
    let raw = u64::from_le_bytes(frame.get(..8)?.try_into().ok()?);
    if raw & 1 != 0 {
        return None;
    }
    // The destination MAC as `MacAddr::dst_bits` gives it.
    let dst = raw.swap_bytes() >> 16;
    MacDest(macs.get(dst)?).output_from(ingress)
}

/// [`fast_output`] for every frame of `pkts`: its verdict in `out` and its port
/// in `ports`, or its bit set in the returned mask when it needs the full
/// decision. A function of its own, never inlined, with its values passed in:
/// inside `classify_burst` the loop's multiplier, shift and ingress lived on the
/// stack across the prefetch call above it and were read from there for every
/// frame, and no call here leaves the loop every register (a port is noted in
/// `ports` rather than in running accumulators for the same reason).
#[inline(never)]
fn fast_pass<B: PacketBuf, V: From<L2Verdict>>(
    macs: DenseReader<'_>,
    ingress: MacDest,
    pkts: &[B],
    out: &mut [V],
    ports: &mut [u8; BURST],
) -> u32 {
    let mut left = 0u32;
    for (i, ((o, p), port_of)) in out.iter_mut().zip(pkts).zip(ports).enumerate() {
        match fast_output(macs, ingress, p.data()) {
            Some(port) => {
                *o = L2Verdict::Output(port).into();
                // MAX_PORTS is at most 256: a port fits a byte (`MacDest`).
                *port_of = port.0 as u8;
            }
            None => left |= 1 << i,
        }
    }
    left
}

/// The first frame's bytes, when `pkts` is not empty and every frame is a whole
/// Ethernet header long with that frame's destination MAC: then the frames'
/// forwarding verdicts are all the first one's.
#[inline]
fn same_destination<B: PacketBuf>(pkts: &[B]) -> Option<&[u8]> {
    let (first, rest) = pkts.split_first()?;
    let frame = first.data();
    let dst = MacAddr::dst_bits(frame.get(..crate::ethernet::HEADER_LEN)?)?;
    rest.iter()
        .all(|p| {
            let d = p.data();
            d.len() >= crate::ethernet::HEADER_LEN && MacAddr::dst_bits(d) == Some(dst)
        })
        .then_some(frame)
}

/// A compiled, immutable L2 forwarding snapshot.
#[derive(Debug, Clone)]
pub struct L2Pipeline {
    generation: u64,
    /// Indexed by [`PortIdx::index`]; `None` for undeclared indices.
    ports: Vec<Option<PortEntry>>,
    /// MAC → its port and the index of that port's group ([`MacDest`]), so the
    /// same-group check needs no second lookup; one word per MAC (see
    /// [`crate::densemap`] for why that matters to a large table).
    macs: DenseMap,
}

impl L2Pipeline {
    /// A snapshot with no ports: every packet is dropped as `no_pipeline_port`.
    /// What a worker runs before the control plane has published anything.
    pub fn empty(generation: u64) -> Self {
        L2Pipeline {
            generation,
            ports: Vec::new(),
            macs: DenseMap::default(),
        }
    }

    /// Writes one verdict per packet of `pkts` (at most [`BURST`]) into `verdicts`,
    /// which is cleared first. `in_port` is the port the burst came in on.
    pub fn classify_burst<B: PacketBuf>(
        &self,
        in_port: PortIdx,
        pkts: &[B],
        verdicts: &mut Verdicts,
    ) {
        verdicts.clear();
        let n = pkts.len().min(BURST);
        verdicts.extend((0..n).map(|_| L2Verdict::Flood));
        self.ingress(in_port).classify_burst(&pkts[..n], verdicts);
    }

    /// The stage as seen from ingress port `in_port`: the port's entry looked up
    /// once, for a burst's worth of [`L2Ingress::classify`] calls.
    #[inline]
    pub fn ingress(&self, in_port: PortIdx) -> L2Ingress<'_> {
        L2Ingress {
            pipeline: self,
            in_port,
            entry: self.entry(in_port),
        }
    }

    /// The verdict for one frame received on `in_port`.
    pub fn classify(&self, in_port: PortIdx, frame: &[u8]) -> L2Verdict {
        match self.entry(in_port) {
            Some(entry) => self.classify_frame(in_port, entry, frame),
            None => L2Verdict::Drop(DropReason::NoPipelinePort),
        }
    }

    #[inline]
    fn classify_frame(&self, in_port: PortIdx, entry: &PortEntry, frame: &[u8]) -> L2Verdict {
        if frame.len() < crate::ethernet::HEADER_LEN {
            return L2Verdict::Drop(DropReason::RuntFrame);
        }
        if let Some(peer) = entry.patch {
            return L2Verdict::Output(peer);
        }
        let dst = MacAddr::dst_bits(frame).unwrap_or(0);
        // I/G bit of the first byte: group addresses are flooded.
        if dst & (1 << 40) == 0 {
            if let Some(d) = self.macs.get(dst).map(MacDest) {
                if d.group_index() == entry.group_index {
                    return if d.port() == in_port {
                        L2Verdict::Drop(DropReason::Hairpin)
                    } else {
                        L2Verdict::Output(d.port())
                    };
                }
            }
        }
        if entry.flood.is_empty() {
            L2Verdict::Drop(DropReason::NoOutput)
        } else {
            L2Verdict::Flood
        }
    }

    /// [`classify_frame`](Self::classify_frame) for the frames of a burst the
    /// burst loop's straight path left (bit `i` of `left` for `pkts[i]`). Out of
    /// line, so the straight loop's values stay in registers.
    #[cold]
    #[inline(never)]
    fn classify_left<B: PacketBuf, V: From<L2Verdict>>(
        &self,
        in_port: PortIdx,
        entry: &PortEntry,
        pkts: &[B],
        out: &mut [V],
        left: u32,
    ) {
        for (i, (o, p)) in out.iter_mut().zip(pkts).enumerate() {
            if left & (1 << i) != 0 {
                *o = self.classify_frame(in_port, entry, p.data()).into();
            }
        }
    }

    #[inline]
    fn entry(&self, port: PortIdx) -> Option<&PortEntry> {
        self.ports.get(port.index()).and_then(Option::as_ref)
    }

    /// The ports a flood from `in_port` goes to: its group minus itself, ascending.
    /// Empty for an unknown port.
    #[inline]
    pub fn flood_ports(&self, in_port: PortIdx) -> &[PortIdx] {
        self.entry(in_port).map_or(&[], |e| &e.flood)
    }

    /// The name of `port`, if declared.
    pub fn port_name(&self, port: PortIdx) -> Option<&str> {
        self.entry(port).map(|e| &*e.name)
    }

    /// The group of `port`, if declared.
    pub fn port_group(&self, port: PortIdx) -> Option<GroupId> {
        self.entry(port).map(|e| e.group)
    }

    /// Where `port` is patched to, if it is.
    pub fn patch_of(&self, port: PortIdx) -> Option<PortIdx> {
        self.entry(port).and_then(|e| e.patch)
    }

    /// Number of MAC table entries.
    pub fn mac_count(&self) -> usize {
        self.macs.len()
    }

    /// This snapshot as generation `generation` (a write that changed other
    /// stages' tables publishes this one unchanged under the new number).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// The snapshot's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Versioned for L2Pipeline {
    fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;

    const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
    const UNKNOWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xff]);
    const MDNS: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);

    /// A 60-byte IPv4 frame from `src` to `dst`.
    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    /// Ports 0,1,2 in group 1; ports 3,4 in group 2; port 5 alone in group 3.
    /// A on 0, B on 1, C on 3.
    fn builder() -> L2PipelineBuilder {
        let mut b = L2PipelineBuilder::new(1);
        b.port(PortIdx(0), "p0", GroupId(1))
            .port(PortIdx(1), "p1", GroupId(1))
            .port(PortIdx(2), "p2", GroupId(1))
            .port(PortIdx(3), "p3", GroupId(2))
            .port(PortIdx(4), "p4", GroupId(2))
            .port(PortIdx(5), "p5", GroupId(3))
            .mac(A, PortIdx(0))
            .mac(B, PortIdx(1))
            .mac(C, PortIdx(3));
        b
    }

    #[test]
    fn unicast_to_known_mac() {
        let l2 = builder().build().unwrap();
        assert_eq!(
            l2.classify(PortIdx(0), &frame(B, A)),
            L2Verdict::Output(PortIdx(1))
        );
        assert_eq!(
            l2.classify(PortIdx(2), &frame(A, UNKNOWN)),
            L2Verdict::Output(PortIdx(0))
        );
        assert_eq!(
            l2.classify(PortIdx(4), &frame(C, UNKNOWN)),
            L2Verdict::Output(PortIdx(3))
        );
    }

    #[test]
    fn unknown_broadcast_multicast_flood_within_group() {
        let l2 = builder().build().unwrap();
        for dst in [UNKNOWN, MacAddr::BROADCAST, MDNS] {
            assert_eq!(
                l2.classify(PortIdx(1), &frame(dst, B)),
                L2Verdict::Flood,
                "{dst}"
            );
        }
        assert_eq!(l2.flood_ports(PortIdx(1)), &[PortIdx(0), PortIdx(2)]);
        assert_eq!(l2.flood_ports(PortIdx(3)), &[PortIdx(4)]);
        assert_eq!(l2.flood_ports(PortIdx(9)), &[] as &[PortIdx]);
    }

    #[test]
    fn known_mac_in_another_group_is_unknown_here() {
        let l2 = builder().build().unwrap();
        // C lives on port 3 (group 2); from group 1 it is flooded in group 1 only.
        assert_eq!(l2.classify(PortIdx(0), &frame(C, A)), L2Verdict::Flood);
    }

    #[test]
    fn lone_port_flood_is_no_output() {
        let l2 = builder().build().unwrap();
        assert_eq!(
            l2.classify(PortIdx(5), &frame(MacAddr::BROADCAST, A)),
            L2Verdict::Drop(DropReason::NoOutput)
        );
    }

    #[test]
    fn hairpin_runt_and_unknown_ingress_drop() {
        let l2 = builder().build().unwrap();
        assert_eq!(
            l2.classify(PortIdx(0), &frame(A, B)),
            L2Verdict::Drop(DropReason::Hairpin)
        );
        assert_eq!(
            l2.classify(PortIdx(0), &frame(B, A)[..13]),
            L2Verdict::Drop(DropReason::RuntFrame)
        );
        assert_eq!(
            l2.classify(PortIdx(0), &[]),
            L2Verdict::Drop(DropReason::RuntFrame)
        );
        assert_eq!(
            l2.classify(PortIdx(7), &frame(B, A)),
            L2Verdict::Drop(DropReason::NoPipelinePort)
        );
    }

    #[test]
    fn patch_wins_over_mac_table() {
        let mut b = builder();
        b.patch(PortIdx(0), PortIdx(5));
        let l2 = b.build().unwrap();
        assert_eq!(l2.patch_of(PortIdx(0)), Some(PortIdx(5)));
        for dst in [B, A, UNKNOWN, MacAddr::BROADCAST] {
            assert_eq!(
                l2.classify(PortIdx(0), &frame(dst, A)),
                L2Verdict::Output(PortIdx(5))
            );
        }
        // Only port 0 is patched; port 1 still switches.
        assert_eq!(
            l2.classify(PortIdx(1), &frame(A, B)),
            L2Verdict::Output(PortIdx(0))
        );
    }

    #[test]
    fn classify_burst_matches_single_classify() {
        let l2 = builder().build().unwrap();
        let frames = [frame(B, A), frame(A, A), frame(UNKNOWN, A), vec![0; 10]];
        let bufs: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let mut v = Verdicts::new();
        l2.classify_burst(PortIdx(0), &bufs, &mut v);
        let single: Vec<_> = frames.iter().map(|f| l2.classify(PortIdx(0), f)).collect();
        assert_eq!(v.as_slice(), single.as_slice());
        l2.classify_burst(PortIdx(9), &bufs[..2], &mut v);
        assert_eq!(
            v.as_slice(),
            &[L2Verdict::Drop(DropReason::NoPipelinePort); 2]
        );
    }

    /// A pipeline with a patch (port 6 -> 7, in group 4) beside [`builder`]'s.
    fn with_patch() -> L2Pipeline {
        let mut b = builder();
        b.port(PortIdx(6), "p6", GroupId(4))
            .port(PortIdx(7), "p7", GroupId(4))
            .patch(PortIdx(6), PortIdx(7));
        b.build().unwrap()
    }

    /// The burst loop's answer for `frames` from `in_port`, and whether it agrees
    /// with `classify` frame by frame.
    fn burst_of(l2: &L2Pipeline, in_port: PortIdx, frames: &[Vec<u8>]) -> Option<PortIdx> {
        let bufs: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let mut out = [L2Verdict::Drop(DropReason::Malformed); BURST];
        let one = l2.ingress(in_port).classify_burst(&bufs, &mut out);
        let single: Vec<_> = frames.iter().map(|f| l2.classify(in_port, f)).collect();
        assert_eq!(&out[..frames.len()], single.as_slice(), "from {in_port}");
        // Frames past the burst are left alone.
        assert!(out[frames.len()..]
            .iter()
            .all(|&v| v == L2Verdict::Drop(DropReason::Malformed)));
        let all_one = match single.first() {
            Some(&L2Verdict::Output(p)) if single.iter().all(|&v| v == L2Verdict::Output(p)) => {
                Some(p)
            }
            _ => None,
        };
        assert_eq!(one, all_one, "one port for {single:?}");
        one
    }

    #[test]
    fn burst_says_when_every_frame_goes_to_one_port() {
        let l2 = with_patch();
        let to_b = || frame(B, A);
        assert_eq!(
            burst_of(&l2, PortIdx(0), &vec![to_b(); 32]),
            Some(PortIdx(1))
        );
        assert_eq!(burst_of(&l2, PortIdx(0), &[to_b()]), Some(PortIdx(1)));
        assert_eq!(burst_of(&l2, PortIdx(0), &[]), None);
        // One frame elsewhere, at either end or in the middle, and it is not one port.
        for at in [0, 15, 31] {
            for other in [frame(UNKNOWN, A), frame(A, B), frame(C, A), vec![0; 13]] {
                let mut frames = vec![to_b(); 32];
                frames[at] = other;
                assert_eq!(burst_of(&l2, PortIdx(0), &frames), None);
            }
        }
        // Two ports whose indices OR and AND to different values.
        assert_eq!(burst_of(&l2, PortIdx(2), &[frame(A, C), frame(B, C)]), None);
        // A patch: one port unless a runt is in the burst.
        assert_eq!(
            burst_of(&l2, PortIdx(6), &[frame(A, B), frame(MDNS, B)]),
            Some(PortIdx(7))
        );
        assert_eq!(burst_of(&l2, PortIdx(6), &[frame(A, B), vec![0; 5]]), None);
        assert_eq!(burst_of(&l2, PortIdx(6), &[]), None);
        // An unknown ingress port drops everything.
        assert_eq!(burst_of(&l2, PortIdx(9), &[frame(A, B)]), None);
        // More than a burst, with room for all: the first BURST frames only.
        let many: Vec<VecBuf> = (0..BURST + 8).map(|_| VecBuf::new(&to_b())).collect();
        let mut out = vec![L2Verdict::Flood; BURST + 8];
        let one = l2.ingress(PortIdx(0)).classify_burst(&many, &mut out);
        assert_eq!(one, Some(PortIdx(1)));
        assert!(out[..BURST]
            .iter()
            .all(|&v| v == L2Verdict::Output(PortIdx(1))));
        assert!(out[BURST..].iter().all(|&v| v == L2Verdict::Flood));
        // An empty MAC table: everything floods or is dropped, nothing outputs.
        let mut empty = L2PipelineBuilder::new(1);
        empty
            .port(PortIdx(0), "p0", GroupId(1))
            .port(PortIdx(1), "p1", GroupId(1));
        let empty = empty.build().unwrap();
        assert_eq!(
            burst_of(&empty, PortIdx(0), &[frame(B, A), frame(A, B)]),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn burst_agrees_with_frame_by_frame(
            picks in proptest::collection::vec((0usize..8, 0usize..70), 0..=BURST),
            in_port in 0u16..10,
        ) {
            let l2 = with_patch();
            let dsts = [A, B, C, UNKNOWN, MDNS, MacAddr::BROADCAST, A, B];
            let frames: Vec<Vec<u8>> = picks
                .iter()
                .map(|&(d, len)| {
                    let mut f = frame(dsts[d], A);
                    f.truncate(len.max(1));
                    f
                })
                .collect();
            burst_of(&l2, PortIdx(in_port), &frames);
        }

        /// Bursts to one destination (a run the loop decides with one lookup),
        /// now and then with a frame too short for a whole header, or a frame
        /// with another destination.
        #[test]
        fn one_destination_bursts_agree_with_frame_by_frame(
            dst in 0usize..6,
            lens in proptest::collection::vec(proptest::prop_oneof![
                8 => 14usize..70,
                1 => 1usize..14,
            ], 1..=BURST),
            other in proptest::option::of((0usize..BURST, 0usize..6)),
            in_port in 0u16..10,
        ) {
            let l2 = with_patch();
            let dsts = [A, B, C, UNKNOWN, MDNS, MacAddr::BROADCAST];
            let mut frames: Vec<Vec<u8>> = lens
                .iter()
                .map(|&len| {
                    let mut f = frame(dsts[dst], C);
                    f.truncate(len);
                    f
                })
                .collect();
            if let Some((at, d)) = other {
                let at = at % frames.len();
                frames[at] = frame(dsts[d], C);
            }
            burst_of(&l2, PortIdx(in_port), &frames);
        }
    }

    /// Every port of [`MAX_PORTS`], in pairs, each pair in a group of its own with
    /// a large id (the MAC table keeps a small index per group), and a MAC table
    /// too large for the caches (its slots prefetched): each frame is switched
    /// within its pair, dropped as a hairpin, or flooded as unknown in another
    /// group, one frame at a time and in bursts alike.
    #[test]
    fn every_port_and_many_groups_with_a_large_table() {
        let mac_of = |i: u32| MacAddr([2, 0x10, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let group_of = |port: usize| GroupId(u16::MAX - (port / 2) as u16);
        let mut b = L2PipelineBuilder::new(1);
        for port in 0..MAX_PORTS {
            b.port(PortIdx(port as u16), format!("p{port}"), group_of(port));
        }
        // At least a MAC per (port, port) pair: the frames below name them all.
        let macs = (MAX_PORTS * MAX_PORTS).max(40_000) as u32;
        for i in 0..macs {
            b.mac(mac_of(i), PortIdx((i as usize % MAX_PORTS) as u16));
        }
        let l2 = b.build().unwrap();
        assert!(
            l2.macs.reader().is_large(),
            "the prefetching burst loop runs"
        );
        for from in 0..MAX_PORTS {
            let in_port = PortIdx(from as u16);
            // A MAC on every port, from every port.
            let frames: Vec<Vec<u8>> = (0..MAX_PORTS as u32)
                .map(|i| frame(mac_of(i + (MAX_PORTS * from) as u32), A))
                .collect();
            for (to, f) in frames.iter().enumerate() {
                let want = if to == from {
                    L2Verdict::Drop(DropReason::Hairpin)
                } else if group_of(to) == group_of(from) {
                    L2Verdict::Output(PortIdx(to as u16))
                } else {
                    L2Verdict::Flood
                };
                assert_eq!(l2.classify(in_port, f), want, "{from} -> {to}");
            }
            for burst in frames.chunks(BURST) {
                burst_of(&l2, in_port, burst);
            }
        }
    }

    #[test]
    fn accessors() {
        let l2 = builder().build().unwrap();
        assert_eq!(l2.generation(), 1);
        assert_eq!(l2.port_name(PortIdx(4)), Some("p4"));
        assert_eq!(l2.port_group(PortIdx(4)), Some(GroupId(2)));
        assert_eq!(l2.port_name(PortIdx(40)), None);
        assert_eq!(l2.mac_count(), 3);
        assert_eq!(
            L2Pipeline::empty(0).classify(PortIdx(0), &frame(A, B)),
            L2Verdict::Drop(DropReason::NoPipelinePort)
        );
    }

    #[test]
    fn builder_rejects_bad_configs_naming_the_item() {
        let cases: Vec<(L2PipelineBuilder, L2ConfigError)> = vec![
            (
                {
                    let mut b = builder();
                    b.port(PortIdx(MAX_PORTS as u16), "big", GroupId(1));
                    b
                },
                L2ConfigError::PortOutOfRange {
                    port: PortIdx(MAX_PORTS as u16),
                    name: "big".into(),
                    max: MAX_PORTS,
                },
            ),
            (
                {
                    let mut b = builder();
                    b.port(PortIdx(2), "again", GroupId(1));
                    b
                },
                L2ConfigError::DuplicatePort {
                    port: PortIdx(2),
                    first: "p2".into(),
                    second: "again".into(),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.port(PortIdx(9), "p1", GroupId(1));
                    b
                },
                L2ConfigError::DuplicatePortName {
                    name: "p1".into(),
                    first: PortIdx(1),
                    second: PortIdx(9),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.mac(B, PortIdx(2));
                    b
                },
                L2ConfigError::DuplicateMac {
                    mac: B,
                    first: PortIdx(1),
                    second: PortIdx(2),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.mac(UNKNOWN, PortIdx(7));
                    b
                },
                L2ConfigError::MacUnknownPort {
                    mac: UNKNOWN,
                    port: PortIdx(7),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.mac(MDNS, PortIdx(1));
                    b
                },
                L2ConfigError::MulticastMac {
                    mac: MDNS,
                    port: PortIdx(1),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.patch(PortIdx(1), PortIdx(8));
                    b
                },
                L2ConfigError::PatchToUnknownPort {
                    from: PortIdx(1),
                    to: PortIdx(8),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.patch(PortIdx(8), PortIdx(1));
                    b
                },
                L2ConfigError::PatchFromUnknownPort {
                    from: PortIdx(8),
                    to: PortIdx(1),
                },
            ),
            (
                {
                    let mut b = builder();
                    b.patch(PortIdx(2), PortIdx(2));
                    b
                },
                L2ConfigError::SelfPatch { port: PortIdx(2) },
            ),
            (
                {
                    let mut b = builder();
                    b.patch(PortIdx(2), PortIdx(0))
                        .patch(PortIdx(2), PortIdx(1));
                    b
                },
                L2ConfigError::DuplicatePatch {
                    from: PortIdx(2),
                    first: PortIdx(0),
                    second: PortIdx(1),
                },
            ),
        ];
        for (b, want) in cases {
            assert_eq!(b.build().unwrap_err(), want);
        }
        let msg = {
            let mut b = builder();
            b.mac(UNKNOWN, PortIdx(7));
            b.build().unwrap_err().to_string()
        };
        assert_eq!(
            msg,
            "MAC 02:00:00:00:00:ff points at port 7, which does not exist"
        );
    }
}
