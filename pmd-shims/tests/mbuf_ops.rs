//! Mbuf as a PacketBuf does the same byte work as dataplane's VecBuf.

mod common;

use dataplane::buf::{PacketBuf, VecBuf};
use dataplane::io::{BufAlloc, Burst};
use pmd_shims::{ffi, MbufAlloc, MBUF_HEADROOM};

#[test]
fn mbuf_matches_vecbuf_and_dpdk_accessors() {
    let _eal = common::eal();
    let pool = common::pool("mbuf_ops", 255);
    let baseline = pool.in_use_count();
    let mut alloc = MbufAlloc::new(pool.clone());
    let payload = common::frame(7, 60);

    let mut m = alloc.alloc_copy(&payload).unwrap();
    let data_room = usize::from(pmd_shims::DEFAULT_DATA_ROOM) - usize::from(MBUF_HEADROOM);
    let mut v = VecBuf::with_room(
        &payload,
        usize::from(MBUF_HEADROOM),
        data_room - payload.len(),
    );
    let check = |m: &pmd_shims::Mbuf, v: &VecBuf| {
        assert_eq!(m.data(), v.data());
        assert_eq!(m.headroom(), v.headroom());
        assert_eq!(m.tailroom(), v.tailroom());
        assert_eq!(m.len(), v.len());
        assert_eq!(m.pkt_len() as usize, m.len());
        // SAFETY: m is a valid mbuf we own; the accessors only read it.
        unsafe {
            assert_eq!(
                usize::from(ffi::shim_rte_pktmbuf_data_len(m.as_ptr())),
                m.len()
            );
            assert_eq!(
                usize::from(ffi::shim_rte_pktmbuf_headroom(m.as_ptr())),
                m.headroom()
            );
            assert_eq!(
                usize::from(ffi::shim_rte_pktmbuf_tailroom(m.as_ptr())),
                m.tailroom()
            );
            assert_eq!(
                ffi::shim_rte_pktmbuf_mtod(m.as_ptr())
                    .cast::<u8>()
                    .cast_const(),
                m.data().as_ptr()
            );
        }
    };
    check(&m, &v);

    m.prepend(8).unwrap().copy_from_slice(&[1; 8]);
    v.prepend(8).unwrap().copy_from_slice(&[1; 8]);
    check(&m, &v);
    m.data_mut()[0] = 0xaa;
    v.data_mut()[0] = 0xaa;
    check(&m, &v);
    m.adj(20).unwrap();
    v.adj(20).unwrap();
    check(&m, &v);
    m.append(10).unwrap().copy_from_slice(&[2; 10]);
    v.append(10).unwrap().copy_from_slice(&[2; 10]);
    check(&m, &v);
    m.trim(5).unwrap();
    v.trim(5).unwrap();
    check(&m, &v);
    m.narrow(3, m.len() - 7).unwrap();
    v.narrow(3, v.len() - 7).unwrap();
    check(&m, &v);

    // Refusals change nothing.
    assert!(m.prepend(m.headroom() + 1).is_none());
    assert!(m.adj(m.len() + 1).is_none());
    assert!(m.append(m.tailroom() + 1).is_none());
    assert!(m.trim(m.len() + 1).is_none());
    assert!(m.append(70_000).is_none());
    assert!(m.narrow(1, m.len()).is_none());
    assert!(m.narrow(usize::MAX, 2).is_none());
    check(&m, &v);

    // A chain narrows as one segment: linearised first, then the bytes kept.
    let head_bytes = common::frame(1, 40);
    let tail_bytes = common::frame(2, 30);
    let head = alloc.alloc_copy(&head_bytes).unwrap();
    let tail = alloc.alloc_copy(&tail_bytes).unwrap();
    // SAFETY: both are valid single-segment mbufs we own; on success the tail
    // belongs to the head's chain, so its handle is given up (into_raw).
    let mut chain = unsafe {
        let (h, t) = (head.into_raw(), tail.into_raw());
        assert_eq!(ffi::shim_rte_pktmbuf_chain(h, t), 0);
        pmd_shims::Mbuf::from_raw(h)
    };
    assert!(!chain.is_contiguous());
    assert_eq!(chain.pkt_len(), 70);
    let whole: Vec<u8> = head_bytes.iter().chain(&tail_bytes).copied().collect();
    assert!(chain.narrow(71, 0).is_none(), "past the chain's end");
    chain.narrow(10, 50).unwrap();
    assert!(chain.is_contiguous());
    assert_eq!(chain.data(), &whole[10..60]);
    assert_eq!(chain.pkt_len(), 50);
    drop(chain);

    // Oversized copies are refused without leaking.
    assert!(alloc.alloc_copy(&vec![0; 5000]).is_none());
    // Raw round trip.
    let raw = m.into_raw();
    // SAFETY: raw came from into_raw just above and is owned by nobody else.
    let m = unsafe { pmd_shims::Mbuf::from_raw(raw) };
    assert_eq!(m.data(), v.data());
    drop(m);

    let mut bulk = Burst::new();
    assert!(pool.alloc_bulk(&mut bulk, 32));
    assert!(!pool.alloc_bulk(&mut bulk, 1), "burst full");
    assert_eq!(pool.in_use_count(), baseline + 32);
    drop(bulk);
    assert_eq!(pool.in_use_count(), baseline);
    assert_eq!(pool.avail_count(), pool.size());

    // A pool drained dry says so instead of failing badly.
    let held: Vec<_> = std::iter::from_fn(|| pool.alloc()).collect();
    assert_eq!(held.len() as u32, pool.size());
    assert!(alloc.alloc_copy(&payload).is_none());
    drop(held);
    assert_eq!(pool.in_use_count(), baseline);
}
