//! Reading resource documents: multi-document YAML files and JSON documents from the API.

use super::deployment::{CAFE_DEPLOYMENT_KIND, CafeDeployment};
use super::error::{FieldError, FieldErrors};
use super::unit::{LOGICAL_UNIT_KIND, LogicalUnit};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// One parsed and validated resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A logical unit.
    Unit(Box<LogicalUnit>),
    /// A CafeDeployment.
    Deployment(Box<CafeDeployment>),
}

impl Resource {
    /// `LogicalUnit` or `CafeDeployment`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unit(_) => LOGICAL_UNIT_KIND,
            Self::Deployment(_) => CAFE_DEPLOYMENT_KIND,
        }
    }

    /// `name` or `namespace/name`.
    pub fn display_name(&self) -> String {
        match self {
            Self::Unit(unit) => unit.metadata.name.clone(),
            Self::Deployment(d) => format!("{}/{}", d.namespace(), d.metadata.name),
        }
    }
}

/// What a document is, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The document's `kind`, as written (it may be no kind the hub knows); may be empty.
    pub kind: String,
    /// `name`, or `namespace/name` for a CafeDeployment; may be empty.
    pub name: String,
}

impl Subject {
    /// A document of `kind` named `name`.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(format!("{} {}", self.kind, self.name).trim())
    }
}

/// A document that could not be read, with its 1-based position in its file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DocumentError {
    /// 1-based position of the document in its file (or request).
    pub index: usize,
    /// The document's kind and name, when it got that far.
    pub subject: Option<Subject>,
    /// The problems.
    pub errors: FieldErrors,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index)?;
        if let Some(subject) = &self.subject {
            write!(f, " ({subject})")?;
        }
        write!(f, ": {}", self.errors)
    }
}

/// Parses every document of a YAML (or JSON) text. Empty documents are skipped. All documents are
/// read even when one fails, so that every error is reported at once.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Resource>, Vec<DocumentError>> {
    let mut resources = Vec::new();
    let mut failures = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = match serde_yaml::Value::deserialize(document) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(value) => value,
            Err(error) => {
                failures.push(DocumentError {
                    index,
                    subject: None,
                    errors: single("", format!("not valid YAML: {error}")),
                });
                // A syntax error leaves the rest of the stream unreadable.
                break;
            }
        };
        let json = match serde_json::to_value(value) {
            Ok(json) => json,
            Err(error) => {
                failures.push(DocumentError {
                    index,
                    subject: None,
                    errors: single("", format!("not a JSON-compatible document: {error}")),
                });
                continue;
            }
        };
        match parse_value(json) {
            Ok(resource) => resources.push(resource),
            Err((subject, errors)) => failures.push(DocumentError {
                index,
                subject,
                errors,
            }),
        }
    }
    if failures.is_empty() {
        Ok(resources)
    } else {
        Err(failures)
    }
}

/// Parses one JSON document, as sent through the API.
pub fn parse_json_document(index: usize, text: &str) -> Result<Resource, DocumentError> {
    let value: Value = serde_json::from_str(text).map_err(|error| DocumentError {
        index,
        subject: None,
        errors: single("", format!("not valid JSON: {error}")),
    })?;
    parse_value(value).map_err(|(subject, errors)| DocumentError {
        index,
        subject,
        errors,
    })
}

/// Parses and validates one document value.
fn parse_value(value: Value) -> Result<Resource, (Option<Subject>, FieldErrors)> {
    let Value::Object(fields) = &value else {
        return Err((
            None,
            single(
                "",
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            ),
        ));
    };
    let kind = fields
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = fields
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let what = Some(Subject::new(kind.clone(), name));
    match kind.as_str() {
        LOGICAL_UNIT_KIND => {
            let unit: LogicalUnit = typed(value).map_err(|e| (what.clone(), e))?;
            unit.validate().map_err(|e| (what, e))?;
            Ok(Resource::Unit(Box::new(unit)))
        }
        CAFE_DEPLOYMENT_KIND => {
            let raw_template = value.pointer("/spec/template").cloned();
            let deployment: CafeDeployment = typed(value).map_err(|e| (what.clone(), e))?;
            let what = Some(Subject::new(
                CAFE_DEPLOYMENT_KIND,
                format!("{}/{}", deployment.namespace(), deployment.metadata.name),
            ));
            if let Some(raw) = raw_template {
                let known = serde_json::to_value(&deployment.spec.template).unwrap_or(Value::Null);
                let mut unknown = Vec::new();
                unknown_fields(&raw, &known, "spec.template", &mut unknown);
                if !unknown.is_empty() {
                    return Err((what, FieldErrors(unknown)));
                }
            }
            deployment.validate().map_err(|e| (what, e))?;
            Ok(Resource::Deployment(Box::new(deployment)))
        }
        "" => Err((
            None,
            single("kind", "is required (LogicalUnit or CafeDeployment)"),
        )),
        other => Err((
            what,
            single(
                "kind",
                format!("unknown kind {other:?}; expected LogicalUnit or CafeDeployment"),
            ),
        )),
    }
}

/// Deserializes with the path of the failing field.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        single(path, error.into_inner().to_string())
    })
}

/// Fields present in `raw` that a round trip through the typed value dropped: the Kubernetes types
/// ignore unknown fields, so a typo such as `contaniers` would otherwise vanish silently.
fn unknown_fields(raw: &Value, known: &Value, path: &str, out: &mut Vec<FieldError>) {
    match (raw, known) {
        (Value::Object(raw), Value::Object(known)) => {
            for (key, value) in raw {
                if value.is_null() {
                    continue;
                }
                let child = format!("{path}.{key}");
                match known.get(key) {
                    Some(known) => unknown_fields(value, known, &child, out),
                    None => out.push(FieldError::new(child, "unknown field")),
                }
            }
        }
        (Value::Array(raw), Value::Array(known)) => {
            for (i, (raw, known)) in raw.iter().zip(known).enumerate() {
                unknown_fields(raw, known, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn single(path: impl Into<String>, message: impl Into<String>) -> FieldErrors {
    FieldErrors(vec![FieldError::new(path, message)])
}
