//! Scenario `l3`: routing between two virtual networks of one tenant, with a
//! longest-prefix match over N static routes.
//!
//! Network `a` (VNI 1, `10.1.0.0/16`, gateway MAC `02:aa:00:00:00:01`) has the
//! sending pod `02:01:00:00:00:01` / `10.1.0.2` behind `replay`; network `b`
//! (VNI 2, `10.2.0.0/16`, gateway MAC `02:aa:00:00:00:02`) has
//! `min(prefixes, 16)` next-hop pods behind `sink` (MAC `02:00:00:00:00:k`,
//! IP `10.2.0.(10 + k)`, `k` from 1). No underlay is involved.
//!
//! Route `i` (of `prefixes`) is `16.0.0.0/24 + i` (i.e. `16.0.0.0 + 256 i`, a
//! /24), next hop pod `i mod K`. Flow `f` is sent to the gateway MAC of `a`,
//! destination `16.0.0.0 + 256 (f mod prefixes) + 1 + (f / prefixes mod 254)`,
//! source port `1024 + f mod 64512`; so any `prefixes` consecutive flows hit
//! every route once. The switch routes each frame (LPM in the tenant's VRF,
//! MAC rewrite, TTL decrement) to the next hop's port, `sink`.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use super::{FrameSize, L2Scenario, OvsSetup, Scenario, ScenarioError};
use crate::scenario::l2::L2_SRC_MAC;
use crate::wire::{MacAddr, UdpFrameRepr};

/// The sending pod's address in network `a`.
pub const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
/// Gateway MAC of network `a`, the destination of every frame.
pub const GATEWAY_MAC_A: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);
/// Gateway MAC of network `b`, the source of every routed frame.
pub const GATEWAY_MAC_B: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x02]);
/// Most next-hop pods.
pub const MAX_NEXT_HOPS: u32 = 16;
const ROUTE_BASE: u32 = u32::from_be_bytes([16, 0, 0, 0]);
const PAYLOAD_PREFIX_LEN: usize = 12;

/// The `l3` scenario; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Scenario {
    flows: u32,
    prefixes: u32,
    size: FrameSize,
}

impl L3Scenario {
    /// Most prefixes: /24s from 16.0.0.0 up to 31.255.255.0.
    pub const MAX_PREFIXES: u32 = 1 << 20;

    /// A scenario of `flows` flows over `prefixes` routes.
    ///
    /// # Errors
    /// [`ScenarioError::FlowsOutOfRange`] unless
    /// `1 <= flows <= L2Scenario::MAX_FLOWS`;
    /// [`ScenarioError::PrefixesOutOfRange`] unless
    /// `1 <= prefixes <= MAX_PREFIXES`; [`ScenarioError::SizeOutOfRange`].
    pub fn new(flows: u32, prefixes: u32, size: FrameSize) -> Result<Self, ScenarioError> {
        if !(1..=L2Scenario::MAX_FLOWS).contains(&flows) {
            return Err(ScenarioError::FlowsOutOfRange {
                flows,
                max: L2Scenario::MAX_FLOWS,
            });
        }
        if !(1..=Self::MAX_PREFIXES).contains(&prefixes) {
            return Err(ScenarioError::PrefixesOutOfRange {
                prefixes,
                max: Self::MAX_PREFIXES,
            });
        }
        Ok(Self {
            flows,
            prefixes,
            size: size.validate()?,
        })
    }

    /// Number of routes.
    pub fn prefixes(&self) -> u32 {
        self.prefixes
    }

    /// Number of next-hop pods.
    pub fn next_hops(&self) -> u32 {
        self.prefixes.min(MAX_NEXT_HOPS)
    }

    /// Network address of route `i` (a /24).
    pub fn route_prefix(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(ROUTE_BASE + (i << 8))
    }

    /// MAC and IP of next-hop pod `k` (0-based).
    pub fn next_hop(k: u32) -> (MacAddr, Ipv4Addr) {
        (
            L2Scenario::destination_mac(k + 1),
            Ipv4Addr::new(10, 2, 0, (11 + k) as u8),
        )
    }

    /// Destination IP of flow `flow`.
    pub fn destination_ip(&self, flow: u32) -> Ipv4Addr {
        let route = flow % self.prefixes;
        let host = 1 + (flow / self.prefixes) % 254;
        Ipv4Addr::from(ROUTE_BASE + (route << 8) + host)
    }

    /// Next-hop pod (index) of route `route`.
    pub fn next_hop_of_route(&self, route: u32) -> u32 {
        route % self.next_hops()
    }
}

