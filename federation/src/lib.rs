//! cafe-federation: the federation hub and the operators' CLI.
//!
//! The pure core ([`names`], [`resources`], [`plan`]) knows nothing of I/O; the hub's store, network
//! and CLI layers wrap it.

pub mod backup;
pub mod cli;
pub mod http;
pub mod http_client;
pub mod hub;
pub mod hub_cli;
pub mod names;
pub mod pipeline;
pub mod plan;
pub mod release;
pub mod resources;
pub mod store;
pub mod tls;

/// An error with its sources, `outer: inner: innermost`, skipping repeats.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
