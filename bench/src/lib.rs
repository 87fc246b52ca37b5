//! Benchmark harness for the vswitch: deterministic traffic scenarios and
//! the pcap files that carry them to a traffic generator.
//!
//! - [`pcap`]: classic pcap writer and reader.
//! - [`wire`]: Ethernet/IPv4/UDP frame emission, independent of the
//!   dataplane under test.
//! - [`scenario`]: one module per benchmark scenario, behind the
//!   [`scenario::Scenario`] trait.
//! - [`compare`]: vswitchd beside testpmd io-forward and OVS-DPDK.
//! - [`ab`]: two vswitchd builds alternated round by round, with a verdict.
//! - [`memory`]: hugepages or 4 KiB pages for a measurement.
//! - [`callgrind`]: instructions per packet under valgrind's callgrind.
//! - [`cni`]: a pod's wait from the CNI plugin's ADD to its first packet.
//! - [`vhost`]: two vhost-user pods' stream through vswitchd, OVS-DPDK and
//!   testpmd io, and client-mode ports' resumption after a restart.
//! - [`catalog`]: every scenario's traffic, vswitchd config and OVS rules as Markdown.
//!
//! The `vswitch-bench` binary is a thin clap front end over these.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ab;
pub mod bundle;
pub mod callgrind;
pub mod catalog;
pub mod cni;
pub mod compare;
pub mod memory;
pub mod pcap;
pub mod runner;
pub mod scenario;
pub mod vhost;
pub mod wire;
pub mod writes;
