//! A `PACKET_MMAP` ring of TPACKET_V2 frames, as the kernel and this process
//! share it.
//!
//! Each frame starts with a `tpacket2_hdr` whose first word, `tp_status`, says
//! who owns the frame: on the receive ring the kernel hands a frame over by
//! setting `TP_STATUS_USER` and takes it back when the word is
//! `TP_STATUS_KERNEL` (0) again; on the transmit ring a frame is free when the
//! word is `TP_STATUS_AVAILABLE` (0), ours to send when we set
//! `TP_STATUS_SEND_REQUEST`, and the kernel sets it back to available once the
//! frame has left. Both sides walk the ring in order, so one index (`head`) per
//! ring is all the state this side keeps. The status word is read with acquire
//! and written with release ordering: what the kernel wrote into the frame
//! before handing it over is visible after the load, and what we wrote is
//! visible to the kernel before it sees the new status.
//!
//! The header's other fields are read at named offsets (no cast of the frame to
//! a struct): the layout is the kernel's ABI, fixed since TPACKET_V2 (Linux 2.6.27).
//!
//! The ring is plain memory here: [`FrameRing::new`] takes its address, which
//! is the socket's `mmap` in the port and a heap buffer in the unit tests (which
//! play the kernel's side by writing status words).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Byte offsets of the `tpacket2_hdr` fields used here.
mod field {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const VLAN_TCI: usize = 24;
    pub const VLAN_TPID: usize = 26;
}

/// `TP_STATUS_KERNEL` / `TP_STATUS_AVAILABLE`: the kernel's (rx) or free (tx).
pub const STATUS_KERNEL: u32 = 0;
/// `TP_STATUS_USER`: a received frame is ours.
pub const STATUS_USER: u32 = 1;
/// `TP_STATUS_VLAN_VALID`: the kernel took a VLAN tag off the frame (`tp_vlan_tci`).
pub const STATUS_VLAN_VALID: u32 = 1 << 4;
/// `TP_STATUS_VLAN_TPID_VALID`: `tp_vlan_tpid` holds the tag's EtherType.
pub const STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
/// `TP_STATUS_SEND_REQUEST`: a tx frame waits for the kernel.
pub const STATUS_SEND_REQUEST: u32 = 1;
/// `TP_STATUS_WRONG_FORMAT`: the kernel refused to send the frame (it leaves it
/// so; with `PACKET_LOSS` it marks it available instead and goes on).
pub const STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// Where a transmitted frame's data starts in its ring frame: the TPACKET_V2
/// header length less the `sockaddr_ll` the kernel counts in it
/// (`TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)` = 52 − 20).
pub const TX_DATA_OFFSET: usize = 32;

/// A VLAN tag's length: what re-inserting a tag the kernel stripped adds.
pub const VLAN_TAG_LEN: usize = 4;

/// A ring of `frames` frames of `frame_size` bytes each, at `base`.
#[derive(Debug)]
pub struct FrameRing {
    base: NonNull<u8>,
    frame_size: usize,
    frames: usize,
    head: usize,
}

/// Why a frame was not put on the transmit ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxRefusal {
    /// Every frame is still the kernel's: try later.
    Full,
    /// The frame is longer than a ring frame holds: it never will fit.
    TooBig,
}

/// A received frame as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    /// Offset of the frame's first byte (its Ethernet header) in the ring frame.
    pub mac: usize,
    /// Bytes captured.
    pub snaplen: usize,
    /// The frame's length on the wire; more than `snaplen` when it did not fit.
    pub len: usize,
    /// The VLAN tag the kernel took off, `(tpid, tci)`.
    pub vlan: Option<(u16, u16)>,
}

impl RxFrame {
    /// The frame's length once its VLAN tag, if any, is back in place.
    pub fn wire_len(&self) -> usize {
        self.snaplen + if self.vlan.is_some() { VLAN_TAG_LEN } else { 0 }
    }
}

impl FrameRing {
    /// The ring of `frames` frames of `frame_size` bytes at `base`.
    ///
    /// # Safety
    /// `base` points to `frames * frame_size` bytes, readable and writable, that
    /// stay mapped as long as the ring lives, shared at most with the kernel;
    /// `frame_size` is a multiple of 16 and at least 64 (the header's alignment
    /// and size, and room for data).
    pub unsafe fn new(base: NonNull<u8>, frame_size: usize, frames: usize) -> FrameRing {
        debug_assert!(frame_size.is_multiple_of(16) && frame_size >= 64 && frames > 0);
        FrameRing {
            base,
            frame_size,
            frames,
            head: 0,
        }
    }

