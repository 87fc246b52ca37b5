//! The LB stage and its flow-table rewrite, through the real stages in
//! `VecBuf`s: a client pod reaching a ClusterIP through its gateway, three
//! backend pods answering it directly. Expected frames are built from
//! scratch here, their checksums summed over the whole packet by this
//! file's own code (not the incremental updates under test).

use super::conntrack_stage::{Worker, ACK, D, E, FIN, POD_D, POD_E, SYN};
use super::*;
use crate::drop::DropReason as Why;
use crate::pipeline::conntrack::CtFilter;
use crate::pipeline::lb::maglev::BackendState;
use crate::pipeline::lb::services::{
    Affinity, BackendSpec, Protocol, ServiceChange, ServicePortSpec, ServiceSpec, Services,
};
use crate::pipeline::trace::TraceNames;

pub(super) const VIP: &str = "10.96.0.10";
pub(super) const CLIENT: &str = "10.1.0.10";
/// The backends: (address, MAC, port).
pub(super) const BACKENDS: [(&str, MacAddr, PortIdx); 3] = [
    ("10.1.0.11", B, POD_B),
    ("10.1.0.12", D, POD_D),
    ("10.1.0.13", E, POD_E),
];

pub(super) fn service(states: [BackendState; 3]) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        network: "blue".into(),
        cluster_ip: VIP.parse().unwrap(),
        ports: vec![
            ServicePortSpec {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                target_port: 8080,
                node_port: None,
            },
            ServicePortSpec {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                target_port: 5353,
                node_port: None,
            },
        ],
        external_ips: vec![],
        affinity: Affinity::None,
        table_size: 251,
        backends: BACKENDS
            .iter()
            .zip(states)
            .map(|((a, _, _), state)| BackendSpec {
                address: a.parse().unwrap(),
                weight: 1,
                state,
            })
            .collect(),
    }
}

/// blue (VNI 100), not asking for conntrack: its service makes it tracked.
/// The client A and the three backends are its pods.
pub(super) fn lb_pipeline(
    generation: u64,
    prev: &Services,
    spec: ServiceSpec,
) -> (Arc<Pipeline>, Services) {
    let mut blue = net(
        "blue",
        100,
        Encap::Vxlan,
        "t1",
        "10.1.0.0/24",
        &["10.1.0.1"],
        G_BLUE,
    );
    blue.conntrack = false;
    blue.vteps.clear();
    let mut b = OverlayBuilder::new(generation);
    b.network(blue)
        .local_endpoint(local("blue", A, &[CLIENT], POD_A));
    for (ip, mac, port) in BACKENDS {
        b.local_endpoint(local("blue", mac, &[ip], port));
    }
    let overlay = b.build().unwrap();
    let services = prev
        .patched(&[ServiceChange::Put(spec)], |n| overlay.network_by_name(n))
        .unwrap();
    let l2 = L2PipelineBuilder::new(generation).build().unwrap();
    let p = Pipeline::new(generation, l2, overlay, wire::ParseConfig::default())
        .with_services(Arc::new(services.clone()));
    (Arc::new(p), services)
}

pub(super) fn active() -> [BackendState; 3] {
    [BackendState::Active; 3]
}

/// The one's-complement checksum of `parts`, summed from scratch.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for p in parts {
        for c in p.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 TCP or UDP frame with both checksums right.
#[allow(clippy::too_many_arguments)]
pub(super) fn frame(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: &str,
    dst: &str,
    ports: (u16, u16),
    ttl: u8,
    tcp: Option<(u8, u32, u32)>,
    payload: usize,
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    let proto = match tcp {
        Some((flags, seq, ack)) => {
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(&ack.to_be_bytes());
            l4.extend_from_slice(&[0x50, flags, 0xfa, 0x00, 0, 0, 0, 0]);
            6u8
        }
        None => {
            l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17u8
        }
    };
    l4.extend((0..payload).map(|i| (i * 7) as u8));
    let (s, d) = (ip4(src).octets(), ip4(dst).octets());
    let len = (l4.len() as u16).to_be_bytes();
    let pseudo = [&s[..], &d[..], &[0, proto], &len[..]].concat();
    let c = checksum(&[&pseudo, &l4]);
    let at = if proto == 6 { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&s);
    ip[16..20].copy_from_slice(&d);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// Both checksums of `f` verify when summed from scratch.
pub(super) fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[14..34];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &f[34..14 + total];
    let pseudo = [
        &ip[12..20],
        &[0, ip[9]],
        &(l4.len() as u16).to_be_bytes()[..],
    ]
    .concat();
    checksum(&[ip]) == 0 && checksum(&[&pseudo, l4]) == 0
}

