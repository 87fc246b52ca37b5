//! Benchmark scenarios.
//!
//! A scenario is one self-contained test case: the traffic offered to the
//! switch, the vswitchd configuration sections that forward it, and the
//! equivalent OVS rules and bridge setup, so that both switches are measured
//! on exactly the same work. Each scenario lives in its own file and
//! implements [`Scenario`].
//!
//! # Bench topology
//!
//! Every scenario runs on exactly two DPDK ports: `replay` (`net_pcap` with
//! `infinite_rx`, the traffic source) and `sink` (`net_null`, no rx). For
//! OVS they are OpenFlow ports 1 (`replay`) and 2 (`sink`) of one netdev
//! bridge `br0`; tunnel scenarios add a tunnel port 3 and give `br0`'s LOCAL
//! port the local VTEP address (see [`OvsSetup`]).
//!
//! Traffic is index-addressed: frame `i` is a pure function of the
//! scenario's parameters and `i`. There is no random number generator at
//! all, so the same command line always yields the same bytes, and a runner
//! can regenerate any slice of the stream without replaying it from the
//! start.
//!
//! # Frame size convention
//!
//! Sizes are *nominal wire sizes including the 4-byte FCS*, the way RFC 2544,
//! testpmd and pktgen-dpdk name them. The bytes actually generated (and
//! stored in pcap files) are 4 shorter because the NIC appends the FCS: a
//! "64-byte" frame is 60 bytes in the pcap, a "1518-byte" frame 1514.

mod l2;
mod l3;
mod tunnel;

pub use crate::wire::TunnelKind;
pub use l2::L2Scenario;
pub use l3::L3Scenario;
pub use tunnel::{TunnelDirection, TunnelScenario};

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use crate::pcap::{PcapError, PcapWriter};

/// Ethernet frame check sequence length, added by the NIC.
pub const FCS_LEN: u16 = 4;
/// Smallest nominal frame size (Ethernet minimum, FCS included).
pub const MIN_FRAME_SIZE: u16 = 64;
/// Largest nominal frame size (untagged Ethernet maximum, FCS included).
pub const MAX_FRAME_SIZE: u16 = 1518;

/// Nominal sizes of the simple IMIX, in the order frames cycle through them.
/// 7 × 64 : 4 × 576 : 1 × 1518, interleaved so that no burst of 32 is made
/// of a single size; average 355.83 bytes.
pub const IMIX_PATTERN: [u16; 12] = [64, 576, 64, 1518, 64, 576, 64, 64, 576, 64, 576, 64];

/// One benchmark scenario: see the module docs.
pub trait Scenario {
    /// Short name, as used on the command line.
    fn name(&self) -> &'static str;

    /// Number of distinct flows the traffic cycles through.
    fn flow_count(&self) -> u32;

    /// Replaces `buf` with frame `index` of the traffic stream, without FCS.
    ///
    /// Must be deterministic: the same scenario and index always give the
    /// same bytes.
    fn emit_frame(&self, index: u64, buf: &mut Vec<u8>);

    /// Frame size setting (the nominal size of the frames a pod sends: for
    /// tunnel scenarios the *inner* frame, see their module docs).
    fn size(&self) -> FrameSize;

    /// A few sentences on what the scenario measures.
    fn description(&self) -> String;

    /// The vswitchd configuration sections that make the switch do the
    /// scenario's work, besides `[eal]`, `[dataplane]` and the two
    /// `[[port]]`s `replay` and `sink`, which the caller writes.
    ///
    /// # Errors
    /// Any error from `out`.
    fn write_vswitchd_sections(&self, out: &mut dyn Write) -> io::Result<()>;

    /// The OpenFlow rules for bridge `br0` (ports 1 = replay, 2 = sink, and
    /// 3 = the tunnel port if [`OvsSetup::tunnel`] is set), in
    /// `ovs-ofctl add-flows` syntax.
    ///
    /// # Errors
    /// Any error from `out`.
    fn write_ovs_flows(&self, out: &mut dyn Write) -> io::Result<()>;

    /// What `br0` needs besides the two DPDK ports.
    fn ovs_setup(&self) -> OvsSetup;

    /// Bytes each frame carries beyond its nominal size (the encapsulation)
    /// as replayed, and as vswitchd sends it to `sink`; for line-rate
    /// figures.
    fn overhead(&self) -> Overhead {
        Overhead::default()
    }
}

/// Encapsulation bytes beyond the nominal frame size; see
/// [`Scenario::overhead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overhead {
    /// On frames in the pcap (what `replay` receives).
    pub replay: usize,
    /// On frames vswitchd sends to `sink`.
    pub sink: usize,
}

/// OVS bridge setup a scenario needs beyond ports 1 (`replay`) and 2 (`sink`)
/// on the netdev bridge `br0`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OvsSetup {
    /// A userspace tunnel port, OpenFlow port 3.
    pub tunnel: Option<OvsTunnel>,
    /// Address (with prefix length) to give `br0`'s LOCAL port: the local
    /// VTEP, so that native tunnelling pops packets sent to LOCAL and routes
    /// pushed ones out of `br0`.
    pub local_ip: Option<String>,
    /// MAC to give `br0` (`other_config:hwaddr`): the outer destination MAC
    /// of decapsulated traffic, which native tunnelling requires.
    pub bridge_mac: Option<String>,
    /// Commands to run after the bridge and ports exist, in order
    /// (`ovs-vsctl`, `ip`, `ovs-appctl`).
    pub commands: Vec<String>,
    /// Free-form notes: caveats and what differs from vswitchd.
    pub notes: Vec<String>,
}

