//! Conntrack tests from packet sequences. The expected states are Linux's TCP
//! conntrack behaviour (`nf_conntrack_proto_tcp`, RFC 793's handshake and close),
//! written down per case, not read back from this code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::nat::tests::{build, reference, spec, Inner, Kind, Spec, ETH};
use super::nat::{rewrite, NatRewrite};
use super::tcp::flags::{ACK, FIN, RST, SYN};
use super::tuple::{owner, symmetric_hash};
use super::*;
use crate::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use proptest::prelude::*;

const Z: u32 = 7;
const SEC: u64 = 1000;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn client() -> IpAddr {
    v4([10, 0, 0, 1])
}
fn server() -> IpAddr {
    v4([10, 0, 0, 2])
}

/// The original direction: client:40000 → server:80.
fn orig() -> CtTuple {
    CtTuple::new(client(), 40000, server(), 80, IPPROTO_TCP)
}

fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> CtL4 {
    CtL4::Tcp(TcpSegment {
        seq,
        ack,
        win: 65535,
        flags,
        len,
        wscale: None,
    })
}

fn table() -> ConntrackTable {
    ConntrackTable::new(1024, &CtTimeouts::default(), 42).unwrap()
}

/// Sends `l4` on `t` (the packet's tuple) and returns the state, or the refusal.
fn send(
    ct: &mut ConntrackTable,
    t: CtTuple,
    l4: CtL4,
    now: u64,
    window: bool,
) -> Result<CtState, CtDrop> {
    ct.track(
        &CtPacket {
            zone: Z,
            tuple: t,
            l4,
        },
        now,
        window,
    )
    .map(|h| h.state)
}

fn tcp(s: TcpState) -> Result<CtState, CtDrop> {
    Ok(CtState::Tcp(s))
}

/// Client ISN 1000, server ISN 5000; both sides' next sequence after the
/// handshake: 1001 and 5001.
fn handshake(ct: &mut ConntrackTable, window: bool) {
    let o = orig();
    let r = o.reversed();
    assert_eq!(
        send(ct, o, seg(SYN, 1000, 0, 0), 0, window),
        tcp(TcpState::SynSent)
    );
    assert_eq!(
        send(ct, r, seg(SYN | ACK, 5000, 1001, 0), 1, window),
        tcp(TcpState::SynRecv)
    );
    assert_eq!(
        send(ct, o, seg(ACK, 1001, 5001, 0), 2, window),
        tcp(TcpState::Established)
    );
}

fn view(ct: &ConntrackTable, t: CtTuple, now: u64) -> Option<CtView> {
    ct.find_live(Z, &t, now).and_then(|(h, _)| ct.get(h))
}

/// A table whose TCP state `i` (in `TcpState::ALL` order) times out after
/// `(i + 1) · 10` seconds.
fn distinct_timeouts() -> ConntrackTable {
    let mut t = CtTimeouts::default();
    for (i, s) in t.tcp.iter_mut().enumerate() {
        *s = (i as u32 + 1) * 10;
    }
    ConntrackTable::new(64, &t, 5).unwrap()
}

/// The connection of `t`, last seen at `now` in `state`, lives exactly its
/// state's timeout of [`distinct_timeouts`].
fn lives(ct: &ConntrackTable, t: CtTuple, now: u64, state: TcpState) {
    let ms = (state as u64 + 1) * 10 * SEC;
    assert_eq!(
        view(ct, t, now + ms - 1).map(|v| v.state),
        Some(CtState::Tcp(state))
    );
    assert!(
        view(ct, t, now + ms).is_none(),
        "{state:?} outlives {ms} ms"
    );
}

/// Every TCP state's own timeout, on the way through a simultaneous open and
/// a close.
#[test]
fn each_tcp_state_has_its_timeout() {
    use TcpState::*;
    let mut ct = distinct_timeouts();
    let (o, r) = (orig(), orig().reversed());
    let steps: [(CtTuple, CtL4, TcpState); 8] = [
        (o, seg(SYN, 1000, 0, 0), SynSent),
        (r, seg(SYN, 5000, 0, 0), SynSent2),
        (o, seg(SYN | ACK, 1000, 5001, 0), SynRecv),
        (o, seg(ACK, 1001, 5001, 0), Established),
        (o, seg(FIN | ACK, 1001, 5001, 0), FinWait),
        (r, seg(ACK, 5001, 1002, 0), CloseWait),
        (r, seg(FIN | ACK, 5001, 1002, 0), LastAck),
        (o, seg(ACK, 1002, 5002, 0), TimeWait),
    ];
    for (k, (t, l4, want)) in steps.into_iter().enumerate() {
        let now = k as u64 * SEC;
        assert_eq!(send(&mut ct, t, l4, now, true), tcp(want));
        lives(&ct, o, now, want);
    }
    send(&mut ct, r, seg(RST, 5002, 0, 0), 8 * SEC, true).unwrap();
    lives(&ct, o, 8 * SEC, Close);
}