/// The client's segment to the ClusterIP, through its gateway.
pub(super) fn to_vip(
    sport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> (PortIdx, Vec<u8>) {
    let tcp = Some((flags, seq, ack));
    let f = frame(G_BLUE, A, CLIENT, VIP, (sport, 80), 64, tcp, payload);
    (POD_A, f)
}

/// Backend `k`'s segment back to the client, sent to it directly.
pub(super) fn from_backend(
    k: usize,
    sport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> (PortIdx, Vec<u8>) {
    let (ip, mac, port) = BACKENDS[k];
    let tcp = Some((flags, seq, ack));
    (
        port,
        frame(A, mac, ip, CLIENT, (8080, sport), 64, tcp, payload),
    )
}

/// The frame a worker leaves of `pkt`, with its verdict.
pub(super) fn send(w: &mut Worker, pkt: &(PortIdx, Vec<u8>)) -> (Verdict, Vec<u8>) {
    let map = NeighborTable::new(NeighborConfig::default())
        .reader()
        .load_full();
    let mut limiter = ResolveLimiter::new(&NeighborConfig::default());
    let mut ctx = Ctx::new(&map, &mut limiter, Instant::now());
    let mut buf = VecBuf::new(&pkt.1);
    let v = w.p.process_with(pkt.0, &mut buf, &mut ctx, &mut w.state);
    (v, buf.data().to_vec())
}

/// Which backend a verdict went to.
pub(super) fn backend_of(v: Verdict) -> Option<usize> {
    BACKENDS
        .iter()
        .position(|(_, _, port)| v == Verdict::Output(*port))
}

/// The first packet of a connection to the ClusterIP goes to a backend with
/// its destination rewritten, routed through the gateway (MACs, TTL); the
/// backend's answer reaches the client from the ClusterIP. Every byte equals
/// a frame built from scratch, checksums included, with the flow table on
/// (the later packets are hits) and off.
#[test]
fn a_connection_to_the_cluster_ip_is_dnated_and_its_reply_comes_from_the_vip() {
    for flows in [false, true] {
        let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
        let mut w = Worker::new(p, flows);
        let what = format!("flows {flows}");
        let (v, out) = send(&mut w, &to_vip(40000, SYN, 1000, 0, 0));
        let k = backend_of(v).unwrap_or_else(|| panic!("{what}: {v:?}"));
        let (ip, mac, _) = BACKENDS[k];
        let want = |flags, seq, ack, len| {
            let tcp = Some((flags, seq, ack));
            frame(mac, G_BLUE, CLIENT, ip, (40000, 8080), 63, tcp, len)
        };
        assert_eq!(out, want(SYN, 1000, 0, 0), "{what}");
        assert!(checksums_ok(&out));
        let back = |flags, seq, ack, len| {
            let tcp = Some((flags, seq, ack));
            frame(A, mac, VIP, CLIENT, (80, 40000), 64, tcp, len)
        };
        let (v, out) = send(&mut w, &from_backend(k, 40000, SYN | ACK, 5000, 1001, 0));
        assert_eq!(
            (v, out),
            (Verdict::Output(POD_A), back(SYN | ACK, 5000, 1001, 0))
        );
        // Established, then data both ways: hits when the table is on.
        for (seq, len) in [(1001, 0), (1001, 100), (1101, 1400), (2501, 1)] {
            let (v, out) = send(&mut w, &to_vip(40000, ACK, seq, 5001, len));
            assert_eq!(v, Verdict::Output(BACKENDS[k].2), "{what}");
            assert_eq!(out, want(ACK, seq, 5001, len), "{what} seq {seq}");
        }
        for (seq, len) in [(5001, 10), (5011, 999), (6010, 0)] {
            let (v, out) = send(&mut w, &from_backend(k, 40000, ACK, seq, 2502, len));
            assert_eq!(v, Verdict::Output(POD_A), "{what}");
            assert_eq!(out, back(ACK, seq, 2502, len), "{what} seq {seq}");
            assert!(checksums_ok(&out));
        }
        if flows {
            let s = w.state.flow_stats();
            assert!(s.hits >= 5 && s.installs >= 2, "{s:?}");
        }
        let ct = w.state.conntrack().stats();
        assert_eq!((ct.created, ct.lb_new, ct.invalid), (1, 1, 0), "{what}");
        // `ct list` shows the translation: the reply tuple comes from the backend.
        let list = w
            .state
            .conntrack()
            .list(&CtFilter::default(), Instant::now(), 10);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].original.dst_ip(), ip4(VIP));
        assert_eq!(list[0].reply.src_ip(), ip4(ip));
        assert_eq!(list[0].reply.sport, 8080);
    }
}

