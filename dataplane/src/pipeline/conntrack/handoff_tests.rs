//! Two real workers ([`crate::worker::Worker`]) on two threads, joined by the
//! handoff rings, forwarding `VecBuf` frames through a ClusterIP service: the
//! client's port polled by one worker, the backends' ports by the other (ports
//! without RSS: whatever the flow, one worker receives a port's frames). So
//! the first packet of every connection reaches one worker and every reply
//! the other; half the connections are owned by each. The test plays the
//! wire: it answers a frame only after the switch sent it. After the
//! handshake, a non-owner's packets are flow-table hits that hand over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::conntrack_stage::{ACK, SYN};
use super::lb_stage::{
    active, checksums_ok, from_backend, lb_pipeline, service, to_vip, BACKENDS, CLIENT, VIP,
};
use super::*;
use crate::handoff;
use crate::idle::IdleBackoff;
use crate::pipeline::conntrack::tuple::owner;
use crate::pipeline::conntrack::{CtEntry, CtFilter, CtState, CtTuple, TcpState};
use crate::pipeline::lb::services::Services;
use crate::snapshot::SnapshotCell;
use crate::stats::StatsSnapshot;
use crate::testio::{Ring, VecAlloc, VecRxQueue, VecTxQueue};
use crate::worker::{CtRequest, Worker as Dp, WorkerCommand, WorkerId};

const ZONE: u32 = 100;
const PORTS: usize = 7;

type Cmd = WorkerCommand<VecRxQueue, VecTxQueue>;

struct Lab {
    rx: Vec<Ring<VecBuf>>,
    tx: Vec<Ring<VecBuf>>,
    cmds: Vec<crossbeam::channel::Sender<Cmd>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<StatsSnapshot>>,
}

impl Lab {
    /// Two workers: the client's port on worker `client_worker`, the backends'
    /// ports on the other.
    fn new(client_worker: usize) -> Self {
        Lab::with(client_worker, service(active()))
    }

    /// [`Lab::new`] with service `spec`.
    fn with(client_worker: usize, spec: crate::pipeline::lb::services::ServiceSpec) -> Self {
        let (p, _) = lb_pipeline(1, &Services::empty(), spec);
        let cell = Arc::new(SnapshotCell::new(
            Arc::try_unwrap(p).unwrap_or_else(|_| unreachable!("one owner")),
        ));
        let rx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
        let tx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut cmds = Vec::new();
        let mut threads = Vec::new();
        let client_port = to_vip(1, SYN, 0, 0, 0).0;
        for (w, rings) in handoff::mesh(2, handoff::DEFAULT_HANDOFF_RING)
            .into_iter()
            .enumerate()
        {
            let mine: Vec<(PortIdx, VecRxQueue)> = (0..PORTS)
                .map(|i| PortIdx(i as u16))
                .filter(|&port| {
                    let backend = BACKENDS.iter().any(|b| b.2 == port);
                    (port == client_port && w == client_worker) || (backend && w != client_worker)
                })
                .map(|port| (port, VecRxQueue::new(rx[port.index()].clone())))
                .collect();
            let txq = tx
                .iter()
                .map(|r| Some(VecTxQueue::new(r.clone())))
                .collect();
            let (ctx, crx) = crossbeam::channel::unbounded();
            let worker = Dp::new(
                WorkerId(w as u16),
                mine,
                txq,
                VecAlloc::unlimited(),
                Arc::clone(&cell),
                IdleBackoff::new(Duration::from_micros(100)),
                Arc::clone(&stop),
            )
            .unwrap()
            .with_commands(crx)
            .with_handoff(rings);
            cmds.push(ctx);
            threads.push(std::thread::spawn(move || worker.run()));
        }
        Lab {
            rx,
            tx,
            cmds,
            stop,
            threads,
        }
    }

    fn send(&self, (port, frame): (PortIdx, Vec<u8>)) {
        self.rx[port.index()].push(VecBuf::new(&frame));
    }