#[test]
fn handshake_establishes_and_assures() {
    let mut ct = table();
    handshake(&mut ct, true);
    let v = view(&ct, orig().reversed(), 3).unwrap();
    assert!(v.assured && v.seen_reply);
    assert_eq!(v.original, orig());
    // Data both ways keeps it established.
    assert_eq!(
        send(&mut ct, orig(), seg(ACK, 1001, 5001, 100), 3, true),
        tcp(TcpState::Established)
    );
    assert_eq!(
        send(
            &mut ct,
            orig().reversed(),
            seg(ACK, 5001, 1101, 1000),
            4,
            true
        ),
        tcp(TcpState::Established)
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn a_connection_opens_only_with_a_syn() {
    let mut ct = table();
    for f in [ACK, SYN | ACK, FIN | ACK, RST, 0] {
        assert_eq!(
            send(&mut ct, orig(), seg(f, 1, 1, 0), 0, true),
            Err(CtDrop::Invalid),
            "flags {f:#x}"
        );
    }
    assert!(ct.is_empty());
}

/// Both sides send a SYN (RFC 793 fig. 8): SYN_SENT, SYN_SENT2 on the other SYN,
/// SYN_RECV on the first SYN-ACK, the second SYN-ACK changes nothing, and the ACK
/// establishes.
#[test]
fn simultaneous_open() {
    let mut ct = table();
    let (o, r) = (orig(), orig().reversed());
    assert_eq!(
        send(&mut ct, o, seg(SYN, 1000, 0, 0), 0, true),
        tcp(TcpState::SynSent)
    );
    assert_eq!(
        send(&mut ct, r, seg(SYN, 5000, 0, 0), 1, true),
        tcp(TcpState::SynSent2)
    );
    assert_eq!(
        send(&mut ct, o, seg(SYN | ACK, 1000, 5001, 0), 2, true),
        tcp(TcpState::SynRecv)
    );
    assert_eq!(
        send(&mut ct, r, seg(SYN | ACK, 5000, 1001, 0), 3, true),
        tcp(TcpState::SynRecv)
    );
    assert_eq!(
        send(&mut ct, o, seg(ACK, 1001, 5001, 0), 4, true),
        tcp(TcpState::Established)
    );
}

#[test]
fn rst_closes_and_close_times_out() {
    let mut ct = table();
    handshake(&mut ct, true);
    let r = orig().reversed();
    // Out of window: ignored as an attack would be.
    assert_eq!(
        send(&mut ct, r, seg(RST, 5001 + 10_000_000, 0, 0), 3, true),
        Err(CtDrop::OutOfWindow)
    );
    assert_eq!(
        send(&mut ct, r, seg(RST, 5001, 0, 0), 4, true),
        tcp(TcpState::Close)
    );
    // CLOSE lasts 10 s.
    assert!(view(&ct, orig(), 4 + 10 * SEC - 1).is_some());
    assert!(view(&ct, orig(), 4 + 10 * SEC).is_none());
}

/// A RST that answers a SYN must acknowledge it.
#[test]
fn rst_to_a_syn_must_ack_it() {
    let mut ct = table();
    let r = orig().reversed();
    send(&mut ct, orig(), seg(SYN, 1000, 0, 0), 0, true).unwrap();
    assert_eq!(
        send(&mut ct, r, seg(RST, 0, 0, 0), 1, true),
        Err(CtDrop::Invalid)
    );
    assert_eq!(
        send(&mut ct, r, seg(RST | ACK, 0, 999, 0), 1, true),
        Err(CtDrop::Invalid)
    );
    assert_eq!(
        send(&mut ct, r, seg(RST | ACK, 0, 1001, 0), 2, true),
        tcp(TcpState::Close)
    );
}

/// Client closes first: FIN_WAIT, the server's ACK → CLOSE_WAIT, its FIN →
/// LAST_ACK, the client's ACK → TIME_WAIT (120 s).
#[test]
fn fin_both_ways() {
    let mut ct = table();
    handshake(&mut ct, true);
    let (o, r) = (orig(), orig().reversed());
    assert_eq!(
        send(&mut ct, o, seg(FIN | ACK, 1001, 5001, 0), 10, true),
        tcp(TcpState::FinWait)
    );
    assert_eq!(
        send(&mut ct, r, seg(ACK, 5001, 1002, 0), 11, true),
        tcp(TcpState::CloseWait)
    );
    assert_eq!(
        send(&mut ct, r, seg(FIN | ACK, 5001, 1002, 0), 12, true),
        tcp(TcpState::LastAck)
    );
    assert_eq!(
        send(&mut ct, o, seg(ACK, 1002, 5002, 0), 13, true),
        tcp(TcpState::TimeWait)
    );
    assert!(view(&ct, o, 13 + 120 * SEC - 1).is_some());
    assert!(view(&ct, o, 13 + 120 * SEC).is_none());
}

/// Both FINs cross: FIN_WAIT, then the other FIN → LAST_ACK, the last ACK → TIME_WAIT.
#[test]
fn fins_crossing() {
    let mut ct = table();
    handshake(&mut ct, true);
    let (o, r) = (orig(), orig().reversed());
    assert_eq!(
        send(&mut ct, o, seg(FIN | ACK, 1001, 5001, 0), 10, true),
        tcp(TcpState::FinWait)
    );
    assert_eq!(
        send(&mut ct, r, seg(FIN | ACK, 5001, 1001, 0), 11, true),
        tcp(TcpState::LastAck)
    );
    assert_eq!(
        send(&mut ct, o, seg(ACK, 1002, 5002, 0), 12, true),
        tcp(TcpState::TimeWait)
    );
}

/// 10 MB beyond what the receiver allowed: refused with window tracking,
/// accepted (the state unchanged) without, in a zone that turned it off.
#[test]
fn out_of_window_with_and_without_tracking() {
    for window in [true, false] {
        let mut ct = table();
        handshake(&mut ct, window);
        let far = 1001 + 10_000_000;
        let got = send(&mut ct, orig(), seg(ACK, far, 5001, 100), 3, window);
        if window {
            assert_eq!(got, Err(CtDrop::OutOfWindow));
        } else {
            assert_eq!(got, tcp(TcpState::Established));
        }
        // An ack of data never sent is out of window too.
        let got = send(
            &mut ct,
            orig(),
            seg(ACK, 1001, 5001 + 1_000_000, 0),
            4,
            window,
        );
        assert_eq!(got.is_err(), window);
        // In-window traffic goes on either way.
        assert_eq!(
            send(&mut ct, orig(), seg(ACK, 1001, 5001, 10), 5, window),
            tcp(TcpState::Established)
        );
    }
}

/// Window scaling (RFC 7323) counts only if both SYNs carried the option: with
/// a shift of 7 the server's window of 1024 allows 131072 bytes, so a segment
/// 100000 bytes ahead is in window; when the server's SYN-ACK had no option the
/// same window is 1024 bytes and the segment is beyond what the handshake's
/// 65535 allowed.
#[test]
fn window_scaling_needs_both_sides() {
    for server_scales in [true, false] {
        let mut ct = table();
        let (o, r) = (orig(), orig().reversed());
        let with = |l4: CtL4, ws: Option<u8>, win: u16| match l4 {
            CtL4::Tcp(s) => CtL4::Tcp(TcpSegment {
                wscale: ws,
                win,
                ..s
            }),
            x => x,
        };
        let ws = server_scales.then_some(7);
        send(
            &mut ct,
            o,
            with(seg(SYN, 1000, 0, 0), Some(7), 65535),
            0,
            true,
        )
        .unwrap();
        send(
            &mut ct,
            r,
            with(seg(SYN | ACK, 5000, 1001, 0), ws, 65535),
            1,
            true,
        )
        .unwrap();
        send(
            &mut ct,
            o,
            with(seg(ACK, 1001, 5001, 0), None, 1024),
            2,
            true,
        )
        .unwrap();
        send(
            &mut ct,
            r,
            with(seg(ACK, 5001, 1001, 0), None, 1024),
            3,
            true,
        )
        .unwrap();
        let got = send(
            &mut ct,
            o,
            with(seg(ACK, 101_001, 5001, 1000), None, 1024),
            4,
            true,
        );
        if server_scales {
            assert_eq!(got, tcp(TcpState::Established));
        } else {
            assert_eq!(got, Err(CtDrop::OutOfWindow));
        }
    }
}

/// A SYN sent again never moves the connection on: in SYN_SENT it stays there,
/// after the SYN-ACK it is ignored, and only the ACK establishes.
#[test]
fn retransmitted_syn() {
    let mut ct = table();
    let (o, r) = (orig(), orig().reversed());
    send(&mut ct, o, seg(SYN, 1000, 0, 0), 0, true).unwrap();
    for now in [1, 2, 3] {
        assert_eq!(
            send(&mut ct, o, seg(SYN, 1000, 0, 0), now, true),
            tcp(TcpState::SynSent)
        );
    }
    send(&mut ct, r, seg(SYN | ACK, 5000, 1001, 0), 4, true).unwrap();
    assert_eq!(
        send(&mut ct, o, seg(SYN, 1000, 0, 0), 5, true),
        tcp(TcpState::SynRecv)
    );
    assert_eq!(
        send(&mut ct, o, seg(ACK, 1001, 5001, 0), 6, true),
        tcp(TcpState::Established)
    );
    assert_eq!(
        send(&mut ct, o, seg(SYN, 1000, 0, 0), 7, true),
        tcp(TcpState::Established)
    );
    assert_eq!(ct.len(), 1);
}

/// A new SYN on a tuple in TIME_WAIT replaces the old connection with a new one.
#[test]
fn syn_in_time_wait_reopens() {
    let mut ct = table();
    handshake(&mut ct, true);
    let (o, r) = (orig(), orig().reversed());
    send(&mut ct, o, seg(FIN | ACK, 1001, 5001, 0), 3, true).unwrap();
    send(&mut ct, r, seg(FIN | ACK, 5001, 1002, 0), 4, true).unwrap();
    assert_eq!(
        send(&mut ct, o, seg(ACK, 1002, 5002, 0), 5, true),
        tcp(TcpState::TimeWait)
    );
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: o,
                l4: seg(SYN, 900_000, 0, 0),
            },
            6,
            true,
        )
        .unwrap();
    assert_eq!(
        (hit.event, hit.state),
        (CtEvent::New, CtState::Tcp(TcpState::SynSent))
    );
    assert!(!ct.get(hit.handle).unwrap().assured);
    assert_eq!(ct.len(), 1);
    assert_eq!(
        send(&mut ct, r, seg(SYN | ACK, 77, 900_001, 0), 7, true),
        tcp(TcpState::SynRecv)
    );
    assert_eq!(
        send(&mut ct, o, seg(ACK, 900_001, 78, 0), 8, true),
        tcp(TcpState::Established)
    );
}

