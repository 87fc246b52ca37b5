//! The conntrack stage and the flow table's per-packet update, from packet
//! sequences through the real stages in `VecBuf`s. Expected states are Linux
//! TCP conntrack's, written per case.

use super::*;
use crate::drop::DropReason as Why;
use crate::pipeline::conntrack::{CtConfig, CtFilter, CtState, TcpState};
use crate::pipeline::trace::TraceNames;

pub(super) const POD_D: PortIdx = PortIdx(5);
pub(super) const POD_E: PortIdx = PortIdx(6);
pub(super) const D: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0d]);
pub(super) const E: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0e]);

pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;
pub(super) const FIN: u8 = 0x01;
pub(super) const RST: u8 = 0x04;

/// blue (VNI 100) tracked with window tracking, green (VNI 200) tracked
/// without, red (VNI 300) untracked; two pods in blue, one in green and red.
fn tracked() -> Arc<Pipeline> {
    let mut blue = net(
        "blue",
        100,
        Encap::Vxlan,
        "t1",
        "10.1.0.0/24",
        &["10.1.0.1"],
        G_BLUE,
    );
    blue.conntrack = true;
    let mut green = net(
        "green",
        200,
        Encap::Vxlan,
        "t1",
        "10.2.0.0/24",
        &["10.2.0.1"],
        G_GREEN,
    );
    green.conntrack = true;
    green.conntrack_window_tracking = false;
    let mut red = net(
        "red",
        300,
        Encap::Vxlan,
        "t2",
        "10.3.0.0/24",
        &["10.3.0.1"],
        G_RED,
    );
    red.conntrack = false;
    for n in [&mut blue, &mut green, &mut red] {
        n.vteps.clear();
    }
    let mut b = OverlayBuilder::new(1);
    b.network(blue)
        .network(green)
        .network(red)
        .local_endpoint(local("blue", A, &["10.1.0.10"], POD_A))
        .local_endpoint(local("blue", B, &["10.1.0.11"], POD_B))
        .local_endpoint(local("green", C, &["10.2.0.10"], POD_C))
        .local_endpoint(local("green", D, &["10.2.0.11"], POD_D))
        .local_endpoint(local("red", R, &["10.3.0.10"], POD_RED))
        .local_endpoint(local("red", E, &["10.3.0.11"], POD_E));
    let l2 = L2PipelineBuilder::new(1).build().unwrap();
    Arc::new(Pipeline::new(
        1,
        l2,
        b.build().unwrap(),
        wire::ParseConfig::default(),
    ))
}

