//! The TCP state machine and window tracking of a connection.
//!
//! # Design
//! The states and transitions are Linux's TCP conntrack (`nf_conntrack_proto_tcp`),
//! rebuilt from its documented behaviour: a table indexed by the segment's event
//! (SYN, SYN-ACK, FIN, ACK, RST, none), its direction and the current state gives
//! the next state, *ignore* (accepted, no change: a retransmitted SYN after the
//! SYN-ACK, a late SYN-ACK) or *invalid*. Linux's tenth state, SYN_SENT2, is kept:
//! it is how a simultaneous open (both sides send a SYN) reaches ESTABLISHED.
//!
//! A connection starts only from a SYN without ACK (Linux's
//! `nf_conntrack_tcp_loose = 0`): picking up a connection from the middle would let
//! any ACK create state, which is what an unauthenticated sender should not be able
//! to do. A SYN on a connection in TIME_WAIT or CLOSE reopens it: the old entry is
//! replaced by a new one in SYN_SENT.
//!
//! **Window tracking** (Rooij's "Real stateful TCP packet filtering in IP Filter",
//! as Linux does it) keeps per direction the highest sequence sent (`end`), the
//! highest sequence the peer allowed (`maxend`, its ack plus window) and the
//! largest window seen (`maxwin`). A segment is in window when its sequence is
//! at most `maxend`, its end is at least `end − peer's maxwin`, and its ack lies
//! between `peer's end − max(maxwin, 66000)` and `peer's end`. It can be switched
//! off per zone (Linux's `be_liberal`): the data is still kept up to date, only the
//! verdict is ignored.

/// TCP flag bits as in the header's 13th byte.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// What conntrack reads of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// The window field, unscaled.
    pub win: u16,
    /// Flag bits ([`flags`]).
    pub flags: u8,
    /// Payload length.
    pub len: u32,
    /// The window-scale option, on a SYN or SYN-ACK.
    pub wscale: Option<u8>,
}

/// A TCP connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    /// The original direction sent a SYN.
    SynSent = 0,
    /// Both sides sent a SYN (simultaneous open).
    SynSent2 = 1,
    /// The reply direction answered with a SYN-ACK.
    SynRecv = 2,
    /// The handshake completed.
    Established = 3,
    /// One side sent a FIN.
    FinWait = 4,
    /// The FIN was acknowledged; the other side has not closed yet.
    CloseWait = 5,
    /// Both sides sent a FIN; the last one is unacknowledged.
    LastAck = 6,
    /// Both FINs acknowledged.
    TimeWait = 7,
    /// Reset.
    Close = 8,
}

impl TcpState {
    /// Every state, in discriminant order.
    pub const ALL: [TcpState; 9] = [
        TcpState::SynSent,
        TcpState::SynSent2,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
    ];
}

/// Window-tracking data of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDir {
    /// Highest sequence number sent, plus one.
    pub end: u32,
    /// Highest sequence number the peer allowed (its ack plus its window).
    pub maxend: u32,
    /// Largest window seen from this side (scaled), 0 before its first segment.
    pub maxwin: u32,
    /// Window-scale shift.
    pub scale: u8,
    /// Sent the window-scale option on its SYN.
    pub wscale_seen: bool,
}

/// Why a segment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRefusal {
    /// Not a valid transition (e.g. a SYN-ACK without a SYN, an ACK out of nowhere).
    Invalid,
    /// Outside the tracked window.
    OutOfWindow,
}

/// What a segment does to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpStep {
    /// Accepted; the connection is now in this state.
    To(TcpState),
    /// Accepted, no change (Linux's "ignore").
    Ignore,
    /// A SYN on a closed connection: replace it with a new one.
    Reopen,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

fn event(f: u8) -> Event {
    if f & flags::RST != 0 {
        Event::Rst
    } else if f & flags::SYN != 0 {
        if f & flags::ACK != 0 {
            Event::SynAck
        } else {
            Event::Syn
        }
    } else if f & flags::FIN != 0 {
        Event::Fin
    } else if f & flags::ACK != 0 {
        Event::Ack
    } else {
        Event::None
    }
}

/// A table cell: the next state, ignore, or invalid.
#[derive(Clone, Copy)]
enum Cell {
    S(TcpState),
    Ig,
    Iv,
}

use Cell::{Ig, Iv, S};
use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, SynRecv as SR,
    SynSent as SS, SynSent2 as S2, TimeWait as TW,
};

/// `[direction][event][state]`, states in [`TcpState::ALL`] order:
/// SS, S2, SR, ES, FW, CW, LA, TW, CL.
#[rustfmt::skip]
const TABLE: [[[Cell; 9]; 6]; 2] = [
    // Original direction.
    [
        /* syn    */ [S(SS), S(S2), Ig,    Ig,    Ig,    Ig,    Ig,    S(SS), S(SS)],
        /* synack */ [Iv,    S(SR), S(SR), Iv,    Iv,    Iv,    Iv,    Iv,    Iv],
        /* fin    */ [Iv,    Iv,    S(FW), S(FW), S(LA), S(LA), S(LA), S(TW), S(CL)],
        /* ack    */ [Iv,    Iv,    S(ES), S(ES), S(CW), S(CW), S(TW), S(TW), S(CL)],
        /* rst    */ [S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL)],
        /* none   */ [Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv],
    ],
    // Reply direction.
    [
        /* syn    */ [S(S2), S(S2), Iv,    Iv,    Iv,    Iv,    Iv,    S(SS), Iv],
        /* synack */ [S(SR), S(SR), Ig,    Ig,    Ig,    Ig,    Ig,    Ig,    Ig],
        /* fin    */ [Iv,    Iv,    S(FW), S(FW), S(LA), S(LA), S(LA), S(TW), S(CL)],
        /* ack    */ [Ig,    Ig,    S(SR), S(ES), S(CW), S(CW), S(TW), S(TW), S(CL)],
        /* rst    */ [S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL), S(CL)],
        /* none   */ [Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv,    Iv],
    ],
];

