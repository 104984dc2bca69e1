//! Revisions: a deployment's pod templates, named by their hash, the last few kept.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How many revisions the hub keeps per deployment.
pub const KEPT_REVISIONS: usize = 10;

/// Hex digits of the template hash used as a revision name.
const REVISION_NAME_LEN: usize = 10;

/// One kept template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Grows with every new template (1, 2, ...).
    pub number: i64,
    /// The template's hash.
    pub name: String,
    /// The pod template.
    pub template: PodTemplateSpec,
    /// When it was first seen, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// The name of a template: a prefix of the SHA-256 of its JSON (k8s-openapi serializes fields in a
/// fixed order and maps sorted, so equal templates hash equally).
pub fn revision_name(template: &PodTemplateSpec) -> String {
    // Serializing a PodTemplateSpec cannot fail: it holds only strings, numbers and maps with string keys.
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut name = hex(&Sha256::digest(&bytes));
    name.truncate(REVISION_NAME_LEN);
    name
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The kept revisions of one deployment, oldest first. Each is shared: copying a history (the hub
/// decides on copies of its model) copies pointers, not templates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History(Vec<Arc<Revision>>);

impl History {
    /// The revision named `name`.
    pub fn get(&self, name: &str) -> Option<&Revision> {
        self.0.iter().map(AsRef::as_ref).find(|r| r.name == name)
    }

    /// The revision numbered `number`.
    pub fn by_number(&self, number: i64) -> Option<&Revision> {
        self.0
            .iter()
            .map(AsRef::as_ref)
            .find(|r| r.number == number)
    }

    /// Records `template` and returns its name. A template seen before keeps its name and becomes the
    /// newest revision with a new number, as a Kubernetes Deployment does. Only the last
    /// [`KEPT_REVISIONS`] are kept, but never `pinned` ones (the revisions pods run now).
    pub fn record(&mut self, template: &PodTemplateSpec, now_ms: i64, pinned: &[&str]) -> String {
        let name = revision_name(template);
        let number = self.0.last().map_or(1, |r| r.number + 1);
        self.0.retain(|r| r.name != name);
        self.0.push(Arc::new(Revision {
            number,
            name: name.clone(),
            template: template.clone(),
            created_ms: now_ms,
        }));
        while self.0.len() > KEPT_REVISIONS {
            let Some(oldest) = self
                .0
                .iter()
                .position(|r| !pinned.contains(&r.name.as_str()) && r.name != name)
            else {
                break;
            };
            self.0.remove(oldest);
        }
        name
    }

    /// The revisions, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Revision> {
        self.0.iter().map(AsRef::as_ref)
    }

    /// The newest revision older than `name`.
    pub fn before(&self, name: &str) -> Option<&Revision> {
        let at = self.0.iter().position(|r| r.name == name)?;
        at.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .map(AsRef::as_ref)
    }
}
