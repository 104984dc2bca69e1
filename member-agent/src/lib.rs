//! cafe-member-agent: the agent that runs in every member cluster.
//!
//! It holds the [`crd::InPlaceSet`] custom resource and its controller, and (with the hub issue) the
//! link that turns the hub's slices into InPlaceSets.

pub mod cli;
pub mod crd;
