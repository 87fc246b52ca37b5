//! Scenarios `vxlan-decap`, `geneve-decap`, `vxlan-encap` and `geneve-encap`:
//! one virtual network, tunnelled over the underlay.
//!
//! The inner frames are exactly the `l2` scenario's frames (see
//! [`L2Scenario`]): flow `f` has destination MAC `02:00:00` + `f`, source MAC
//! `02:01:00:00:00:01`, and its own source IP and port.
//!
//! # Frame size
//!
//! `--size` is the nominal size of the *inner* frame, the one a pod sends, as
//! OVS and vendor tunnel benchmarks quote it. A tunnelled frame is 50 bytes
//! longer (outer Ethernet, IPv4, UDP and an 8-byte VXLAN or option-less
//! Geneve header): a 64-byte inner frame is 114 bytes on the underlay, 110 in
//! the pcap. The underlay MTU is set to 1600 so that 1518-byte inner frames
//! fit (network MTU 1550).
//!
//! # Decap (`replay` is the uplink)
//!
//! Every frame comes from the remote VTEP `192.0.2.2` (MAC `02:fe:00:00:00:02`)
//! to the local VTEP `192.0.2.1` (MAC `02:fe:00:00:00:01`), VNI 100, outer UDP
//! source port `49152 | (f & 0x3fff)`. Each flow's inner destination MAC is an
//! `[[endpoint]]` on `sink`, so the switch decapsulates, looks the MAC up in
//! the network and sends the inner frame to `sink`.
//!
//! # Encap (`replay` is a pod port, `sink` the uplink)
//!
//! The pod `02:01:00:00:00:01` behind `replay` sends the `l2` frames; each
//! flow's destination MAC is a `[[remote_endpoint]]` behind one of
//! `min(flows, 16)` remote VTEPs `198.51.100.1..`, which are off-link and so
//! reached through the underlay gateway `192.0.2.254`. The switch needs that
//! gateway's MAC before it can encapsulate; nothing answers ARP on a null
//! sink, so the scenario depends on a static underlay neighbour (see
//! [`TunnelScenario::with_static_neighbor`]).

use std::io::{self, Write};
use std::net::Ipv4Addr;

use super::{FrameSize, L2Scenario, Overhead, OvsSetup, OvsTunnel, Scenario, ScenarioError};
use crate::scenario::l2::L2_SRC_MAC;
use crate::wire::{MacAddr, TunnelKind, TunnelRepr, TUNNEL_OVERHEAD};

/// The local VTEP address.
pub const LOCAL_VTEP_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The local VTEP's (uplink's) MAC.
pub const LOCAL_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);
/// The remote VTEP of the decap scenarios.
pub const REMOTE_VTEP_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The remote VTEP's MAC (outer source of decap traffic).
pub const REMOTE_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]);
/// The underlay gateway of the encap scenarios.
pub const UNDERLAY_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The underlay gateway's MAC (the static neighbour of the encap scenarios).
pub const UNDERLAY_GATEWAY_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0xfe]);
/// The underlay's on-link prefix.
pub const ON_LINK: &str = "192.0.2.0/24";
/// The virtual network's VNI.
pub const VNI: u32 = 100;
/// The virtual network's gateway MAC (outside every endpoint MAC range).
pub const NETWORK_GATEWAY_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);
/// Underlay IP MTU: room for 1518-byte inner frames.
pub const UNDERLAY_MTU: u16 = 1600;
/// Most remote VTEPs the encap scenarios spread their flows over.
pub const MAX_ENCAP_VTEPS: u32 = 16;
const OUTER_SRC_PORT_BASE: u16 = 49152;

/// Which way the tunnel is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelDirection {
    /// `replay` is the uplink: tunnel packets in, inner frames out.
    Decap,
    /// `replay` is a pod port: frames in, tunnel packets out of the uplink.
    Encap,
}

/// A tunnel scenario; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelScenario {
    kind: TunnelKind,
    direction: TunnelDirection,
    inner: L2Scenario,
    static_neighbor: bool,
}

impl TunnelScenario {
    /// A scenario of `flows` flows of `size` (inner) frames.
    ///
    /// # Errors
    /// As [`L2Scenario::new`].
    pub fn new(
        kind: TunnelKind,
        direction: TunnelDirection,
        flows: u32,
        size: FrameSize,
    ) -> Result<Self, ScenarioError> {
        Ok(Self {
            kind,
            direction,
            inner: L2Scenario::new(flows, size)?,
            static_neighbor: true,
        })
    }