impl Scenario for L3Scenario {
    fn name(&self) -> &'static str {
        "l3"
    }

    fn flow_count(&self) -> u32 {
        self.flows
    }

    fn emit_frame(&self, index: u64, buf: &mut Vec<u8>) {
        let flow = (index % u64::from(self.flows)) as u32;
        let mut prefix = [0u8; PAYLOAD_PREFIX_LEN];
        prefix[0..4].copy_from_slice(&flow.to_be_bytes());
        prefix[4..12].copy_from_slice(&index.to_be_bytes());
        UdpFrameRepr {
            src_mac: L2_SRC_MAC,
            dst_mac: GATEWAY_MAC_A,
            src_ip: POD_IP,
            dst_ip: self.destination_ip(flow),
            src_port: 1024 + (flow % 64_512) as u16,
            dst_port: 9,
            ttl: 64,
        }
        .emit(buf, self.size.captured(index), &prefix)
        .expect("validated frame sizes always fit the headers");
    }

    fn size(&self) -> FrameSize {
        self.size
    }

    fn description(&self) -> String {
        format!(
            "L3 routing between networks a (replay) and b (sink) of one tenant: {} flows \
             sent to a's gateway MAC, destinations spread over {} static /24 routes \
             (16.0.0.0/24 upwards, LPM) via {} next-hop pods on sink; MAC rewrite and TTL \
             decrement.",
            self.flows,
            self.prefixes,
            self.next_hops()
        )
    }

    fn write_vswitchd_sections(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "[[network]]\nname = \"a\"\nvni = 1\ntenant = \"bench\"\nsubnets = [\"10.1.0.0/16\"]\n\
             gateway_ips = [\"10.1.0.1\"]\ngateway_mac = \"{GATEWAY_MAC_A}\"\n\n\
             [[network]]\nname = \"b\"\nvni = 2\ntenant = \"bench\"\nsubnets = [\"10.2.0.0/16\"]\n\
             gateway_ips = [\"10.2.0.1\"]\ngateway_mac = \"{GATEWAY_MAC_B}\"\n\n\
             [[endpoint]]\nnetwork = \"a\"\nmac = \"{L2_SRC_MAC}\"\nips = [\"{POD_IP}\"]\n\
             port = \"replay\"\n"
        )?;
        for k in 0..self.next_hops() {
            let (mac, ip) = Self::next_hop(k);
            writeln!(
                out,
                "[[endpoint]]\nnetwork = \"b\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\nport = \"sink\""
            )?;
        }
        writeln!(out)?;
        for i in 0..self.prefixes {
            let (_, ip) = Self::next_hop(self.next_hop_of_route(i));
            writeln!(
                out,
                "[[route]]\ntenant = \"bench\"\nprefix = \"{}/24\"\n\
                 next_hop = {{ network = \"b\", ip = \"{ip}\" }}",
                Self::route_prefix(i)
            )?;
        }
        Ok(())
    }

    fn write_ovs_flows(&self, out: &mut dyn Write) -> io::Result<()> {
        // Priority 100 + prefix length gives OVS's classifier LPM semantics.
        for i in 0..self.prefixes {
            let (mac, _) = Self::next_hop(self.next_hop_of_route(i));
            writeln!(
                out,
                "table=0,priority=124,in_port=1,ip,dl_dst={GATEWAY_MAC_A},nw_dst={}/24,\
                 actions=mod_dl_src:{GATEWAY_MAC_B},mod_dl_dst:{mac},dec_ttl,output:2",
                Self::route_prefix(i)
            )?;
        }
        writeln!(out, "table=0,priority=0,actions=drop")
    }

    fn ovs_setup(&self) -> OvsSetup {
        OvsSetup {
            notes: vec![
                "No setup beyond ports 1 and 2. The rules do what vswitchd's router does for \
                 this traffic (match the gateway MAC, LPM on nw_dst via priority = 100 + \
                 prefix length, rewrite both MACs, dec_ttl); ARP for the gateway and ICMP \
                 errors are not modelled."
                    .to_owned(),
            ],
            ..OvsSetup::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing() {
        let s = L3Scenario::new(1000, 100, FrameSize::Fixed(64)).unwrap();
        assert_eq!(s.destination_ip(0), Ipv4Addr::new(16, 0, 0, 1));
        assert_eq!(s.destination_ip(101), Ipv4Addr::new(16, 0, 1, 2));
        assert_eq!(L3Scenario::route_prefix(300), Ipv4Addr::new(16, 1, 44, 0));
        assert_eq!(
            L3Scenario::next_hop(0),
            (MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 2, 0, 11))
        );
        let last = L3Scenario::new(1, L3Scenario::MAX_PREFIXES, FrameSize::Fixed(64)).unwrap();
        assert_eq!(
            L3Scenario::route_prefix(L3Scenario::MAX_PREFIXES - 1),
            Ipv4Addr::new(31, 255, 255, 0)
        );
        assert_eq!(last.next_hops(), 16);
        assert!(L3Scenario::new(1, 0, FrameSize::Fixed(64)).is_err());
        assert!(L3Scenario::new(1, L3Scenario::MAX_PREFIXES + 1, FrameSize::Fixed(64)).is_err());
    }
}