/// Every state's timeout, Linux's defaults, with the injected clock: alive one
/// millisecond before, gone at it.
#[test]
fn timeouts_per_state() {
    let mut ct = table();
    let t = CtTimeouts::default();
    let (o, r) = (orig(), orig().reversed());
    // SYN_SENT 120 s.
    send(&mut ct, o, seg(SYN, 1000, 0, 0), 0, true).unwrap();
    assert!(view(&ct, o, 120 * SEC - 1).is_some());
    assert_eq!(
        send(&mut ct, r, seg(SYN | ACK, 5000, 1001, 0), 120 * SEC, true),
        Err(CtDrop::Invalid),
        "the SYN-ACK comes too late"
    );
    // SYN_RECV 60 s, ESTABLISHED 5 days.
    let mut ct = table();
    send(&mut ct, o, seg(SYN, 1000, 0, 0), 0, true).unwrap();
    send(&mut ct, r, seg(SYN | ACK, 5000, 1001, 0), 0, true).unwrap();
    assert!(view(&ct, o, 60 * SEC - 1).is_some());
    assert!(view(&ct, o, 60 * SEC).is_none());
    let mut ct = table();
    handshake(&mut ct, true);
    assert_eq!(t.tcp[TcpState::Established as usize], 432_000);
    assert!(view(&ct, o, 2 + 432_000 * SEC - 1).is_some());
    assert!(view(&ct, o, 2 + 432_000 * SEC).is_none());
    // UDP: 30 s unreplied, 120 s once replied; ICMP echo 30 s.
    let u = CtTuple::new(client(), 5353, server(), 53, IPPROTO_UDP);
    let mut ct = table();
    assert_eq!(
        send(&mut ct, u, CtL4::Udp, 0, true),
        Ok(CtState::UdpUnreplied)
    );
    assert!(view(&ct, u, 30 * SEC - 1).is_some());
    assert!(view(&ct, u, 30 * SEC).is_none());
    send(&mut ct, u, CtL4::Udp, 100 * SEC, true).unwrap();
    assert_eq!(
        send(&mut ct, u.reversed(), CtL4::Udp, 101 * SEC, true),
        Ok(CtState::UdpReplied)
    );
    assert!(view(&ct, u, 221 * SEC - 1).is_some());
    assert!(view(&ct, u, 221 * SEC).is_none());
    let e = CtTuple::new(client(), 7, server(), 7, IPPROTO_ICMP);
    assert_eq!(
        send(&mut ct, e, CtL4::IcmpEcho { reply: false }, 0, true),
        Ok(CtState::IcmpUnreplied)
    );
    assert!(view(&ct, e, 30 * SEC).is_none());
}

#[test]
fn timeouts_are_configurable_and_checked() {
    let mut t = CtTimeouts::default();
    t.tcp[TcpState::Established as usize] = 60;
    t.udp_unreplied = 5;
    let mut ct = ConntrackTable::new(16, &t, 1).unwrap();
    handshake(&mut ct, true);
    assert!(view(&ct, orig(), 2 + 60 * SEC - 1).is_some());
    assert!(view(&ct, orig(), 2 + 60 * SEC).is_none());
    let u = CtTuple::new(client(), 1, server(), 2, IPPROTO_UDP);
    send(&mut ct, u, CtL4::Udp, 0, true).unwrap();
    assert!(view(&ct, u, 5 * SEC).is_none());
    let bad = CtTimeouts {
        icmp: 0,
        ..CtTimeouts::default()
    };
    assert_eq!(ct.set_timeouts(&bad), Err(CtConfigError::Timeout(0)));
    assert_eq!(
        ConntrackTable::new(0, &t, 1).unwrap_err(),
        CtConfigError::Capacity(0)
    );
    assert_eq!(
        ConntrackTable::new(16, &bad, 1).unwrap_err(),
        CtConfigError::Timeout(0)
    );
}

/// Expiry removes exactly the due entries and only visits those (plus live
/// ones it requeues).
#[test]
fn expire_removes_what_is_due() {
    let mut ct = table();
    let first = CtTuple::new(client(), 1000, server(), 53, IPPROTO_UDP);
    for i in 0..100u16 {
        let u = CtTuple::new(client(), 1000 + i, server(), 53, IPPROTO_UDP);
        send(&mut ct, u, CtL4::Udp, u64::from(i) * SEC, true).unwrap();
        if i == 25 {
            // Refreshed: it must survive the sweep below, from the list's head.
            send(&mut ct, first, CtL4::Udp, 25 * SEC, true).unwrap();
        }
    }
    // At 50 s the entries last seen at 1..=20 s are due (30 s unreplied).
    assert_eq!(ct.expire(50 * SEC, usize::MAX, &mut |_| {}), 20);
    assert_eq!(ct.len(), 80);
    assert!(view(&ct, first, 50 * SEC).is_some());
    assert_eq!(ct.expire(50 * SEC, usize::MAX, &mut |_| {}), 0);
    // A budget bounds one call.
    assert_eq!(ct.expire(1000 * SEC, 10, &mut |_| {}), 10);
    assert_eq!(ct.expire(1000 * SEC, usize::MAX, &mut |_| {}), 70);
    assert!(ct.is_empty());
    assert_eq!(ct.counters().expired, 100);
}

