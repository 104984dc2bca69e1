//! Printing results: JSON, YAML, names and JSONPath templates of serializable values, and aligned
//! tables.

use super::{CliError, Output};
use jsonpath_rust::JsonPath as _;
use serde::Serialize;
use serde_json::Value;

/// `value` as `output` says, the table (wide or not) being the one `table` builds.
pub fn render<T: Serialize + ?Sized>(
    value: &T,
    output: &Output,
    table: impl FnOnce() -> String,
) -> Result<String, CliError> {
    render_wide(value, output, |_| table())
}

/// [`render`] for a listing with a wide table: `table(true)` builds the one of `-o wide`.
pub fn render_wide<T: Serialize + ?Sized>(
    value: &T,
    output: &Output,
    table: impl FnOnce(bool) -> String,
) -> Result<String, CliError> {
    match output {
        Output::Table => Ok(table(false)),
        Output::Wide => Ok(table(true)),
        Output::Json => json(value),
        Output::Yaml => serde_saphyr::to_string(&value).map_err(|e| unprintable(&e)),
        Output::Name => names(&to_value(value)?),
        Output::JsonPath(template) => template.render(&to_value(value)?),
    }
}

fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, CliError> {
    serde_json::to_value(value).map_err(|e| unprintable(&e))
}

/// `-o name`: `KIND/NAME` per document, one a line, as kubectl prints them (the kind in lower
/// case, no namespace). A listing prints its items; an item without `kind` is named by its
/// `name` field alone.
fn names(value: &Value) -> Result<String, CliError> {
    let one = |item: &Value| -> Result<String, CliError> {
        let name = item
            .pointer("/metadata/name")
            .or_else(|| item.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CliError::BadInput("error: -o name: this output has no names".to_owned())
            })?;
        Ok(match item.get("kind").and_then(Value::as_str) {
            Some(kind) => format!("{}/{name}\n", kind.to_lowercase()),
            None => format!("{name}\n"),
        })
    };
    match value.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().map(one).collect(),
        None => one(value),
    }
}

/// A kubectl-style JSONPath template, `-o jsonpath=TEMPLATE`: text with `{EXPR}` pieces, where
/// `EXPR` is a JSONPath starting at the printed document (`{.items[*].metadata.name}`, or `$...`).
/// Each piece prints its matches separated by spaces: strings as they are, anything else as
/// compact JSON. kubectl's `{range}`/`{end}` are not supported. Checked when parsed, so that a bad
/// template fails before anything is asked of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPathTemplate {
    /// The template as given.
    source: String,
    pieces: Vec<TemplatePiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePiece {
    Text(String),
    /// A JSONPath from the root (`$...`).
    Query(String),
}

impl JsonPathTemplate {
    /// Parses and checks a template; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(TemplatePiece::Text(unescape(&rest[..open])));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!("{{ at {} is never closed", source.len() - rest.len() + open)
            })?;
            let expression = after[..close].trim();
            let query = if let Some(path) = expression.strip_prefix('$') {
                format!("${path}")
            } else if expression.starts_with('.') || expression.starts_with('[') {
                format!("${expression}")
            } else if expression == "range"
                || expression.starts_with("range ")
                || expression == "end"
            {
                return Err(format!("{{{expression}}}: range and end are not supported"));
            } else {
                return Err(format!(
                    "{{{expression}}}: a JSONPath starts with . or $ (for example {{.metadata.name}})"
                ));
            };
            Value::Null
                .query(&query)
                .map_err(|e| format!("{{{expression}}}: {e}"))?;
            pieces.push(TemplatePiece::Query(query));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(TemplatePiece::Text(unescape(rest)));
        }
        Ok(Self {
            source: source.to_owned(),
            pieces,
        })
    }

    /// The template as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The template applied to `value`.
    pub fn render(&self, value: &Value) -> Result<String, CliError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                TemplatePiece::Text(text) => out.push_str(text),
                TemplatePiece::Query(query) => {
                    let found = value.query(query).map_err(|e| {
                        CliError::BadInput(format!("error: -o jsonpath: {query}: {e}"))
                    })?;
                    let printed: Vec<String> = found
                        .into_iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    out.push_str(&printed.join(" "));
                }
            }
        }
        Ok(out)
    }
}

/// kubectl's escapes in template text: `\n`, `\t`.
fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\t", "\t")
}

/// `value` as pretty JSON with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| unprintable(&e))
}

/// `value` as JSON on one line, with a final newline (for streams of documents).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string(value)
        .map(|s| s + "\n")
        .map_err(|e| unprintable(&e))
}

/// The `{"items": [...]}` wrapper of list outputs.
#[derive(Debug, Serialize)]
pub struct Items<'a, T> {
    /// The listed values.
    pub items: &'a [T],
}

fn unprintable(error: &dyn std::fmt::Display) -> CliError {
    CliError::Failed(format!("cannot print the result: {error}"))
}

/// Rows (the first one the header) as columns aligned with two spaces; no trailing spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A header row from column names.
pub fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

/// `value`, or `-` when it is empty, for table cells.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;

    #[test]
    fn jsonpath_templates_print_matches_joined_by_spaces() {
        let list = serde_json::json!({"items": [
            {"kind": "CafeDeployment", "metadata": {"name": "a"}, "spec": {"replicas": 2}},
            {"kind": "CafeDeployment", "metadata": {"name": "b"}, "spec": {"replicas": 4}},
        ]});
        let template = JsonPathTemplate::parse("{.items[*].metadata.name}").unwrap();
        assert_eq!(template.render(&list).unwrap(), "a b");
        let template = JsonPathTemplate::parse("replicas={$.items[1].spec.replicas}\\n").unwrap();
        assert_eq!(template.render(&list).unwrap(), "replicas=4\n");
        assert_eq!(
            names(&list).unwrap(),
            "cafedeployment/a\ncafedeployment/b\n"
        );
        for bad in ["{.items", "{range .items[*]}", "{items}", "{.items[?(}"] {
            assert!(JsonPathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_align_columns_and_trim_lines() {
        let rows = vec![
            header(&["NAME", "STATE"]),
            vec!["sh-dc1".to_owned(), "Connected".to_owned()],
            vec!["x".to_owned(), String::new()],
        ];
        assert_eq!(table(&rows), "NAME    STATE\nsh-dc1  Connected\nx\n");
    }
}
