//! Applying Kubernetes manifests (multi-document YAML) by server-side apply, as
//! `kubectl apply --server-side` does: each document's kind is resolved by discovery.

use std::time::Duration;

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

use crate::error::SimError;

/// The field manager of what the test harness applies.
pub const APPLY_MANAGER: &str = "cafe-sim-harness";
/// How long a CustomResourceDefinition may take to be established.
const ESTABLISH_DEADLINE: Duration = Duration::from_secs(30);
/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);

fn config_error(what: String) -> SimError {
    SimError::ControlPlane { what, source: None }
}

/// The documents of a multi-document YAML text (empty documents dropped).
pub fn parse_documents(yaml: &str) -> Result<Vec<Value>, SimError> {
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(yaml)
        .map_err(|e| config_error(format!("not valid YAML: {e}")))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Applies every document of `yaml` through `client`, then waits until the CustomResourceDefinitions
/// among them are established.
pub async fn apply_yaml(client: &kube::Client, yaml: &str) -> Result<(), SimError> {
    let documents = parse_documents(yaml)?;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| SimError::Kube {
            what: "cannot discover the API server's resources".into(),
            source,
        })?;
    let params = PatchParams::apply(APPLY_MANAGER).force();
    let mut crds = Vec::new();
    for document in documents {
        let object: DynamicObject = serde_json::from_value(document.clone())
            .map_err(|e| config_error(format!("not a Kubernetes object: {e}")))?;
        let types = object
            .types
            .clone()
            .ok_or_else(|| config_error("a document without apiVersion and kind".into()))?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| config_error(format!("{}: {e}", types.api_version)))?;
        let (resource, capabilities) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| config_error(format!("the API server does not serve {}", types.kind)))?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(&document))
            .await
            .map_err(|source| SimError::Kube {
                what: format!("cannot apply {} {name}", types.kind),
                source,
            })?;
        if types.kind == "CustomResourceDefinition" {
            crds.push(name);
        }
    }
    for crd in crds {
        wait_established(client, &crd).await?;
    }
    Ok(())
}

async fn wait_established(client: &kube::Client, name: &str) -> Result<(), SimError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + ESTABLISH_DEADLINE;
    loop {
        let established = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|crd| crd.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(config_error(format!(
                "CustomResourceDefinition {name} was not established within {ESTABLISH_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
