//! Why a packet was dropped.
//!
//! Drops are data, not log lines: every place in the dataplane that lets go of a
//! packet without sending it names one [`DropReason`], and the worker counts it in a
//! plain array indexed by the reason (see [`crate::stats`]). An enum rather than
//! strings keeps the fast path to one array increment.
//!
//! The reasons are listed once, in the `drop_reasons!` table below: each line
//! gives the variant, its counter index, the name operators see and the pipeline
//! [`Stage`] that owns it. The enum, [`DropReason::ALL`], [`DropReason::COUNT`],
//! [`DropReason::as_str`] and [`DropReason::stage`] are generated from it, and the
//! stats arrays, the stats file, the API's `drops` map and `vswitchctl` derive
//! from those, so a new reason is one line here (and its README entry, which a
//! test checks).

use std::fmt;

use crate::pipeline::Stage;

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal => $s:literal, $stage:ident; )*) => {
        /// The reason a packet was dropped. The discriminant indexes counter arrays.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $name = $idx, )*
        }

        impl DropReason {
            /// Every reason, in discriminant order (`ALL[r.index()] == r`).
            pub const ALL: [DropReason; Self::COUNT] = [$(DropReason::$name,)*];
            /// How many reasons there are: the length of every per-reason counter array.
            pub const COUNT: usize = [$($idx,)*].len();

            /// The snake_case name shown to operators (`vswitchctl`, metrics labels).
            pub const fn as_str(self) -> &'static str {
                match self { $(DropReason::$name => $s,)* }
            }

            /// The pipeline stage that drops for this reason.
            pub const fn stage(self) -> Stage {
                match self { $(DropReason::$name => Stage::$stage,)* }
            }
        }
    };
}

