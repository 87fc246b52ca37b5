//! Without hugepages the mbuf pool packs its objects across 4 KiB pages, so their
//! headers spread over the L1 data cache's sets. DPDK's default pool keeps each
//! object inside one page: a 2368-byte mbuf then has a page of its own and every
//! header sits at page offset 64, in one L1 set of 8 ways (`shim_pktmbuf_pool_create`).

mod common;

use std::collections::BTreeSet;

use dataplane::buf::PacketBuf;
use pmd_shims::Mbuf;

#[test]
fn mbuf_headers_spread_over_the_l1_sets_without_hugepages() {
    let eal = common::eal();
    let pool = common::pool("pool_layout", 511);
    let mbufs: Vec<Mbuf> = (0..64).map(|_| pool.alloc().expect("mbuf")).collect();
    // An L1 set is picked by the address bits 6..12 (64-byte lines, 4 KiB way).
    let sets: BTreeSet<usize> = mbufs
        .iter()
        .map(|m| (m.as_ptr() as usize >> 6) & 63)
        .collect();
    let offsets: BTreeSet<usize> = mbufs.iter().map(|m| m.as_ptr() as usize % 4096).collect();
    assert!(
        sets.len() >= 32,
        "64 mbuf headers in {} L1 sets: {sets:?}",
        sets.len()
    );
    assert!(offsets.len() > 1, "every mbuf at page offset {offsets:?}");
    // Still whole, working mbufs: the data room is all there, and writable.
    for mut m in mbufs {
        assert_eq!(m.headroom(), usize::from(pmd_shims::MBUF_HEADROOM));
        let room = m.tailroom();
        assert_eq!(
            room,
            usize::from(pmd_shims::DEFAULT_DATA_ROOM) - usize::from(pmd_shims::MBUF_HEADROOM)
        );
        m.append(room).expect("the whole data room").fill(0xa5);
        assert!(m.data().iter().all(|&b| b == 0xa5));
    }
    assert_eq!(pool.in_use_count(), 0, "dropped mbufs are back in the pool");
    eal.cleanup();
}