/// Full: the oldest unassured entry makes room; with only assured entries left
/// a new connection is refused.
#[test]
fn full_table_early_drops_then_refuses() {
    let mut ct = ConntrackTable::new(4, &CtTimeouts::default(), 3).unwrap();
    let u = |p: u16| CtTuple::new(client(), p, server(), 53, IPPROTO_UDP);
    for p in 1..=4 {
        send(&mut ct, u(p), CtL4::Udp, u64::from(p), true).unwrap();
    }
    // Port 1 answered: assured. The oldest unassured is port 2.
    send(&mut ct, u(1).reversed(), CtL4::Udp, 5, true).unwrap();
    assert_eq!(
        send(&mut ct, u(5), CtL4::Udp, 6, true),
        Ok(CtState::UdpUnreplied)
    );
    assert_eq!(ct.counters().early_dropped, 1);
    assert!(view(&ct, u(2), 6).is_none());
    assert!(view(&ct, u(1), 6).is_some());
    // Everything answered (or an established TCP connection): nothing to drop.
    for p in [3, 4, 5] {
        send(&mut ct, u(p).reversed(), CtL4::Udp, 7, true).unwrap();
    }
    assert_eq!(
        send(&mut ct, u(6), CtL4::Udp, 8, true),
        Err(CtDrop::TableFull)
    );
    assert_eq!(
        send(&mut ct, orig(), seg(SYN, 1, 0, 0), 8, true),
        Err(CtDrop::TableFull)
    );
    assert_eq!(ct.len(), 4);
    assert_eq!(CtDrop::TableFull.reason().as_str(), "ct_table_full");
    // Once something is due, it makes room again.
    assert_eq!(
        send(&mut ct, u(6), CtL4::Udp, 200 * SEC, true),
        Ok(CtState::UdpUnreplied)
    );
}

fn vip() -> IpAddr {
    v4([10, 96, 0, 10])
}
fn backend() -> IpAddr {
    v4([10, 1, 2, 3])
}

/// client:40000 → VIP:80, DNAT'd to backend:8080: the reply tuple is the
/// backend's.
fn dnat_conn(ct: &mut ConntrackTable) -> CtHandle {
    let o = CtTuple::new(client(), 40000, vip(), 80, IPPROTO_TCP);
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: o,
                l4: seg(SYN, 1000, 0, 0),
            },
            0,
            true,
        )
        .unwrap();
    let reply = CtTuple::new(backend(), 8080, client(), 40000, IPPROTO_TCP);
    ct.set_reply(hit.handle, reply).unwrap();
    hit.handle
}

#[test]
fn dnat_reply_finds_the_entry_and_translates_back() {
    let mut ct = table();
    let h = dnat_conn(&mut ct);
    assert_eq!(
        ct.nat_rewrite(h, Dir::Original),
        NatRewrite {
            src: None,
            dst: Some((backend(), 8080))
        }
    );
    assert_eq!(
        ct.nat_rewrite(h, Dir::Reply),
        NatRewrite {
            src: Some((vip(), 80)),
            dst: None
        }
    );
    let reply = CtTuple::new(backend(), 8080, client(), 40000, IPPROTO_TCP);
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: reply,
                l4: seg(SYN | ACK, 5000, 1001, 0),
            },
            1,
            true,
        )
        .unwrap();
    assert_eq!((hit.handle, hit.dir), (h, Dir::Reply));
    // The untranslated reverse is no tuple of the connection.
    assert!(ct
        .find_live(Z, &CtTuple::new(vip(), 80, client(), 40000, IPPROTO_TCP), 1)
        .is_none());
    // Another connection cannot take the same translated tuple.
    let o2 = CtTuple::new(client(), 40001, vip(), 80, IPPROTO_TCP);
    let h2 = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: o2,
                l4: seg(SYN, 1, 0, 0),
            },
            2,
            true,
        )
        .unwrap()
        .handle;
    assert_eq!(ct.set_reply(h2, reply), Err(ReplyInUse));
    assert_eq!(ct.get(h2).unwrap().reply, o2.reversed());
}

/// kubernetes#74839: an out-of-window segment of a DNAT'd connection must not
/// leave untranslated. It is refused (to be dropped and counted), and the
/// connection with its translation stays for the next segment.
#[test]
fn out_of_window_on_a_dnat_connection_is_dropped_not_untranslated() {
    let mut ct = table();
    let h = dnat_conn(&mut ct);
    let o = CtTuple::new(client(), 40000, vip(), 80, IPPROTO_TCP);
    let reply = CtTuple::new(backend(), 8080, client(), 40000, IPPROTO_TCP);
    send(&mut ct, reply, seg(SYN | ACK, 5000, 1001, 0), 1, true).unwrap();
    send(&mut ct, o, seg(ACK, 1001, 5001, 0), 2, true).unwrap();
    assert_eq!(
        send(
            &mut ct,
            reply,
            seg(ACK, 5001 + 50_000_000, 1001, 10),
            3,
            true
        ),
        Err(CtDrop::OutOfWindow)
    );
    assert_eq!(CtDrop::OutOfWindow.reason().as_str(), "ct_out_of_window");
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: reply,
                l4: seg(ACK, 5001, 1001, 10),
            },
            4,
            true,
        )
        .unwrap();
    assert_eq!(hit.handle, h);
    assert_eq!(ct.nat_rewrite(hit.handle, hit.dir).src, Some((vip(), 80)));
}

/// A router between the switch and the backend answers the DNAT'd SYN with
/// "port unreachable": the error is RELATED to the connection, travels in its
/// reply direction, and the reply translation puts the VIP back in the quote.
#[test]
fn related_icmp_error_through_dnat() {
    let mut ct = table();
    let h = dnat_conn(&mut ct);
    let router = v4([192, 0, 2, 254]);
    // The quoted packet is the translated SYN: client:40000 → backend:8080.
    let quoted = CtTuple::new(client(), 40000, backend(), 8080, IPPROTO_TCP);
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: CtTuple::new(router, 0, client(), 0, IPPROTO_ICMP),
                l4: CtL4::IcmpError { quoted },
            },
            1,
            true,
        )
        .unwrap();
    assert_eq!(
        (hit.handle, hit.dir, hit.event),
        (h, Dir::Reply, CtEvent::Related)
    );
    // The frame: from the router to the client, quoting client → backend:8080.
    let s = Spec {
        src: backend(),
        dst: client(),
        sport: 8080,
        dport: 40000,
        router: Some(router),
        payload: vec![],
        ..spec(Kind::Error(Inner::Tcp), false)
    };
    let mut f = build(&s);
    rewrite(&mut f, ETH, &ct.nat_rewrite(hit.handle, hit.dir)).unwrap();
    let inner = ETH + 28;
    assert_eq!(&f[inner + 12..inner + 16], &[10, 0, 0, 1]);
    assert_eq!(&f[inner + 16..inner + 20], &[10, 96, 0, 10]);
    assert_eq!(&f[inner + 22..inner + 24], &80u16.to_be_bytes());
    let mut r = f.clone();
    reference(&mut r, ETH);
    assert_eq!(f, r, "checksums");
    // An error quoting no known connection is invalid.
    let stranger = CtTuple::new(client(), 1, backend(), 2, IPPROTO_TCP);
    assert_eq!(
        send(
            &mut ct,
            CtTuple::new(router, 0, client(), 0, IPPROTO_ICMP),
            CtL4::IcmpError { quoted: stranger },
            2,
            true
        ),
        Err(CtDrop::Invalid)
    );
}

