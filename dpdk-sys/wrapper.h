/* The DPDK headers dpdk-sys binds. `rte_config.h` is force-included by the
 * `-include rte_config.h` token of `pkg-config --cflags libdpdk`. */
#include <rte_build_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_bus_vdev.h>
#include <rte_cycles.h>
#include <rte_version.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
