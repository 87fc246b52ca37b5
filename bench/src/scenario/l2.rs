//! Scenario `l2`: plain L2 forwarding against a static MAC table.
//!
//! Measures the cost of a destination-MAC lookup as the table grows (1, 1k,
//! 100k entries), with nothing else in the pipeline. Every flow has its own
//! destination MAC so that the number of table entries touched equals the
//! flow count, and its own source IP and port so that RSS spreads the flows
//! across queues as it would for real traffic.
//!
//! # Addressing scheme
//!
//! For flow `f` (0-based, `f < flows`):
//!
//! | field | value | why |
//! |---|---|---|
//! | dst MAC | `02:00:00` then `f` as 24 bits big-endian | locally administered unicast, readable in dumps; flow 258 is `02:00:00:00:01:02` |
//! | src MAC | `02:01:00:00:00:01` for all flows | one generator port; outside the dst range so it never aliases a table entry |
//! | src IP | `10.0.0.0 + f + 1` (flow 0 is `10.0.0.1`) | unique per flow; never the network or broadcast address of 10/8 |
//! | dst IP | `198.18.0.1` | RFC 2544 benchmarking range |
//! | src port | `1024 + f mod 64512` | unique per flow up to 64512 flows, always unprivileged |
//! | dst port | `9` (discard) | never a tunnel port the switch might decapsulate |
//!
//! Flows are visited round robin: frame `i` belongs to flow `i mod flows`,
//! so any `flows` consecutive frames cover every flow once. With `imix` the
//! size of frame `i` is `IMIX_PATTERN[i mod 12]` independently of the flow.
//!
//! The UDP payload starts with the flow number (u32, big-endian) and the
//! frame index (u64, big-endian), then zeros; a receiver can use them to
//! count loss and reordering per flow.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use super::{FrameSize, OvsSetup, Scenario, ScenarioError};
use crate::wire::{MacAddr, UdpFrameRepr};

/// Source MAC of every frame: the traffic generator's port.
pub const L2_SRC_MAC: MacAddr = MacAddr([0x02, 0x01, 0x00, 0x00, 0x00, 0x01]);
/// Destination IP of every frame.
pub const L2_DST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Destination UDP port of every frame.
pub const L2_DST_PORT: u16 = 9;
/// Lowest source UDP port.
pub const L2_SRC_PORT_BASE: u16 = 1024;

const SRC_IP_BASE: u32 = u32::from_be_bytes([10, 0, 0, 0]);
const TTL: u8 = 64;
const PAYLOAD_PREFIX_LEN: usize = 12;

/// The `l2` scenario; see the module docs for the traffic it generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Scenario {
    flows: u32,
    size: FrameSize,
}

impl L2Scenario {
    /// Largest flow count: limited by the 24 bits of the destination MAC
    /// suffix and by keeping source IPs inside 10.0.0.1..=10.255.255.254.
    pub const MAX_FLOWS: u32 = (1 << 24) - 2;

    /// A scenario with `flows` flows of `size` frames.
    ///
    /// # Errors
    /// [`ScenarioError::FlowsOutOfRange`] unless `1 <= flows <= MAX_FLOWS`;
    /// [`ScenarioError::SizeOutOfRange`] for a fixed size outside 64..=1518.
    pub fn new(flows: u32, size: FrameSize) -> Result<Self, ScenarioError> {
        if !(1..=Self::MAX_FLOWS).contains(&flows) {
            return Err(ScenarioError::FlowsOutOfRange {
                flows,
                max: Self::MAX_FLOWS,
            });
        }
        Ok(Self {
            flows,
            size: size.validate()?,
        })
    }

    /// Frame size setting.
    pub fn size(&self) -> FrameSize {
        self.size
    }

    /// Destination MAC of flow `flow`: `02:00:00` followed by the low 24
    /// bits of `flow`.
    pub fn destination_mac(flow: u32) -> MacAddr {
        let [_, a, b, c] = flow.to_be_bytes();
        MacAddr([0x02, 0x00, 0x00, a, b, c])
    }

    /// Destination MACs of all flows, in flow order: the static L2 table a
    /// switch needs to forward this traffic. All distinct.
    pub fn destination_macs(&self) -> impl ExactSizeIterator<Item = MacAddr> {
        (0..self.flows).map(Self::destination_mac)
    }

    /// Writes [`Self::destination_macs`] one per line, lowercase
    /// colon-separated hex, e.g. `02:00:00:00:00:00`.
    ///
    /// # Errors
    /// Any error from `out`.
    pub fn write_destination_macs<W: Write>(&self, mut out: W) -> io::Result<()> {
        for mac in self.destination_macs() {
            writeln!(out, "{mac}")?;
        }
        out.flush()
    }

    /// Header fields of flow `flow`, or `None` if `flow >= flow_count()`.
    pub fn flow(&self, flow: u32) -> Option<UdpFrameRepr> {
        (flow < self.flows).then(|| UdpFrameRepr {
            src_mac: L2_SRC_MAC,
            dst_mac: Self::destination_mac(flow),
            src_ip: Ipv4Addr::from(SRC_IP_BASE + flow + 1),
            dst_ip: L2_DST_IP,
            // The modulus keeps the sum below 65536, so the cast is lossless.
            src_port: L2_SRC_PORT_BASE + (flow % u32::from(u16::MAX - L2_SRC_PORT_BASE + 1)) as u16,
            dst_port: L2_DST_PORT,
            ttl: TTL,
        })
    }