#[test]
fn ipv6_udp_and_icmp_echo() {
    let mut ct = table();
    let a = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    let b = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
    let u = CtTuple::new(a, 5000, b, 53, IPPROTO_UDP);
    send(&mut ct, u, CtL4::Udp, 0, true).unwrap();
    assert_eq!(
        send(&mut ct, u.reversed(), CtL4::Udp, 1, true),
        Ok(CtState::UdpReplied)
    );
    assert!(view(&ct, u, 1).unwrap().assured);
    // The same addresses' IPv4-mapped twin is another tuple.
    assert_eq!(u.src_ip(), a);
    let echo = CtTuple::new(a, 0x1234, b, 0x1234, crate::wire::IPPROTO_ICMPV6);
    assert_eq!(
        send(
            &mut ct,
            echo.reversed(),
            CtL4::IcmpEcho { reply: true },
            2,
            true
        ),
        Err(CtDrop::Invalid),
        "a reply opens nothing"
    );
    assert_eq!(
        send(&mut ct, echo, CtL4::IcmpEcho { reply: false }, 2, true),
        Ok(CtState::IcmpUnreplied)
    );
    assert_eq!(
        send(
            &mut ct,
            echo.reversed(),
            CtL4::IcmpEcho { reply: true },
            3,
            true
        ),
        Ok(CtState::IcmpReplied)
    );
    // Zones are separate tables in one: zone 8 does not see zone 7's entry.
    assert!(ct.find_live(8, &u, 3).is_none());
    assert_eq!(ct.len(), 2);
}

/// The burst lookup finds what the one-by-one lookup finds, across chunks of
/// 32, hits and misses, both directions, and due entries.
#[test]
fn find_burst_agrees_with_find_live() {
    let mut ct = table();
    let u = |p: u16| CtTuple::new(client(), p, server(), 53, IPPROTO_UDP);
    for p in 0..200u16 {
        send(&mut ct, u(p), CtL4::Udp, u64::from(p) * SEC, true).unwrap();
    }
    let keys: Vec<(u32, CtTuple)> = (0..300u16)
        .map(|p| {
            let t = if p.is_multiple_of(3) {
                u(p).reversed()
            } else {
                u(p)
            };
            (if p.is_multiple_of(7) { Z + 1 } else { Z }, t)
        })
        .collect();
    let now = 100 * SEC;
    let mut out = vec![None; keys.len()];
    ct.find_burst(&keys, now, &mut out);
    for (k, o) in keys.iter().zip(&out) {
        assert_eq!(*o, ct.find_live(k.0, &k.1, now), "{k:?}");
    }
    assert!(out.iter().filter(|o| o.is_some()).count() > 50);
}

#[test]
fn entry_size_and_memory() {
    let bytes = ConntrackTable::entry_bytes();
    assert!(bytes <= 160, "{bytes} bytes per entry");
    let ct = ConntrackTable::new(1 << 16, &CtTimeouts::default(), 0).unwrap();
    // Entries plus 4 bytes per bucket, two buckets per entry.
    assert_eq!(ct.memory_bytes(), (1 << 16) * (bytes + 8));
}

/// SNAT end to end: a connection takes a port from the pool, its reply tuple is
/// the translated one, and when it expires the table reports it and the port
/// goes back to the pool, to be handed out again.
#[test]
fn snat_port_returns_to_the_pool_after_expiry() {
    let ext = v4([192, 0, 2, 1]);
    let mut pool = snat::PortPool::new(5000, 5000).unwrap();
    let mut ct = table();
    let give_back = |pool: &mut snat::PortPool, v: &CtView| {
        if v.reply.dst_ip() == ext {
            pool.release(v.reply.dport).unwrap();
        }
    };
    let connect = |ct: &mut ConntrackTable, pool: &mut snat::PortPool, cport: u16, now: u64| {
        let o = CtTuple::new(client(), cport, server(), 53, IPPROTO_UDP);
        let mut gone = Vec::new();
        let hit = ct
            .track_reporting(
                &CtPacket {
                    zone: Z,
                    tuple: o,
                    l4: CtL4::Udp,
                },
                now,
                true,
                &mut |v| gone.push(*v),
            )
            .unwrap();
        for v in &gone {
            give_back(pool, v);
        }
        // No port: the stage drops the packet (nat_no_port) and its entry.
        let port = pool
            .allocate(4, |_| true)
            .inspect_err(|_| ct.remove(hit.handle))?;
        ct.set_reply(
            hit.handle,
            CtTuple::new(server(), 53, ext, port, IPPROTO_UDP),
        )
        .unwrap();
        Ok::<_, snat::SnatError>((hit.handle, port))
    };
    let (h, port) = connect(&mut ct, &mut pool, 1111, 0).unwrap();
    assert_eq!(ct.nat_rewrite(h, Dir::Original).src, Some((ext, 5000)));
    // The only port is taken: a second connection gets none (nat_no_port).
    assert_eq!(
        connect(&mut ct, &mut pool, 2222, SEC).unwrap_err(),
        snat::SnatError::Exhausted
    );
    assert_eq!(
        snat::SnatError::Exhausted.to_string(),
        "no SNAT port available"
    );
    // 30 s later the first is due: expiry reports it, the port is free again.
    let mut gone = Vec::new();
    assert_eq!(ct.expire(30 * SEC, usize::MAX, &mut |v| gone.push(*v)), 1);
    for v in &gone {
        give_back(&mut pool, v);
    }
    assert!(!pool.in_use(port));
    let (_, again) = connect(&mut ct, &mut pool, 3333, 31 * SEC).unwrap();
    assert_eq!(again, port);
}

