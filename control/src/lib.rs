//! vswitch control: what operators asked for, checked as a whole, and turned into
//! what the workers run.
//!
//! Today the desired state comes from `vswitchd`'s TOML file ([`config`]); the gRPC
//! service of the control-plane issue will write the same model. Keeping parsing and
//! validation here, free of DPDK, lets every rule be unit-tested without a port.
#![forbid(unsafe_code)]

/// The gRPC API `vswitch.v1`, generated from `control/proto/vswitch/v1/vswitch.proto`.
pub mod api {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("vswitch.v1");
}
pub mod client;
pub mod compile;
pub mod config;
pub mod delta;
pub mod names;

pub mod liveness;
pub mod model;
pub mod paths;
pub mod persist;
pub mod preflight;
pub mod service;
pub mod socket_access;
pub mod state;
#[cfg(test)]
mod testutil;
