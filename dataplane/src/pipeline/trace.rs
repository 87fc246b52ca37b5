//! Tracing: one frame through the real stages, each writing its own record.
//!
//! The stages are generic over a [`Tracer`]. The workers run them with
//! [`NoTrace`], whose `ON` is `false`, so every `if T::ON` block and the record it
//! would build compile away; [`Pipeline::trace`] runs the same stages with a
//! [`Recorder`]. A record holds what the stage decided (indices, addresses, the
//! table entry it met); it is turned into text only afterwards, with the port and
//! group names the caller knows ([`TraceNames`]), by the stage's own `describe`.

use std::collections::HashMap;
use std::time::Instant;

use super::conntrack::{CtConfig, CtShard};
use super::flow::template::Templates;
use super::scratch::Scratch;
use super::{classify, decap, encap, l2, respond, route, stages, Ctx, Pipeline, Verdict};
use crate::buf::{PacketBuf, VecBuf};
use crate::overlay::{NeighborConfig, NeighborMap, ResolveLimiter};
use crate::port::PortIdx;
use crate::wire::{self, L3Kind, PacketMeta, ParseError};

/// Where the stages' trace records go.
pub(crate) trait Tracer {
    /// Whether records are kept at all: stages build a record only when it is.
    const ON: bool;
    /// Keeps one record.
    fn record(&mut self, r: Record);
}

/// No tracing: the workers' tracer.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    const ON: bool = false;
    #[inline(always)]
    fn record(&mut self, _: Record) {}
}

/// Keeps every record, in the order the stages wrote them.
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) Vec<Record>);

impl Tracer for Recorder {
    const ON: bool = true;
    fn record(&mut self, r: Record) {
        self.0.push(r);
    }
}

/// One stage's record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// The parse of the frame as it came in (`classify`).
    Parse(Result<PacketMeta, ParseError>),
    /// What kind of port it came in on (`classify`).
    Ingress(classify::Record),
    /// The tunnel and its network (`decap`).
    Decap(decap::Record),
    /// The connection found or created (`conntrack`).
    Conntrack(super::conntrack::Record),
    /// The service, backend and translation (`lb`).
    Lb(super::lb::Record),
    /// The policy verdict: which tier and rule decided (`policy`).
    Policy(super::policy::Record),
    /// The ARP/ND responder's answer (`respond`).
    Respond(respond::Record),
    /// The MAC table entry, flood or patch (`l2`).
    L2(l2::Record),
    /// The routing decision (`route`).
    Route(route::Record),
    /// The encapsulation, or the underlay next hop it waits for (`encap`).
    Encap(encap::Record),
}

/// Port and group names, which the snapshot does not hold (it numbers them).
#[derive(Clone, Debug, Default)]
pub struct TraceNames {
    /// Port names by index.
    pub ports: HashMap<PortIdx, String>,
    /// The name of each port's classic L2 group.
    pub groups: HashMap<PortIdx, String>,
}

impl TraceNames {
    /// The port's name, or `#index` for a port without one.
    pub fn port(&self, p: PortIdx) -> String {
        self.ports
            .get(&p)
            .cloned()
            .unwrap_or_else(|| format!("#{}", p.index()))
    }
}

/// One line of a trace: the stage's record as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    /// What wrote it (`parse`, `ingress`, `decap`, `l2`, `route`, …).
    pub stage: &'static str,
    /// What it decided.
    pub detail: String,
}

/// What [`Pipeline::trace`] found.
#[derive(Clone, Debug)]
pub struct Traced {
    /// The stages' records, in order.
    pub lines: Vec<TraceLine>,
    /// The verdict, as a worker would have reached it.
    pub verdict: Verdict,
    /// The frame after the pipeline (rewritten, encapsulated or a reply).
    pub frame_after: Vec<u8>,
}

