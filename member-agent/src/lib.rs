//! cafe-member-agent: the agent that runs in every member cluster.
//!
//! It holds the [`crd::InPlaceSet`] custom resource and its controller (DESIGN section 7), and (with
//! the hub issue) the link that turns the hub's slices into InPlaceSets.
//!
//! ## Embedding the controller (the hub link's entry points)
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), cafe_member_agent::Error> {
//! use cafe_member_agent::{ControllerConfig, Metrics, ensure_crd, run_controller};
//! ensure_crd(client.clone()).await?; // server-side apply of the CRD, waits until it is served
//! let mut registry = prometheus_client::registry::Registry::default();
//! let metrics = Metrics::new(&mut registry);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let shutdown = async move { let _ = stopped.await; };
//! run_controller(client, ControllerConfig::default(), metrics, shutdown).await?;
//! # drop(stop); Ok(()) }
//! ```
//! The controller reconciles every InPlaceSet it can see (or those of
//! [`ControllerConfig::namespace`]), whoever wrote it: the hub link only has to write InPlaceSets and
//! read their status.
//!
//! ## Layout
//! Pure modules ([`desired`], [`observed`], [`plan`], [`status`], [`podspec`], [`revision`]) hold
//! the logic and most tests; [`controller`] wires them to kube-runtime and applies plans; [`agent`]
//! and [`cli`] make the `cafe-agent` binary.

pub mod agent;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod crd;
pub mod desired;
mod error;
pub mod install;
pub mod lease;
pub mod link;
pub mod metrics;
pub mod names;
pub mod observed;
pub mod plan;
pub mod podspec;
pub mod revision;
pub mod server;
pub mod status;

pub use controller::{ControllerConfig, run_controller};
pub use error::Error;
pub use install::ensure_crd;
pub use metrics::Metrics;
