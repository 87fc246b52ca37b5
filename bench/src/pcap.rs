//! Classic libpcap capture files: a writer for generated traffic and a reader
//! for checking it.
//!
//! Only the classic format is handled (not pcapng) because every replay tool
//! we care about (testpmd `net_pcap`, pktgen-dpdk, tcpreplay, MoonGen) reads
//! it, and it is simple enough to own instead of pulling in a crate.
//!
//! The writer always emits little-endian, microsecond-resolution files with
//! link type Ethernet (1). The reader accepts both byte orders and both
//! microsecond and nanosecond magics, since captures taken elsewhere may be
//! fed back in.
//!
//! # No-panic contract
//!
//! The reader treats its input as untrusted: bad magic, short headers and
//! truncated records are reported as [`PcapError`] values, and record
//! lengths are capped at [`MAX_RECORD_LEN`] before anything is allocated, so
//! a corrupt length field cannot trigger a huge allocation.

use std::io::{self, Read, Write};
use std::time::Duration;

/// Link type for Ethernet II frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Snapshot length the writer declares; larger than any frame we generate.
pub const DEFAULT_SNAPLEN: u32 = 65_535;

/// Largest record the reader accepts, whatever the file header claims.
/// Same bound libpcap uses (`MAXIMUM_SNAPLEN`).
pub const MAX_RECORD_LEN: u32 = 262_144;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Errors from reading or writing a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The underlying reader or writer failed.
    #[error("pcap I/O error: {0}")]
    Io(#[from] io::Error),
    /// The input ended before the 24-byte file header was complete.
    #[error("truncated pcap file header: got {got} of 24 bytes")]
    TruncatedFileHeader {
        /// Bytes available.
        got: usize,
    },
    /// The first four bytes are not a classic pcap magic in either byte order.
    #[error("bad pcap magic {magic:#010x} (not a classic pcap file; pcapng is not supported)")]
    BadMagic {
        /// The magic as read, little-endian.
        magic: u32,
    },
    /// The file header's major version is not 2.
    #[error("unsupported pcap version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version in the header.
        major: u16,
        /// Minor version in the header.
        minor: u16,
    },
    /// A caller required Ethernet frames but the file holds another link type.
    #[error("unsupported pcap link type {link_type} (expected {LINKTYPE_ETHERNET}, Ethernet)")]
    UnsupportedLinkType {
        /// Link type in the file header.
        link_type: u32,
    },
    /// The input ended inside a 16-byte record header.
    #[error("truncated header of record {index}: got {got} of 16 bytes")]
    TruncatedRecordHeader {
        /// Zero-based record number.
        index: u64,
        /// Bytes available.
        got: usize,
    },
    /// The input ended inside a record's captured data.
    #[error("truncated record {index}: header says {expected} bytes, got {got}")]
    TruncatedRecord {
        /// Zero-based record number.
        index: u64,
        /// Captured length from the record header.
        expected: u32,
        /// Bytes available.
        got: usize,
    },
    /// A record header claims more than [`MAX_RECORD_LEN`] captured bytes.
    #[error("record {index} claims {len} captured bytes, more than the {MAX_RECORD_LEN} limit")]
    RecordTooLong {
        /// Zero-based record number.
        index: u64,
        /// Captured length from the record header.
        len: u32,
    },
    /// The writer was given a frame longer than the file's snapshot length.
    #[error("frame of {len} bytes exceeds the snapshot length {snaplen}")]
    FrameTooLong {
        /// Frame length.
        len: usize,
        /// Snapshot length declared in the file header.
        snaplen: u32,
    },
    /// The writer was given a timestamp whose seconds do not fit in 32 bits.
    #[error("timestamp {secs}s does not fit a 32-bit pcap seconds field")]
    TimestampOutOfRange {
        /// Seconds since the epoch.
        secs: u64,
    },
}

/// Timestamp resolution of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampResolution {
    /// Sub-second field counts microseconds (magic `0xa1b2c3d4`).
    Micros,
    /// Sub-second field counts nanoseconds (magic `0xa1b23c4d`).
    Nanos,
}

/// The file header fields a reader reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapFileHeader {
    /// Major, minor format version.
    pub version: (u16, u16),
    /// Timestamp resolution implied by the magic.
    pub resolution: TimestampResolution,
    /// Declared snapshot length.
    pub snaplen: u32,
    /// Link type of every record (`LINKTYPE_*`).
    pub link_type: u32,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// Length of the packet on the wire, as recorded (may exceed `data.len()`).
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