/// After SNAT the original tuple's reverse is no tuple of the connection; a
/// packet with it cannot open a second connection holding the same tuple.
#[test]
fn a_new_connection_cannot_clash_with_a_translated_one() {
    let mut ct = table();
    let o = CtTuple::new(client(), 1111, server(), 53, IPPROTO_UDP);
    let h = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: o,
                l4: CtL4::Udp,
            },
            0,
            true,
        )
        .unwrap()
        .handle;
    let ext = v4([192, 0, 2, 1]);
    ct.set_reply(h, CtTuple::new(server(), 53, ext, 5000, IPPROTO_UDP))
        .unwrap();
    assert_eq!(
        send(&mut ct, o.reversed(), CtL4::Udp, 1, true),
        Err(CtDrop::Invalid)
    );
    assert_eq!(ct.len(), 1);
}

/// `ct list` and `ct flush`: a zone's entries listed and flushed, the other
/// zone's kept, every removal reported.
#[test]
fn list_and_flush_a_zone() {
    let mut ct = table();
    for zone in [1u32, 2] {
        for p in 0..50u16 {
            let t = CtTuple::new(client(), p, server(), 53, IPPROTO_UDP);
            ct.track(
                &CtPacket {
                    zone,
                    tuple: t,
                    l4: CtL4::Udp,
                },
                0,
                true,
            )
            .unwrap();
        }
    }
    let mut listed = 0;
    ct.for_each(1, |_, v| listed += usize::from(v.zone == 1));
    assert_eq!(listed, 50);
    let mut reported = Vec::new();
    assert_eq!(
        ct.flush(|v| v.zone == 1, &mut |v| reported.push(v.zone)),
        50
    );
    assert!(reported.iter().all(|&z| z == 1) && reported.len() == 50);
    assert_eq!(ct.len(), 50);
    let mut zones = Vec::new();
    ct.for_each(1, |_, v| zones.push(v.zone));
    assert!(zones.iter().all(|&z| z == 2) && zones.len() == 50);
    // Due entries are not listed.
    let mut n = 0;
    ct.for_each(30 * SEC, |_, _| n += 1);
    assert_eq!(n, 0);
}

/// A stub never displaces a connection of the worker it lands on; a newer
/// stub replaces an older one.
#[test]
fn a_stub_does_not_replace_a_connection() {
    let mut ct = table();
    handshake(&mut ct, true);
    for t in [orig(), orig().reversed()] {
        assert_eq!(
            ct.insert_redirect(Z, t, 1, 3, &mut |_| {}),
            Err(CtDrop::Invalid)
        );
    }
    assert_eq!(
        view(&ct, orig(), 3).unwrap().state,
        CtState::Tcp(TcpState::Established)
    );
    let t = CtTuple::new(backend(), 8080, client(), 1, IPPROTO_TCP);
    ct.insert_redirect(Z, t, 1, 3, &mut |_| {}).unwrap();
    ct.insert_redirect(Z, t, 2, 4, &mut |_| {}).unwrap();
    let hit = ct
        .track(
            &CtPacket {
                zone: Z,
                tuple: t,
                l4: seg(ACK, 1, 1, 0),
            },
            5,
            true,
        )
        .unwrap();
    assert_eq!(hit.event, CtEvent::Redirect(2));
    assert_eq!(ct.len(), 2);
}

proptest! {
    /// Any sequence of segments, in either direction, with any flags and
    /// sequence numbers near the handshake's: no panic, and no connection
    /// reaches ESTABLISHED (or a closing state after it) without a packet of
    /// the reply direction and a SYN from each side, which is what a
    /// handshake is (Linux's table: SYN_RECV needs the reply's SYN-ACK or
    /// SYN, ESTABLISHED an ACK after it).
    #[test]
    fn established_needs_both_sides(
        segs in proptest::collection::vec(
            (any::<bool>(), prop::sample::select(vec![SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK, 0]), 0u32..4, 0u32..4, 0u32..3),
            1..40,
        ),
        window in any::<bool>(),
    ) {
        let mut ct = table();
        let (o, r) = (orig(), orig().reversed());
        let mut syn_from = [false; 2];
        for (k, (reply, flags, ds, da, len)) in segs.into_iter().enumerate() {
            let (t, seq, ack) = if reply { (r, 5000 + ds, 1000 + da) } else { (o, 1000 + ds, 5000 + da) };
            let res = send(&mut ct, t, seg(flags, seq, ack, len), k as u64, window);
            if res.is_ok() && flags & SYN != 0 {
                syn_from[usize::from(reply)] = true;
            }
            if let Some(v) = view(&ct, o, k as u64) {
                if let CtState::Tcp(s) = v.state {
                    if matches!(s, TcpState::Established | TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck | TcpState::TimeWait) {
                        prop_assert!(v.seen_reply && syn_from[0] && syn_from[1], "{s:?} without a handshake");
                    }
                }
                prop_assert_eq!(v.assured, v.assured && v.seen_reply);
            }
        }
    }

    /// Both directions of any tuple have one owner, for any number of workers.
    #[test]
    fn owner_is_symmetric(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
        sport in any::<u16>(), dport in any::<u16>(), zone in any::<u32>(),
        workers in 1usize..16,
    ) {
        let t = CtTuple::new(v4(src), sport, v4(dst), dport, IPPROTO_TCP);
        prop_assert_eq!(symmetric_hash(zone, &t), symmetric_hash(zone, &t.reversed()));
        let o = owner(zone, &t, workers);
        prop_assert!(o < workers);
        prop_assert_eq!(o, owner(zone, &t.reversed(), workers));
    }

    /// SNAT picks a port whose reply tuple has the connection's owner: the
    /// translated reply then reaches the same worker as the original.
    #[test]
    fn snat_reply_maps_to_the_same_owner(
        sport in any::<u16>(), dst in any::<[u8; 4]>(), workers in 2usize..8,
    ) {
        let ext = v4([192, 0, 2, 1]);
        let o = CtTuple::new(client(), sport, v4(dst), 443, IPPROTO_TCP);
        let me = owner(Z, &o, workers);
        let mut pool = snat::PortPool::new(1024, 65535).unwrap();
        let port = pool
            .allocate(64 * workers, |p| {
                owner(Z, &CtTuple::new(v4(dst), 443, ext, p, IPPROTO_TCP), workers) == me
            })
            .unwrap();
        let reply = CtTuple::new(v4(dst), 443, ext, port, IPPROTO_TCP);
        prop_assert_eq!(owner(Z, &reply, workers), me);
        prop_assert!(pool.in_use(port));
    }
}

mod two_workers {
    //! Two threads play two workers, each with its own table, and channels play
    //! the handoff rings. A packet reaching a worker that does not own its
    //! tuple goes to the owner; a DNAT'd connection whose reply hashes to the
    //! other worker leaves a redirect stub there. The main thread plays the
    //! wire: it sends a packet only after the one it answers was "sent".

    use super::*;
    use crossbeam::channel::{unbounded, Receiver, Sender};
    use std::thread;

    enum Msg {
        /// From the wire.
        Wire(u32, CtPacket),
        /// Handed over: the receiver's symmetric hash owns the tuple.
        Handoff(u32, CtPacket),
        /// Handed over by a redirect stub: process here.
        Owned(u32, CtPacket),
        /// Install a redirect stub.
        Stub(CtTuple, u16),
        Stop,
    }

