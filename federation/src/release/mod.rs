//! Releases (DESIGN section 5): revisions, the per-deployment state machine, and the slices it implies.
//! Pure: no store, no network.

mod revision;
mod slices;
mod state;
mod status;

pub use revision::{History, KEPT_REVISIONS, Revision, hex, revision_name};
pub use slices::{SliceSpec, desired_slices};
pub use state::{
    Advance, CommandError, CommandOutcome, Failure, Observed, PauseReason, Phase, ProgressReason,
    Reason, ReleaseCommand, ReleaseState, StableReason, Stage, UnitProgress, WaitClock,
};
pub use status::{DeploymentStatusView, UnitStatusView};

#[cfg(test)]
mod tests;
