//! cafe-tests: the playground (a hub, simulated member clusters and agents on one machine), the
//! narrated demo, and the end-to-end tests that drive them.

pub mod demo;
pub mod driver;
pub mod playground;