/// A TCP segment; `wscale` adds the window-scale option.
#[allow(clippy::too_many_arguments)]
fn tcp4(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: &str,
    dst: &str,
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ipv4_header(ip4(src), ip4(dst), 6, 64, 20 + payload, true));
    f.extend_from_slice(&ports.0.to_be_bytes());
    f.extend_from_slice(&ports.1.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags]);
    f.extend_from_slice(&64000u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// One side of a conversation between A:40000 (client) and B:80 in blue.
fn a_to_b(flags: u8, seq: u32, ack: u32, payload: usize) -> (PortIdx, Vec<u8>) {
    (
        POD_A,
        tcp4(
            B,
            A,
            "10.1.0.10",
            "10.1.0.11",
            (40000, 80),
            flags,
            seq,
            ack,
            payload,
        ),
    )
}

fn b_to_a(flags: u8, seq: u32, ack: u32, payload: usize) -> (PortIdx, Vec<u8>) {
    (
        POD_B,
        tcp4(
            A,
            B,
            "10.1.0.11",
            "10.1.0.10",
            (80, 40000),
            flags,
            seq,
            ack,
            payload,
        ),
    )
}

/// A worker's state (flow table on or off) with a small conntrack table.
pub(super) struct Worker {
    pub(super) p: Arc<Pipeline>,
    table: NeighborTable,
    limiter: ResolveLimiter,
    pub(super) state: WorkerState,
}

impl Worker {
    pub(super) fn new(p: Arc<Pipeline>, flows: bool) -> Worker {
        let table = NeighborTable::new(NeighborConfig::default());
        let limiter = ResolveLimiter::new(table.config());
        let config = CtConfig {
            capacity: 1024,
            ..CtConfig::default()
        };
        let mut state =
            WorkerState::with_flow_entries(if flows { 1024 } else { 0 }).with_conntrack(config);
        state.bind(&p);
        Worker {
            p,
            table,
            limiter,
            state,
        }
    }

    pub(super) fn send(&mut self, (port, frame): &(PortIdx, Vec<u8>)) -> Verdict {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        self.p
            .process_with(*port, &mut buf, &mut ctx, &mut self.state)
    }

    fn states(&self) -> Vec<CtState> {
        self.state
            .conntrack()
            .list(&CtFilter::default(), Instant::now(), 100)
            .iter()
            .map(|e| e.state)
            .collect()
    }
}

fn out(p: PortIdx) -> Verdict {
    Verdict::Output(p)
}

fn tcp_state(s: TcpState) -> Vec<CtState> {
    vec![CtState::Tcp(s)]
}

/// Handshake, data both ways, FIN both ways: ESTABLISHED after the third
/// packet, TIME_WAIT at the end; with the flow table on (later packets of
/// each direction are hits updating the connection) and off.
#[test]
fn a_handshake_reaches_established_and_a_close_time_wait() {
    for flows in [false, true] {
        let mut w = Worker::new(tracked(), flows);
        let what = format!("flows {flows}");
        assert_eq!(w.send(&a_to_b(SYN, 1000, 0, 0)), out(POD_B), "{what}");
        assert_eq!(w.states(), tcp_state(TcpState::SynSent), "{what}");
        assert_eq!(w.send(&b_to_a(SYN | ACK, 5000, 1001, 0)), out(POD_A));
        assert_eq!(w.states(), tcp_state(TcpState::SynRecv), "{what}");
        assert_eq!(w.send(&a_to_b(ACK, 1001, 5001, 0)), out(POD_B));
        assert_eq!(w.states(), tcp_state(TcpState::Established), "{what}");
        assert_eq!(w.send(&a_to_b(ACK, 1001, 5001, 100)), out(POD_B));
        assert_eq!(w.send(&b_to_a(ACK, 5001, 1101, 200)), out(POD_A));
        assert_eq!(w.send(&a_to_b(FIN | ACK, 1101, 5201, 0)), out(POD_B));
        assert_eq!(w.states(), tcp_state(TcpState::FinWait), "{what}");
        assert_eq!(w.send(&b_to_a(FIN | ACK, 5201, 1102, 0)), out(POD_A));
        assert_eq!(w.send(&a_to_b(ACK, 1102, 5202, 0)), out(POD_B));
        assert_eq!(w.states(), tcp_state(TcpState::TimeWait), "{what}");
        let s = w.state.flow_stats();
        if flows {
            assert!(s.hits >= 5, "{what}: {s:?}");
        }
        let ct = w.state.conntrack().stats();
        assert_eq!((ct.entries, ct.created, ct.invalid), (1, 1, 0), "{what}");
    }
}

/// After the handshake, a segment far beyond the receiver's window: dropped as
/// `ct_out_of_window` where the window is tracked (by the stages and by a flow
/// table hit alike), passed where it is not; the connection is unchanged.
#[test]
fn an_out_of_window_segment_is_dropped_with_tracking_and_passed_without() {
    for flows in [false, true] {
        let mut w = Worker::new(tracked(), flows);
        w.send(&a_to_b(SYN, 1000, 0, 0));
        w.send(&b_to_a(SYN | ACK, 5000, 1001, 0));
        w.send(&a_to_b(ACK, 1001, 5001, 0));
        w.send(&a_to_b(ACK, 1001, 5001, 10));
        let far = a_to_b(ACK, 1001 + 3_000_000, 5001, 10);
        assert_eq!(
            w.send(&far),
            Verdict::Drop(Why::CtOutOfWindow),
            "flows {flows}"
        );
        assert_eq!(w.states(), tcp_state(TcpState::Established));
        assert_eq!(w.state.conntrack().stats().invalid, 1);
        // Still in window afterwards.
        assert_eq!(w.send(&a_to_b(ACK, 1011, 5001, 10)), out(POD_B));
    }
    // green does not enforce the window: the same segment passes.
    let p = tracked();
    for flows in [false, true] {
        let mut w = Worker::new(Arc::clone(&p), flows);
        let c = |flags, seq, ack, len| {
            (
                POD_C,
                tcp4(
                    D,
                    C,
                    "10.2.0.10",
                    "10.2.0.11",
                    (40000, 80),
                    flags,
                    seq,
                    ack,
                    len,
                ),
            )
        };
        let c_back = |flags, seq, ack, len| {
            (
                POD_D,
                tcp4(
                    C,
                    D,
                    "10.2.0.11",
                    "10.2.0.10",
                    (80, 40000),
                    flags,
                    seq,
                    ack,
                    len,
                ),
            )
        };
        let v = w.send(&c(SYN, 1000, 0, 0));
        assert_eq!(v, out(POD_D));
        w.send(&c_back(SYN | ACK, 5000, 1001, 0));
        w.send(&c(ACK, 1001, 5001, 0));
        assert_eq!(
            w.states(),
            tcp_state(TcpState::Established),
            "flows {flows}"
        );
        assert_eq!(
            w.send(&c(ACK, 1001 + 3_000_000, 5001, 10)),
            v,
            "flows {flows}"
        );
        assert_eq!(w.state.conntrack().stats().invalid, 0);
    }
}

/// Packets that cannot open a connection and find none: `ct_invalid`, and no
/// entry. A SYN-ACK out of nowhere, an ACK, a retransmitted SYN that must not
/// move the connection.
#[test]
fn invalid_packets_are_dropped_and_a_retransmitted_syn_moves_nothing() {
    for flows in [false, true] {
        let mut w = Worker::new(tracked(), flows);
        assert_eq!(
            w.send(&b_to_a(SYN | ACK, 5000, 1001, 0)),
            Verdict::Drop(Why::CtInvalid)
        );
        assert_eq!(
            w.send(&a_to_b(ACK, 1001, 5001, 0)),
            Verdict::Drop(Why::CtInvalid)
        );
        assert!(w.states().is_empty());
        w.send(&a_to_b(SYN, 1000, 0, 0));
        w.send(&a_to_b(SYN, 1000, 0, 0));
        assert_eq!(w.states(), tcp_state(TcpState::SynSent), "flows {flows}");
        w.send(&b_to_a(SYN | ACK, 5000, 1001, 0));
        assert_eq!(w.send(&a_to_b(SYN, 1000, 0, 0)), out(POD_B));
        assert_eq!(w.states(), tcp_state(TcpState::SynRecv), "flows {flows}");
        // A reset closes it; a later ACK of the dead connection is refused by
        // the hit path as by the stages.
        w.send(&a_to_b(ACK, 1001, 5001, 0));
        assert_eq!(w.send(&b_to_a(RST | ACK, 5001, 1001, 0)), out(POD_A));
        assert_eq!(w.states(), tcp_state(TcpState::Close), "flows {flows}");
        assert_eq!(w.state.conntrack().stats().invalid, 2);
    }
}

/// An ICMP error quoting a tracked UDP flow passes as RELATED and is never
/// installed; one quoting no connection is `ct_invalid`. An echo and its
/// reply make an ICMP connection.
#[test]
fn icmp_errors_pass_as_related_and_echo_is_tracked() {
    for flows in [false, true] {
        let mut w = Worker::new(tracked(), flows);
        let udp = udp4(B, A, "10.1.0.10", "10.1.0.11", 20);
        assert_eq!(w.send(&(POD_A, udp.clone())), out(POD_B));
        // Port unreachable from B, quoting the datagram's IP header and 8 bytes.
        let unreachable = |quoted: &[u8]| {
            let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&quoted[14..14 + 28]);
            let c = !fold(sum_raw(0, &icmp));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut f = eth(A, B, 0x0800);
            f.extend_from_slice(&ipv4_header(
                ip4("10.1.0.11"),
                ip4("10.1.0.10"),
                1,
                64,
                icmp.len(),
                false,
            ));
            f.extend_from_slice(&icmp);
            (POD_B, f)
        };
        let installs = w.state.flow_stats().installs;
        for _ in 0..2 {
            assert_eq!(w.send(&unreachable(&udp)), out(POD_A), "flows {flows}");
        }
        assert_eq!(w.state.flow_stats().installs, installs, "never installed");
        let stranger = udp4(B, A, "10.1.0.10", "10.1.0.99", 20);
        assert_eq!(
            w.send(&unreachable(&stranger)),
            Verdict::Drop(Why::CtInvalid)
        );
        assert_eq!(w.states(), vec![CtState::UdpUnreplied]);
        let mut reply = udp4(A, B, "10.1.0.11", "10.1.0.10", 20);
        reply[34..36].copy_from_slice(&9u16.to_be_bytes());
        reply[36..38].copy_from_slice(&40000u16.to_be_bytes());
        assert_eq!(w.send(&(POD_B, reply)), out(POD_A));
        assert_eq!(w.states(), vec![CtState::UdpReplied]);
        assert_eq!(
            w.send(&(POD_A, ping(B, A, "10.1.0.10", "10.1.0.11", 64, 8))),
            out(POD_B)
        );
        let mut states = w.states();
        states.sort_by_key(|s| s.name());
        assert_eq!(states, vec![CtState::IcmpUnreplied, CtState::UdpReplied]);
    }
}