/// `a < b` in sequence space.
#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The end of a segment in sequence space (SYN and FIN take one each).
fn seg_end(s: &TcpSegment) -> u32 {
    let mut e = s.seq.wrapping_add(s.len);
    if s.flags & flags::SYN != 0 {
        e = e.wrapping_add(1);
    }
    if s.flags & flags::FIN != 0 {
        e = e.wrapping_add(1);
    }
    e
}

/// Whether a segment may open a connection.
pub fn opens(s: &TcpSegment) -> bool {
    event(s.flags) == Event::Syn
}

/// The window data of a connection opened by `s` (original direction).
pub fn init(s: &TcpSegment) -> [TcpDir; 2] {
    let mut d = [TcpDir::default(); 2];
    init_dir(&mut d[0], s);
    d
}

fn init_dir(d: &mut TcpDir, s: &TcpSegment) {
    let end = seg_end(s);
    let win = u32::from(s.win).max(1);
    *d = TcpDir {
        end,
        maxend: end,
        maxwin: win,
        scale: s.wscale.unwrap_or(0).min(14),
        wscale_seen: s.wscale.is_some(),
    };
}

/// The next step of a connection in `state` for segment `s` in direction `dir`
/// (0 original, 1 reply), updating the window data. `check_window`: refuse
/// segments outside the window.
///
/// # Errors
/// [`TcpRefusal`]; the window data is then unchanged.
pub fn step(
    state: TcpState,
    dirs: &mut [TcpDir; 2],
    dir: usize,
    s: &TcpSegment,
    check_window: bool,
) -> Result<TcpStep, TcpRefusal> {
    let ev = event(s.flags);
    let next = match TABLE[dir][ev as usize][state as usize] {
        Iv => return Err(TcpRefusal::Invalid),
        Ig => return Ok(TcpStep::Ignore),
        S(n) => n,
    };
    if ev == Event::Syn && matches!(state, TcpState::TimeWait | TcpState::Close) {
        return Ok(TcpStep::Reopen);
    }
    // A RST answering our SYN must acknowledge it (RFC 793 §3.4: otherwise it is
    // not for this connection).
    if ev == Event::Rst
        && dir == 1
        && state == TcpState::SynSent
        && (s.flags & flags::ACK == 0 || s.ack != dirs[0].end)
    {
        return Err(TcpRefusal::Invalid);
    }
    let mut d = *dirs;
    // A SYN re-sent by the original side may carry a new sequence (the host
    // retried): take it as the new start.
    if ev == Event::Syn && dir == 0 && state == TcpState::SynSent {
        init_dir(&mut d[0], s);
    }
    let ok = in_window(&mut d, dir, s);
    if !ok && check_window {
        return Err(TcpRefusal::OutOfWindow);
    }
    *dirs = d;
    Ok(TcpStep::To(next))
}

/// The window check, updating `d` as if the segment were accepted.
fn in_window(d: &mut [TcpDir; 2], dir: usize, s: &TcpSegment) -> bool {
    let (a, b) = d.split_at_mut(1);
    let (sender, receiver) = if dir == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    };
    let syn = s.flags & flags::SYN != 0;
    let end = seg_end(s);
    if sender.maxwin == 0 {
        // The first segment of this side (the SYN-ACK, or the SYN of a
        // simultaneous open): it sets the side's data.
        init_dir(sender, s);
        if !syn {
            sender.maxend = end.wrapping_add(sender.maxwin);
        }
        if syn && s.flags & flags::ACK != 0 && !(sender.wscale_seen && receiver.wscale_seen) {
            // Scaling is on only if both SYNs asked for it (RFC 7323 §2.2).
            sender.scale = 0;
            receiver.scale = 0;
        }
    }
    let win = if syn {
        u32::from(s.win)
    } else {
        u32::from(s.win) << sender.scale
    };
    let ack = if s.flags & flags::ACK == 0 || (s.flags & flags::RST != 0 && s.ack == 0) {
        receiver.end
    } else {
        s.ack
    };
    let maxack = sender.maxwin.max(66_000);
    let ok = !after(s.seq, sender.maxend)
        && !before(end, sender.end.wrapping_sub(receiver.maxwin))
        && !after(ack, receiver.end)
        && !before(ack, receiver.end.wrapping_sub(maxack));
    if sender.maxwin < win {
        sender.maxwin = win;
    }
    if after(end, sender.end) {
        sender.end = end;
    }
    if s.flags & flags::ACK != 0 {
        let allowed = ack.wrapping_add(win.max(1));
        if after(allowed, receiver.maxend) {
            receiver.maxend = allowed;
        }
    }
    ok
}
