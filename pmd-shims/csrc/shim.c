/*
 * Non-inline wrappers for DPDK's static-inline fast path.
 *
 * rx/tx burst and the mbuf helpers are `static inline` in DPDK's headers, so the
 * shared libraries do not export them and Rust cannot call them directly. Each
 * wrapper here is one call with no logic of its own: the semantics (and the return
 * conventions) are DPDK's. The Rust side (pmd-shims/src/ffi.rs) declares them.
 *
 * Compiled by build.rs with exactly the `pkg-config --cflags libdpdk` tokens that
 * dpdk-sys gave bindgen, so struct layouts agree.
 */
#include <rte_config.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_mempool.h>

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                               struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                               struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                                unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void shim_rte_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void shim_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

char *shim_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *shim_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

char *shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

int shim_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

int shim_rte_pktmbuf_linearize(struct rte_mbuf *m)
{
	return rte_pktmbuf_linearize(m);
}

int shim_rte_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail)
{
	return rte_pktmbuf_chain(head, tail);
}

void *shim_rte_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t shim_rte_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

uint32_t shim_rte_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

uint16_t shim_rte_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

unsigned int shim_rte_lcore_id(void)
{
	return rte_lcore_id();
}

int shim_rte_errno(void)
{
	return rte_errno;
}

uint64_t shim_rte_rdtsc(void)
{
	return rte_rdtsc();
}

unsigned int shim_rte_mempool_in_use_count(const struct rte_mempool *mp)
{
	return rte_mempool_in_use_count(mp);
}

unsigned int shim_rte_mempool_avail_count(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

/*
 * rte_pktmbuf_pool_create, built the way DPDK builds it (create empty, set the
 * platform's best ops, init the private area, populate, init each mbuf), with one
 * difference: without hugepages the pool is made with RTE_MEMPOOL_F_NO_IOVA_CONTIG.
 *
 * Why: on 4 KiB pages a default pool keeps every object inside one page, so a
 * 2368-byte mbuf gets a page of its own and every mbuf header lies at the same
 * page offset (64). The L1 data cache picks its set from the address bits below
 * the page size, so all mbuf headers share one set of 8 ways: with a burst of 32
 * in flight each header read misses L1. Letting objects cross page boundaries packs
 * them 37 cache lines apart, over every set, in 58% of the memory. Nothing here
 * needs an mbuf physically contiguous without hugepages: in IOVA-as-VA mode a
 * device sees virtual addresses, and in IOVA-as-PA mode EAL gives 4 KiB pages no
 * IO address at all, so no device can DMA into them either way.
 *
 * Returns NULL with rte_errno set, as rte_pktmbuf_pool_create does.
 */
struct rte_mempool *shim_pktmbuf_pool_create(const char *name, unsigned int n,
		unsigned int cache_size, uint16_t data_room_size, int socket_id)
{
	struct rte_pktmbuf_pool_private priv = {
		.mbuf_data_room_size = data_room_size,
		.mbuf_priv_size = 0,
	};
	unsigned int flags = rte_eal_has_hugepages() ? 0 : RTE_MEMPOOL_F_NO_IOVA_CONTIG;
	unsigned int elt_size = sizeof(struct rte_mbuf) + (unsigned int)data_room_size;
	struct rte_mempool *mp;
	int ret;

	mp = rte_mempool_create_empty(name, n, elt_size, cache_size, sizeof(priv),
			socket_id, flags);
	if (mp == NULL)
		return NULL;
	ret = rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL);
	if (ret != 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_pktmbuf_pool_init(mp, &priv);
	ret = rte_mempool_populate_default(mp);
	if (ret < 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
}
