//! Label, annotation and manager names the agent writes on the objects it owns.

/// Pod label naming the InPlaceSet that owns the pod (also the agent's pod watch selector).
pub const SET_LABEL: &str = "cafe.io/inplaceset";
/// Pod label naming the revision the pod runs.
pub const REVISION_LABEL: &str = "cafe.io/revision";
/// Pod annotation holding the hash of everything in the pod's template but container images: two
/// revisions with the same shape differ only in images, so a pod moves between them in place.
pub const SHAPE_ANNOTATION: &str = "cafe.io/template-shape";
/// Pod annotation recording when the agent took the pod out of traffic (RFC 3339). Kept in the pod so
/// that a restarted agent knows a drain is in progress and how long it has lasted.
pub const DRAIN_STARTED_ANNOTATION: &str = "cafe.io/drain-started";
/// Pod annotation (`"true"`) on a pod a blue-green switch took out of traffic: it stays, ready, as the
/// way back until `scaleDownDelaySeconds` after its drain mark, then it is removed.
pub const RETIRED_ANNOTATION: &str = "cafe.io/retired";
/// The field manager of every write the agent makes.
pub const FIELD_MANAGER: &str = "cafe-agent";
/// The controller name reported on Kubernetes Events.
pub const CONTROLLER_NAME: &str = "cafe.io/inplaceset-controller";