    /// Frames in the ring.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// The longest frame [`push`](Self::push) takes.
    pub fn max_tx_len(&self) -> usize {
        self.frame_size - TX_DATA_OFFSET
    }

    #[inline]
    fn frame_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: i < frames (callers index with `head` or `(head + k) % frames`),
        // so the offset stays inside the mapping `new` was given.
        unsafe { self.base.as_ptr().add(i * self.frame_size) }
    }

    #[inline]
    fn status_word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the frame's first 4 bytes are its status word, 4-byte aligned
        // (frames are 16-byte multiples from a page-aligned base); the kernel
        // writes it concurrently, which is what the atomic is for.
        unsafe { &*self.frame_ptr(i).add(field::STATUS).cast::<AtomicU32>() }
    }

    /// The status word of frame `i`.
    #[inline]
    pub fn status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    /// Sets the status word of frame `i` (publishing what was written before).
    #[inline]
    pub fn set_status(&self, i: usize, status: u32) {
        self.status_word(i).store(status, Ordering::Release);
    }

    #[inline]
    fn read_u16(&self, i: usize, off: usize) -> u16 {
        // SAFETY: off + 2 is within the 32-byte header of frame i.
        unsafe { self.frame_ptr(i).add(off).cast::<u16>().read_unaligned() }
    }

    #[inline]
    fn read_u32(&self, i: usize, off: usize) -> u32 {
        // SAFETY: off + 4 is within the 32-byte header of frame i.
        unsafe { self.frame_ptr(i).add(off).cast::<u32>().read_unaligned() }
    }

    #[inline]
    fn write_u32(&mut self, i: usize, off: usize, v: u32) {
        // SAFETY: as in read_u32; the frame is ours (status checked by the caller).
        unsafe { self.frame_ptr(i).add(off).cast::<u32>().write_unaligned(v) }
    }

    /// Index of the frame at the head.
    pub fn head(&self) -> usize {
        self.head
    }

    #[inline]
    fn advance(&mut self) {
        self.head += 1;
        if self.head == self.frames {
            self.head = 0;
        }
    }

    // --- receive side ---

    /// How many frames from the head, at most `max`, the kernel has handed
    /// over. An idle ring costs one load of the head's status word.
    #[inline]
    pub fn rx_ready(&self, max: usize) -> usize {
        let mut n = 0;
        let mut i = self.head;
        while n < max && self.status(i) & STATUS_USER != 0 {
            n += 1;
            i += 1;
            if i == self.frames {
                i = 0;
            }
        }
        n
    }

    /// The head frame's description (the frame must have been counted by
    /// [`rx_ready`](Self::rx_ready)); `None` when the kernel's offsets fall
    /// outside the frame (never, unless the ring is not what it was set up as).
    pub fn rx_frame(&self) -> Option<RxFrame> {
        let i = self.head;
        let status = self.status(i);
        let mac = usize::from(self.read_u16(i, field::MAC));
        let snaplen = self.read_u32(i, field::SNAPLEN) as usize;
        let len = self.read_u32(i, field::LEN) as usize;
        if mac < field::VLAN_TPID + 2 || mac.checked_add(snaplen)? > self.frame_size || snaplen < 14
        {
            return None;
        }
        let vlan = (status & STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & STATUS_VLAN_TPID_VALID != 0 {
                self.read_u16(i, field::VLAN_TPID)
            } else {
                0x8100
            };
            (tpid, self.read_u16(i, field::VLAN_TCI))
        });
        Some(RxFrame {
            mac,
            snaplen,
            len,
            vlan,
        })
    }

    /// Copies the head frame `f` (from [`rx_frame`](Self::rx_frame)) into `out`,
    /// which is [`RxFrame::wire_len`] bytes long, putting its VLAN tag back
    /// after the MAC addresses.
    pub fn rx_copy(&self, f: &RxFrame, out: &mut [u8]) {
        // SAFETY: rx_frame checked mac + snaplen <= frame_size; the frame is ours
        // (TP_STATUS_USER) until rx_release.
        let data =
            unsafe { std::slice::from_raw_parts(self.frame_ptr(self.head).add(f.mac), f.snaplen) };
        match f.vlan {
            None => out.copy_from_slice(data),
            Some((tpid, tci)) => {
                out[..12].copy_from_slice(&data[..12]);
                out[12..14].copy_from_slice(&tpid.to_be_bytes());
                out[14..16].copy_from_slice(&tci.to_be_bytes());
                out[16..].copy_from_slice(&data[12..]);
            }
        }
    }

    /// Gives the head frame back to the kernel and moves on.
    #[inline]
    pub fn rx_release(&mut self) {
        self.set_status(self.head, STATUS_KERNEL);
        self.advance();
    }

    // --- transmit side ---

    /// Puts `data` in the head frame for the kernel to send.
    ///
    /// # Errors
    /// [`TxRefusal::TooBig`] for a frame longer than [`max_tx_len`](Self::max_tx_len),
    /// [`TxRefusal::Full`] when the head frame is still the kernel's.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TxRefusal> {
        if data.len() > self.max_tx_len() {
            return Err(TxRefusal::TooBig);
        }
        let i = self.head;
        let status = self.status(i);
        // A frame the kernel refused (without PACKET_LOSS) is ours again too.
        if status != STATUS_KERNEL && status != STATUS_WRONG_FORMAT {
            return Err(TxRefusal::Full);
        }
        // SAFETY: the frame is free, so the kernel does not read it until the
        // status says so; TX_DATA_OFFSET + len <= frame_size (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.frame_ptr(i).add(TX_DATA_OFFSET),
                data.len(),
            );
        }
        self.write_u32(i, field::LEN, data.len() as u32);
        self.set_status(i, STATUS_SEND_REQUEST);
        self.advance();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 256;

    /// A ring over a heap buffer; the test plays the kernel.
    struct TestRing {
        _mem: Vec<u64>,
        ring: FrameRing,
    }

    fn ring(frames: usize) -> TestRing {
        let mut mem = vec![0u64; FRAME * frames / 8];
        let base = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: mem holds frames * FRAME bytes and lives as long as the ring.
        let ring = unsafe { FrameRing::new(base, FRAME, frames) };
        TestRing { _mem: mem, ring }
    }

    /// What the kernel does on receive: fills frame `i` and hands it over.
    fn kernel_rx(r: &FrameRing, i: usize, frame: &[u8], len: usize, vlan: Option<(u16, u16)>) {
        let p = r.frame_ptr(i);
        let mac = 66usize;
        let snap = frame.len().min(FRAME - mac);
        // SAFETY: inside the test buffer.
        unsafe {
            p.add(field::LEN).cast::<u32>().write_unaligned(len as u32);
            p.add(field::SNAPLEN)
                .cast::<u32>()
                .write_unaligned(snap as u32);
            p.add(field::MAC).cast::<u16>().write_unaligned(mac as u16);
            if let Some((tpid, tci)) = vlan {
                p.add(field::VLAN_TCI).cast::<u16>().write_unaligned(tci);
                p.add(field::VLAN_TPID).cast::<u16>().write_unaligned(tpid);
            }
            std::ptr::copy_nonoverlapping(frame.as_ptr(), p.add(mac), snap);
        }
        let flags = match vlan {
            Some(_) => STATUS_USER | STATUS_VLAN_VALID | STATUS_VLAN_TPID_VALID,
            None => STATUS_USER,
        };
        r.set_status(i, flags);
    }

    fn eth(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    #[test]
    fn an_idle_ring_has_nothing_ready() {
        let t = ring(4);
        assert_eq!(t.ring.rx_ready(32), 0);
    }

    #[test]
    fn received_frames_are_read_in_order_and_given_back() {
        let mut t = ring(4);
        for i in 0..3 {
            kernel_rx(&t.ring, i, &eth(60, i as u8), 60, None);
        }
        assert_eq!(t.ring.rx_ready(32), 3);
        assert_eq!(t.ring.rx_ready(2), 2, "never more than asked");
        for i in 0..3u8 {
            let f = t.ring.rx_frame().unwrap();
            assert_eq!((f.snaplen, f.len, f.vlan), (60, 60, None));
            let mut out = vec![0; f.wire_len()];
            t.ring.rx_copy(&f, &mut out);
            assert_eq!(out, eth(60, i));
            t.ring.rx_release();
        }
        assert_eq!(t.ring.rx_ready(32), 0);
        assert_eq!(t.ring.status(0), STATUS_KERNEL, "given back");
    }

    #[test]
    fn the_ring_wraps_around() {
        let mut t = ring(2);
        for round in 0..5u8 {
            kernel_rx(&t.ring, t.ring.head(), &eth(64, round), 64, None);
            assert_eq!(t.ring.rx_ready(32), 1);
            let f = t.ring.rx_frame().unwrap();
            let mut out = vec![0; f.wire_len()];
            t.ring.rx_copy(&f, &mut out);
            assert_eq!(out[20], round);
            t.ring.rx_release();
        }
    }

    #[test]
    fn a_frame_longer_than_the_ring_frame_is_seen_truncated() {
        let t = ring(2);
        let big = eth(1000, 7);
        kernel_rx(&t.ring, 0, &big, big.len(), None);
        let f = t.ring.rx_frame().unwrap();
        assert!(f.snaplen < f.len, "{f:?}: the caller drops and counts it");
    }

    #[test]
    fn kernel_offsets_outside_the_frame_are_refused() {
        let t = ring(2);
        kernel_rx(&t.ring, 0, &eth(60, 1), 60, None);
        // SAFETY: inside the test buffer.
        unsafe {
            t.ring
                .frame_ptr(0)
                .add(field::SNAPLEN)
                .cast::<u32>()
                .write_unaligned(FRAME as u32)
        };
        assert_eq!(t.ring.rx_frame(), None);
    }

    #[test]
    fn a_stripped_vlan_tag_is_put_back() {
        let mut t = ring(2);
        let f = eth(60, 3);
        kernel_rx(&t.ring, 0, &f, 60, Some((0x88a8, 0x0064)));
        let d = t.ring.rx_frame().unwrap();
        assert_eq!(d.wire_len(), 64);
        let mut out = vec![0; d.wire_len()];
        t.ring.rx_copy(&d, &mut out);
        assert_eq!(&out[..12], &f[..12]);
        assert_eq!(&out[12..16], &[0x88, 0xa8, 0x00, 0x64]);
        assert_eq!(&out[16..], &f[12..]);
        t.ring.rx_release();
    }

    #[test]
    fn tx_fills_free_frames_until_the_ring_is_full() {
        let mut t = ring(3);
        for i in 0..3u8 {
            assert_eq!(t.ring.push(&eth(60, i)), Ok(()));
        }
        assert_eq!(t.ring.push(&eth(60, 9)), Err(TxRefusal::Full));
        for i in 0..3 {
            assert_eq!(t.ring.status(i), STATUS_SEND_REQUEST);
            assert_eq!(t.ring.read_u32(i, field::LEN), 60);
        }
        // The kernel sends frame 0: it is free again, and the next push uses it.
        t.ring.set_status(0, STATUS_KERNEL);
        assert_eq!(t.ring.push(&eth(60, 9)), Ok(()));
        assert_eq!(t.ring.push(&eth(60, 10)), Err(TxRefusal::Full));
        // SAFETY: inside the test buffer.
        let first = unsafe { *t.ring.frame_ptr(0).add(TX_DATA_OFFSET + 20) };
        assert_eq!(first, 9);
    }

    #[test]
    fn a_frame_the_kernel_refused_is_reused() {
        let mut t = ring(1);
        assert_eq!(t.ring.push(&eth(60, 1)), Ok(()));
        t.ring.set_status(0, STATUS_WRONG_FORMAT);
        assert_eq!(t.ring.push(&eth(60, 2)), Ok(()));
    }

    #[test]
    fn tx_refuses_a_frame_longer_than_a_ring_frame() {
        let mut t = ring(2);
        let max = t.ring.max_tx_len();
        assert_eq!(max, FRAME - TX_DATA_OFFSET);
        assert_eq!(t.ring.push(&eth(max + 1, 1)), Err(TxRefusal::TooBig));
        assert_eq!(t.ring.status(0), STATUS_KERNEL, "nothing written");
        assert_eq!(t.ring.push(&eth(max, 1)), Ok(()), "the longest that fits");
    }
}