    /// Waits for `n` frames out of `ports`; a hang fails after a generous
    /// deadline (not a timing assertion: the frames come or the switch lost
    /// them).
    fn expect(&self, ports: &[PortIdx], n: usize) -> Vec<(PortIdx, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < n {
            for &p in ports {
                got.extend(
                    self.tx[p.index()]
                        .take_all()
                        .into_iter()
                        .map(|b| (p, b.data().to_vec())),
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} frames out of {ports:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.len(), n, "more frames than sent");
        got
    }

    /// `ct list` on each worker (stubs only with `filter.state` REDIRECT).
    fn list(&self, filter: &CtFilter) -> Vec<Vec<CtEntry>> {
        self.cmds
            .iter()
            .map(|c| {
                let (reply, answer) = std::sync::mpsc::channel();
                c.send(WorkerCommand::Conntrack(CtRequest::List {
                    filter: filter.clone(),
                    limit: 100_000,
                    reply,
                }))
                .unwrap();
                answer.recv_timeout(Duration::from_secs(20)).unwrap()
            })
            .collect()
    }

    fn stop(self) -> Vec<StatsSnapshot> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

fn ports_of(f: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([f[34], f[35]]),
        u16::from_be_bytes([f[36], f[37]]),
    )
}

fn addrs_of(f: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let a = |i: usize| Ipv4Addr::new(f[i], f[i + 1], f[i + 2], f[i + 3]);
    (a(26), a(30))
}

fn original(cport: u16) -> CtTuple {
    CtTuple::new(
        CLIENT.parse().unwrap(),
        cport,
        VIP.parse().unwrap(),
        80,
        crate::wire::IPPROTO_TCP,
    )
}

fn reply(k: usize, cport: u16) -> CtTuple {
    CtTuple::new(
        BACKENDS[k].0.parse().unwrap(),
        8080,
        CLIENT.parse().unwrap(),
        cport,
        crate::wire::IPPROTO_TCP,
    )
}

/// Checks frames to the backends: each of `cports` once, DNAT'd to the
/// backend of its port; returns client port → backend.
fn to_backends(frames: &[(PortIdx, Vec<u8>)], cports: &[u16]) -> BTreeMap<u16, usize> {
    let mut by = BTreeMap::new();
    for (port, f) in frames {
        let k = BACKENDS.iter().position(|b| b.2 == *port).unwrap();
        assert!(checksums_ok(f));
        let (src, dst) = addrs_of(f);
        assert_eq!(
            (src.to_string(), dst.to_string()),
            (CLIENT.to_string(), BACKENDS[k].0.to_string())
        );
        let (sport, dport) = ports_of(f);
        assert_eq!(dport, 8080);
        assert!(by.insert(sport, k).is_none(), "port {sport} twice");
    }
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), cports);
    by
}

/// Checks frames to the client: each of `cports` once, from the ClusterIP.
fn to_client(frames: &[(PortIdx, Vec<u8>)], cports: &[u16]) {
    let mut seen = BTreeSet::new();
    for (_, f) in frames {
        assert!(checksums_ok(f));
        let (src, dst) = addrs_of(f);
        assert_eq!(
            (src.to_string(), dst.to_string()),
            (VIP.into(), CLIENT.into())
        );
        let (sport, dport) = ports_of(f);
        assert_eq!(sport, 80);
        assert!(seen.insert(dport), "port {dport} twice");
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), cports);
}