/// A userspace (native) tunnel port on `br0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsTunnel {
    /// Interface name (`tun0`).
    pub name: String,
    /// OVS interface type: `vxlan` or `geneve`.
    pub kind: String,
    /// Requested OpenFlow port number (3).
    pub ofport: u16,
    /// `options:` of the interface, e.g. `remote_ip=flow`.
    pub options: Vec<(String, String)>,
}

/// Errors in scenario parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The flow count is zero or more than the addressing scheme can name.
    #[error("flow count {flows} is out of range 1..={max}")]
    FlowsOutOfRange {
        /// Requested flow count.
        flows: u32,
        /// Largest supported flow count.
        max: u32,
    },
    /// The route count is zero or more than the addressing scheme can name.
    #[error("prefix count {prefixes} is out of range 1..={max}")]
    PrefixesOutOfRange {
        /// Requested prefix count.
        prefixes: u32,
        /// Largest supported prefix count.
        max: u32,
    },
    /// A fixed frame size outside the untagged Ethernet range.
    #[error("frame size {size} is out of range {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}")]
    SizeOutOfRange {
        /// Requested nominal size.
        size: u16,
    },
    /// A frame size that is neither a number nor `imix`.
    #[error(
        "invalid frame size {0:?} (expected a byte count such as 64, 512 or 1518, or \"imix\")"
    )]
    InvalidSize(String),
}

/// Size of the frames a scenario emits; see the module docs for the
/// convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSize {
    /// Every frame has this nominal size (FCS included).
    Fixed(u16),
    /// Frames cycle through [`IMIX_PATTERN`].
    Imix,
}

impl FrameSize {
    /// Checks that a fixed size lies within
    /// [`MIN_FRAME_SIZE`]`..=`[`MAX_FRAME_SIZE`].
    ///
    /// # Errors
    /// [`ScenarioError::SizeOutOfRange`].
    pub fn validate(self) -> Result<Self, ScenarioError> {
        match self {
            Self::Fixed(size) if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&size) => {
                Err(ScenarioError::SizeOutOfRange { size })
            }
            _ => Ok(self),
        }
    }

    /// Nominal size (FCS included) of frame `index`.
    pub fn nominal(self, index: u64) -> u16 {
        match self {
            Self::Fixed(size) => size,
            Self::Imix => IMIX_PATTERN[(index % IMIX_PATTERN.len() as u64) as usize],
        }
    }

    /// Bytes generated for frame `index`: the nominal size minus the FCS.
    pub fn captured(self, index: u64) -> usize {
        usize::from(self.nominal(index).saturating_sub(FCS_LEN))
    }
}

impl FromStr for FrameSize {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(Self::Imix);
        }
        let size = s
            .parse::<u16>()
            .map_err(|_| ScenarioError::InvalidSize(s.to_owned()))?;
        Self::Fixed(size).validate()
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(size) => write!(f, "{size}"),
            Self::Imix => f.write_str("imix"),
        }
    }
}

/// Timestamp given to frame `index` in generated pcap files: one frame per
/// microsecond from the epoch, so the file is deterministic and replay tools
/// pacing by timestamp see a nominal 1 Mpps.
pub fn frame_timestamp(index: u64) -> Duration {
    Duration::from_micros(index)
}

/// Writes frames `0..packets` of `scenario` as an Ethernet pcap file and
/// returns the (flushed) writer.
///
/// # Errors
/// Any [`PcapError`] from writing.
pub fn write_pcap<W: Write>(scenario: &dyn Scenario, packets: u64, out: W) -> Result<W, PcapError> {
    let mut writer = PcapWriter::new(out)?;
    let mut frame = Vec::with_capacity(usize::from(MAX_FRAME_SIZE));
    for index in 0..packets {
        scenario.emit_frame(index, &mut frame);
        writer.write_frame(frame_timestamp(index), &frame)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!("64".parse(), Ok(FrameSize::Fixed(64)));
        assert_eq!("1518".parse(), Ok(FrameSize::Fixed(1518)));
        assert_eq!("IMIX".parse(), Ok(FrameSize::Imix));
        assert_eq!(
            "63".parse::<FrameSize>(),
            Err(ScenarioError::SizeOutOfRange { size: 63 })
        );
        assert_eq!(
            "1519".parse::<FrameSize>(),
            Err(ScenarioError::SizeOutOfRange { size: 1519 })
        );
        assert_eq!(
            "big".parse::<FrameSize>(),
            Err(ScenarioError::InvalidSize("big".into()))
        );
        assert_eq!(
            "-1".parse::<FrameSize>(),
            Err(ScenarioError::InvalidSize("-1".into()))
        );
    }

    #[test]
    fn imix_is_seven_four_one() {
        let count = |size| IMIX_PATTERN.iter().filter(|&&s| s == size).count();
        assert_eq!((count(64), count(576), count(1518)), (7, 4, 1));
        assert_eq!(FrameSize::Imix.nominal(12 + 3), 1518);
        assert_eq!(FrameSize::Imix.captured(3), 1514);
    }

    #[test]
    fn captured_size_drops_fcs() {
        assert_eq!(FrameSize::Fixed(64).captured(0), 60);
        assert_eq!(FrameSize::Fixed(512).captured(7), 508);
        assert_eq!(FrameSize::Fixed(1518).captured(u64::MAX), 1514);
    }
}
