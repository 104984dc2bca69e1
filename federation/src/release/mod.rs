//! Releases (DESIGN section 5): revisions, the per-deployment state machine, and the slices it implies.
//! Pure: no store, no network.

mod analysis;
mod revision;
mod slices;
mod state;
mod status;

pub use analysis::{
    AnalysisOutcome, AnalysisRun, Measurement, MeasurementResult, OutcomeResult, Verdict,
};
pub use revision::{History, KEPT_REVISIONS, Revision, hex, revision_name};
pub use slices::{BlueGreenSlice, SliceSpec, desired_slices};
pub use state::{
    Advance, BlueGreenPart, CommandError, CommandOutcome, Failure, Observed, PauseReason, Phase,
    ProgressReason, Reason, ReleaseCommand, ReleaseState, RollbackReason, StableReason, Stage,
    UnitProgress, WaitClock,
};
pub use status::{
    AnalysisStatusView, BlueGreenUnitView, DeploymentStatusView, MeasurementView, UnitStatusView,
};

#[cfg(test)]
mod tests;