/// UDP to the service port 53 goes to the backends' 5353, and back; a UDP
/// datagram without a checksum keeps none.
#[test]
fn udp_through_the_service_port_and_back() {
    for flows in [false, true] {
        let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
        let mut w = Worker::new(p, flows);
        for i in 0..3 {
            let q = frame(G_BLUE, A, CLIENT, VIP, (5000, 53), 64, None, 20 + i);
            let (v, out) = send(&mut w, &(POD_A, q));
            let k = backend_of(v).unwrap();
            let (ip, mac, port) = BACKENDS[k];
            let want = frame(mac, G_BLUE, CLIENT, ip, (5000, 5353), 63, None, 20 + i);
            assert_eq!(out, want, "flows {flows}");
            let r = frame(A, mac, ip, CLIENT, (5353, 5000), 64, None, 30);
            let (v, out) = send(&mut w, &(port, r));
            let back = frame(A, mac, VIP, CLIENT, (53, 5000), 64, None, 30);
            assert_eq!((v, out), (Verdict::Output(POD_A), back));
        }
        let mut q = frame(G_BLUE, A, CLIENT, VIP, (5000, 53), 64, None, 8);
        q[40..42].copy_from_slice(&[0, 0]);
        let (_, out) = send(&mut w, &(POD_A, q));
        assert_eq!(&out[40..42], &[0, 0], "flows {flows}");
    }
}

/// Many connections from one client: the flow table's bytes and verdicts
/// equal the stages' alone for both directions, every backend gets some, and
/// each connection keeps its backend.
#[test]
fn the_flow_table_agrees_with_the_stages_on_many_connections() {
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let mut on = Worker::new(Arc::clone(&p), true);
    let mut off = Worker::new(p, false);
    let mut seen = [0usize; 3];
    for sport in 41000..41060u16 {
        let (v, a) = send(&mut on, &to_vip(sport, SYN, 1, 0, 0));
        assert_eq!((v, a), send(&mut off, &to_vip(sport, SYN, 1, 0, 0)));
        let k = backend_of(v).unwrap();
        seen[k] += 1;
        let mut pkts = vec![from_backend(k, sport, SYN | ACK, 9, 2, 0)];
        for i in 0..4 {
            pkts.push(to_vip(sport, ACK, 2 + 10 * i, 10, 10));
            pkts.push(from_backend(k, sport, ACK, 10 + 5 * i, 12 + 10 * i, 5));
        }
        pkts.push(to_vip(sport, FIN | ACK, 42, 30, 0));
        for pkt in &pkts {
            let (a, b) = (send(&mut on, pkt), send(&mut off, pkt));
            assert_eq!(a, b, "port {sport}");
            assert!(matches!(a.0, Verdict::Output(_)), "{a:?}");
        }
    }
    assert!(seen.iter().all(|&n| n > 5), "{seen:?}");
    let s = on.state.flow_stats();
    assert!(s.hits > 60 * 6, "{s:?}");
}

