//! The wire protocol shared by the hub and the agents (package `cafe.federation.v1`).
//!
//! - [`v1::agent_link_client`] / [`v1::agent_link_server`]: the hub <-> agent stream (DESIGN section 6).
//! - [`v1::federation_client`] / [`v1::federation_server`]: the operators' API used by `cafectl`.
//!
//! This crate holds generated code only; conversions to domain types live at each side's boundary.

/// Generated types and services of `cafe.federation.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("cafe.federation.v1");
}

/// The encoded `FileDescriptorSet` of every .proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cafe_descriptor.bin"));

/// Separates a slice id's deployment part from its unit: `namespace/name@unit`.
pub const SLICE_ID_UNIT_SEPARATOR: char = '@';
