//! cafe-federation: the federation hub and the operators' CLI.
//!
//! The pure core ([`names`], [`resources`], [`plan`]) knows nothing of I/O; the hub's store, network
//! and CLI layers wrap it.

pub mod cli;
pub mod http;
pub mod hub;
pub mod hub_cli;
pub mod names;
pub mod plan;
pub mod release;
pub mod resources;
pub mod store;
pub mod tls;