/// An untracked network's packets create nothing, and a packet that would be
/// invalid there passes.
#[test]
fn an_untracked_network_tracks_nothing() {
    let mut w = Worker::new(tracked(), true);
    let ack = tcp4(E, R, "10.3.0.10", "10.3.0.11", (1, 2), ACK, 1, 1, 0);
    for _ in 0..2 {
        assert_eq!(w.send(&(POD_RED, ack.clone())), out(POD_E));
    }
    assert!(w.states().is_empty());
    assert!(!w.state.conntrack().allocated() || w.state.conntrack().stats().created == 0);
}

/// The flow table on and off see the same traffic on a tracked network —
/// conversations with random flags, sequence numbers (some out of window),
/// mangled frames, snapshot swaps between bursts — and give every packet the
/// same verdict and bytes, and end with the same connections.
#[test]
fn the_flow_table_agrees_with_the_stages_on_a_tracked_network() {
    let mut next = xorshift();
    let p = tracked();
    let mut on = Worker::new(Arc::clone(&p), true);
    let mut off = Worker::new(Arc::clone(&p), false);
    let flag_sets = [SYN, SYN | ACK, ACK, ACK, ACK, FIN | ACK, RST, RST | ACK, 0];
    let mut generation = 1;
    for round in 0..300 {
        if next().is_multiple_of(20) {
            // A swap: the same networks at a new generation.
            generation += 1;
            let swapped = Arc::new(Pipeline::new(
                generation,
                L2PipelineBuilder::new(generation).build().unwrap(),
                tracked().overlay.clone(),
                wire::ParseConfig::default(),
            ));
            on.p = Arc::clone(&swapped);
            off.p = Arc::clone(&swapped);
            on.state.bind(&swapped);
            off.state.bind(&swapped);
        }
        let conn = (next() % 4) as u16;
        let flags = flag_sets[(next() as usize) % flag_sets.len()];
        let seq = 1000
            + (next() % 3) as u32 * 100
            + if next().is_multiple_of(10) {
                1 << 30
            } else {
                0
            };
        let ack = 5000 + (next() % 3) as u32 * 100;
        let len = (next() % 3) as usize * 50;
        let frame = if next().is_multiple_of(2) {
            (
                POD_A,
                tcp4(
                    B,
                    A,
                    "10.1.0.10",
                    "10.1.0.11",
                    (40000 + conn, 80),
                    flags,
                    seq,
                    ack,
                    len,
                ),
            )
        } else {
            (
                POD_B,
                tcp4(
                    A,
                    B,
                    "10.1.0.11",
                    "10.1.0.10",
                    (80, 40000 + conn),
                    flags,
                    ack,
                    seq,
                    len,
                ),
            )
        };
        let frame = if next().is_multiple_of(8) {
            (frame.0, mangled_any(&frame.1, &mut next))
        } else {
            frame
        };
        let a = on.send(&frame);
        let b = off.send(&frame);
        assert_eq!(a, b, "round {round}: {:02x?}", frame.1);
        let mut sa = on
            .state
            .conntrack()
            .list(&CtFilter::default(), Instant::now(), 100);
        let mut sb = off
            .state
            .conntrack()
            .list(&CtFilter::default(), Instant::now(), 100);
        let key = |e: &crate::pipeline::conntrack::CtEntry| {
            (e.original.sport, e.original.dport, e.original.src)
        };
        sa.sort_by_key(key);
        sb.sort_by_key(key);
        let strip = |v: Vec<crate::pipeline::conntrack::CtEntry>| {
            v.into_iter()
                .map(|e| (e.original, e.reply, e.state, e.assured))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(sa), strip(sb), "round {round}");
    }
    assert!(
        on.state.flow_stats().hits > 50,
        "{:?}",
        on.state.flow_stats()
    );
}

