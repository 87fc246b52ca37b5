//! A port cannot be closed or reconfigured under a live queue handle.

mod common;

use pmd_shims::{DpdkError, Port, PortConfig, PortProfile};

#[test]
fn close_refuses_while_a_queue_is_alive() {
    let _eal = common::eal();
    let pool = common::pool("busy", 1023);

    let mut port = Port::open(&PortProfile::Ring {}, 0).unwrap();
    let (rxq, txq) = port.configure(&PortConfig::default(), &pool).unwrap();
    port.start().unwrap();
    assert!(matches!(
        port.configure(&PortConfig::default(), &pool),
        Err(DpdkError::PortStarted { .. })
    ));
    port.stop().unwrap();
    match port.configure(&PortConfig::default(), &pool) {
        Err(DpdkError::PortBusy { queues, .. }) => assert_eq!(queues, 2),
        other => panic!("{other:?}"),
    }
    drop(rxq);
    let err = port.close().unwrap_err();
    match &err {
        DpdkError::PortBusy { port, queues } => {
            assert_eq!(port, "net_ring0");
            assert_eq!(*queues, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("queue handle"), "{err}");
    // The refused close left the port to its last queue: dropping it closes the port
    // and removes the device, so the name can be probed again.
    drop(txq);
    let mut again = Port::open(&PortProfile::Ring {}, 0).unwrap();
    let max_rx = again.info().max_rx_queues;
    let too_many = PortConfig {
        nb_rxq: max_rx + 1,
        ..PortConfig::default()
    };
    match again.configure(&too_many, &pool) {
        Err(DpdkError::TooManyQueues { rx, max_rx: m, .. }) => {
            assert_eq!((rx, m), (max_rx + 1, max_rx))
        }
        other => panic!("{other:?}"),
    }
    let (rxq, txq) = again.configure(&PortConfig::default(), &pool).unwrap();
    drop((rxq, txq));
    again.close().unwrap();

    // Probing garbage names the device in the error.
    let e = Port::probe("net_nosuchdriver0").unwrap_err();
    assert!(matches!(e, DpdkError::Probe { .. }), "{e}");
}