/// 150 connections through the ClusterIP, every segment of each direction
/// sent at once (both workers busy, each handing to the other): every reply
/// after DNAT finds its connection, whichever worker receives it; each
/// connection is held exactly once, ESTABLISHED, by the worker its tuple
/// hashes to; a connection whose reply hashes to the other worker left
/// exactly one stub there; nothing is dropped. Both layouts: the client's
/// port on worker 0, then on worker 1.
#[test]
fn two_workers_keep_every_dnat_connection_once_on_its_owner() {
    for client_worker in [0, 1] {
        let lab = Lab::new(client_worker);
        let cports: Vec<u16> = (0..150).map(|i| 30_000 + i).collect();
        let client = [to_vip(1, SYN, 0, 0, 0).0];
        let backends: Vec<PortIdx> = BACKENDS.iter().map(|b| b.2).collect();
        for &c in &cports {
            lab.send(to_vip(c, SYN, 1000, 0, 0));
        }
        let by = to_backends(&lab.expect(&backends, cports.len()), &cports);
        for (&c, &k) in &by {
            lab.send(from_backend(k, c, SYN | ACK, 5000, 1001, 0));
        }
        to_client(&lab.expect(&client, cports.len()), &cports);
        for &c in &cports {
            lab.send(to_vip(c, ACK, 1001, 5001, 0));
        }
        assert_eq!(
            to_backends(&lab.expect(&backends, cports.len()), &cports),
            by
        );
        // Data both ways: flow-table hits now, on the owner for handed packets.
        for (&c, &k) in &by {
            lab.send(from_backend(k, c, ACK, 5001, 1001, 100));
        }
        to_client(&lab.expect(&client, cports.len()), &cports);
        for &c in &cports {
            lab.send(to_vip(c, ACK, 1001, 5101, 0));
        }
        assert_eq!(
            to_backends(&lab.expect(&backends, cports.len()), &cports),
            by
        );

        let held = lab.list(&CtFilter::default());
        let stubs = lab.list(&CtFilter {
            state: Some(CtState::Redirect),
            ..CtFilter::default()
        });
        let stats = lab.stop();
        assert_eq!(
            held[0].len() + held[1].len(),
            cports.len(),
            "layout {client_worker}: every connection once"
        );
        let mut want_stubs = [0, 0];
        for (&c, &k) in &by {
            let (o, r) = (original(c), reply(k, c));
            let own = owner(ZONE, &o, 2);
            let e: Vec<_> = held[own].iter().filter(|e| e.original == o).collect();
            assert_eq!(e.len(), 1, "connection {c} on its owner {own}");
            assert_eq!((e[0].reply, e[0].zone), (r, ZONE));
            assert_eq!(e[0].state, CtState::Tcp(TcpState::Established));
            assert!(held[1 - own].iter().all(|e| e.original != o), "duplicated");
            let stub_on = owner(ZONE, &r, 2);
            if stub_on != own {
                want_stubs[stub_on] += 1;
                assert!(
                    stubs[stub_on].iter().any(|s| s.original == r),
                    "the stub of {c}"
                );
            }
        }
        assert_eq!([stubs[0].len(), stubs[1].len()], want_stubs);
        for s in &stats {
            assert_eq!(s.total_drops(), 0, "layout {client_worker}: {:?}", s.drops);
            // Each worker received connections the other owns.
            assert!(s.ct.handed_off > 0, "worker {}: {:?}", s.worker, s.ct);
        }
        let created: u64 = stats.iter().map(|s| s.ct.created).sum();
        assert_eq!(
            created,
            (cports.len() + want_stubs[0] + want_stubs[1]) as u64
        );
    }
}