    /// Flow that frame `index` belongs to.
    pub fn flow_of_frame(&self, index: u64) -> u32 {
        // The remainder is below `self.flows`, a u32.
        (index % u64::from(self.flows)) as u32
    }
}

impl Scenario for L2Scenario {
    fn name(&self) -> &'static str {
        "l2"
    }

    fn size(&self) -> FrameSize {
        self.size
    }

    fn description(&self) -> String {
        format!(
            "L2 forwarding replay -> sink by a static MAC table of {} entries, one \
             destination MAC per flow; nothing else in the pipeline.",
            self.flows
        )
    }

    fn write_vswitchd_sections(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "# Static MAC table: every flow's destination MAC is behind sink."
        )?;
        for mac in self.destination_macs() {
            writeln!(out, "[[l2]]\nmac = \"{mac}\"\nport = \"sink\"")?;
        }
        Ok(())
    }

    fn write_ovs_flows(&self, out: &mut dyn Write) -> io::Result<()> {
        // One exact-match rule per MAC: the OVS equivalent of a static MAC
        // table without NORMAL's learning and flooding.
        for mac in self.destination_macs() {
            writeln!(
                out,
                "table=0,priority=100,in_port=1,dl_dst={mac},actions=output:2"
            )?;
        }
        writeln!(out, "table=0,priority=0,actions=drop")
    }

    fn ovs_setup(&self) -> OvsSetup {
        OvsSetup {
            notes: vec!["No setup beyond ports 1 and 2; no NORMAL action.".to_owned()],
            ..OvsSetup::default()
        }
    }

    fn flow_count(&self) -> u32 {
        self.flows
    }

    fn emit_frame(&self, index: u64, buf: &mut Vec<u8>) {
        let flow = self.flow_of_frame(index);
        let mut prefix = [0u8; PAYLOAD_PREFIX_LEN];
        prefix[0..4].copy_from_slice(&flow.to_be_bytes());
        prefix[4..12].copy_from_slice(&index.to_be_bytes());
        let repr = self
            .flow(flow)
            .expect("flow_of_frame is always below the flow count");
        // `new` validated the size: 60..=1514 bytes always holds the 42 header
        // bytes plus the prefix and is far below the IPv4 limit.
        repr.emit(buf, self.size.captured(index), &prefix)
            .expect("validated frame sizes always fit the headers");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::pcap::read_ethernet_frames;
    use crate::scenario::write_pcap;

    /// IPv4 header checksum check written out long-hand, independent of
    /// `wire::internet_checksum`: the ones'-complement sum of a valid header
    /// (checksum included) is 0xffff.
    fn ipv4_header_checksum_ok(header: &[u8]) -> bool {
        let mut sum: u32 = header
            .chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
            .sum();
        while sum > 0xffff {
            sum = (sum >> 16) + (sum & 0xffff);
        }
        sum == 0xffff
    }

    /// Same for UDP over the pseudo header; zero means "not computed".
    fn udp_checksum_ok(frame: &[u8]) -> bool {
        let udp = &frame[34..];
        if udp[6..8] == [0, 0] {
            return true;
        }
        let mut sum: u32 = frame[26..34]
            .chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
            .sum();
        sum += 17 + udp.len() as u32;
        sum += udp
            .chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
            .sum::<u32>();
        while sum > 0xffff {
            sum = (sum >> 16) + (sum & 0xffff);
        }
        sum == 0xffff
    }

    /// Generates through the pcap writer and reads back, as a user would.
    fn frames(flows: u32, size: FrameSize, packets: u64) -> Vec<Vec<u8>> {
        let scenario = L2Scenario::new(flows, size).unwrap();
        let bytes = write_pcap(&scenario, packets, Vec::new()).unwrap();
        read_ethernet_frames(bytes.as_slice()).unwrap()
    }

    type FlowKey = ([u8; 6], [u8; 4], u16);

    fn flow_key(frame: &[u8]) -> FlowKey {
        let mac = frame[0..6].try_into().unwrap();
        let ip = frame[26..30].try_into().unwrap();
        (mac, ip, u16::from_be_bytes([frame[34], frame[35]]))
    }

    #[test]
    fn fixed_sizes_count_and_checksums() {
        for (size, captured) in [(64, 60), (512, 508), (1518, 1514)] {
            let frames = frames(1000, FrameSize::Fixed(size), 2500);
            assert_eq!(frames.len(), 2500);
            for frame in &frames {
                assert_eq!(frame.len(), captured);
                assert_eq!(frame[12..14], [0x08, 0x00], "EtherType IPv4");
                assert_eq!(
                    u16::from_be_bytes([frame[16], frame[17]]) as usize,
                    captured - 14,
                    "IP total length"
                );
                assert_eq!(
                    u16::from_be_bytes([frame[38], frame[39]]) as usize,
                    captured - 34,
                    "UDP length"
                );
                assert!(ipv4_header_checksum_ok(&frame[14..34]));
                assert!(udp_checksum_ok(frame));
            }
            let distinct: HashSet<FlowKey> = frames.iter().map(|f| flow_key(f)).collect();
            assert_eq!(distinct.len(), 1000);
        }
    }

    #[test]
    fn imix_sizes_follow_seven_four_one() {
        let frames = frames(1, FrameSize::Imix, 1200);
        let count = |len| frames.iter().filter(|f| f.len() == len).count();
        assert_eq!((count(60), count(572), count(1514)), (700, 400, 100));
        assert!(frames
            .iter()
            .all(|f| ipv4_header_checksum_ok(&f[14..34]) && udp_checksum_ok(f)));
    }

    #[test]
    fn single_flow_is_one_flow() {
        let frames = frames(1, FrameSize::Fixed(64), 100);
        let distinct: HashSet<FlowKey> = frames.iter().map(|f| flow_key(f)).collect();
        assert_eq!(distinct.len(), 1);
    }

    #[test]
    fn hundred_thousand_flows_are_distinct_in_every_field() {
        let scenario = L2Scenario::new(100_000, FrameSize::Fixed(64)).unwrap();
        let mut frame = Vec::new();
        let (mut macs, mut ips, mut keys) = (HashSet::new(), HashSet::new(), HashSet::new());
        for index in 0..100_000 {
            scenario.emit_frame(index, &mut frame);
            macs.insert(<[u8; 6]>::try_from(&frame[0..6]).unwrap());
            ips.insert(<[u8; 4]>::try_from(&frame[26..30]).unwrap());
            keys.insert(flow_key(&frame));
        }
        assert_eq!(
            (macs.len(), ips.len(), keys.len()),
            (100_000, 100_000, 100_000)
        );
        assert_eq!(scenario.destination_macs().len(), 100_000);
        let table: HashSet<[u8; 6]> = scenario.destination_macs().map(|m| m.0).collect();
        assert_eq!(
            table, macs,
            "the exported table covers exactly the generated MACs"
        );
    }

    #[test]
    fn addressing_scheme() {
        let scenario = L2Scenario::new(L2Scenario::MAX_FLOWS, FrameSize::Fixed(64)).unwrap();
        let first = scenario.flow(0).unwrap();
        assert_eq!(first.dst_mac.to_string(), "02:00:00:00:00:00");
        assert_eq!(first.src_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(first.src_port, 1024);
        let f258 = scenario.flow(258).unwrap();
        assert_eq!(f258.dst_mac.to_string(), "02:00:00:00:01:02");
        assert_eq!(f258.src_ip, Ipv4Addr::new(10, 0, 1, 3));
        assert_eq!(scenario.flow(64_511).unwrap().src_port, 65_535);
        assert_eq!(scenario.flow(64_512).unwrap().src_port, 1024);
        let last = scenario.flow(L2Scenario::MAX_FLOWS - 1).unwrap();
        assert_eq!(last.dst_mac.to_string(), "02:00:00:ff:ff:fd");
        assert_eq!(last.src_ip, Ipv4Addr::new(10, 255, 255, 254));
        assert!(scenario.flow(L2Scenario::MAX_FLOWS).is_none());
    }

    #[test]
    fn payload_carries_flow_and_index() {
        const INDEX: u64 = u64::MAX - 1;
        let scenario = L2Scenario::new(7, FrameSize::Fixed(64)).unwrap();
        let mut frame = Vec::new();
        scenario.emit_frame(INDEX, &mut frame);
        let payload = &frame[42..];
        assert_eq!(
            u32::from_be_bytes(payload[0..4].try_into().unwrap()),
            (INDEX % 7) as u32
        );
        assert_eq!(
            u64::from_be_bytes(payload[4..12].try_into().unwrap()),
            INDEX
        );
        assert!(payload[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn output_is_deterministic() {
        let a = write_pcap(
            &L2Scenario::new(1000, FrameSize::Imix).unwrap(),
            3000,
            Vec::new(),
        )
        .unwrap();
        let b = write_pcap(
            &L2Scenario::new(1000, FrameSize::Imix).unwrap(),
            3000,
            Vec::new(),
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn mac_list_format() {
        let mut out = Vec::new();
        L2Scenario::new(3, FrameSize::Fixed(64))
            .unwrap()
            .write_destination_macs(&mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "02:00:00:00:00:00\n02:00:00:00:00:01\n02:00:00:00:00:02\n"
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            L2Scenario::new(0, FrameSize::Fixed(64)),
            Err(ScenarioError::FlowsOutOfRange {
                flows: 0,
                max: L2Scenario::MAX_FLOWS
            })
        );
        assert!(L2Scenario::new(L2Scenario::MAX_FLOWS + 1, FrameSize::Fixed(64)).is_err());
        assert_eq!(
            L2Scenario::new(1, FrameSize::Fixed(40)),
            Err(ScenarioError::SizeOutOfRange { size: 40 })
        );
    }
}
