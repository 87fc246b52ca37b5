//! Why a packet was dropped.
//!
//! Drops are data, not log lines: every place in the dataplane that lets go of a
//! packet without sending it names one [`DropReason`], and the worker counts it in a
//! plain array indexed by the reason (see [`crate::stats`]). An enum rather than
//! strings keeps the fast path to one array increment, and one table here keeps the
//! operator-visible names in one place, like VPP's per-node error tables.

use std::fmt;

/// The reason a packet was dropped. The discriminant indexes counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// The frame is shorter than an Ethernet header (14 bytes).
    RuntFrame = 0,
    /// Received on a port the current pipeline snapshot does not know.
    NoPipelinePort = 1,
    /// The destination is the port the packet came in on.
    Hairpin = 2,
    /// Nothing to send to, e.g. a flood in a group whose only member is the ingress port.
    NoOutput = 3,
    /// This worker has no tx queue on the output port.
    NoTxQueue = 4,
    /// The output port refused the packet at `tx_burst` (ring full).
    TxFull = 5,
    /// No buffer could be allocated for a copy of a flooded packet.
    FloodAllocFailed = 6,
    /// The port received a frame larger than one buffer and it could not be made
    /// contiguous (a jumbo frame on a port whose buffers are too small).
    RxOversize = 7,
    /// A header is truncated or inconsistent (the parser's own counters say which).
    Malformed = 8,
    /// A Geneve packet with a critical option this switch does not understand (RFC 8926 §3.5).
    GeneveUnknownCritical = 9,
    /// The port or VNI belongs to no virtual network of the current snapshot.
    UnknownNetwork = 10,
    /// An ARP request for an address that is neither a gateway nor a known endpoint.
    ArpUnanswered = 11,
    /// A neighbour solicitation for an address that is neither a gateway nor a known endpoint.
    NdUnanswered = 12,
    /// Router/neighbour discovery messages other than solicitations, kept on the link.
    NdConsumed = 13,
    /// Sent to the gateway MAC but not IPv4 or IPv6.
    NotRoutable = 14,
    /// Addressed to a gateway IP and not an echo request the switch answers.
    ToGateway = 15,
    /// TTL or hop limit reached zero while routing; an ICMP time exceeded went back.
    TtlExpired = 16,
    /// No route to the destination in the tenant's VRF.
    NoRoute = 17,
    /// Matched a blackhole route.
    Blackhole = 18,
    /// Unknown unicast destination in a network that does not flood.
    UnknownDestination = 19,
    /// Would not fit the underlay once encapsulated; an ICMP fragmentation-needed / packet-too-big went back where possible.
    MtuExceeded = 20,
    /// The remote VTEP has no underlay next hop.
    VtepUnreachable = 21,
    /// The underlay next hop's MAC is not resolved yet; a request was sent.
    NeighborUnresolved = 22,
    /// No headroom left in front of the packet for the outer headers.
    NoHeadroom = 23,
    /// Underlay ARP/ND handled by the switch itself (learned, or answered for the VTEP address).
    UnderlayConsumed = 24,
    /// A frame on the uplink that is not a tunnel packet to this VTEP.
    UnderlayNotForUs = 25,
    /// A tunnel packet whose VNI is no network of this switch.
    UnknownVni = 26,
    /// A tunnel packet whose encapsulation is not its network's (VXLAN for a Geneve network, or a non-Ethernet payload).
    EncapMismatch = 27,
    /// Decapsulated traffic whose destination is behind another VTEP: never re-encapsulated.
    TunnelHairpin = 28,
    /// A Geneve packet with the O (OAM) bit set: a control message, whose payload
    /// RFC 8926 §3.4 forbids forwarding as data.
    GeneveOam = 29,
    /// A VXLAN header without the I flag: RFC 7348 §5 says the VNI is then not
    /// valid, so the packet belongs to no network.
    VxlanNoVniFlag = 30,
    /// Longer than the output port's MTU allows (plus the Ethernet header and the
    /// frame's VLAN tags): the port would discard it and still report it sent.
    TxOversize = 31,
}

impl DropReason {
    /// How many reasons there are: the length of every per-reason counter array.
    pub const COUNT: usize = 32;

    /// Every reason, in discriminant order (`ALL[r.index()] == r`).
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::RuntFrame,
        DropReason::NoPipelinePort,
        DropReason::Hairpin,
        DropReason::NoOutput,
        DropReason::NoTxQueue,
        DropReason::TxFull,
        DropReason::FloodAllocFailed,
        DropReason::RxOversize,
        DropReason::Malformed,
        DropReason::GeneveUnknownCritical,
        DropReason::UnknownNetwork,
        DropReason::ArpUnanswered,
        DropReason::NdUnanswered,
        DropReason::NdConsumed,
        DropReason::NotRoutable,
        DropReason::ToGateway,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::Blackhole,
        DropReason::UnknownDestination,
        DropReason::MtuExceeded,
        DropReason::VtepUnreachable,
        DropReason::NeighborUnresolved,
        DropReason::NoHeadroom,
        DropReason::UnderlayConsumed,
        DropReason::UnderlayNotForUs,
        DropReason::UnknownVni,
        DropReason::EncapMismatch,
        DropReason::TunnelHairpin,
        DropReason::GeneveOam,
        DropReason::VxlanNoVniFlag,
        DropReason::TxOversize,
    ];

    /// The index of this reason in per-reason counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name shown to operators (`vswitchctl`, metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::RuntFrame => "runt_frame",
            DropReason::NoPipelinePort => "no_pipeline_port",
            DropReason::Hairpin => "hairpin",
            DropReason::NoOutput => "no_output",
            DropReason::NoTxQueue => "no_tx_queue",
            DropReason::TxFull => "tx_full",
            DropReason::FloodAllocFailed => "flood_alloc_failed",
            DropReason::RxOversize => "rx_oversize",
            DropReason::Malformed => "malformed",
            DropReason::GeneveUnknownCritical => "geneve_unknown_critical",
            DropReason::UnknownNetwork => "unknown_network",
            DropReason::ArpUnanswered => "arp_unanswered",
            DropReason::NdUnanswered => "nd_unanswered",
            DropReason::NdConsumed => "nd_consumed",
            DropReason::NotRoutable => "not_routable",
            DropReason::ToGateway => "to_gateway",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::Blackhole => "blackhole",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::VtepUnreachable => "vtep_unreachable",
            DropReason::NeighborUnresolved => "neighbor_unresolved",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::UnderlayConsumed => "underlay_consumed",
            DropReason::UnderlayNotForUs => "underlay_not_for_us",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::EncapMismatch => "encap_mismatch",
            DropReason::TunnelHairpin => "tunnel_hairpin",
            DropReason::GeneveOam => "geneve_oam",
            DropReason::VxlanNoVniFlag => "vxlan_no_vni_flag",
            DropReason::TxOversize => "tx_oversize",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        for n in &names {
            assert!(
                n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{n} is not snake_case"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::TxFull.to_string(), "tx_full");
    }

    /// Operators read the names in the README's list: a new reason goes there too.
    #[test]
    fn the_readme_lists_every_reason() {
        let readme = include_str!("../../README.md");
        let at = readme
            .find("Every drop is counted under a name")
            .expect("the README's list of drop reasons");
        let list = &readme[at..];
        let list = &list[..list.find("\n\n").unwrap_or(list.len())];
        for r in DropReason::ALL {
            assert!(
                list.contains(&format!("`{r}`")),
                "README does not list `{r}`"
            );
        }
    }
}
