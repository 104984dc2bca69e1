//! What the hub keeps in its store, as JSON records.

use crate::release::ReleaseState;
use crate::resources::CafeDeployment;
use serde::{Deserialize, Serialize};

/// A deployment with its release state: one record, so one commit moves both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// The deployment as applied, with the hub's metadata (generation, creation time, uid).
    pub deployment: CafeDeployment,
    /// Its release.
    pub release: ReleaseState,
}

/// The last slice the hub decided for one unit: enough to keep generations across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceRecord {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Its generation.
    pub generation: u64,
    /// A digest of its content.
    pub hash: String,
}

/// One audited command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339.
    pub time: String,
    /// The caller's identity, or `hub` for automatic actions.
    pub who: String,
    /// The command.
    pub what: String,
    /// `ok`, `no-op: ...` or `error: ...`.
    pub result: String,
}

/// The meta-table key of the next slice generation.
pub const NEXT_GENERATION_KEY: &str = "nextGeneration";

/// The audit key of sequence number `seq`: zero-padded so keys sort by number.
pub fn audit_key(seq: u64) -> String {
    format!("{seq:020}")
}