/// A worker handing to a ring that is full drops the packet as
/// `ct_handoff_full` and never waits: the owner here never runs.
#[test]
fn a_full_ring_drops_as_ct_handoff_full() {
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let cell = Arc::new(SnapshotCell::new(
        Arc::try_unwrap(p).unwrap_or_else(|_| unreachable!("one owner")),
    ));
    let rx = Ring::new();
    let tx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
    let client = to_vip(1, SYN, 0, 0, 0).0;
    let mut rings = handoff::mesh::<VecBuf>(2, 4).into_iter();
    let mut w = Dp::new(
        WorkerId(0),
        vec![(client, VecRxQueue::new(rx.clone()))],
        tx.iter()
            .map(|r| Some(VecTxQueue::new(r.clone())))
            .collect(),
        VecAlloc::unlimited(),
        cell,
        IdleBackoff::busy_poll(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
    .with_handoff(rings.next().unwrap());
    let peer = rings.next().unwrap();
    // 20 connections worker 1 owns: 4 fit in the ring, 16 are dropped.
    let theirs: Vec<u16> = (1000..)
        .filter(|&c| owner(ZONE, &original(c), 2) == 1)
        .take(20)
        .collect();
    for &c in &theirs {
        rx.push(VecBuf::new(&to_vip(c, SYN, 1, 0, 0).1));
    }
    w.poll_once();
    let s = w.stats();
    assert_eq!(s.drops(DropReason::CtHandoffFull), 16);
    let mut handed = 0;
    peer.drain(|m| handed += usize::from(matches!(m, handoff::HandoffMsg::Packet { .. })));
    assert_eq!(handed, 4);
    assert!(tx.iter().all(|r| r.is_empty()));
}

/// The first packet of a flow whose connection another worker owns takes the
/// stages and installs an entry that hands over; the flow's next packets are
/// flow-table hits handed over without the stages, as they came in.
#[test]
fn the_next_packets_of_a_flow_are_handed_over_by_its_flow_entry() {
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let cell = Arc::new(SnapshotCell::new(
        Arc::try_unwrap(p).unwrap_or_else(|_| unreachable!("one owner")),
    ));
    let rx = Ring::new();
    let tx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
    let client = to_vip(1, SYN, 0, 0, 0).0;
    let mut rings = handoff::mesh::<VecBuf>(2, 64).into_iter();
    let mut w = Dp::new(
        WorkerId(0),
        vec![(client, VecRxQueue::new(rx.clone()))],
        tx.iter()
            .map(|r| Some(VecTxQueue::new(r.clone())))
            .collect(),
        VecAlloc::unlimited(),
        cell,
        IdleBackoff::busy_poll(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
    .with_handoff(rings.next().unwrap());
    let peer = rings.next().unwrap();
    let c = (1000..)
        .find(|&c| owner(ZONE, &original(c), 2) == 1)
        .unwrap();
    let frames = [
        to_vip(c, SYN, 1000, 0, 0).1,
        to_vip(c, ACK, 1001, 5001, 0).1,
        to_vip(c, ACK, 1001, 5001, 10).1,
    ];
    for f in &frames {
        rx.push(VecBuf::new(f));
        w.poll_once();
    }
    let mut handed = Vec::new();
    peer.drain(|m| {
        if let handoff::HandoffMsg::Packet { in_port, buf } = m {
            handed.push((in_port, buf.data().to_vec()));
        }
    });
    // Every packet, unchanged, with the port it came in by.
    let want: Vec<_> = frames.iter().map(|f| (client, f.clone())).collect();
    assert_eq!(handed, want);
    let s = w.stats().to_snapshot(WorkerId(0));
    assert_eq!((s.flows.misses, s.flows.hits), (1, 2), "{:?}", s.flows);
    assert_eq!(s.ct.handed_off, 3);
    assert_eq!(s.ct.entries, 0, "the non-owner holds nothing");
    assert!(tx.iter().all(|r| r.is_empty()));
}

/// Two workers polled in turn on one thread: the owner of DNAT'd connections
/// leaves a stub on the other worker for each whose reply hashes there, and
/// takes every stub back when its connections go (`ct flush` here; expiry
/// reports the same way).
#[test]
fn stubs_come_with_their_connections_and_go_with_them() {
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let cell = Arc::new(SnapshotCell::new(
        Arc::try_unwrap(p).unwrap_or_else(|_| unreachable!("one owner")),
    ));
    let rx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
    let tx: Vec<Ring<VecBuf>> = (0..PORTS).map(|_| Ring::new()).collect();
    let client = to_vip(1, SYN, 0, 0, 0).0;
    let mut cmds = Vec::new();
    let mut w: Vec<_> = handoff::mesh::<VecBuf>(2, 256)
        .into_iter()
        .enumerate()
        .map(|(i, rings)| {
            // Worker 0 polls the client's port, worker 1 the backends'.
            let mine = (0..PORTS)
                .map(|p| PortIdx(p as u16))
                .filter(|&p| (p == client) == (i == 0))
                .map(|p| (p, VecRxQueue::new(rx[p.index()].clone())))
                .collect();
            let (c, r) = crossbeam::channel::unbounded();
            cmds.push(c);
            Dp::new(
                WorkerId(i as u16),
                mine,
                tx.iter()
                    .map(|r| Some(VecTxQueue::new(r.clone())))
                    .collect(),
                VecAlloc::unlimited(),
                Arc::clone(&cell),
                IdleBackoff::busy_poll(),
                Arc::new(AtomicBool::new(false)),
            )
            .unwrap()
            .with_commands(r)
            .with_handoff(rings)
        })
        .collect();
    let stubs_on_1 = |w: &mut Vec<Dp<VecRxQueue, VecTxQueue, VecAlloc>>| {
        // A round to take the ring in (a command is answered at the start
        // of the next).
        w[1].poll_once();
        let (reply, answer) = std::sync::mpsc::channel();
        cmds[1]
            .send(WorkerCommand::Conntrack(CtRequest::List {
                filter: CtFilter {
                    state: Some(CtState::Redirect),
                    ..CtFilter::default()
                },
                limit: 1000,
                reply,
            }))
            .unwrap();
        w[1].poll_once();
        answer.recv().unwrap()
    };
    // 40 connections worker 0 owns.
    let ports: Vec<u16> = (2000..)
        .filter(|&c| owner(ZONE, &original(c), 2) == 0)
        .take(40)
        .collect();
    for &c in &ports {
        rx[client.index()].push(VecBuf::new(&to_vip(c, SYN, 1000, 0, 0).1));
    }
    w[0].poll_once();
    w[0].poll_once();
    let mut want = std::collections::HashSet::new();
    for (k, b) in BACKENDS.iter().enumerate() {
        for f in tx[b.2.index()].take_all() {
            let cport = ports_of(f.data()).0;
            let r = reply(k, cport);
            if owner(ZONE, &r, 2) == 1 {
                want.insert(r);
            }
        }
    }
    assert!(!want.is_empty(), "no reply hashes to worker 1");
    let got: std::collections::HashSet<CtTuple> =
        stubs_on_1(&mut w).iter().map(|e| e.original).collect();
    assert_eq!(got, want);
    // Two segments of each stubbed connection's backend, received by worker
    // 1: the first meets the stub in the stages and installs an entry that
    // checks it; the second is a hit on that entry. Both go to worker 0.
    let stubbed: Vec<(usize, u16)> = want
        .iter()
        .map(|r| {
            let src = r.src_ip().to_string();
            (BACKENDS.iter().position(|b| src == b.0).unwrap(), r.dport)
        })
        .collect();
    let before = w[1].stats().to_snapshot(WorkerId(1)).flows;
    for _ in 0..2 {
        for &(k, c) in &stubbed {
            let (port, f) = from_backend(k, c, SYN | ACK, 5000, 1001, 0);
            rx[port.index()].push(VecBuf::new(&f));
        }
        w[1].poll_once();
    }
    let s = w[1].stats().to_snapshot(WorkerId(1));
    assert_eq!(s.flows.misses - before.misses, stubbed.len() as u64);
    assert_eq!(s.flows.hits - before.hits, stubbed.len() as u64);
    assert_eq!(s.ct.handed_off, 2 * stubbed.len() as u64);
    w[0].poll_once();
    // Both reach the client (the second, a retransmission, is accepted).
    assert_eq!(tx[client.index()].take_all().len(), 2 * stubbed.len());
    // The connections go: so do their stubs.
    let (reply, answer) = std::sync::mpsc::channel();
    cmds[0]
        .send(WorkerCommand::Conntrack(CtRequest::Flush {
            filter: CtFilter::default(),
            reply,
        }))
        .unwrap();
    w[0].poll_once();
    assert_eq!(answer.recv().unwrap(), ports.len());
    assert!(
        stubs_on_1(&mut w).is_empty(),
        "stubs left after their connections"
    );
    // The entries that checked the stubs no longer hand over: the stages
    // find nothing for an answer to no connection.
    let handed = w[1].stats().to_snapshot(WorkerId(1)).ct.handed_off;
    for &(k, c) in &stubbed {
        let (port, f) = from_backend(k, c, ACK, 5001, 1001, 0);
        rx[port.index()].push(VecBuf::new(&f));
    }
    w[1].poll_once();
    let s = w[1].stats().to_snapshot(WorkerId(1));
    assert_eq!(s.ct.handed_off, handed);
    assert_eq!(s.drops_for(DropReason::CtInvalid), stubbed.len() as u64);
}

/// A service with ClientIP affinity on two workers: a client's connections
/// are spread over both by their tuples, yet all reach one backend — their
/// connections are owned by the worker the client's address hashes to,
/// which keeps the one affinity record; the answers find them through the
/// stubs.
#[test]
fn client_ip_affinity_holds_across_two_workers() {
    use crate::pipeline::lb::services::Affinity;
    for client_worker in [0, 1] {
        let mut spec = service(active());
        spec.affinity = Affinity::ClientIp { timeout_s: 600 };
        let lab = Lab::with(client_worker, spec);
        let cports: Vec<u16> = (0..60).map(|i| 31_000 + i).collect();
        let client = [to_vip(1, SYN, 0, 0, 0).0];
        let backends: Vec<PortIdx> = BACKENDS.iter().map(|b| b.2).collect();
        // The first connection alone: it makes the record.
        lab.send(to_vip(cports[0], SYN, 1000, 0, 0));
        let first = to_backends(&lab.expect(&backends, 1), &cports[..1]);
        for &c in &cports[1..] {
            lab.send(to_vip(c, SYN, 1000, 0, 0));
        }
        let by = to_backends(&lab.expect(&backends, cports.len() - 1), &cports[1..]);
        let k = first[&cports[0]];
        assert!(
            by.values().all(|&b| b == k),
            "layout {client_worker}: {by:?}"
        );
        for &c in &cports {
            lab.send(from_backend(k, c, SYN | ACK, 5000, 1001, 0));
        }
        to_client(&lab.expect(&client, cports.len()), &cports);
        let held = lab.list(&CtFilter::default());
        let stats = lab.stop();
        let by_addr = CtTuple {
            src: original(1).src,
            dst: original(1).src,
            ..CtTuple::default()
        };
        let keeper = owner(ZONE, &by_addr, 2);
        assert_eq!(
            held[keeper].len(),
            cports.len(),
            "all on the client's worker"
        );
        assert!(held[1 - keeper].is_empty());
        for s in &stats {
            assert_eq!(s.total_drops(), 0, "{:?}", s.drops);
        }
    }
}