drop_reasons! {
    /// The frame is shorter than an Ethernet header (14 bytes).
    RuntFrame = 0 => "runt_frame", Classify;
    /// Received on a port the current pipeline snapshot does not know.
    NoPipelinePort = 1 => "no_pipeline_port", Classify;
    /// The destination is the port the packet came in on.
    Hairpin = 2 => "hairpin", L2;
    /// Nothing to send to, e.g. a flood in a group whose only member is the ingress port.
    NoOutput = 3 => "no_output", L2;
    /// This worker has no tx queue on the output port.
    NoTxQueue = 4 => "no_tx_queue", Output;
    /// The output port refused the packet at `tx_burst` (ring full).
    TxFull = 5 => "tx_full", Output;
    /// No buffer could be allocated for a copy of a flooded packet.
    FloodAllocFailed = 6 => "flood_alloc_failed", Output;
    /// The port received a frame larger than one buffer and it could not be made
    /// contiguous (a jumbo frame on a port whose buffers are too small).
    RxOversize = 7 => "rx_oversize", Classify;
    /// A header is truncated or inconsistent (the parser's own counters say which).
    Malformed = 8 => "malformed", Classify;
    /// A Geneve packet with a critical option this switch does not understand (RFC 8926 §3.5).
    GeneveUnknownCritical = 9 => "geneve_unknown_critical", Decap;
    /// The port or VNI belongs to no virtual network of the current snapshot.
    UnknownNetwork = 10 => "unknown_network", Classify;
    /// An ARP request for an address that is neither a gateway nor a known endpoint.
    ArpUnanswered = 11 => "arp_unanswered", Respond;
    /// A neighbour solicitation for an address that is neither a gateway nor a known endpoint.
    NdUnanswered = 12 => "nd_unanswered", Respond;
    /// Router/neighbour discovery messages other than solicitations, kept on the link.
    NdConsumed = 13 => "nd_consumed", Respond;
    /// Sent to the gateway MAC but not IPv4 or IPv6.
    NotRoutable = 14 => "not_routable", Route;
    /// Addressed to a gateway IP and not an echo request the switch answers.
    ToGateway = 15 => "to_gateway", Route;
    /// TTL or hop limit reached zero while routing; an ICMP time exceeded went back.
    TtlExpired = 16 => "ttl_expired", Route;
    /// No route to the destination in the tenant's VRF.
    NoRoute = 17 => "no_route", Route;
    /// Matched a blackhole route.
    Blackhole = 18 => "blackhole", Route;
    /// Unknown unicast destination in a network that does not flood.
    UnknownDestination = 19 => "unknown_destination", L2;
    /// Would not fit the underlay once encapsulated; an ICMP fragmentation-needed / packet-too-big went back where possible.
    MtuExceeded = 20 => "mtu_exceeded", Encap;
    /// The remote VTEP has no underlay next hop.
    VtepUnreachable = 21 => "vtep_unreachable", Encap;
    /// The underlay next hop's MAC is not resolved yet; a request was sent.
    NeighborUnresolved = 22 => "neighbor_unresolved", Encap;
    /// No headroom left in front of the packet for the outer headers.
    NoHeadroom = 23 => "no_headroom", Encap;
    /// Underlay ARP/ND handled by the switch itself (learned, or answered for the VTEP address).
    UnderlayConsumed = 24 => "underlay_consumed", Respond;
    /// A frame on the uplink that is not a tunnel packet to this VTEP.
    UnderlayNotForUs = 25 => "underlay_not_for_us", Decap;
    /// A tunnel packet whose VNI is no network of this switch.
    UnknownVni = 26 => "unknown_vni", Decap;
    /// A tunnel packet whose encapsulation is not its network's (VXLAN for a Geneve network, or a non-Ethernet payload).
    EncapMismatch = 27 => "encap_mismatch", Decap;
    /// Decapsulated traffic whose destination is behind another VTEP: never re-encapsulated.
    TunnelHairpin = 28 => "tunnel_hairpin", L2;
    /// A Geneve packet with the O (OAM) bit set: a control message, whose payload
    /// RFC 8926 §3.4 forbids forwarding as data.
    GeneveOam = 29 => "geneve_oam", Decap;
    /// A VXLAN header without the I flag: RFC 7348 §5 says the VNI is then not
    /// valid, so the packet belongs to no network.
    VxlanNoVniFlag = 30 => "vxlan_no_vni_flag", Decap;
    /// Longer than the output port's MTU allows (plus the Ethernet header and the
    /// frame's VLAN tags): the port would discard it and still report it sent.
    TxOversize = 31 => "tx_oversize", Output;
    /// A new connection found the conntrack table full and no unassured entry to drop.
    CtTableFull = 32 => "ct_table_full", Conntrack;
    /// A packet invalid for its connection's state, or one that cannot open a connection (a TCP segment other than a SYN, an echo reply or ICMP error about no connection).
    CtInvalid = 33 => "ct_invalid", Conntrack;
    /// A TCP segment outside the window conntrack tracks: dropped, never forwarded untranslated.
    CtOutOfWindow = 34 => "ct_out_of_window", Conntrack;
    /// Source NAT found no free port (or none owned by this worker) within its bounded tries.
    NatNoPort = 35 => "nat_no_port", Conntrack;
    /// A new connection to a service frontend whose table gave no backend (a set with nothing active: the control plane refuses one today, so this counts what slips past it).
    LbNoBackend = 36 => "lb_no_backend", Lb;
    /// A packet of a load-balanced connection whose backend was removed or set down: its connection is closed and the packet dropped (UDP's next packet picks another backend).
    LbBackendGone = 37 => "lb_backend_gone", Lb;
    /// The backend's side of a new connection (backend, target port, client, client port) is already another connection's: the new one is refused.
    LbNatClash = 38 => "lb_nat_clash", Lb;
    /// A new connection to a frontend whose protocol is not translated yet (SCTP: its CRC32c checksum is not incremental).
    LbUnsupported = 39 => "lb_unsupported", Lb;
    /// A packet for the worker owning its connection found the ring to that worker full (or no ring: a worker built without handoff): dropped, never queued behind a stalled owner.
    CtHandoffFull = 40 => "ct_handoff_full", Conntrack;
    /// A connection the policy of its destination endpoint does not allow (ingress), at its first packet or re-evaluated after a policy change: its conntrack entry is removed.
    PolicyDeniedIngress = 41 => "policy_denied_ingress", Policy;
    /// A connection the policy of its source endpoint does not allow (egress), likewise.
    PolicyDeniedEgress = 42 => "policy_denied_egress", Policy;
}

impl DropReason {
    /// The index of this reason in per-reason counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
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

    /// The pipeline README's table of stages lists each reason in the row of the
    /// stage the table above gives it.
    #[test]
    fn the_stage_readme_lists_every_reason_under_its_stage() {
        let readme = include_str!("pipeline/README.md");
        for r in DropReason::ALL {
            // A stage is a file, or a folder of its own.
            let file = format!("| `{}.rs` |", r.stage());
            let folder = format!("| `{}/` |", r.stage());
            let row = readme
                .lines()
                .find(|l| l.starts_with(&file) || l.starts_with(&folder))
                .unwrap_or_else(|| panic!("no row for stage {} in pipeline/README.md", r.stage()));
            assert!(
                row.contains(&format!("`{r}`")),
                "pipeline/README.md does not list `{r}` under {}",
                r.stage()
            );
        }
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