impl Pipeline {
    /// Runs a copy of `frame`, as received on `in_port`, through the stages with
    /// every stage's record kept, against the underlay neighbours `neighbors`.
    /// Nothing a worker holds is touched: the working space is fresh and the flow
    /// table is not consulted — a trace shows the stages, the slow path a flow's
    /// first packet takes (the differential tests hold the flow table's actions
    /// to the same verdicts and bytes) — and addresses to resolve are reported,
    /// not requested.
    pub fn trace(
        &self,
        in_port: PortIdx,
        frame: &[u8],
        neighbors: &NeighborMap,
        names: &TraceNames,
    ) -> Traced {
        let mut limiter = ResolveLimiter::new(&NeighborConfig::default());
        let mut ctx = Ctx::new(neighbors, &mut limiter, Instant::now());
        let mut scratch = Scratch::new();
        let mut templates = Templates::new();
        // A table of its own, like the rest of the working space: a trace
        // shows what the stage does with a connection's first packet.
        let mut ct = CtShard::new(CtConfig {
            capacity: 16,
            ..CtConfig::default()
        });
        let mut rec = Recorder::default();
        let mut buf = VecBuf::new(frame);
        let verdict = stages::run(
            self,
            self.ingress(in_port),
            &mut buf,
            &mut ctx,
            &mut scratch,
            &mut templates,
            &mut ct,
            &mut rec,
        );
        let mut lines: Vec<TraceLine> = rec
            .0
            .iter()
            .map(|r| {
                let (stage, detail) = r.describe(self, in_port, names);
                TraceLine { stage, detail }
            })
            .collect();
        if buf.data() != frame {
            if let Ok(m) = wire::parse_with(buf.data(), &self.parse) {
                lines.push(TraceLine {
                    stage: "rewrite",
                    detail: describe_meta(&m),
                });
            }
        }
        Traced {
            lines,
            verdict,
            frame_after: buf.data().to_vec(),
        }
    }
}

impl Record {
    /// The record as a line: the name it is shown under and its text.
    fn describe(
        &self,
        p: &Pipeline,
        in_port: PortIdx,
        names: &TraceNames,
    ) -> (&'static str, String) {
        match self {
            Record::Parse(Ok(m)) => ("parse", describe_meta(m)),
            Record::Parse(Err(e)) => ("parse", format!("malformed: {e}")),
            Record::Ingress(r) => ("ingress", r.describe(p, in_port, names)),
            Record::Decap(r) => ("decap", r.describe(p)),
            Record::Conntrack(r) => ("conntrack", r.describe()),
            Record::Lb(r) => ("lb", r.describe()),
            Record::Policy(r) => ("policy", r.describe()),
            Record::Respond(r) => r.describe(),
            Record::L2(r) => ("l2", r.describe(p, in_port, names)),
            Record::Route(r) => ("route", r.describe(p, names)),
            Record::Encap(r) => r.describe(p, names),
        }
    }
}

/// One line about a parsed frame.
pub(crate) fn describe_meta(m: &PacketMeta) -> String {
    let mut s = format!("eth {} > {}", m.src_mac, m.dst_mac);
    match m.l3 {
        L3Kind::Arp => s.push_str(&format!(
            " arp op {} {:?} > {:?}",
            m.arp_op,
            m.src_addr().map(|a| a.to_string()).unwrap_or_default(),
            m.dst_addr().map(|a| a.to_string()).unwrap_or_default()
        )),
        L3Kind::Ipv4 | L3Kind::Ipv6 => {
            s.push_str(&format!(
                " ip {} > {} ttl {} proto {}",
                m.src_addr().map(|a| a.to_string()).unwrap_or_default(),
                m.dst_addr().map(|a| a.to_string()).unwrap_or_default(),
                m.ttl,
                m.l4_proto
            ));
            if m.src_port != 0 || m.dst_port != 0 {
                s.push_str(&format!(" ports {} > {}", m.src_port, m.dst_port));
            }
            if m.tunnel != wire::TunnelKind::None {
                s.push_str(&format!(" tunnel {:?} vni {}", m.tunnel, m.vni));
            }
        }
        L3Kind::Other => s.push_str(&format!(" ethertype {:#06x}", m.ethertype)),
    }
    s
}
