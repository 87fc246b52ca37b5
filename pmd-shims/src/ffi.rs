//! Declarations of the C shim's functions (`csrc/shim.c`).
//!
//! Each is a non-inline wrapper over one DPDK static-inline function with DPDK's own
//! semantics; see the DPDK documentation of the wrapped function for the contract.
//! Calling any of them is `unsafe`: they take raw pointers and most require an
//! initialised EAL.

use std::os::raw::{c_char, c_int, c_uint, c_void};

use dpdk_sys::{rte_mbuf, rte_mempool};

extern "C" {
    pub fn shim_rte_eth_rx_burst(
        port_id: u16,
        queue_id: u16,
        rx_pkts: *mut *mut rte_mbuf,
        nb_pkts: u16,
    ) -> u16;
    pub fn shim_rte_eth_tx_burst(
        port_id: u16,
        queue_id: u16,
        tx_pkts: *mut *mut rte_mbuf,
        nb_pkts: u16,
    ) -> u16;
    pub fn shim_rte_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut rte_mbuf;
    pub fn shim_rte_pktmbuf_alloc_bulk(
        mp: *mut rte_mempool,
        mbufs: *mut *mut rte_mbuf,
        count: c_uint,
    ) -> c_int;
    pub fn shim_rte_pktmbuf_free(m: *mut rte_mbuf);
    pub fn shim_rte_pktmbuf_free_bulk(mbufs: *mut *mut rte_mbuf, count: c_uint);
    pub fn shim_rte_pktmbuf_prepend(m: *mut rte_mbuf, len: u16) -> *mut c_char;
    pub fn shim_rte_pktmbuf_adj(m: *mut rte_mbuf, len: u16) -> *mut c_char;
    pub fn shim_rte_pktmbuf_append(m: *mut rte_mbuf, len: u16) -> *mut c_char;
    pub fn shim_rte_pktmbuf_trim(m: *mut rte_mbuf, len: u16) -> c_int;
    pub fn shim_rte_pktmbuf_linearize(m: *mut rte_mbuf) -> c_int;
    /// Appends `tail`'s chain to `head`'s (it then belongs to `head`); -EOVERFLOW,
    /// and nothing changed, past DPDK's segment limit.
    pub fn shim_rte_pktmbuf_chain(head: *mut rte_mbuf, tail: *mut rte_mbuf) -> c_int;
    pub fn shim_rte_pktmbuf_mtod(m: *mut rte_mbuf) -> *mut c_void;
    pub fn shim_rte_pktmbuf_data_len(m: *const rte_mbuf) -> u16;
    pub fn shim_rte_pktmbuf_pkt_len(m: *const rte_mbuf) -> u32;
    pub fn shim_rte_pktmbuf_headroom(m: *const rte_mbuf) -> u16;
    pub fn shim_rte_pktmbuf_tailroom(m: *const rte_mbuf) -> u16;
    pub fn shim_rte_lcore_id() -> c_uint;
    pub fn shim_rte_errno() -> c_int;
    pub fn shim_rte_rdtsc() -> u64;
    pub fn shim_rte_mempool_in_use_count(mp: *const rte_mempool) -> c_uint;
    pub fn shim_rte_mempool_avail_count(mp: *const rte_mempool) -> c_uint;
    pub fn shim_pktmbuf_pool_create(
        name: *const c_char,
        n: c_uint,
        cache_size: c_uint,
        data_room_size: u16,
        socket_id: c_int,
    ) -> *mut rte_mempool;
}
