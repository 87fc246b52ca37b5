//! The per-packet context the stages share: what the ingress, the parse and each
//! stage decided about the packet at hand.
//!
//! A stage reads the decisions of the stages before it from here and writes its
//! own; none re-reads what another has already read from the frame. The parse is
//! done once per frame (the outer frame by `classify`, the inner one on demand
//! after `decap`), into the worker's [`Scratch`](super::Scratch) space. The
//! stages that transform the packet also record what they did in `compiled`,
//! from which the flow table builds the flow's action.

use std::net::Ipv4Addr;

use super::flow::Compiled;
use super::{Ingress, IngressKind};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::overlay::{NetworkId, NetworkInfo, VtepIdx};
use crate::port::PortIdx;
use crate::wire::{self, PacketMeta, ParseConfig, ParseError};

/// Where the forwarding stages send the packet; `output` turns it into a
/// [`Verdict`](super::Verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// No forwarding stage has decided yet.
    Undecided,
    /// Sent to the gateway MAC: the route stage decides.
    Route,
    /// To the remote VTEP `vtep` of `net`: the encap stage pushes the outer headers.
    Remote {
        /// The network the frame is in (its VNI goes into the tunnel header).
        net: NetworkId,
        /// The VTEP behind which the destination lives.
        vtep: VtepIdx,
    },
    /// To this port as it is now.
    Port(PortIdx),
    /// Flood in the ingress port's classic L2 group.
    Flood,
    /// Flood in a virtual network.
    FloodNetwork {
        /// The network.
        net: NetworkId,
        /// Came out of a tunnel: not sent back into the overlay.
        from_tunnel: bool,
    },
}

/// The packet at hand, as the stages see it (see the module docs).
pub(super) struct PacketCtx<'p, 'm> {
    /// Where it came in, as [`classify`](super::classify) found it.
    pub ingress: Ingress<'p>,
    /// The network the frame is in: the ingress port's, or its VNI's after decap.
    pub net: Option<(NetworkId, &'p NetworkInfo)>,
    /// It came out of a tunnel (`decap` stripped the outer headers).
    pub from_tunnel: bool,
    /// An ARP/ND frame of the underlay itself (not a tunnel packet): the
    /// responder answers or learns it.
    pub underlay_control: bool,
    /// The inner destination MAC as [`MacAddr::dst_bits`](crate::MacAddr::dst_bits)
    /// reads it (set once the frame's destination has been read).
    pub dst_bits: u64,
    /// What the forwarding stages decided.
    pub next: Next,
    /// What the stages did to the packet, for the flow table's action.
    pub compiled: Compiled,
    /// The connection conntrack found or created (a tracked network's TCP,
    /// UDP or ICMP packet).
    pub ct: Option<super::conntrack::CtHit>,
    /// The outer frame's metadata (parsed by `classify`).
    outer: &'m mut PacketMeta,
    /// The decapsulated frame's metadata, parsed only when a stage needs it.
    inner: &'m mut PacketMeta,
    inner_parsed: bool,
}

impl<'p, 'm> PacketCtx<'p, 'm> {
    pub(super) fn new(
        ingress: Ingress<'p>,
        outer: &'m mut PacketMeta,
        inner: &'m mut PacketMeta,
    ) -> Self {
        PacketCtx {
            ingress,
            net: None,
            from_tunnel: false,
            underlay_control: false,
            dst_bits: 0,
            next: Next::Undecided,
            compiled: Compiled::default(),
            ct: None,
            outer,
            inner,
            inner_parsed: false,
        }
    }

    /// The port the packet came in on.
    #[inline]
    pub(super) fn in_port(&self) -> PortIdx {
        self.ingress.port
    }

    /// What kind of port that is.
    #[inline]
    pub(super) fn kind(&self) -> IngressKind<'p> {
        self.ingress.kind
    }

    /// Parses the outer frame, once, for `classify`.
    #[inline]
    pub(super) fn parse_outer(
        &mut self,
        data: &[u8],
        cfg: &ParseConfig,
    ) -> Result<&PacketMeta, ParseError> {
        wire::parse_into(data, cfg, self.outer)?;
        Ok(self.outer)
    }

    /// The metadata of the frame as it is now: the outer frame's, or after a
    /// decap the inner frame's, parsed here the first time a stage asks.
    #[inline]
    pub(super) fn meta<B: PacketBuf>(
        &mut self,
        pkt: &B,
        cfg: &ParseConfig,
    ) -> Result<&mut PacketMeta, DropReason> {
        if !self.from_tunnel {
            return Ok(self.outer);
        }
        if !self.inner_parsed {
            wire::parse_into(pkt.data(), cfg, self.inner).map_err(parse_drop)?;
            self.inner_parsed = true;
        }
        Ok(self.inner)
    }

    /// The outer frame's metadata, as `classify` parsed it.
    #[inline]
    pub(super) fn outer(&self) -> &PacketMeta {
        self.outer
    }
}

/// The drop reason of a parse error: the tunnel header's own reasons, or
/// `malformed`.
#[inline]
pub(super) fn parse_drop(e: ParseError) -> DropReason {
    match e {
        ParseError::GeneveUnknownCritical => DropReason::GeneveUnknownCritical,
        ParseError::BadVxlanFlags => DropReason::VxlanNoVniFlag,
        _ => DropReason::Malformed,
    }
}

/// The IPv4 address in the first four bytes of a metadata address field.
#[inline]
pub(super) fn v4(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}
