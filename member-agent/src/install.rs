//! Installing the InPlaceSet CRD.

use crate::crd::{InPlaceSet, inplaceset_crd};
use crate::error::Error;
use crate::names::FIELD_MANAGER;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use std::time::{Duration, Instant};

/// How long the API server may take to serve a newly applied CRD.
const CRD_SERVED_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to check whether it is served.
const CRD_SERVED_POLL: Duration = Duration::from_millis(100);

/// Installs or updates the InPlaceSet CRD by server-side apply (field manager `cafe-agent`) and
/// waits until InPlaceSets are served.
pub async fn ensure_crd(client: Client) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = inplaceset_crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| Error::kube("apply the InPlaceSet CRD", e))?;
    let sets: Api<InPlaceSet> = Api::all(client);
    let deadline = Instant::now() + CRD_SERVED_TIMEOUT;
    loop {
        match sets.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                tracing::info!(crd = %name, "InPlaceSet CRD served");
                return Ok(());
            }
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "InPlaceSets not served yet");
                tokio::time::sleep(CRD_SERVED_POLL).await;
            }
            Err(_) => return Err(Error::CrdNotServed(CRD_SERVED_TIMEOUT)),
        }
    }
}
