//! Compiles the .proto files with protox (a pure-Rust protoc), so no system `protoc` is needed.

use prost::Message as _;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/cafe/federation/v1/agent_link.proto",
    "proto/cafe/federation/v1/federation.proto",
];

const ETCD_PROTOS: &[&str] = &["proto/etcd/kv.proto", "proto/etcd/rpc.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded descriptor set feeds gRPC server reflection.
    std::fs::write(out_dir.join("cafe_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Sorted maps: encodings are deterministic, so equal slices hash equally.
        .btree_map(".")
        .compile_fds(fds)?;

    // The subset of etcd's v3 API that the hub's etcd store speaks: clients only.
    for proto in ETCD_PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let etcd = protox::compile(ETCD_PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd)?;
    Ok(())
}