/// Writes a classic pcap file: little-endian, microsecond timestamps.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    inner: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes an Ethernet file header with [`DEFAULT_SNAPLEN`].
    ///
    /// # Errors
    /// [`PcapError::Io`] if the header cannot be written.
    pub fn new(inner: W) -> Result<Self, PcapError> {
        Self::with_link_type(inner, LINKTYPE_ETHERNET, DEFAULT_SNAPLEN)
    }

    /// Writes a file header with the given link type and snapshot length.
    ///
    /// # Errors
    /// [`PcapError::Io`] if the header cannot be written.
    pub fn with_link_type(mut inner: W, link_type: u32, snaplen: u32) -> Result<Self, PcapError> {
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        header[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero, as every modern writer does.
        header[16..20].copy_from_slice(&snaplen.to_le_bytes());
        header[20..24].copy_from_slice(&link_type.to_le_bytes());
        inner.write_all(&header)?;
        Ok(Self { inner, snaplen })
    }

    /// Appends one record holding all of `frame`.
    ///
    /// # Errors
    /// [`PcapError::FrameTooLong`] if `frame` exceeds the snapshot length,
    /// [`PcapError::TimestampOutOfRange`] if the seconds overflow 32 bits,
    /// [`PcapError::Io`] if writing fails.
    pub fn write_frame(&mut self, timestamp: Duration, frame: &[u8]) -> Result<(), PcapError> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&len| len <= self.snaplen)
            .ok_or(PcapError::FrameTooLong {
                len: frame.len(),
                snaplen: self.snaplen,
            })?;
        let secs =
            u32::try_from(timestamp.as_secs()).map_err(|_| PcapError::TimestampOutOfRange {
                secs: timestamp.as_secs(),
            })?;
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&timestamp.subsec_micros().to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        self.inner.write_all(&header)?;
        self.inner.write_all(frame)?;
        Ok(())
    }

    /// Flushes and returns the inner writer.
    ///
    /// # Errors
    /// [`PcapError::Io`] if the flush fails.
    pub fn finish(mut self) -> Result<W, PcapError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads records from a classic pcap file, one at a time.
///
/// Also an [`Iterator`] over `Result<PcapRecord, PcapError>` that stops after
/// the first error.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    inner: R,
    header: PcapFileHeader,
    big_endian: bool,
    next_index: u64,
    failed: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads and validates the file header.
    ///
    /// # Errors
    /// [`PcapError::TruncatedFileHeader`], [`PcapError::BadMagic`],
    /// [`PcapError::UnsupportedVersion`] or [`PcapError::Io`].
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut raw = [0u8; FILE_HEADER_LEN];
        let got = read_up_to(&mut inner, &mut raw)?;
        if got < FILE_HEADER_LEN {
            return Err(PcapError::TruncatedFileHeader { got });
        }
        let magic_le = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let (big_endian, resolution) = match (magic_le, magic_le.swap_bytes()) {
            (MAGIC_MICROS, _) => (false, TimestampResolution::Micros),
            (MAGIC_NANOS, _) => (false, TimestampResolution::Nanos),
            (_, MAGIC_MICROS) => (true, TimestampResolution::Micros),
            (_, MAGIC_NANOS) => (true, TimestampResolution::Nanos),
            _ => return Err(PcapError::BadMagic { magic: magic_le }),
        };
        let u16_at = |at: usize| {
            let bytes = [raw[at], raw[at + 1]];
            if big_endian {
                u16::from_be_bytes(bytes)
            } else {
                u16::from_le_bytes(bytes)
            }
        };
        let u32_at =
            |at: usize| decode_u32(big_endian, [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let version = (u16_at(4), u16_at(6));
        if version.0 != VERSION_MAJOR {
            return Err(PcapError::UnsupportedVersion {
                major: version.0,
                minor: version.1,
            });
        }
        let header = PcapFileHeader {
            version,
            resolution,
            snaplen: u32_at(16),
            link_type: u32_at(20),
        };
        Ok(Self {
            inner,
            header,
            big_endian,
            next_index: 0,
            failed: false,
        })
    }

    /// The validated file header.
    pub fn header(&self) -> &PcapFileHeader {
        &self.header
    }

    /// Reads the next record; `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// [`PcapError::TruncatedRecordHeader`], [`PcapError::TruncatedRecord`],
    /// [`PcapError::RecordTooLong`] or [`PcapError::Io`].
    pub fn next_record(&mut self) -> Result<Option<PcapRecord>, PcapError> {
        let index = self.next_index;
        let mut raw = [0u8; RECORD_HEADER_LEN];
        let got = read_up_to(&mut self.inner, &mut raw)?;
        if got == 0 {
            return Ok(None);
        }
        if got < RECORD_HEADER_LEN {
            return Err(PcapError::TruncatedRecordHeader { index, got });
        }
        let field = |at: usize| {
            decode_u32(
                self.big_endian,
                [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]],
            )
        };
        let (secs, subsec, caplen, orig_len) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLong { index, len: caplen });
        }
        // Bounded by MAX_RECORD_LEN above, so this cannot be a huge allocation.
        let mut data = vec![0u8; caplen as usize];
        let got = read_up_to(&mut self.inner, &mut data)?;
        if got < data.len() {
            return Err(PcapError::TruncatedRecord {
                index,
                expected: caplen,
                got,
            });
        }
        let subsec_nanos = match self.header.resolution {
            TimestampResolution::Micros => u64::from(subsec) * 1_000,
            TimestampResolution::Nanos => u64::from(subsec),
        };
        // Out-of-range sub-second fields carry into seconds rather than fail;
        // u32 seconds plus a small carry cannot overflow the u64 in Duration.
        let timestamp = Duration::from_secs(u64::from(secs)) + Duration::from_nanos(subsec_nanos);
        self.next_index += 1;
        Ok(Some(PcapRecord {
            timestamp,
            orig_len,
            data,
        }))
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<PcapRecord, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_record().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// Reads every frame of an Ethernet pcap file.
///
/// # Errors
/// Any [`PcapReader`] error, or [`PcapError::UnsupportedLinkType`] if the
/// file is not [`LINKTYPE_ETHERNET`].
pub fn read_ethernet_frames<R: Read>(input: R) -> Result<Vec<Vec<u8>>, PcapError> {
    let reader = PcapReader::new(input)?;
    let link_type = reader.header().link_type;
    if link_type != LINKTYPE_ETHERNET {
        return Err(PcapError::UnsupportedLinkType { link_type });
    }
    reader.map(|record| record.map(|r| r.data)).collect()
}