/// A backend set to draining keeps its connections (stages and hits alike)
/// and gets no new one; set down, its connection is closed
/// (`lb_backend_gone`) and the hit path does not apply the old rewrite.
#[test]
fn draining_keeps_existing_connections_and_down_closes_them() {
    for flows in [false, true] {
        let (p, services) = lb_pipeline(1, &Services::empty(), service(active()));
        let mut w = Worker::new(p, flows);
        // Connections until one lands on each backend.
        let mut on = [None; 3];
        for sport in 42000..42100u16 {
            let (v, _) = send(&mut w, &to_vip(sport, SYN, 1, 0, 0));
            let k = backend_of(v).unwrap();
            if on[k].is_none() {
                send(&mut w, &from_backend(k, sport, SYN | ACK, 9, 2, 0));
                send(&mut w, &to_vip(sport, ACK, 2, 10, 0));
                on[k] = Some(sport);
            }
        }
        let drained = 1;
        let sport = on[drained].unwrap();
        let mut states = active();
        states[drained] = BackendState::Draining;
        let (p2, services) = lb_pipeline(2, &services, service(states));
        w.p = p2;
        w.state.bind(&w.p);
        for i in 0..3 {
            let (v, _) = send(&mut w, &to_vip(sport, ACK, 2 + i, 10, 1));
            assert_eq!(v, Verdict::Output(BACKENDS[drained].2), "flows {flows}");
            let (v, _) = send(&mut w, &from_backend(drained, sport, ACK, 10 + i, 3 + i, 1));
            assert_eq!(v, Verdict::Output(POD_A));
        }
        for sport in 43000..43060u16 {
            let (v, _) = send(&mut w, &to_vip(sport, SYN, 1, 0, 0));
            assert_ne!(backend_of(v), Some(drained), "flows {flows} port {sport}");
        }
        let mut states = active();
        states[drained] = BackendState::Down;
        let (p3, _) = lb_pipeline(3, &services, service(states));
        w.p = p3;
        w.state.bind(&w.p);
        let (v, _) = send(&mut w, &to_vip(sport, ACK, 5, 10, 1));
        assert_eq!(v, Verdict::Drop(Why::LbBackendGone), "flows {flows}");
        // Closed: the next segment finds no connection.
        let (v, _) = send(&mut w, &to_vip(sport, ACK, 6, 10, 1));
        assert_eq!(v, Verdict::Drop(Why::CtInvalid), "flows {flows}");
        // The other backends' connections go on.
        let other = on[0].unwrap();
        let (v, _) = send(&mut w, &to_vip(other, ACK, 2, 10, 1));
        assert_eq!(v, Verdict::Output(BACKENDS[0].2), "flows {flows}");
    }
}

/// A connection flushed from conntrack, then opened again on the same tuple
/// after the service changed: the flow entry's old rewrite is never applied.
/// A segment of the flushed connection is refused (`ct_invalid`), the new
/// SYN goes where the stages send it.
#[test]
fn a_flushed_connection_never_takes_its_old_rewrite() {
    let (p, services) = lb_pipeline(1, &Services::empty(), service(active()));
    let mut w = Worker::new(p, true);
    let sport = 44000;
    let (v, _) = send(&mut w, &to_vip(sport, SYN, 1, 0, 0));
    let k = backend_of(v).unwrap();
    send(&mut w, &from_backend(k, sport, SYN | ACK, 9, 2, 0));
    send(&mut w, &to_vip(sport, ACK, 2, 10, 0));
    assert_eq!(send(&mut w, &to_vip(sport, ACK, 2, 10, 5)).0, v);
    w.state.conntrack_mut().flush(&CtFilter::default());
    assert_eq!(
        send(&mut w, &to_vip(sport, ACK, 7, 10, 5)).0,
        Verdict::Drop(Why::CtInvalid)
    );
    // Its backend drained: the same tuple opens a connection elsewhere.
    let mut states = active();
    states[k] = BackendState::Draining;
    let (p2, _) = lb_pipeline(2, &services, service(states));
    w.p = Arc::clone(&p2);
    w.state.bind(&w.p);
    let mut fresh = Worker::new(p2, false);
    let syn = to_vip(sport, SYN, 100, 0, 0);
    let (v2, out) = send(&mut w, &syn);
    assert_ne!(backend_of(v2), Some(k));
    assert_eq!((v2, out), send(&mut fresh, &syn));
    let ack = to_vip(sport, ACK, 101, 10, 3);
    let k2 = backend_of(v2).unwrap();
    send(&mut w, &from_backend(k2, sport, SYN | ACK, 9, 101, 0));
    send(&mut fresh, &from_backend(k2, sport, SYN | ACK, 9, 101, 0));
    assert_eq!(send(&mut w, &ack), send(&mut fresh, &ack));
}