/// `trace` shows the conntrack stage's record: the connection created, its
/// direction and the state before and after; and a refusal with its reason.
#[test]
fn a_trace_shows_the_conntrack_record() {
    let p = tracked();
    let map = NeighborTable::new(NeighborConfig::default())
        .reader()
        .load_full();
    let names = TraceNames::default();
    let (port, syn) = a_to_b(SYN, 1000, 0, 0);
    let t = p.trace(port, &syn, &map, &names);
    let line = t.lines.iter().find(|l| l.stage == "conntrack").unwrap();
    assert_eq!(
        line.detail,
        "zone 100: tcp 10.1.0.10:40000 > 10.1.0.11:80 created, original direction, none -> SYN_SENT"
    );
    let (port, ack) = a_to_b(ACK, 1001, 5001, 0);
    let t = p.trace(port, &ack, &map, &names);
    assert_eq!(t.verdict, Verdict::Drop(Why::CtInvalid));
    let line = t.lines.iter().find(|l| l.stage == "conntrack").unwrap();
    assert_eq!(
        line.detail,
        "zone 100: tcp 10.1.0.10:40000 > 10.1.0.11:80 refused in state none: ct_invalid"
    );
    let (port, ack) = (
        POD_RED,
        tcp4(E, R, "10.3.0.10", "10.3.0.11", (1, 2), ACK, 1, 1, 0),
    );
    let t = p.trace(port, &ack, &map, &names);
    assert!(t.lines.iter().all(|l| l.stage != "conntrack"));
}

