//! The safe face of DPDK for the vswitch, and the only crate that touches it.
//!
//! - [`Eal`]: EAL init/cleanup (once per process), [`register_thread`] for workers.
//! - [`Mempool`] / [`Mbuf`] / [`MbufAlloc`]: mbuf pools and owned mbufs implementing
//!   `dataplane`'s [`PacketBuf`](dataplane::buf::PacketBuf) and
//!   [`BufAlloc`](dataplane::io::BufAlloc).
//! - [`Port`], [`PortRxQueue`], [`PortTxQueue`]: ethdev ports and their per-worker
//!   queues implementing [`RxQueue`](dataplane::io::RxQueue) and
//!   [`TxQueue`](dataplane::io::TxQueue).
//! - [`profile`]: one [`PortProfile`] per PMD, with devargs
//!   and a host check whose errors name the fix.
//! - [`packet_socket`]: a port on a kernel interface over a packet socket of
//!   its own (`PACKET_MMAP` rings), no DPDK device behind it: kernel pods past
//!   the build's `RTE_MAX_ETHPORTS`, attached without a PMD probe.
//! - [`SwitchRxQueue`], [`SwitchTxQueue`]: a queue of either kind, what the
//!   switch's workers poll.
//!
//! DPDK's fast path (rx/tx burst, mbuf alloc/free/prepend/adj) is `static inline` in
//! its headers; `csrc/shim.c` wraps each in a real function (see [`ffi`]). Every
//! `unsafe` block carries a `// SAFETY:` reason.

mod eal;
mod error;
pub mod ffi;
mod mbuf;
mod mempool;
pub mod packet_socket;
mod port;
pub mod profile;
mod switch_queue;

pub use eal::{dpdk_version, lcore_id, rdtsc, register_thread, tsc_hz, Eal, ThreadRegistration};
pub use error::{rte_errno, strerror, DpdkError};
pub use mbuf::{Mbuf, MbufAlloc};
pub use mempool::{Mempool, DEFAULT_DATA_ROOM, MBUF_HEADROOM};
pub use packet_socket::{SocketPort, SocketPortError, SocketRxQueue, SocketTxQueue};
pub use port::{LinkStatus, Port, PortConfig, PortInfo, PortRxQueue, PortStats, PortTxQueue};
pub use profile::{PortProfile, ProfileError};
pub use switch_queue::{SwitchRxQueue, SwitchTxQueue};