    /// What a worker did with packet `id`.
    struct Sent {
        id: u32,
        worker: usize,
        result: Result<CtHit, CtDrop>,
    }

    /// The source address SNAT translates to, and the destination it is
    /// applied for.
    fn snat_ip() -> IpAddr {
        v4([192, 0, 2, 1])
    }

    fn outside() -> IpAddr {
        v4([203, 0, 113, 9])
    }

    struct Worker {
        me: usize,
        ct: ConntrackTable,
        /// This worker's SNAT ports (each worker allocates from its own
        /// share: here one range each).
        pool: snat::PortPool,
        wire: Receiver<Msg>,
        ring: Receiver<Msg>,
        peer: Sender<Msg>,
        out: Sender<Sent>,
        /// (client port, SNAT port) of each SNAT'd connection.
        snat: Sender<(u16, u16)>,
    }

    impl Worker {
        fn run(mut self) -> ConntrackTable {
            loop {
                crossbeam::channel::select! {
                    recv(self.wire) -> m => {
                        // Drain the ring after rx and before processing: a stub
                        // sent before the packet this one answers is seen.
                        while let Ok(r) = self.ring.try_recv() {
                            if self.handle(r) {
                                return self.ct;
                            }
                        }
                        if self.handle(m.unwrap()) {
                            return self.ct;
                        }
                    }
                    recv(self.ring) -> m => match m {
                        Ok(m) => {
                            if self.handle(m) {
                                return self.ct;
                            }
                        }
                        // The peer stopped first.
                        Err(_) => self.ring = crossbeam::channel::never(),
                    },
                }
            }
        }

        /// True to stop.
        fn handle(&mut self, m: Msg) -> bool {
            match m {
                Msg::Stop => return true,
                Msg::Stub(t, owner) => {
                    self.ct
                        .insert_redirect(Z, t, owner, 0, &mut |_| {})
                        .unwrap();
                }
                Msg::Wire(id, p) => {
                    if owner(Z, &p.tuple, 2) != self.me {
                        self.peer.send(Msg::Handoff(id, p)).unwrap();
                    } else {
                        self.process(id, p);
                    }
                }
                Msg::Handoff(id, p) | Msg::Owned(id, p) => self.process(id, p),
            }
            false
        }

        fn process(&mut self, id: u32, p: CtPacket) {
            let r = self.ct.track(&p, 1, true);
            if let Ok(CtHit {
                event: CtEvent::Redirect(to),
                ..
            }) = r
            {
                assert_ne!(usize::from(to), self.me);
                self.peer.send(Msg::Owned(id, p)).unwrap();
                return;
            }
            if let Ok(hit) = r {
                // A new connection to the VIP: DNAT to the backend, and a stub
                // where the reply will hash, sent before the SYN goes out.
                if hit.event == CtEvent::New && p.tuple.dst_ip() == vip() {
                    let reply = CtTuple::new(
                        backend(),
                        8080,
                        p.tuple.src_ip(),
                        p.tuple.sport,
                        IPPROTO_TCP,
                    );
                    self.ct.set_reply(hit.handle, reply).unwrap();
                    if owner(Z, &reply, 2) != self.me {
                        self.peer.send(Msg::Stub(reply, self.me as u16)).unwrap();
                    }
                }
                // A new connection leaving the network: SNAT to a port whose
                // reply tuple this worker owns, so no stub is needed.
                if hit.event == CtEvent::New && p.tuple.dst_ip() == outside() {
                    let me = self.me;
                    let dport = p.tuple.dport;
                    let port = self
                        .pool
                        .allocate(64, |port| {
                            let r = CtTuple::new(outside(), dport, snat_ip(), port, IPPROTO_TCP);
                            owner(Z, &r, 2) == me
                        })
                        .unwrap();
                    let reply = CtTuple::new(outside(), dport, snat_ip(), port, IPPROTO_TCP);
                    self.ct.set_reply(hit.handle, reply).unwrap();
                    self.snat.send((p.tuple.sport, port)).unwrap();
                }
            }
            self.out
                .send(Sent {
                    id,
                    worker: self.me,
                    result: r,
                })
                .unwrap();
        }
    }

    struct Lab {
        wires: [Sender<Msg>; 2],
        out: Receiver<Sent>,
        snat: Receiver<(u16, u16)>,
        threads: Vec<thread::JoinHandle<ConntrackTable>>,
    }

    impl Lab {
        fn new() -> Self {
            let (w0, w0r) = unbounded();
            let (w1, w1r) = unbounded();
            let (r0, r0r) = unbounded();
            let (r1, r1r) = unbounded();
            let (out, outr) = unbounded();
            let (snat, snatr) = unbounded();
            let mk = |me: usize, wire, ring, peer| Worker {
                me,
                ct: ConntrackTable::new(4096, &CtTimeouts::default(), 99).unwrap(),
                pool: snat::PortPool::new(10_000 + 20_000 * me as u16, 29_999 + 20_000 * me as u16)
                    .unwrap(),
                wire,
                ring,
                peer,
                out: out.clone(),
                snat: snat.clone(),
            };
            let a = mk(0, w0r, r0r, r1);
            let b = mk(1, w1r, r1r, r0);
            Lab {
                wires: [w0, w1],
                out: outr,
                snat: snatr,
                threads: vec![
                    thread::spawn(move || a.run()),
                    thread::spawn(move || b.run()),
                ],
            }
        }

        /// Sends each packet to its worker's wire, all at once, and waits until
        /// every one was processed.
        fn round(&self, pkts: &[(usize, u32, CtPacket)]) -> Vec<Sent> {
            for &(w, id, p) in pkts {
                self.wires[w].send(Msg::Wire(id, p)).unwrap();
            }
            let mut got: Vec<Sent> = (0..pkts.len()).map(|_| self.out.recv().unwrap()).collect();
            got.sort_by_key(|s| s.id);
            got
        }

        fn stop(self) -> Vec<ConntrackTable> {
            for w in &self.wires {
                w.send(Msg::Stop).unwrap();
            }
            self.threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect()
        }
    }

    fn p(t: CtTuple, l4: CtL4) -> CtPacket {
        CtPacket {
            zone: Z,
            tuple: t,
            l4,
        }
    }

    /// One worker sees the SYN, the other the SYN-ACK: ESTABLISHED, on the owner.
    #[test]
    fn syn_on_one_worker_syn_ack_on_the_other() {
        let lab = Lab::new();
        let o = orig();
        let r = o.reversed();
        let own = owner(Z, &o, 2);
        let s = lab.round(&[(0, 0, p(o, seg(SYN, 1000, 0, 0)))]);
        assert_eq!(s[0].worker, own);
        let s = lab.round(&[(1, 1, p(r, seg(SYN | ACK, 5000, 1001, 0)))]);
        assert_eq!(s[0].result.unwrap().state, CtState::Tcp(TcpState::SynRecv));
        let s = lab.round(&[(1, 2, p(o, seg(ACK, 1001, 5001, 0)))]);
        assert_eq!(
            s[0].result.unwrap().state,
            CtState::Tcp(TcpState::Established)
        );
        let tables = lab.stop();
        assert_eq!(tables[own].len(), 1);
        assert!(tables[1 - own].is_empty());
    }