/// What the worker loop calls: expiry removes the connections whose state's
/// timeout passed and keeps the others; a list and a flush take what their
/// filter says.
#[test]
fn expiry_list_and_flush_follow_the_timeouts_and_filters() {
    let mut w = Worker::new(tracked(), true);
    w.send(&(POD_A, udp4(B, A, "10.1.0.10", "10.1.0.11", 20)));
    w.send(&a_to_b(SYN, 1000, 0, 0));
    w.send(&b_to_a(SYN | ACK, 5000, 1001, 0));
    w.send(&a_to_b(ACK, 1001, 5001, 0));
    let now = Instant::now();
    let ct = w.state.conntrack_mut();
    // UDP unreplied lives 30 s, ESTABLISHED 5 days.
    assert_eq!(ct.expire(now + std::time::Duration::from_secs(29)), 0);
    assert_eq!(ct.expire(now + std::time::Duration::from_secs(31)), 1);
    let left = ct.list(&CtFilter::default(), now, 10);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, CtState::Tcp(TcpState::Established));
    assert!(left[0].expires_in_ms > 431_000_000, "{left:?}");
    let (s, e) = (ct.stats(), ct.stats().expired);
    assert_eq!((s.entries, s.created, e), (1, 2, 1));
    let other_zone = CtFilter {
        zone: Some(200),
        ..CtFilter::default()
    };
    assert_eq!(ct.flush(&other_zone), 0);
    let by_port = CtFilter {
        port: Some(80),
        state: CtState::from_name("established"),
        ..CtFilter::default()
    };
    assert_eq!(ct.list(&by_port, now, 10).len(), 1);
    assert_eq!(ct.flush(&by_port), 1);
    assert_eq!(ct.stats().entries, 0);
}

