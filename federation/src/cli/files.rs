//! Reading resource files, and `cafectl validate`.

use super::{CliError, ValidateArgs};
use crate::names::UnitName;
use crate::resources::{CafeDeployment, FieldErrors, LogicalUnit, Resource, parse_yaml_documents};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The resources of several files, by kind.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Units by name.
    pub units: BTreeMap<UnitName, LogicalUnit>,
    /// Deployments, with the file they came from.
    pub deployments: Vec<(PathBuf, CafeDeployment)>,
    /// Pipelines, with the file they came from (checked against deployments by the hub).
    pub pipelines: Vec<(PathBuf, crate::resources::ReleasePipeline)>,
}

impl Loaded {
    /// `check` of every deployment; fails with every error, each naming its file and deployment.
    pub fn each_deployment<T>(
        &self,
        check: impl Fn(&CafeDeployment) -> Result<T, FieldErrors>,
    ) -> Result<Vec<T>, CliError> {
        let mut results = Vec::new();
        let mut report = String::new();
        for (path, deployment) in &self.deployments {
            match check(deployment) {
                Ok(result) => results.push(result),
                Err(errors) => {
                    for error in errors.0 {
                        let _ = writeln!(
                            report,
                            "error: {}: CafeDeployment {}/{}: {error}",
                            path.display(),
                            deployment.namespace(),
                            deployment.metadata.name
                        );
                    }
                }
            }
        }
        if report.is_empty() {
            Ok(results)
        } else {
            Err(CliError::BadInput(report))
        }
    }
}

/// Reads a file, or standard input for `-`.
fn read(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result
        .map_err(|e| CliError::BadInput(format!("error: {}: cannot read: {e}", path.display())))?;
    Ok(text)
}

/// Parses every file; all errors of all files are reported together. Returns the resources in
/// file and document order, each with the file it came from.
pub fn load_resources(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Resource)>, CliError> {
    let mut resources = Vec::new();
    let mut report = String::new();
    for path in paths {
        let text = read(path)?;
        match parse_yaml_documents(&text) {
            Ok(parsed) => resources.extend(parsed.into_iter().map(|r| (path.clone(), r))),
            Err(failures) => {
                for failure in failures {
                    let what = failure
                        .subject
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default();
                    for error in failure.errors.0 {
                        let _ = writeln!(
                            report,
                            "error: {}: document {}{what}: {error}",
                            path.display(),
                            failure.index
                        );
                    }
                }
            }
        }
    }
    if report.is_empty() {
        Ok(resources)
    } else {
        Err(CliError::BadInput(report))
    }
}

/// Parses every file and sorts the resources by kind; a unit defined twice is an error.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, CliError> {
    index(load_resources(paths)?)
}

/// Sorts resources by kind; a unit defined twice is an error.
pub fn index(resources: Vec<(PathBuf, Resource)>) -> Result<Loaded, CliError> {
    let mut loaded = Loaded::default();
    let mut report = String::new();
    for (path, resource) in resources {
        add(&mut loaded, &path, resource, &mut report);
    }
    if report.is_empty() {
        Ok(loaded)
    } else {
        Err(CliError::BadInput(report))
    }
}

fn add(loaded: &mut Loaded, path: &Path, resource: Resource, report: &mut String) {
    match resource {
        Resource::Unit(unit) => match unit.name() {
            Ok(name) => {
                if loaded.units.insert(name.clone(), *unit).is_some() {
                    let _ = writeln!(
                        report,
                        "error: {}: LogicalUnit {name} is defined more than once",
                        path.display()
                    );
                }
            }
            // validate() already refused bad names.
            Err(e) => {
                let _ = writeln!(report, "error: {}: metadata.name: {e}", path.display());
            }
        },
        Resource::Deployment(deployment) => loaded.deployments.push((path.to_owned(), *deployment)),
        Resource::Pipeline(pipeline) => loaded.pipelines.push((path.to_owned(), *pipeline)),
    }
}

/// `cafectl validate -f FILE [--units FILE]`.
pub fn validate(args: &ValidateArgs) -> Result<String, CliError> {
    let mut all = args.files.clone();
    all.extend(args.units.iter().cloned());
    let loaded = load(&all)?;
    let mut out = String::new();
    if !loaded.units.is_empty() {
        loaded.each_deployment(|deployment| deployment.resolve_units(&loaded.units).map(|_| ()))?;
    }
    let _ = writeln!(
        out,
        "valid: {} LogicalUnit(s), {} CafeDeployment(s)",
        loaded.units.len(),
        loaded.deployments.len()
    );
    if !loaded.pipelines.is_empty() {
        let _ = writeln!(
            out,
            "{} ReleasePipeline(s): deployments, regions and containers are checked by the hub on apply",
            loaded.pipelines.len()
        );
    }
    if loaded.units.is_empty() && !loaded.deployments.is_empty() {
        let _ = writeln!(
            out,
            "unit references not checked: no LogicalUnit given (use --units)"
        );
    }
    Ok(out)
}
