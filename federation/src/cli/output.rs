//! Printing results: JSON and YAML of serializable values, and aligned tables.

use super::{CliError, Output};
use serde::Serialize;

/// `value` as pretty JSON or YAML, or the table `table` builds.
pub fn render<T: Serialize + ?Sized>(
    value: &T,
    output: Output,
    table: impl FnOnce() -> String,
) -> Result<String, CliError> {
    match output {
        Output::Table => Ok(table()),
        Output::Json => json(value),
        Output::Yaml => serde_yaml::to_string(value).map_err(|e| unprintable(&e)),
    }
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
mod tests {
    use super::*;

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