    /// Whether the underlay gateway is configured as a static neighbour
    /// (`[underlay] neighbors`, the default). Nothing answers ARP on the null sink,
    /// so without it the encap scenarios drop every packet as
    /// `neighbor_unresolved` (which is what `false` shows).
    pub fn with_static_neighbor(mut self, on: bool) -> Self {
        self.static_neighbor = on;
        self
    }

    /// Encapsulation.
    pub fn kind(&self) -> TunnelKind {
        self.kind
    }

    /// Direction.
    pub fn direction(&self) -> TunnelDirection {
        self.direction
    }

    /// Number of remote VTEPs (encap) or 1 (decap).
    pub fn vtep_count(&self) -> u32 {
        match self.direction {
            TunnelDirection::Decap => 1,
            TunnelDirection::Encap => self.inner.flow_count().min(MAX_ENCAP_VTEPS),
        }
    }

    /// Remote VTEP `v` of the encap scenarios: `198.51.100.(v + 1)`.
    pub fn encap_vtep(v: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, (v + 1) as u8)
    }

    /// The remote VTEP flow `flow` goes to (encap) or comes from (decap).
    pub fn vtep_of_flow(&self, flow: u32) -> Ipv4Addr {
        match self.direction {
            TunnelDirection::Decap => REMOTE_VTEP_IP,
            TunnelDirection::Encap => Self::encap_vtep(flow % self.vtep_count()),
        }
    }

    /// The outer UDP source port of flow `flow` in decap traffic.
    pub fn outer_src_port(flow: u32) -> u16 {
        OUTER_SRC_PORT_BASE | (flow & 0x3fff) as u16
    }

    fn write_underlay(&self, out: &mut dyn Write) -> io::Result<()> {
        let uplink = match self.direction {
            TunnelDirection::Decap => "replay",
            TunnelDirection::Encap => "sink",
        };
        writeln!(
            out,
            "[underlay]\nuplink = \"{uplink}\"\nlocal_vtep_ip = \"{LOCAL_VTEP_IP}\"\n\
             local_mac = \"{LOCAL_MAC}\"\nmtu = {UNDERLAY_MTU}\non_link = \"{ON_LINK}\""
        )?;
        if self.direction == TunnelDirection::Encap {
            writeln!(out, "gateway = \"{UNDERLAY_GATEWAY_IP}\"")?;
            if self.static_neighbor {
                // Nothing answers ARP on a null sink: the gateway's MAC is configured.
                writeln!(
                    out,
                    "neighbors = [{{ ip = \"{UNDERLAY_GATEWAY_IP}\", mac = \"{UNDERLAY_GATEWAY_MAC}\" }}]"
                )?;
            }
        }
        writeln!(
            out,
            "\n[[network]]\nname = \"bench\"\nvni = {VNI}\nencap = \"{}\"\n\
             gateway_mac = \"{NETWORK_GATEWAY_MAC}\"",
            self.kind.as_str()
        )
    }
}

