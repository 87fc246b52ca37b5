//! Generates the gRPC API (messages, client and server) from `proto/` with protoc
//! (Debian's `protobuf-compiler`, installed by `scripts/install-deps.sh`).
fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/vswitch/v1/vswitch.proto"], &["proto"])
        .unwrap_or_else(|e| panic!("compiling the gRPC API (is protoc installed?): {e}"));
}
