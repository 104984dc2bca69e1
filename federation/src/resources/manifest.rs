//! Reading resource documents: multi-document YAML files and JSON documents from the API.

use super::deployment::{CAFE_DEPLOYMENT_KIND, CafeDeployment};
use super::error::{FieldError, FieldErrors};
use super::pipeline::{RELEASE_PIPELINE_KIND, ReleasePipeline};
use super::unit::{LOGICAL_UNIT_KIND, LogicalUnit};
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
    /// A ReleasePipeline.
    Pipeline(Box<ReleasePipeline>),
}

impl Resource {
    /// `LogicalUnit` or `CafeDeployment`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unit(_) => LOGICAL_UNIT_KIND,
            Self::Deployment(_) => CAFE_DEPLOYMENT_KIND,
            Self::Pipeline(_) => RELEASE_PIPELINE_KIND,
        }
    }

    /// The document as JSON, as the hub's API takes it.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Unit(unit) => serde_json::to_string(unit),
            Self::Deployment(deployment) => serde_json::to_string(deployment),
            Self::Pipeline(pipeline) => serde_json::to_string(pipeline),
        }
    }

    /// `name` or `namespace/name`.
    pub fn display_name(&self) -> String {
        match self {
            Self::Unit(unit) => unit.metadata.name.clone(),
            Self::Deployment(d) => format!("{}/{}", d.namespace(), d.metadata.name),
            Self::Pipeline(p) => format!("{}/{}", p.namespace(), p.metadata.name),
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
    for (i, document) in split_documents(text).into_iter().enumerate() {
        let index = i + 1;
        if is_blank(document) {
            continue;
        }
        let json = match serde_saphyr::from_str::<Value>(document) {
            Ok(Value::Null) => continue,
            Ok(json) => json,
            Err(error) => {
                failures.push(DocumentError {
                    index,
                    subject: None,
                    errors: single("", format!("not valid YAML: {}", one_line(&error))),
                });
                // Documents are split before they are parsed: the others are still read.
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

/// The documents of a YAML stream, split at their `---` markers. In YAML a line starting with
/// `---` (then a space or its end) at column 0 always starts a document, even inside a block
/// scalar, so the split is exact; each document is then parsed alone, and a syntax error in one
/// does not hide the errors of the others. `...` document end markers end a document.
pub fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    // After `...`: the text up to the next `---` belongs to no document.
    let mut ended = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") {
            if !ended && (offset > start || !documents.is_empty()) {
                documents.push(&text[start..offset]);
            }
            ended = false;
            // What follows the marker on its line belongs to the document.
            start = offset + 3;
        } else if marker("...") {
            if !ended {
                documents.push(&text[start..offset]);
            }
            ended = true;
            start = offset + line.len();
        }
        offset += line.len();
    }
    let rest = &text[start.min(text.len())..];
    if !ended && (!rest.is_empty() || documents.is_empty()) {
        documents.push(rest);
    }
    documents
}

/// Whether a document holds nothing but blank lines and comments.
fn is_blank(document: &str) -> bool {
    document
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

/// A parser's error on one line (it may render a snippet over several).
fn one_line(error: &dyn fmt::Display) -> String {
    error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
        RELEASE_PIPELINE_KIND => {
            let raw_templates = pipeline_templates(&value);
            let pipeline: ReleasePipeline = typed(value).map_err(|e| (what.clone(), e))?;
            let what = Some(Subject::new(
                RELEASE_PIPELINE_KIND,
                format!("{}/{}", pipeline.namespace(), pipeline.metadata.name),
            ));
            let mut unknown = Vec::new();
            for (s, r, raw) in raw_templates {
                let typed = pipeline
                    .spec
                    .stages
                    .get(s)
                    .and_then(|stage| stage.releases.get(r))
                    .and_then(|release| release.template.as_ref());
                let known = serde_json::to_value(typed).unwrap_or(Value::Null);
                let path = format!("spec.stages[{s}].releases[{r}].template");
                unknown_fields(&raw, &known, &path, &mut unknown);
            }
            if !unknown.is_empty() {
                return Err((what, FieldErrors(unknown)));
            }
            pipeline.validate().map_err(|e| (what, e))?;
            Ok(Resource::Pipeline(Box::new(pipeline)))
        }
        "" => Err((
            None,
            single(
                "kind",
                "is required (LogicalUnit, CafeDeployment or ReleasePipeline)",
            ),
        )),
        other => Err((
            what,
            single(
                "kind",
                format!(
                    "unknown kind {other:?}; expected LogicalUnit, CafeDeployment or ReleasePipeline"
                ),
            ),
        )),
    }
}

/// The raw `template` of each stage release, by stage and release: fields Kubernetes' types
/// would drop silently are refused, as in a deployment's template.
fn pipeline_templates(value: &Value) -> Vec<(usize, usize, Value)> {
    let mut out = Vec::new();
    let stages = value.pointer("/spec/stages").and_then(Value::as_array);
    for (s, stage) in stages.into_iter().flatten().enumerate() {
        let releases = stage.get("releases").and_then(Value::as_array);
        for (r, release) in releases.into_iter().flatten().enumerate() {
            if let Some(template) = release.get("template").filter(|t| !t.is_null()) {
                out.push((s, r, template.clone()));
            }
        }
    }
    out
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;

    #[test]
    fn a_stream_splits_at_its_markers_only() {
        let text =
            "a: 1\n---\nb: |\n  --- not a marker, indented\n---   # comment\nc: 3\n...\n--- d: 4\n";
        assert_eq!(
            split_documents(text),
            [
                "a: 1\n",
                "\nb: |\n  --- not a marker, indented\n",
                "   # comment\nc: 3\n",
                " d: 4\n"
            ]
        );
        assert_eq!(split_documents("---\nx: 1\n"), ["\nx: 1\n"]);
        assert_eq!(split_documents(""), [""]);
        assert_eq!(split_documents("x: 1"), ["x: 1"]);
    }

    #[test]
    fn every_document_is_read_and_each_error_names_its_document() {
        let unit = "apiVersion: cafe.io/v1alpha1\nkind: LogicalUnit\nmetadata: {name: sh-az1}\n\
                    spec: {region: cn-shanghai, zone: a, cluster: sh-dc1}\n";
        let text = format!("# only a comment\n---\n{unit}---\nkind: [unclosed\n---\n{unit}");
        let errors = parse_yaml_documents(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].index, 3);
        let message = errors[0].to_string();
        assert!(
            message.starts_with("document 3: not valid YAML: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        let resources = parse_yaml_documents(&format!("{unit}---\n{unit}")).unwrap();
        assert_eq!(resources.len(), 2);
    }
}
