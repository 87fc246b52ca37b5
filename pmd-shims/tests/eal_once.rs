//! EAL initialises once per process; thread registration, clocks and version.

mod common;

use pmd_shims::{dpdk_version, lcore_id, rdtsc, register_thread, tsc_hz, DpdkError, Eal, Mempool};

#[test]
fn eal_inits_once_and_registers_threads() {
    assert!(matches!(
        Mempool::new("early", 63, 0, 2176, -1),
        Err(DpdkError::EalNotInitialized)
    ));
    assert!(matches!(
        register_thread(),
        Err(DpdkError::EalNotInitialized)
    ));

    let eal = common::eal();
    let again = Eal::init(&common::eal_args());
    assert!(
        matches!(again, Err(DpdkError::EalAlreadyInitialized)),
        "{again:?}"
    );
    assert!(dpdk_version().contains("22.11"), "{}", dpdk_version());
    assert!(tsc_hz() > 0);
    let t0 = rdtsc();
    assert!(rdtsc() >= t0);

    // The init thread is the EAL main lcore: registering it again is a no-op.
    let main_lcore = lcore_id();
    assert_eq!(main_lcore, 0);
    drop(register_thread().unwrap());
    assert_eq!(lcore_id(), main_lcore, "the main lcore keeps its id");

    // A fresh thread gets an lcore id and gives it back on drop.
    std::thread::spawn(|| {
        assert_eq!(lcore_id(), u32::MAX);
        let reg = register_thread().unwrap();
        assert_ne!(reg.lcore_id(), u32::MAX);
        assert_ne!(reg.lcore_id(), 0);
        drop(reg);
        assert_eq!(lcore_id(), u32::MAX);
    })
    .join()
    .unwrap();

    eal.cleanup();
}
