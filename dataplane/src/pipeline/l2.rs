//! The L2 forwarding stage: a classic port's frame through the classic MAC table
//! (patch, static MACs, flooding in its group: [`crate::l2`]); a virtual
//! network's frame by its destination MAC — to the route stage for the gateway
//! MAC, flooded in the network when it is a group address (or unknown in a
//! network that floods), to a local port, or to the encap stage for a remote
//! VTEP. A frame out of a tunnel is switched as a bridge would, and never sent
//! back into the overlay. Its drops: `hairpin`, `no_output`,
//! `unknown_destination`, `tunnel_hairpin` (and the classic table's
//! `runt_frame`, `no_pipeline_port`).

use std::ops::ControlFlow;

use super::packet::{Next, PacketCtx};
use super::trace::{self, TraceNames, Tracer};
use super::{IngressKind, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::densemap::DenseReader;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::l2::L2Verdict;
use crate::overlay::{L2Dest, NetworkId, NetworkInfo};
use crate::port::PortIdx;

/// The stage (see the module docs).
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    t: &mut T,
) -> ControlFlow<Verdict> {
    if let IngressKind::Classic = pc.kind() {
        let v = pc.ingress.l2.classify(pkt.data());
        if T::ON {
            t.record(trace::Record::L2(Record::Classic {
                dst: MacAddr::dst_bits(pkt.data()).map(MacAddr::from_u64),
                verdict: v,
            }));
        }
        pc.next = match v {
            L2Verdict::Output(port) => Next::Port(port),
            L2Verdict::Flood => Next::Flood,
            L2Verdict::Drop(r) => return ControlFlow::Break(Verdict::Drop(r)),
        };
        return ControlFlow::Continue(());
    }
    let Some((net, info)) = pc.net else {
        return ControlFlow::Continue(());
    };
    let in_port = pc.in_port();
    if pc.from_tunnel {
        let dst_bits = pc.dst_bits;
        let l2 = p.overlay.l2_reader(net);
        if T::ON {
            t.record(trace::Record::L2(Record::network(
                net,
                info,
                dst_bits,
                l2.get(dst_bits).map(L2Dest::from_bits),
            )));
        }
        pc.next = match switch_from_tunnel(net, info, l2, dst_bits) {
            None => Next::Route,
            Some(Verdict::Output(port)) => Next::Port(port),
            Some(Verdict::FloodNetwork { net, from_tunnel }) => {
                Next::FloodNetwork { net, from_tunnel }
            }
            Some(v) => return ControlFlow::Break(v),
        };
        return ControlFlow::Continue(());
    }
    // From the frame with one load, not from the metadata: the parse has only
    // just written `dst_mac` in pieces, and the key's wider read would wait for them.
    let dst_bits = MacAddr::dst_bits(pkt.data()).unwrap_or_else(|| pc.outer().dst_mac.to_u64());
    pc.dst_bits = dst_bits;
    let dst = MacAddr::from_u64(dst_bits);
    let entry = if dst == info.gateway_mac || dst.is_multicast() {
        None
    } else {
        p.overlay.l2_lookup_bits(net, dst_bits)
    };
    if T::ON {
        t.record(trace::Record::L2(Record::network(
            net, info, dst_bits, entry,
        )));
    }
    pc.next = if dst == info.gateway_mac {
        Next::Route
    } else if dst.is_multicast() {
        Next::FloodNetwork {
            net,
            from_tunnel: false,
        }
    } else {
        match entry {
            Some(L2Dest::Local(port)) if port == in_port => {
                return ControlFlow::Break(Verdict::Drop(DropReason::Hairpin))
            }
            Some(L2Dest::Local(port)) => Next::Port(port),
            Some(L2Dest::Remote(vtep)) => Next::Remote { net, vtep },
            None if info.flood_unknown => Next::FloodNetwork {
                net,
                from_tunnel: false,
            },
            None => return ControlFlow::Break(Verdict::Drop(DropReason::UnknownDestination)),
        }
    };
    ControlFlow::Continue(())
}

/// The L2 stage's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// A classic port: the destination and the classic table's verdict.
    Classic {
        dst: Option<MacAddr>,
        verdict: L2Verdict,
    },
    /// A virtual network's frame: its destination and the table entry it met.
    Network {
        net: NetworkId,
        dst: MacAddr,
        gateway: bool,
        entry: Option<L2Dest>,
    },
}