/// `trace` shows the LB stage's record: the service, the backend and the
/// Maglev slot that chose it.
#[test]
fn trace_shows_the_service_and_the_maglev_slot() {
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let map = NeighborTable::new(NeighborConfig::default())
        .reader()
        .load_full();
    let (port, syn) = to_vip(45000, SYN, 1, 0, 0);
    let t = p.trace(port, &syn, &map, &TraceNames::default());
    let lb = t
        .lines
        .iter()
        .find(|l| l.stage == "lb")
        .expect("an lb line");
    assert!(
        lb.detail.contains("service \"web\"")
            && lb.detail.contains("by Maglev slot")
            && lb.detail.contains(":8080"),
        "{lb:?}"
    );
    assert!(matches!(t.verdict, Verdict::Output(_)));
}

/// [`send`] at instant `now`.
fn send_at(w: &mut Worker, pkt: &(PortIdx, Vec<u8>), now: Instant) -> Verdict {
    let map = NeighborTable::new(NeighborConfig::default())
        .reader()
        .load_full();
    let mut limiter = ResolveLimiter::new(&NeighborConfig::default());
    let mut ctx = Ctx::new(&map, &mut limiter, now);
    let mut buf = VecBuf::new(&pkt.1);
    w.p.process_with(pkt.0, &mut buf, &mut ctx, &mut w.state)
}

/// ClientIP affinity: every new connection of the client goes to the backend
/// its first one got, while the timeout runs from its last new connection;
/// a drained backend is left for another, which the client then keeps.
#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend_until_drained() {
    let affine = |states| ServiceSpec {
        affinity: Affinity::ClientIp { timeout_s: 10 },
        ..service(states)
    };
    for flows in [false, true] {
        let (p, services) = lb_pipeline(1, &Services::empty(), affine(active()));
        let mut w = Worker::new(p, flows);
        let t0 = Instant::now();
        let first = send_at(&mut w, &to_vip(46000, SYN, 1, 0, 0), t0);
        let k = backend_of(first).unwrap();
        // Each a second after the last: the timeout (10 s) never runs out.
        for (i, sport) in (46001..46030u16).enumerate() {
            let at = t0 + std::time::Duration::from_secs(i as u64 + 1);
            let v = send_at(&mut w, &to_vip(sport, SYN, 1, 0, 0), at);
            assert_eq!(v, first, "flows {flows} port {sport}");
        }
        let mut states = active();
        states[k] = BackendState::Draining;
        let (p2, _) = lb_pipeline(2, &services, affine(states));
        w.p = p2;
        w.state.bind(&w.p);
        let at = t0 + std::time::Duration::from_secs(31);
        let moved = send_at(&mut w, &to_vip(47000, SYN, 1, 0, 0), at);
        assert_ne!(backend_of(moved), Some(k), "flows {flows}");
        for sport in 47001..47020u16 {
            let v = send_at(&mut w, &to_vip(sport, SYN, 1, 0, 0), at);
            assert_eq!(v, moved, "flows {flows} port {sport}");
        }
    }
    // Without affinity, the same client's connections spread.
    let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
    let mut w = Worker::new(p, false);
    let seen: std::collections::BTreeSet<_> = (48000..48030u16)
        .filter_map(|sport| backend_of(send(&mut w, &to_vip(sport, SYN, 1, 0, 0)).0))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// Hairpin: backend B reaching the ClusterIP and landing on itself gets
/// there from the ClusterIP (its source translated too), and its answer
/// goes back to it from the ClusterIP's port 80; a connection of B landing
/// on another backend keeps B's address.
#[test]
fn a_backend_reaching_its_own_service_gets_there_from_the_vip() {
    for flows in [false, true] {
        let (p, _) = lb_pipeline(1, &Services::empty(), service(active()));
        let mut w = Worker::new(p, flows);
        let (b_ip, _, b_port) = BACKENDS[0];
        let from_b = |sport, flags, seq, ack| {
            let tcp = Some((flags, seq, ack));
            (b_port, frame(G_BLUE, B, b_ip, VIP, (sport, 80), 64, tcp, 0))
        };
        let (mut hairpin, mut other) = (None, None);
        for sport in 49000..49100u16 {
            let (v, out) = send(&mut w, &from_b(sport, SYN, 1, 0));
            match backend_of(v) {
                Some(0) if hairpin.is_none() => hairpin = Some((sport, out)),
                Some(k) if k != 0 && other.is_none() => other = Some((sport, k, out)),
                _ => {}
            }
        }
        let (sport, out) = hairpin.expect("one connection lands on B itself");
        let tcp = Some((SYN, 1, 0));
        let want = frame(B, G_BLUE, VIP, b_ip, (sport, 8080), 63, tcp, 0);
        assert_eq!(out, want, "flows {flows}");
        // B answers the ClusterIP, through its gateway.
        let tcp = Some((SYN | ACK, 9, 2));
        let answer = (
            b_port,
            frame(G_BLUE, B, b_ip, VIP, (8080, sport), 64, tcp, 0),
        );
        let (v, out) = send(&mut w, &answer);
        let back = frame(B, G_BLUE, VIP, b_ip, (80, sport), 63, tcp, 0);
        assert_eq!((v, out), (Verdict::Output(b_port), back), "flows {flows}");
        let (sport, k, out) = other.expect("one connection lands elsewhere");
        let (ip, mac, _) = BACKENDS[k];
        let want = frame(
            mac,
            G_BLUE,
            b_ip,
            ip,
            (sport, 8080),
            63,
            Some((SYN, 1, 0)),
            0,
        );
        assert_eq!(out, want, "flows {flows}");
    }
}

