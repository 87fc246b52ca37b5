//! net_tap creates its kernel interface, and removing the port removes it.
//!
//! Needs root and /dev/net/tun; skips otherwise.

mod common;

use std::path::Path;

use pmd_shims::{Port, PortConfig, PortProfile};

#[test]
fn tap_port_creates_and_removes_its_interface() {
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: no /dev/net/tun");
        return;
    }
    let iface = format!("vst{}", std::process::id() % 100_000);
    let sys = Path::new("/sys/class/net").join(&iface);
    assert!(!sys.exists());

    let _eal = common::eal();
    let pool = common::pool("tap", 1023);
    let profile = PortProfile::Tap {
        iface: iface.clone(),
        mac: Some("02:00:00:aa:bb:cc".into()),
    };
    let mut port = Port::open(&profile, 0).unwrap();
    assert!(sys.exists(), "net_tap created {iface}");
    let info = port.info();
    assert_eq!(info.driver_name, "net_tap");
    assert_ne!(info.if_index, 0, "a tap port knows its kernel ifindex");
    assert_eq!(port.mac(), [0x02, 0, 0, 0xaa, 0xbb, 0xcc]);
    let cfg = PortConfig {
        mtu: Some(1400),
        ..PortConfig::default()
    };
    let queues = port.configure(&cfg, &pool).unwrap();
    port.start().unwrap();
    let mtu: u32 = std::fs::read_to_string(sys.join("mtu"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(mtu, 1400);
    port.set_mtu(1500).unwrap();
    drop(queues);
    port.close().unwrap();
    assert!(!sys.exists(), "closing the port removed {iface}");
}