impl Scenario for TunnelScenario {
    fn name(&self) -> &'static str {
        match (self.kind, self.direction) {
            (TunnelKind::Vxlan, TunnelDirection::Decap) => "vxlan-decap",
            (TunnelKind::Vxlan, TunnelDirection::Encap) => "vxlan-encap",
            (TunnelKind::Geneve, TunnelDirection::Decap) => "geneve-decap",
            (TunnelKind::Geneve, TunnelDirection::Encap) => "geneve-encap",
        }
    }

    fn flow_count(&self) -> u32 {
        self.inner.flow_count()
    }

    fn emit_frame(&self, index: u64, buf: &mut Vec<u8>) {
        match self.direction {
            TunnelDirection::Encap => self.inner.emit_frame(index, buf),
            TunnelDirection::Decap => {
                let mut inner = Vec::with_capacity(buf.capacity());
                self.inner.emit_frame(index, &mut inner);
                let flow = self.inner.flow_of_frame(index);
                TunnelRepr {
                    kind: self.kind,
                    src_mac: REMOTE_MAC,
                    dst_mac: LOCAL_MAC,
                    src_ip: REMOTE_VTEP_IP,
                    dst_ip: LOCAL_VTEP_IP,
                    src_port: Self::outer_src_port(flow),
                    vni: VNI,
                }
                .emit(buf, &inner)
                .expect("inner frames of at most 1514 bytes always fit");
            }
        }
    }

    fn size(&self) -> FrameSize {
        self.inner.size()
    }

    fn description(&self) -> String {
        let tunnel = self.kind.as_str();
        let flows = self.flow_count();
        match self.direction {
            TunnelDirection::Decap => format!(
                "{tunnel} decapsulation: replay is the underlay uplink and carries {tunnel} \
                 packets (VNI {VNI}) from remote VTEP {REMOTE_VTEP_IP} to the local VTEP \
                 {LOCAL_VTEP_IP}; the {flows} inner destination MACs are endpoints on sink. \
                 The frame size is the inner frame's; on the wire it is 50 bytes longer."
            ),
            TunnelDirection::Encap => format!(
                "{tunnel} encapsulation: replay is a pod port; its frames go to {flows} remote \
                 endpoints behind {} remote VTEPs (198.51.100.x, via underlay gateway \
                 {UNDERLAY_GATEWAY_IP}) and leave the uplink sink encapsulated (VNI {VNI}). \
                 The frame size is the inner frame's; on the wire it is 50 bytes longer. \
                 The underlay gateway is a static neighbour (nothing answers ARP on the sink).",
                self.vtep_count(),
            ),
        }
    }

    fn write_vswitchd_sections(&self, out: &mut dyn Write) -> io::Result<()> {
        self.write_underlay(out)?;
        match self.direction {
            TunnelDirection::Decap => {
                writeln!(out, "\n# Every inner destination MAC is a pod behind sink.")?;
                for mac in self.inner.destination_macs() {
                    writeln!(
                        out,
                        "[[endpoint]]\nnetwork = \"bench\"\nmac = \"{mac}\"\nport = \"sink\""
                    )?;
                }
            }
            TunnelDirection::Encap => {
                writeln!(
                    out,
                    "\n# The sending pod.\n[[endpoint]]\nnetwork = \"bench\"\nmac = \"{L2_SRC_MAC}\"\n\
                     port = \"replay\"\n\n# Every destination MAC is a pod on another node."
                )?;
                for (flow, mac) in self.inner.destination_macs().enumerate() {
                    writeln!(
                        out,
                        "[[remote_endpoint]]\nnetwork = \"bench\"\nmac = \"{mac}\"\nvtep = \"{}\"",
                        self.vtep_of_flow(flow as u32)
                    )?;
                }
            }
        }
        Ok(())
    }

    fn write_ovs_flows(&self, out: &mut dyn Write) -> io::Result<()> {
        match self.direction {
            TunnelDirection::Decap => {
                // Output to LOCAL (which holds the local VTEP address and MAC)
                // is what makes native tunnelling emit tnl_pop; the popped
                // packet comes back in on the tunnel port 3.
                writeln!(
                    out,
                    "table=0,priority=200,in_port=1,udp,nw_dst={LOCAL_VTEP_IP},tp_dst={},actions=LOCAL",
                    self.kind.udp_port()
                )?;
                for mac in self.inner.destination_macs() {
                    writeln!(
                        out,
                        "table=0,priority=100,in_port=3,tun_id={VNI},dl_dst={mac},actions=output:2"
                    )?;
                }
            }
            TunnelDirection::Encap => {
                for (flow, mac) in self.inner.destination_macs().enumerate() {
                    writeln!(
                        out,
                        "table=0,priority=100,in_port=1,dl_dst={mac},actions=set_field:{VNI}->tun_id,\
                         set_field:{}->tun_dst,output:3",
                        self.vtep_of_flow(flow as u32)
                    )?;
                }
                // tnl_push sends the outer packet through br0 as if it came in
                // on LOCAL (the port owning the route to the VTEPs).
                writeln!(out, "table=0,priority=100,in_port=LOCAL,actions=output:2")?;
            }
        }
        writeln!(out, "table=0,priority=0,actions=drop")
    }

    fn overhead(&self) -> Overhead {
        match self.direction {
            TunnelDirection::Decap => Overhead {
                replay: TUNNEL_OVERHEAD,
                sink: 0,
            },
            TunnelDirection::Encap => Overhead {
                replay: 0,
                sink: TUNNEL_OVERHEAD,
            },
        }
    }

    fn ovs_setup(&self) -> OvsSetup {
        let kind = self.kind.as_str();
        let mut commands = vec![
            format!("ovs-vsctl set bridge br0 other_config:hwaddr={LOCAL_MAC}"),
            format!(
                "ovs-vsctl add-port br0 tun0 -- set interface tun0 type={kind} ofport_request=3 \
                 options:remote_ip=flow options:key=flow options:local_ip={LOCAL_VTEP_IP}"
            ),
            format!("ip addr add {LOCAL_VTEP_IP}/24 dev br0"),
            "ip link set br0 up".to_owned(),
            format!("ovs-appctl ovs/route/add {ON_LINK} br0"),
        ];
        let mut notes = vec![
            "OVS userspace (native) tunnelling: br0's LOCAL port holds the local VTEP address \
             and MAC; a packet output to LOCAL that matches a tunnel port is popped (tnl_pop) \
             and re-enters br0 on port 3 (tun0). Check with `ovs-appctl dpif/dump-flows br0` \
             (tnl_pop / tnl_push actions) and `ovs-appctl ovs/route/show`."
                .to_owned(),
            "--size is the inner frame size; replayed/sent tunnel frames are 50 bytes longer. \
             Give the physical ports an MTU of at least 1600 (vswitchd's underlay mtu) for \
             1518-byte inner frames."
                .to_owned(),
        ];
        if self.direction == TunnelDirection::Encap {
            commands.push(format!(
                "ovs-appctl ovs/route/add 198.51.100.0/24 br0 {UNDERLAY_GATEWAY_IP}"
            ));
            commands.push(format!(
                "ovs-appctl tnl/arp/set br0 {UNDERLAY_GATEWAY_IP} {UNDERLAY_GATEWAY_MAC}"
            ));
            notes.push(
                "The underlay gateway's MAC is a static tnl/arp entry: nothing answers ARP on \
                 the null sink. Pushed packets re-enter br0 from LOCAL and the \
                 in_port=LOCAL rule sends them to port 2. With a kernel-visible br0, the \
                 kernel may also answer/emit ARP on br0; that does not touch the DPDK ports."
                    .to_owned(),
            );
        }
        OvsSetup {
            tunnel: Some(OvsTunnel {
                name: "tun0".to_owned(),
                kind: kind.to_owned(),
                ofport: 3,
                options: vec![
                    ("remote_ip".to_owned(), "flow".to_owned()),
                    ("key".to_owned(), "flow".to_owned()),
                    ("local_ip".to_owned(), LOCAL_VTEP_IP.to_string()),
                ],
            }),
            local_ip: Some(format!("{LOCAL_VTEP_IP}/24")),
            bridge_mac: Some(LOCAL_MAC.to_string()),
            commands,
            notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decap_frame_wraps_the_l2_frame() {
        let s = TunnelScenario::new(
            TunnelKind::Vxlan,
            TunnelDirection::Decap,
            3,
            FrameSize::Fixed(64),
        )
        .unwrap();
        let l2 = L2Scenario::new(3, FrameSize::Fixed(64)).unwrap();
        let (mut outer, mut inner) = (Vec::new(), Vec::new());
        s.emit_frame(4, &mut outer);
        l2.emit_frame(4, &mut inner);
        assert_eq!(outer.len(), 110);
        assert_eq!(&outer[50..], &inner[..]);
        assert_eq!(&outer[0..6], &LOCAL_MAC.0);
        assert_eq!(u16::from_be_bytes([outer[34], outer[35]]), 49153);
    }

    #[test]
    fn encap_spreads_flows_over_vteps() {
        let s = TunnelScenario::new(
            TunnelKind::Geneve,
            TunnelDirection::Encap,
            1000,
            FrameSize::Fixed(64),
        )
        .unwrap();
        assert_eq!(s.vtep_count(), 16);
        assert_eq!(s.vtep_of_flow(17), Ipv4Addr::new(198, 51, 100, 2));
        let mut text = Vec::new();
        s.write_vswitchd_sections(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches("[[remote_endpoint]]").count(), 1000);
        assert!(text.contains("neighbors = [{ ip = "));
        let mut none = Vec::new();
        s.with_static_neighbor(false)
            .write_vswitchd_sections(&mut none)
            .unwrap();
        assert!(!String::from_utf8(none).unwrap().contains("neighbors"));
    }
}
