//! The ARP/ND responder stage. In a virtual network, ARP requests and neighbour
//! solicitations for gateway addresses and known endpoints are answered in place
//! (the request's buffer becomes the reply), so the overlay carries no
//! address-resolution floods; router/neighbour discovery other than
//! solicitations stays on the link. On the underlay, ARP/ND for the VTEP address
//! is answered and the senders on the link are learned as underlay neighbours.
//! A frame out of a tunnel is not answered: the sender's own switch does that.
//! Its drops: `arp_unanswered`, `nd_unanswered`, `nd_consumed`,
//! `underlay_consumed`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;

use super::packet::{v4, Next, PacketCtx};
use super::reply;
use super::trace::{self, Tracer};
use super::{Ctx, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::UnderlayInfo;
use crate::wire::{self, L3Kind, PacketMeta};

/// ICMPv6 neighbour solicitation and advertisement types.
pub(super) const ND_NS: u8 = 135;
pub(super) const ND_NA: u8 = 136;

/// The stage (see the module docs).
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    t: &mut T,
) -> ControlFlow<Verdict> {
    if pc.underlay_control {
        return match p.overlay.underlay() {
            Some(u) => ControlFlow::Break(underlay(u, pc.outer(), pkt, ctx, t)),
            None => ControlFlow::Break(Verdict::Drop(DropReason::UnknownNetwork)),
        };
    }
    if pc.from_tunnel {
        return ControlFlow::Continue(());
    }
    let Some((net, info)) = pc.net else {
        return ControlFlow::Continue(());
    };
    let in_port = pc.in_port();
    let meta = pc.outer();
    let flood = Verdict::FloodNetwork {
        net,
        from_tunnel: false,
    };
    // Replies go where they are addressed like any frame: a remote VTEP that does
    // not use a responder (a kernel VXLAN device) asks the pod itself.
    if meta.l3 == L3Kind::Arp && meta.arp_op == 1 {
        let target = v4(&meta.dst_ip);
        let answer = p.overlay.arp_lookup(net, target);
        if T::ON {
            t.record(trace::Record::Respond(Record::Arp { target, answer }));
        }
        return ControlFlow::Break(match answer {
            Some(mac) if reply::arp_reply_in_place(pkt, meta, mac) => Verdict::Output(in_port),
            Some(_) => Verdict::Drop(DropReason::Malformed),
            None if info.flood_unknown => flood,
            None => Verdict::Drop(DropReason::ArpUnanswered),
        });
    }
    if meta.l3 == L3Kind::Ipv6 && meta.l4_proto == wire::IPPROTO_ICMPV6 {
        if meta.icmp_type == ND_NS {
            let Some(target) = reply::ns_target(pkt.data(), meta) else {
                return ControlFlow::Break(Verdict::Drop(DropReason::Malformed));
            };
            let answer = p.overlay.nd_lookup(net, target);
            if T::ON {
                t.record(trace::Record::Respond(Record::Nd { target, answer }));
            }
            return ControlFlow::Break(match answer {
                Some(mac) if reply::na_in_place(pkt, meta, target, mac) => Verdict::Output(in_port),
                Some(_) => Verdict::Drop(DropReason::NdUnanswered),
                None if info.flood_unknown => flood,
                None => Verdict::Drop(DropReason::NdUnanswered),
            });
        }
        if meta.icmp_type == ND_NA || (133..=137).contains(&meta.icmp_type) {
            // Router solicitations/advertisements and NAs stay on the link.
            if T::ON {
                t.record(trace::Record::Respond(Record::NdConsumed {
                    icmp_type: meta.icmp_type,
                }));
            }
            return ControlFlow::Break(Verdict::Drop(DropReason::NdConsumed));
        }
    }
    debug_assert_eq!(pc.next, Next::Undecided);
    ControlFlow::Continue(())
}

/// The underlay's own ARP/ND: senders on the link learned, requests for the VTEP
/// address answered, everything else consumed.
fn underlay<B: PacketBuf, T: Tracer>(
    u: &UnderlayInfo,
    meta: &PacketMeta,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    t: &mut T,
) -> Verdict {
    let learned = ctx.learned.len();
    let verdict = match (meta.l3, u.local_vtep_ip) {
        (L3Kind::Arp, IpAddr::V4(local)) => {
            let sender = v4(&meta.src_ip);
            if u.on_link.contains(&IpAddr::V4(sender)) && !sender.is_unspecified() {
                let sha = reply::arp_sender_mac(pkt.data(), meta);
                if let Some(mac) = sha {
                    if !ctx.learned.is_full() {
                        ctx.learned.push((IpAddr::V4(sender), mac));
                    }
                }
            }
            if meta.arp_op == 1
                && v4(&meta.dst_ip) == local
                && reply::arp_reply_in_place(pkt, meta, u.local_mac)
            {
                Verdict::Output(u.uplink)
            } else {
                Verdict::Drop(DropReason::UnderlayConsumed)
            }
        }
        (L3Kind::Ipv6, IpAddr::V6(local)) => {
            if let Some((ip, mac)) = reply::nd_learn(pkt.data(), meta) {
                if u.on_link.contains(&IpAddr::V6(ip)) && !ctx.learned.is_full() {
                    ctx.learned.push((IpAddr::V6(ip), mac));
                }
            }
            if meta.icmp_type == ND_NS
                && reply::ns_target(pkt.data(), meta) == Some(local)
                && reply::na_in_place(pkt, meta, local, u.local_mac)
            {
                Verdict::Output(u.uplink)
            } else {
                Verdict::Drop(DropReason::UnderlayConsumed)
            }
        }
        // `decap` sends only these two here.
        _ => Verdict::Drop(DropReason::UnderlayConsumed),
    };
    if T::ON {
        t.record(trace::Record::Respond(Record::Underlay {
            learned: ctx.learned[learned..].to_vec(),
            answered: matches!(verdict, Verdict::Output(_)),
        }));
    }
    verdict
}

/// The responder's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// An ARP request in a network, and the MAC that answers it.
    Arp {
        target: Ipv4Addr,
        answer: Option<MacAddr>,
    },
    /// A neighbour solicitation in a network, and the MAC that answers it.
    Nd {
        target: Ipv6Addr,
        answer: Option<MacAddr>,
    },
    /// Router/neighbour discovery kept on the link.
    NdConsumed { icmp_type: u8 },
    /// The underlay's ARP/ND: who was learned, and whether it was answered.
    Underlay {
        learned: Vec<(IpAddr, MacAddr)>,
        answered: bool,
    },
}

impl Record {
    /// The record's line: `arp_responder`, `nd_responder` or `underlay_arp_nd`.
    pub(super) fn describe(&self) -> (&'static str, String) {
        let answer = |a: &Option<MacAddr>| match a {
            Some(mac) => format!("answered {mac}"),
            None => "unknown address".to_owned(),
        };
        match self {
            Record::Arp { target, answer: a } => {
                ("arp_responder", format!("who-has {target}: {}", answer(a)))
            }
            Record::Nd { target, answer: a } => {
                ("nd_responder", format!("solicit {target}: {}", answer(a)))
            }
            Record::NdConsumed { icmp_type } => (
                "nd_responder",
                format!("ICMPv6 type {icmp_type}: kept on the link"),
            ),
            Record::Underlay { learned, answered } => (
                "underlay_arp_nd",
                format!(
                    "learned {learned:?}; {}",
                    if *answered {
                        "answered for the VTEP address"
                    } else {
                        "not for the VTEP address"
                    }
                ),
            ),
        }
    }
}