fn decode_u32(big_endian: bool, bytes: [u8; 4]) -> u32 {
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

/// Fills `buf` as far as the input allows; returns the bytes read, which is
/// less than `buf.len()` only at end of input. Lets callers tell a clean end
/// of file (0) from a truncated structure.
fn read_up_to<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written little-endian file: header plus one 4-byte record at
    /// t = 1.000002 s.
    const ONE_RECORD_LE: [u8; 44] = [
        0xd4, 0xc3, 0xb2, 0xa1, // magic
        0x02, 0x00, 0x04, 0x00, // version 2.4
        0x00, 0x00, 0x00, 0x00, // thiszone
        0x00, 0x00, 0x00, 0x00, // sigfigs
        0xff, 0xff, 0x00, 0x00, // snaplen 65535
        0x01, 0x00, 0x00, 0x00, // Ethernet
        0x01, 0x00, 0x00, 0x00, // ts_sec 1
        0x02, 0x00, 0x00, 0x00, // ts_usec 2
        0x04, 0x00, 0x00, 0x00, // incl_len 4
        0x04, 0x00, 0x00, 0x00, // orig_len 4
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn write(frames: &[(Duration, &[u8])]) -> Vec<u8> {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        for (ts, frame) in frames {
            writer.write_frame(*ts, frame).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn writer_emits_golden_bytes() {
        let bytes = write(&[(Duration::from_micros(1_000_002), &[0xde, 0xad, 0xbe, 0xef])]);
        assert_eq!(bytes, ONE_RECORD_LE);
    }

    #[test]
    fn reader_parses_golden_bytes() {
        let mut reader = PcapReader::new(&ONE_RECORD_LE[..]).unwrap();
        assert_eq!(
            *reader.header(),
            PcapFileHeader {
                version: (2, 4),
                resolution: TimestampResolution::Micros,
                snaplen: 65_535,
                link_type: LINKTYPE_ETHERNET,
            }
        );
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(record.timestamp, Duration::from_micros(1_000_002));
        assert_eq!(record.orig_len, 4);
        assert_eq!(record.data, [0xde, 0xad, 0xbe, 0xef]);
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn round_trip_preserves_frames_and_timestamps() {
        let frames: Vec<Vec<u8>> = (0..50u8)
            .map(|i| (0..u16::from(i) * 31).map(|b| b as u8 ^ i).collect())
            .collect();
        let input: Vec<(Duration, &[u8])> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (Duration::from_micros(i as u64 * 1_234_567), f.as_slice()))
            .collect();
        let bytes = write(&input);
        let records: Vec<PcapRecord> = PcapReader::new(bytes.as_slice())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), frames.len());
        for ((ts, frame), record) in input.iter().zip(&records) {
            assert_eq!(record.timestamp, *ts);
            assert_eq!(record.data, *frame);
            assert_eq!(record.orig_len as usize, frame.len());
        }
        assert_eq!(read_ethernet_frames(bytes.as_slice()).unwrap(), frames);
    }

    #[test]
    fn empty_capture_has_no_frames() {
        let bytes = write(&[]);
        assert_eq!(bytes.len(), FILE_HEADER_LEN);
        assert!(read_ethernet_frames(bytes.as_slice()).unwrap().is_empty());
    }

    #[test]
    fn reads_big_endian_nanosecond_files() {
        let mut bytes = vec![
            0xa1, 0xb2, 0x3c, 0x4d, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00,
            0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ];
        bytes.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 60, 0xaa, 0xbb]);
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        assert_eq!(reader.header().resolution, TimestampResolution::Nanos);
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(record.timestamp, Duration::new(3, 7));
        assert_eq!(record.orig_len, 60);
        assert_eq!(record.data, [0xaa, 0xbb]);
    }

    #[test]
    fn rejects_bad_magic() {
        let mut bytes = ONE_RECORD_LE;
        bytes[0..4].copy_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]); // pcapng section header
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::BadMagic { magic: 0x0a0d_0d0a })
        ));
    }

    #[test]
    fn rejects_unsupported_version() {
        let mut bytes = ONE_RECORD_LE;
        bytes[4] = 1;
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::UnsupportedVersion { major: 1, minor: 4 })
        ));
    }

    #[test]
    fn rejects_non_ethernet_link_type() {
        let mut bytes = ONE_RECORD_LE;
        bytes[20] = 101; // LINKTYPE_RAW
        assert!(matches!(
            read_ethernet_frames(&bytes[..]),
            Err(PcapError::UnsupportedLinkType { link_type: 101 })
        ));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for cut in 0..ONE_RECORD_LE.len() {
            let result = read_ethernet_frames(&ONE_RECORD_LE[..cut]);
            match cut {
                0..=23 => assert!(
                    matches!(result, Err(PcapError::TruncatedFileHeader { got }) if got == cut)
                ),
                24 => assert_eq!(result.unwrap(), Vec::<Vec<u8>>::new()),
                25..=39 => {
                    assert!(
                        matches!(result, Err(PcapError::TruncatedRecordHeader { index: 0, got }) if got == cut - 24)
                    )
                }
                _ => assert!(
                    matches!(result, Err(PcapError::TruncatedRecord { index: 0, expected: 4, got }) if got == cut - 40)
                ),
            }
        }
    }

    #[test]
    fn rejects_oversized_record_before_allocating() {
        let mut bytes = ONE_RECORD_LE;
        bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_ethernet_frames(&bytes[..]),
            Err(PcapError::RecordTooLong {
                index: 0,
                len: u32::MAX
            })
        ));
    }

    #[test]
    fn iterator_stops_after_first_error() {
        let mut bytes = ONE_RECORD_LE.to_vec();
        bytes.extend_from_slice(&[1, 2, 3]); // a partial second record header
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(matches!(
            reader.next(),
            Some(Err(PcapError::TruncatedRecordHeader { index: 1, got: 3 }))
        ));
        assert!(reader.next().is_none());
    }

    #[test]
    fn writer_rejects_frames_longer_than_snaplen() {
        let mut writer = PcapWriter::with_link_type(Vec::new(), LINKTYPE_ETHERNET, 8).unwrap();
        assert!(matches!(
            writer.write_frame(Duration::ZERO, &[0; 9]),
            Err(PcapError::FrameTooLong { len: 9, snaplen: 8 })
        ));
        writer.write_frame(Duration::ZERO, &[0; 8]).unwrap();
    }

    #[test]
    fn writer_rejects_timestamps_past_2106() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        let late = Duration::from_secs(u64::from(u32::MAX) + 1);
        assert!(matches!(
            writer.write_frame(late, &[0]),
            Err(PcapError::TimestampOutOfRange { .. })
        ));
    }
}
