//! `Conntrack` of the API: the workers' shards listed, flushed, counted.
//!
//! A shard belongs to its worker alone (no lock on the packet path), so the
//! list and the flush are requests the worker answers between two poll
//! rounds over its command channel; the counters are the ones every worker
//! publishes after each round, read without asking.

use std::sync::mpsc;
use std::time::Duration;

use control::api;
use dataplane::pipeline::conntrack::{describe_tuple, CtEntry, CtFilter, CtState, CtTuple};
use dataplane::{CtRequest, WorkerCommand};

use crate::api::VswitchdHandle;
use crate::switch::lock;

/// How long a worker may take to answer (it answers between two rounds:
/// milliseconds unless it is stuck).
const ANSWER: Duration = Duration::from_secs(5);

/// Entries listed per worker unless the request says.
const DEFAULT_LIMIT: usize = 10_000;

pub fn serve(
    h: &VswitchdHandle,
    req: &api::ConntrackRequest,
) -> Result<api::ConntrackReply, String> {
    if req.op == "stats" {
        return Ok(api::ConntrackReply {
            workers: h
                .workers
                .iter()
                .map(|(i, _, s)| {
                    let c = s.snapshot().ct;
                    api::ConntrackWorkerStats {
                        worker: *i as u32,
                        entries: c.entries,
                        capacity: c.capacity,
                        created: c.created,
                        expired: c.expired,
                        early_drops: c.early_drops,
                        invalid: c.invalid,
                        handed_off: c.handed_off,
                    }
                })
                .collect(),
            ..Default::default()
        });
    }
    let snap = h.snapshot.load_full();
    let networks = snap.overlay.networks();
    let f = req.filter.clone().unwrap_or_default();
    let zone = if f.network.is_empty() {
        None
    } else {
        let n = networks
            .iter()
            .find(|n| *n.name == f.network)
            .ok_or_else(|| format!("filter.network: no network named {:?}", f.network))?;
        Some(n.vni)
    };
    let filter = CtFilter {
        zone,
        addr: if f.address.is_empty() {
            None
        } else {
            Some(
                f.address
                    .parse()
                    .map_err(|_| format!("filter.address: {:?} is not an IP address", f.address))?,
            )
        },
        port: f.port.map(|p| p as u16),
        state: if f.state.is_empty() {
            None
        } else {
            CtState::from_name(&f.state)
        },
    };
    let commands: Vec<_> = lock(&h.dataplane).commands().to_vec();
    let mut reply = api::ConntrackReply::default();
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    for (w, cmd) in commands.iter().enumerate() {
        if req.op == "flush" {
            let (tx, rx) = mpsc::channel();
            let r = CtRequest::Flush {
                filter: filter.clone(),
                reply: tx,
            };
            cmd.send(WorkerCommand::Conntrack(r))
                .map_err(|_| format!("worker {w} is gone"))?;
            reply.flushed +=
                rx.recv_timeout(ANSWER)
                    .map_err(|_| format!("worker {w} did not answer"))? as u64;
        } else {
            let (tx, rx) = mpsc::channel();
            let r = CtRequest::List {
                filter: filter.clone(),
                limit,
                reply: tx,
            };
            cmd.send(WorkerCommand::Conntrack(r))
                .map_err(|_| format!("worker {w} is gone"))?;
            let entries = rx
                .recv_timeout(ANSWER)
                .map_err(|_| format!("worker {w} did not answer"))?;
            reply
                .entries
                .extend(entries.iter().map(|e| entry(w, e, networks)));
        }
    }
    Ok(reply)
}

fn entry(
    worker: usize,
    e: &CtEntry,
    networks: &[dataplane::overlay::NetworkInfo],
) -> api::ConntrackEntry {
    let proto = |t: &CtTuple| {
        describe_tuple(t)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    api::ConntrackEntry {
        worker: worker as u32,
        network: networks
            .iter()
            .find(|n| n.vni == e.zone)
            .map(|n| n.name.to_string())
            .unwrap_or_default(),
        zone: e.zone,
        protocol: proto(&e.original),
        src: e.original.src_ip().to_string(),
        sport: e.original.sport.into(),
        dst: e.original.dst_ip().to_string(),
        dport: e.original.dport.into(),
        reply_src: e.reply.src_ip().to_string(),
        reply_sport: e.reply.sport.into(),
        reply_dst: e.reply.dst_ip().to_string(),
        reply_dport: e.reply.dport.into(),
        state: e.state.name().into(),
        assured: e.assured,
        expires_in_ms: e.expires_in_ms,
    }
}