    /// A DNAT'd connection whose reply hashes to the other worker: the reply
    /// goes there, meets the stub, and is handed to the owner.
    #[test]
    fn dnat_reply_on_the_other_worker_meets_the_stub() {
        let cport = (1000..)
            .find(|&c| {
                let o = CtTuple::new(client(), c, vip(), 80, IPPROTO_TCP);
                let r = CtTuple::new(backend(), 8080, client(), c, IPPROTO_TCP);
                owner(Z, &o, 2) != owner(Z, &r, 2)
            })
            .unwrap();
        let o = CtTuple::new(client(), cport, vip(), 80, IPPROTO_TCP);
        let r = CtTuple::new(backend(), 8080, client(), cport, IPPROTO_TCP);
        let own = owner(Z, &o, 2);
        let lab = Lab::new();
        lab.round(&[(1 - own, 0, p(o, seg(SYN, 1000, 0, 0)))]);
        // On the worker the reply hashes to, and on the owner itself.
        let s = lab.round(&[(1 - own, 1, p(r, seg(SYN | ACK, 5000, 1001, 0)))]);
        assert_eq!((s[0].worker, s[0].result.unwrap().dir), (own, Dir::Reply));
        let s = lab.round(&[(own, 2, p(o, seg(ACK, 1001, 5001, 0)))]);
        assert_eq!(
            s[0].result.unwrap().state,
            CtState::Tcp(TcpState::Established)
        );
        let s = lab.round(&[(own, 3, p(r, seg(ACK, 5001, 1001, 10)))]);
        assert_eq!(s[0].worker, own);
        let tables = lab.stop();
        let h = tables[own].find_live(Z, &r, 1).unwrap().0;
        assert_eq!(
            tables[own].get(h).unwrap().state,
            CtState::Tcp(TcpState::Established)
        );
        assert_eq!(tables[1 - own].len(), 1, "the stub");
        let (stub, _) = tables[1 - own].find_live(Z, &r, 1).unwrap();
        assert_eq!(tables[1 - own].get(stub).unwrap().state, CtState::Redirect);
    }

    /// 400 connections, half plain and half DNAT'd, with every packet on a
    /// pseudo-random worker and both workers busy at once: each connection ends
    /// ESTABLISHED exactly once, on its owner.
    #[test]
    fn no_entry_lost_or_duplicated_under_traffic() {
        let lab = Lab::new();
        let n = 400u16;
        let conn = |i: u16| {
            let dst = if i.is_multiple_of(2) { server() } else { vip() };
            let o = CtTuple::new(client(), 20_000 + i, dst, 80, IPPROTO_TCP);
            let r = if i.is_multiple_of(2) {
                o.reversed()
            } else {
                CtTuple::new(backend(), 8080, client(), 20_000 + i, IPPROTO_TCP)
            };
            (o, r)
        };
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut pick = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng & 1) as usize
        };
        let steps: [&dyn Fn(CtTuple, CtTuple) -> CtPacket; 3] = [
            &|o, _| p(o, seg(SYN, 1000, 0, 0)),
            &|_, r| p(r, seg(SYN | ACK, 5000, 1001, 0)),
            &|o, _| p(o, seg(ACK, 1001, 5001, 0)),
        ];
        for (k, step) in steps.iter().enumerate() {
            let pkts: Vec<_> = (0..n)
                .map(|i| {
                    let (o, r) = conn(i);
                    (pick(), u32::from(i), step(o, r))
                })
                .collect();
            for s in lab.round(&pkts) {
                assert!(
                    s.result.is_ok(),
                    "connection {} step {k}: {:?}",
                    s.id,
                    s.result
                );
            }
        }
        let tables = lab.stop();
        let mut stubs = 0;
        for i in 0..n {
            let (o, r) = conn(i);
            let own = owner(Z, &o, 2);
            let h = tables[own].find_live(Z, &o, 1).unwrap().0;
            assert_eq!(
                tables[own].get(h).unwrap().state,
                CtState::Tcp(TcpState::Established)
            );
            assert_eq!(tables[own].find_live(Z, &r, 1).unwrap().0, h);
            assert!(tables[1 - own].find_live(Z, &o, 1).is_none(), "duplicated");
            stubs += usize::from(tables[1 - own].find_live(Z, &r, 1).is_some());
        }
        assert_eq!(tables[0].len() + tables[1].len(), usize::from(n) + stubs);
    }

    /// 200 connections to an outside server, SNAT'd by whichever worker owns
    /// them, every packet on a pseudo-random worker: the answers, addressed to
    /// the SNAT port, hash to the owner (the port was picked for that), find
    /// their connection there, and no stub is left anywhere.
    #[test]
    fn snat_replies_land_on_the_owner() {
        let lab = Lab::new();
        let n = 200u16;
        let o = |i: u16| CtTuple::new(client(), 40_000 + i, outside(), 443, IPPROTO_TCP);
        let pkts: Vec<_> = (0..n)
            .map(|i| {
                (
                    usize::from(i % 3 == 0),
                    u32::from(i),
                    p(o(i), seg(SYN, 1000, 0, 0)),
                )
            })
            .collect();
        for s in lab.round(&pkts) {
            assert_eq!(s.worker, owner(Z, &o(s.id as u16), 2));
        }
        let ports: std::collections::BTreeMap<u16, u16> = lab.snat.try_iter().collect();
        assert_eq!(ports.len(), usize::from(n));
        let reply =
            |i: u16| CtTuple::new(outside(), 443, snat_ip(), ports[&(40_000 + i)], IPPROTO_TCP);
        let pkts: Vec<_> = (0..n)
            .map(|i| {
                (
                    usize::from(i % 2 == 0),
                    u32::from(i),
                    p(reply(i), seg(SYN | ACK, 5000, 1001, 0)),
                )
            })
            .collect();
        for s in lab.round(&pkts) {
            let own = owner(Z, &o(s.id as u16), 2);
            let hit = s.result.unwrap();
            assert_eq!(
                (s.worker, hit.dir, hit.state),
                (own, Dir::Reply, CtState::Tcp(TcpState::SynRecv))
            );
        }
        let tables = lab.stop();
        assert_eq!(tables[0].len() + tables[1].len(), usize::from(n), "no stub");
        for i in 0..n {
            let own = owner(Z, &o(i), 2);
            assert_eq!(owner(Z, &reply(i), 2), own);
            assert!(tables[own].find_live(Z, &reply(i), 1).is_some());
        }
    }
}
