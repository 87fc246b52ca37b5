//! The ingress classify stage: what kind of port the packet came in on (decided
//! once per burst, [`Pipeline::ingress`]) and, for the overlay's ports, the one
//! parse of the frame into [`PacketMeta`](crate::wire::PacketMeta) that every
//! later stage reads. Classic L2 ports are switched without a parse. Its drops:
//! `malformed` (the parser's own counters say why), `unknown_network`, and at the
//! worker's receive `runt_frame`, `rx_oversize`, `no_pipeline_port`.

use std::ops::ControlFlow;

use super::packet::{parse_drop, PacketCtx};
use super::trace::{self, TraceNames, Tracer};
use super::{IngressKind, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::port::PortIdx;
use crate::wire;

/// The stage (see the module docs).
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let kind = pc.kind();
    let parsed = match kind {
        IngressKind::Uplink | IngressKind::Network(..) => {
            Some(pc.parse_outer(pkt.data(), &p.parse).map(|_| ()))
        }
        IngressKind::Classic | IngressKind::UnknownNetwork => None,
    };
    if T::ON {
        // A classic port's frame is never parsed; the trace shows what it is all the same.
        let parse = match parsed {
            Some(Ok(())) => Ok(*pc.outer()),
            Some(Err(e)) => Err(e),
            None => wire::parse_with(pkt.data(), &p.parse),
        };
        t.record(trace::Record::Parse(parse));
        t.record(trace::Record::Ingress(Record::of(kind)));
    }
    match (kind, parsed) {
        (_, Some(Err(e))) => ControlFlow::Break(Verdict::Drop(parse_drop(e))),
        (IngressKind::UnknownNetwork, _) => {
            ControlFlow::Break(Verdict::Drop(DropReason::UnknownNetwork))
        }
        (IngressKind::Network(net, info), _) => {
            pc.net = Some((net, info));
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Continue(()),
    }
}

/// The classify stage's trace record: the kind of ingress port.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Record {
    Classic,
    Uplink,
    Network,
    UnknownNetwork,
}

impl Record {
    fn of(kind: IngressKind<'_>) -> Self {
        match kind {
            IngressKind::Classic => Record::Classic,
            IngressKind::Uplink => Record::Uplink,
            IngressKind::Network(..) => Record::Network,
            IngressKind::UnknownNetwork => Record::UnknownNetwork,
        }
    }

    pub(super) fn describe(&self, p: &Pipeline, in_port: PortIdx, names: &TraceNames) -> String {
        match *self {
            Record::Uplink => {
                "underlay uplink: underlay ARP/ND, or tunnel decap (VNI → network)".to_owned()
            }
            Record::Network | Record::UnknownNetwork => {
                let n = p
                    .overlay
                    .network_of_port(in_port)
                    .and_then(|net| p.overlay.network(net));
                format!(
                    "overlay port of network {:?} (VNI {}): ARP/ND responder, L2 in the network or route via gateway {}, encap to remote VTEPs",
                    n.map(|n| &*n.name).unwrap_or("?"),
                    n.map(|n| n.vni).unwrap_or(0),
                    n.map(|n| n.gateway_mac.to_string()).unwrap_or_default()
                )
            }
            Record::Classic => match p.l2.patch_of(in_port) {
                Some(peer) => format!("classic L2 port, patched to {:?}", names.port(peer)),
                None => match names.groups.get(&in_port) {
                    Some(g) if p.l2.port_group(in_port).is_some() => {
                        format!("classic L2 port in group {g:?}")
                    }
                    _ => "a port the snapshot does not know".to_owned(),
                },
            },
        }
    }
}
