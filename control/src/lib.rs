//! vswitch control: what operators asked for, checked as a whole, and turned into
//! what the workers run.
//!
//! Today the desired state comes from `vswitchd`'s TOML file ([`config`]); the gRPC
//! service of the control-plane issue will write the same model. Keeping parsing and
//! validation here, free of DPDK, lets every rule be unit-tested without a port.
#![forbid(unsafe_code)]

pub mod compile;
pub mod config;
