//! cafe-tests: the playground (a hub, simulated member clusters and agents on one machine), the
//! narrated demo, the benchmark behind `cafe-bench`, and the end-to-end tests that drive them.

pub mod bench;
pub mod demo;
pub mod driver;
pub mod fault_proxy;
pub mod monitoring;
pub mod playground;