/// Whole bursts through the worker's burst loop: a run of one established
/// connection's segments is applied and updates the connection per frame; a
/// segment out of window inside the run is dropped alone, and the burst then
/// reports no single port.
#[test]
fn a_burst_of_a_tracked_flow_updates_per_frame_and_drops_inside_a_run() {
    let mut w = Worker::new(tracked(), true);
    w.send(&a_to_b(SYN, 1000, 0, 0));
    w.send(&b_to_a(SYN | ACK, 5000, 1001, 0));
    w.send(&a_to_b(ACK, 1001, 5001, 0));
    let burst = |w: &mut Worker, frames: &[Vec<u8>]| {
        let map = w.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut w.limiter, Instant::now());
        let mut bufs: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let mut out = [Verdict::Flood; crate::BURST];
        let ingress = w.p.ingress(POD_A);
        let (_, one) =
            w.p.process_burst(ingress, &mut bufs, &mut ctx, &mut w.state, &mut out);
        (out[..frames.len()].to_vec(), one)
    };
    // 16 in-window segments of 10 bytes each: one run of one key.
    let frames: Vec<Vec<u8>> = (0..16)
        .map(|j| a_to_b(ACK, 1001 + 10 * j, 5001, 10).1)
        .collect();
    let hits = w.state.flow_stats().hits;
    let (v, one) = burst(&mut w, &frames);
    assert!(v.iter().all(|v| *v == out(POD_B)), "{v:?}");
    assert_eq!(one, Some(POD_B));
    assert_eq!(w.state.flow_stats().hits, hits + 16);
    // The connection followed every frame: the next in-window segment starts
    // where the run ended, and one far ahead in the middle of a run is
    // dropped alone.
    let mut frames: Vec<Vec<u8>> = (0..8)
        .map(|j| a_to_b(ACK, 1161 + 10 * j, 5001, 10).1)
        .collect();
    frames[4] = a_to_b(ACK, 1161 + 3_000_000, 5001, 10).1;
    let (v, one) = burst(&mut w, &frames);
    for (j, v) in v.iter().enumerate() {
        let want = if j == 4 {
            Verdict::Drop(Why::CtOutOfWindow)
        } else {
            out(POD_B)
        };
        assert_eq!(*v, want, "frame {j}");
    }
    assert_eq!(one, None);
    assert_eq!(w.states(), tcp_state(TcpState::Established));
    assert_eq!(w.state.conntrack().stats().invalid, 1);
}