/// An IPv6 TCP frame with its checksum summed from scratch.
#[allow(clippy::too_many_arguments)]
fn frame6(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: &str,
    dst: &str,
    ports: (u16, u16),
    hops: u8,
    flags: u8,
) -> Vec<u8> {
    let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut l4 = Vec::new();
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xfa, 0, 0, 0, 0, 0]);
    let len = (l4.len() as u16).to_be_bytes();
    let pseudo = [
        &s.octets()[..],
        &d.octets()[..],
        &[0, 0],
        &len[..],
        &[0, 0, 0, 6],
    ]
    .concat();
    let c = checksum(&[&pseudo, &l4]);
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(dst_mac, src_mac, 0x86dd);
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&len);
    f.extend_from_slice(&[6, hops]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&l4);
    f
}

/// An IPv6 service: the stages translate both directions (the flow table
/// does not cache IPv6 yet), checksums right.
#[test]
fn an_ipv6_cluster_ip_is_translated_both_ways() {
    const VIP6: &str = "fd00:96::10";
    let mut blue = net(
        "blue",
        100,
        Encap::Vxlan,
        "t1",
        "fd00:1::/64",
        &["fd00:1::1"],
        G_BLUE,
    );
    blue.vteps.clear();
    let mut b = OverlayBuilder::new(1);
    b.network(blue)
        .local_endpoint(local("blue", A, &["fd00:1::10"], POD_A))
        .local_endpoint(local("blue", B, &["fd00:1::11"], POD_B))
        .local_endpoint(local("blue", D, &["fd00:1::12"], POD_D));
    let overlay = b.build().unwrap();
    let spec = ServiceSpec {
        cluster_ip: VIP6.parse().unwrap(),
        backends: ["fd00:1::11", "fd00:1::12"]
            .iter()
            .map(|a| BackendSpec {
                address: a.parse().unwrap(),
                weight: 1,
                state: BackendState::Active,
            })
            .collect(),
        ..service(active())
    };
    let services =
        Services::build(&[spec], |n| overlay.network_by_name(n), &Services::empty()).unwrap();
    let l2 = L2PipelineBuilder::new(1).build().unwrap();
    let p = Arc::new(
        Pipeline::new(1, l2, overlay, wire::ParseConfig::default())
            .with_services(Arc::new(services)),
    );
    for flows in [false, true] {
        let mut w = Worker::new(Arc::clone(&p), flows);
        let syn = frame6(G_BLUE, A, "fd00:1::10", VIP6, (40000, 80), 64, SYN);
        let (v, out) = send(&mut w, &(POD_A, syn));
        let (ip, mac, port) = if v == Verdict::Output(POD_B) {
            ("fd00:1::11", B, POD_B)
        } else {
            ("fd00:1::12", D, POD_D)
        };
        assert_eq!(v, Verdict::Output(port), "flows {flows}");
        let want = frame6(mac, G_BLUE, "fd00:1::10", ip, (40000, 8080), 63, SYN);
        assert_eq!(out, want, "flows {flows}");
        let sa = frame6(A, mac, ip, "fd00:1::10", (8080, 40000), 64, SYN | ACK);
        let (v, out) = send(&mut w, &(port, sa));
        let back = frame6(A, mac, VIP6, "fd00:1::10", (80, 40000), 64, SYN | ACK);
        assert_eq!((v, out), (Verdict::Output(POD_A), back), "flows {flows}");
    }
}
