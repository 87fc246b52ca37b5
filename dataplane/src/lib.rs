//! The vswitch dataplane: packet views, the match-action pipeline and the worker loop.
//!
//! This crate is pure Rust and never names DPDK. It is written against three small
//! seams — [`buf::PacketBuf`] for a packet buffer, [`io::RxQueue`]/[`io::TxQueue`] for
//! port queues and [`io::BufAlloc`] for fresh buffers — which `pmd-shims` implements for
//! mbufs and DPDK ports, and which [`buf::VecBuf`] and the `testio` module implement
//! for tests and benches. So everything here builds and tests on any machine, and the
//! code a test exercises is the code a DPDK worker runs.
//!
//! The layout follows the packet: [`ethernet`] parses, [`l2`] decides, [`worker`]
//! moves buffers between queues, [`stats`] and [`mod@drop`] count what happened,
//! [`snapshot`] publishes new forwarding state without stopping workers, and [`idle`]
//! keeps an idle worker from burning its core.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod buf;
pub mod capture;
pub mod densemap;
pub mod drop;
pub mod ethernet;
pub mod flatmap;
pub mod handoff;
pub mod idle;
pub mod io;
pub mod l2;
pub mod log_limit;
pub mod overlay;
pub mod pipeline;
pub mod port;
pub mod snapshot;
pub mod stall;
pub mod stats;
#[cfg(any(test, feature = "testio"))]
pub mod testio;
pub mod wire;
pub mod worker;

pub use buf::{PacketBuf, VecBuf};
pub use drop::DropReason;
pub use ethernet::MacAddr;
pub use idle::IdleBackoff;
pub use io::{assign_tx_queues, BufAlloc, Burst, RxQueue, SharedTxQueue, TxQueue, TxSlot, BURST};
pub use l2::{GroupId, L2ConfigError, L2Pipeline, L2PipelineBuilder, L2Verdict};
pub use pipeline::{Pipeline, Verdict};
pub use port::{PortIdx, MAX_PORTS};
pub use snapshot::{SnapshotCell, Versioned};
pub use stats::{PortStats, StatsSnapshot, StatsTotals, WorkerStats, WorkerStatsShared};
pub use worker::{CtRequest, Worker, WorkerCommand, WorkerError, WorkerId};