impl Record {
    fn network(net: NetworkId, info: &NetworkInfo, dst_bits: u64, entry: Option<L2Dest>) -> Self {
        let dst = MacAddr::from_u64(dst_bits);
        Record::Network {
            net,
            dst,
            gateway: dst == info.gateway_mac,
            entry,
        }
    }

    pub(super) fn describe(&self, p: &Pipeline, in_port: PortIdx, names: &TraceNames) -> String {
        match *self {
            Record::Classic { dst, verdict } => classic(p, in_port, dst, verdict, names),
            Record::Network {
                net,
                dst,
                gateway,
                entry,
            } => {
                let ov = &p.overlay;
                let name = ov.network(net).map(|n| &*n.name).unwrap_or("?");
                let to = if gateway {
                    "the gateway: routed".to_owned()
                } else if dst.is_multicast() {
                    "flood".to_owned()
                } else {
                    match entry {
                        Some(L2Dest::Local(port)) => format!("local port {}", names.port(port)),
                        Some(L2Dest::Remote(v)) => match ov.vtep(v) {
                            Some(v) => format!("remote VTEP {}", v.ip),
                            None => "remote VTEP ?".into(),
                        },
                        None => "no entry".into(),
                    }
                };
                format!("network {name:?}: {dst} -> {to}")
            }
        }
    }
}

/// A classic port's record: which entry, patch or flood the frame met, with
/// ports and groups by name.
fn classic(
    p: &Pipeline,
    in_port: PortIdx,
    dst: Option<MacAddr>,
    verdict: L2Verdict,
    names: &TraceNames,
) -> String {
    if let Some(peer) = p.l2.patch_of(in_port) {
        return format!("patched: every frame to port {:?}", names.port(peer));
    }
    let Some(dst) = dst else {
        return match verdict {
            L2Verdict::Drop(r) => format!("{r}"),
            v => format!("{v:?}"),
        };
    };
    let group = names
        .groups
        .get(&in_port)
        .map(String::as_str)
        .unwrap_or("?");
    let members = || {
        p.l2.flood_ports(in_port)
            .iter()
            .map(|&q| names.port(q))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = if dst.is_broadcast() {
        "broadcast"
    } else if dst.is_multicast() {
        "multicast"
    } else {
        "unknown"
    };
    match verdict {
        L2Verdict::Output(q) => format!("{dst} -> port {:?}", names.port(q)),
        L2Verdict::Flood => format!("{dst} {kind}: flood to group {group:?} [{}]", members()),
        L2Verdict::Drop(DropReason::Hairpin) => {
            format!(
                "{dst} -> port {:?}, the port it came in on",
                names.port(in_port)
            )
        }
        L2Verdict::Drop(DropReason::NoOutput) => {
            format!("{dst} {kind}: flood to group {group:?}, which has no other port")
        }
        L2Verdict::Drop(r) => format!("{dst}: {}", r.as_str()),
    }
}

/// Where a frame decapsulated into `net` goes by its destination MAC `dst_bits`
/// (in the network's MAC table `l2`), as a bridge switches it: flooded in the
/// network (not back into the overlay), to a local port, or dropped. `None` for
/// the network's gateway MAC: the frame is routed, which the caller does.
#[inline(always)]
pub(super) fn switch_from_tunnel(
    net: NetworkId,
    info: &NetworkInfo,
    l2: DenseReader<'_>,
    dst_bits: u64,
) -> Option<Verdict> {
    let dst = MacAddr::from_u64(dst_bits);
    if dst.is_multicast() {
        return Some(Verdict::FloodNetwork {
            net,
            from_tunnel: true,
        });
    }
    if dst == info.gateway_mac {
        return None;
    }
    Some(match l2.get(dst_bits).map(L2Dest::from_bits) {
        Some(L2Dest::Local(port)) => Verdict::Output(port),
        // Never re-encapsulate what came out of a tunnel: loops are impossible.
        Some(L2Dest::Remote(_)) => Verdict::Drop(DropReason::TunnelHairpin),
        None => Verdict::Drop(DropReason::UnknownDestination),
    })
}
