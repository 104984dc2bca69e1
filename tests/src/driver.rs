//! Driving a hub through its API as an operator would: apply documents, run commands, and wait for a
//! deployment's status to satisfy a condition.

use anyhow::{Context as _, bail};
use cafe_federation::hub::convert::status_from_proto;
use cafe_federation::release::DeploymentStatusView;
use cafe_federation::resources::{Resource, parse_yaml_documents};
use cafe_proto::v1 as pb;
use cafe_proto::v1::federation_client::FederationClient;
use std::time::Duration;
use tonic::transport::Channel;

/// Applies every document of a YAML text.
pub async fn apply_yaml(
    client: &mut FederationClient<Channel>,
    yaml: &str,
) -> anyhow::Result<Vec<pb::AppliedResource>> {
    let resources = parse_yaml_documents(yaml).map_err(|errors| {
        anyhow::anyhow!(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let documents = resources
        .iter()
        .map(Resource::to_json)
        .collect::<Result<Vec<_>, _>>()?;
    let response = client
        .apply(pb::ApplyRequest {
            documents_json: documents,
            dry_run: false,
        })
        .await?;
    Ok(response.into_inner().results)
}

/// A deployment reference.
pub fn deployment(namespace: &str, name: &str) -> pb::DeploymentRef {
    pb::DeploymentRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A pipeline's status: the `status` of its document (`pipeline status -o json`).
pub async fn pipeline_status(
    client: &mut FederationClient<Channel>,
    namespace: &str,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let document = client
        .get(pb::GetRequest {
            kind: pb::ResourceKind::ReleasePipeline as i32,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
        .await?
        .into_inner();
    let value: serde_json::Value = serde_json::from_str(&document.json)?;
    Ok(value["status"].clone())
}

/// The deployment's status.
pub async fn status(
    client: &mut FederationClient<Channel>,
    reference: &pb::DeploymentRef,
) -> anyhow::Result<DeploymentStatusView> {
    let status = client.get_status(reference.clone()).await?.into_inner();
    Ok(status_from_proto(&status))
}

/// Waits until the status satisfies `done`, calling `observe` on every status seen (to record or
/// print). Fails after `deadline` with the last status.
pub async fn wait_status(
    client: &mut FederationClient<Channel>,
    reference: &pb::DeploymentRef,
    deadline: Duration,
    mut observe: impl FnMut(&DeploymentStatusView),
    done: impl Fn(&DeploymentStatusView) -> bool,
) -> anyhow::Result<DeploymentStatusView> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let current = status(client, reference)
            .await
            .context("cannot read the status")?;
        observe(&current);
        if done(&current) {
            return Ok(current);
        }
        if tokio::time::Instant::now() > until {
            bail!(
                "the deployment did not reach the expected state within {deadline:?}; last status: {current:#?}"
            );
        }
        tokio::time::sleep(crate::playground::POLL).await;
    }
}

/// Every unit runs its planned replicas, all ready, all on the update revision.
pub fn settled(status: &DeploymentStatusView) -> bool {
    status.phase == "Stable"
        && status.units.iter().all(|u| {
            u.connected
                && u.ready == u.replicas
                && u.updated == u.replicas
                && u.updated_ready == u.replicas
        })
}

/// The group is done and the release waits for `continue`.
pub fn awaiting_confirm(status: &DeploymentStatusView) -> bool {
    status.phase == "Paused" && status.reason == "AwaitingConfirm"
}

/// A release command.
pub fn command(reference: &pb::DeploymentRef, batch: Option<i32>) -> pb::ReleaseCommand {
    pb::ReleaseCommand {
        r#ref: Some(reference.clone()),
        expected_batch: batch,
        to_revision: None,
        reason: String::new(),
        full: false,
    }
}

/// A one-line summary of a status, for narration and test logs.
pub fn summary(status: &DeploymentStatusView) -> String {
    let units: Vec<String> = status
        .units
        .iter()
        .map(|u| {
            format!(
                "{} {}/{} updated {}/{}",
                u.unit, u.ready, u.replicas, u.updated_ready, u.target
            )
        })
        .collect();
    let group = if status.phase == "Stable" {
        String::new()
    } else {
        format!(" group {}/{}", status.batch + 1, status.batches.max(1))
    };
    format!(
        "{} ({}){group}: {}",
        status.phase,
        status.reason,
        units.join(", ")
    )
}

/// Polls `done` every 10 ms until it holds; how long that took from `since`, or an error naming
/// `what` once `limit` has passed since `since`.
pub async fn poll_until<F, Fut>(
    since: std::time::Instant,
    limit: Duration,
    what: &str,
    mut done: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if done().await {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            anyhow::bail!("{what} took longer than {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
