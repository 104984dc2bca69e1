//! `cafe-playground demo`: a narrated release on the playground — groups, a pause, continue,
//! completion, then a bad image that fails and is rolled back — ending with the lost-request count.

use crate::driver::{
    apply_yaml, awaiting_confirm, command, deployment, settled, summary, wait_status,
};
use crate::playground::Playground;
use anyhow::{Context as _, bail};
use cafe_federation::tls::Role;
use std::time::Duration;

/// The demo's deployment.
pub const DEMO_YAML: &str = include_str!("../../deploy/examples/demo.yaml");
/// A blue-green deployment: 8 pods over the four units, switched one unit per region at a time.
pub const BLUE_GREEN_YAML: &str = include_str!("../../deploy/examples/bluegreen.yaml");
/// The demo's second application, released with payments by [`PIPELINE_YAML`].
pub const LEDGER_YAML: &str = include_str!("../../deploy/examples/ledger.yaml");
/// A pipeline over the ledger alone (`finance/ledger-q4`, for the tests): Hangzhou behind an
/// approval, then the rest.
pub const LEDGER_PIPELINE_YAML: &str = "apiVersion: cafe.io/v1alpha1
kind: ReleasePipeline
metadata: {name: ledger-q4, namespace: finance}
spec:
  stages:
    - name: hangzhou
      regions: [cn-hangzhou]
      gate: Approval
      releases: [{deployment: ledger, images: {app: registry.example/ledger:2.0.0}}]
    - name: shanghai
      releases: [{deployment: ledger}]
";
/// The demo's pipeline: the ledger in Hangzhou, an approval, then the ledger in Shanghai with
/// payments.
pub const PIPELINE_YAML: &str = include_str!("../../deploy/examples/pipeline.yaml");
/// How long one step of the demo may take.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

fn print_status(status: &cafe_federation::release::DeploymentStatusView) {
    println!("    {}", summary(status));
}

fn say(text: &str) {
    println!("\n==> {text}");
}

fn with_image(image: &str) -> String {
    DEMO_YAML.replace("registry.example/payments:1.0.0", image)
}

/// The error-ratio query of the demo and the tests: the share of a unit's requests on the update
/// revision answered with 5xx over the last 10 s.
pub const ERROR_RATIO_QUERY: &str = "sum(rate(cafe_sim_requests_total{namespace=\"{{namespace}}\",inplaceset=\"{{inplaceset}}\",revision=\"{{revision}}\",code=~\"5..\"}[10s])) / sum(rate(cafe_sim_requests_total{namespace=\"{{namespace}}\",inplaceset=\"{{inplaceset}}\",revision=\"{{revision}}\"}[10s]))";

/// What verifies a release: a Prometheus metric or the playground's webhook gate.
#[derive(Debug, Clone)]
pub enum Gate {
    /// The error ratio per unit, from Prometheus at this URL.
    Prometheus(String),
    /// The check gate at this URL: 2xx when the revision's error ratio is at most 1%.
    Webhook(String),
}

impl Gate {
    /// Prometheus when the playground has it, else the webhook gate.
    pub fn of(playground: &Playground) -> Self {
        match &playground.prometheus {
            Some(p) => Self::Prometheus(p.url.clone()),
            None => Self::Webhook(playground.check_gate.url.clone()),
        }
    }

    /// The `metrics:` entry, indented for `strategy.analysis`.
    pub fn metric_yaml(&self) -> String {
        match self {
            Self::Prometheus(url) => format!(
                "      - name: error-ratio\n        scope: Unit\n        prometheus:\n          address: {url}\n          query: '{ERROR_RATIO_QUERY}'\n        successCondition: \"result <= 0.01\"\n        failureCondition: \"result > 0.05\"\n"
            ),
            Self::Webhook(url) => format!(
                "      - name: smoke\n        scope: Unit\n        webhook:\n          url: {url}?maxErrorRatio=0.01\n          timeoutSeconds: 5\n"
            ),
        }
    }
}

/// The demo's deployment running `image`, with `analysis` (YAML lines under `analysis:`, already
/// indented by 4) added to its strategy.
pub fn with_analysis(image: &str, analysis: &str) -> String {
    with_image(image).replace(
        "    minReadySeconds: 1\n",
        &format!("    minReadySeconds: 1\n    analysis:\n{analysis}"),
    )
}

/// An analysis of `count` measurements 1 s apart, with `gate`'s metric and `on_failure`. It starts
/// after 3 s and tolerates 3 inconclusive measurements: a new pod's series needs two scrapes before
/// a rate has a sample.
pub fn analysis_yaml(gate: &Gate, count: u32, on_failure: &str) -> String {
    format!(
        "      interval: 1s\n      count: {count}\n      initialDelay: 3s\n      inconclusiveLimit: 3\n      onFailure: {on_failure}\n      metrics:\n{}",
        gate.metric_yaml()
    )
}

/// Runs the demo on a started playground. Fails when anything does not go as narrated.
pub async fn run(playground: &Playground) -> anyhow::Result<()> {
    let reference = deployment("finance", "payments");
    let mut operator = playground.client(Role::Operator).await?;
    let print = print_status;

    say("Deploying finance/payments 1.0.0: 10 pods over 4 units in 2 regions");
    apply_yaml(&mut operator, DEMO_YAML).await?;
    let status = wait_status(&mut operator, &reference, STEP_DEADLINE, |_| {}, settled).await?;
    print(&status);

    say("Releasing 1.1.0 in groups: one pod per unit first (beta), then two batches");
    apply_yaml(
        &mut operator,
        &with_image("registry.example/payments:1.1.0"),
    )
    .await?;
    let mut group = 0;
    loop {
        let status = wait_status(
            &mut operator,
            &reference,
            STEP_DEADLINE,
            |_| {},
            |s| awaiting_confirm(s) || s.phase == "Stable",
        )
        .await
        .with_context(|| format!("group {group}"))?;
        print(&status);
        if status.phase == "Stable" {
            break;
        }
        say(&format!(
            "Group {} is healthy and paused; an operator verifies it and continues",
            status.batch
        ));
        let result = operator
            .r#continue(command(&reference, Some(status.batch)))
            .await?
            .into_inner();
        println!("    continue: {}", result.message);
        group += 1;
    }
    let status = wait_status(&mut operator, &reference, STEP_DEADLINE, |_| {}, settled).await?;
    say(&format!(
        "Release complete: every unit runs revision {}",
        status.current_revision
    ));
    print(&status);
    let good_revision = status.current_revision.clone();

    say("Releasing a bad image (it crash-loops): the first group fails and stops there");
    apply_yaml(
        &mut operator,
        &with_image("registry.example/payments:1.2.0-crashloop"),
    )
    .await?;
    let failed = wait_status(
        &mut operator,
        &reference,
        STEP_DEADLINE,
        |_| {},
        |s| s.phase == "Failed",
    )
    .await?;
    print(&failed);
    println!("    why: {}", failed.message);

    say("Rolling back: every unit returns to the last good revision at once");
    let result = operator
        .rollback(command(&reference, None))
        .await?
        .into_inner();
    println!("    rollback: {}", result.message);
    let status = wait_status(&mut operator, &reference, STEP_DEADLINE, |_| {}, settled).await?;
    print(&status);
    if status.current_revision != good_revision {
        bail!(
            "rolled back to {} instead of {good_revision}",
            status.current_revision
        );
    }

    analysis_scene(playground, &mut operator, &reference, &good_revision).await?;
    pipeline_scene(&mut operator).await?;

    let (sent, lost) = playground.traffic();
    say(&format!(
        "Traffic during the whole demo: {sent} requests sent, {lost} lost"
    ));
    if lost > 0 {
        bail!("{lost} requests were lost");
    }
    Ok(())
}

/// The scene of a version whose pods are healthy but which answers 8% of requests with errors in
/// one region: its analysis fails in the first group, and the hub rolls it back by itself.
async fn analysis_scene(
    playground: &Playground,
    operator: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    reference: &cafe_proto::v1::DeploymentRef,
    good_revision: &str,
) -> anyhow::Result<()> {
    let bad = "registry.example/payments:1.3.0";
    let gate = Gate::of(playground);
    let how = match &gate {
        Gate::Prometheus(url) => {
            format!("the error ratio per unit, queried from Prometheus at {url}")
        }
        Gate::Webhook(url) => format!(
            "the application's own check (a webhook at {url}); install Debian's prometheus to use Prometheus"
        ),
    };
    say(&format!(
        "Releasing 1.3.0: healthy pods, but in region cn-hangzhou it answers 8% of requests with \
         errors. Every group is verified by {how}"
    ));
    for cluster in ["hz-dc1", "hz-dc2"] {
        playground
            .set_behaviour(
                bad,
                Some(cluster),
                cafe_sim::Behaviour {
                    error_ratio: 0.08,
                    latency_ms: 0,
                },
            )
            .await?;
    }
    apply_yaml(
        operator,
        &with_analysis(bad, &analysis_yaml(&gate, 3, "Rollback")),
    )
    .await?;
    let rolled = wait_status(
        operator,
        reference,
        STEP_DEADLINE,
        |_| {},
        |s| {
            s.reason == "AnalysisFailed"
                || s.phase == "Stable" && s.current_revision != good_revision
        },
    )
    .await?;
    print_status(&rolled);
    println!("    why: {}", rolled.message);
    if rolled.batch != 0 {
        bail!(
            "the analysis failed in group {}, not the first",
            rolled.batch
        );
    }
    let status = wait_status(operator, reference, STEP_DEADLINE, |_| {}, settled).await?;
    print_status(&status);
    if status.current_revision != good_revision || status.reason != "RolledBack" {
        bail!(
            "expected a rollback to {good_revision}, got {} ({})",
            status.current_revision,
            status.reason
        );
    }
    say(&format!(
        "Rolled back automatically: every unit runs revision {good_revision} again"
    ));
    Ok(())
}

/// Waits until the pipeline's status satisfies `done`.
async fn wait_pipeline(
    operator: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let until = tokio::time::Instant::now() + STEP_DEADLINE;
    loop {
        let status = crate::driver::pipeline_status(operator, "finance", name).await?;
        if done(&status) {
            return Ok(status);
        }
        if tokio::time::Instant::now() > until {
            bail!("pipeline {name} did not get there within {STEP_DEADLINE:?}: {status}");
        }
        tokio::time::sleep(crate::playground::POLL).await;
    }
}

fn print_pipeline(status: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    match status["stage"].as_str().filter(|s| !s.is_empty()) {
        Some(stage) => println!(
            "    pipeline {} at stage {stage}; waiting for: {}",
            text(&status["phase"]),
            text(&status["waitingFor"])
        ),
        None => println!(
            "    pipeline {}: {}",
            text(&status["phase"]),
            text(&status["message"])
        ),
    }
    for release in status["releases"].as_array().into_iter().flatten() {
        let group = match (release["group"].as_u64(), release["groups"].as_u64()) {
            (Some(g), Some(n)) if release["phase"] != "Stable" => format!(" group {}/{n}", g + 1),
            _ => String::new(),
        };
        println!(
            "      {:<16} {:<9} {:<10} {} ({}){group}",
            text(&release["stage"]),
            text(&release["deployment"]),
            text(&release["standing"]),
            text(&release["phase"]),
            text(&release["reason"]),
        );
    }
}

/// The scene of a change across two applications: the ledger in Hangzhou, an approval, then the
/// ledger in Shanghai with payments.
async fn pipeline_scene(
    operator: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let ledger = deployment("finance", "ledger");
    let payments = deployment("finance", "payments");
    say("A second application, finance/ledger 1.0.0 (one pod per unit), beside payments");
    apply_yaml(operator, LEDGER_YAML).await?;
    let status = wait_status(operator, &ledger, STEP_DEADLINE, |_| {}, settled).await?;
    print_status(&status);

    say(
        "Pipeline q4-payments: the ledger in Hangzhou first, then (approved) the ledger in Shanghai \
         with payments",
    );
    apply_yaml(operator, PIPELINE_YAML).await?;
    let gate = wait_pipeline(operator, "q4-payments", |s| {
        s["phase"] == "AwaitingApproval"
    })
    .await?;
    print_pipeline(&gate);
    let status = crate::driver::status(operator, &ledger).await?;
    print_status(&status);
    if status
        .units
        .iter()
        .any(|u| u.unit.starts_with("sh-") && u.target > 0)
    {
        bail!("the ledger moved in Shanghai before the approval");
    }

    say("Hangzhou's ledger is verified; an operator approves the next stage");
    let result = operator
        .pipeline_command(cafe_proto::v1::PipelineCommandRequest {
            r#ref: Some(deployment("finance", "q4-payments")),
            verb: cafe_proto::v1::PipelineVerb::Approve as i32,
            expected_stage: Some("ledger-hangzhou".into()),
            reason: "demo: Hangzhou looks good".into(),
        })
        .await?
        .into_inner();
    println!("    approve: {}", result.message);
    // Payments keeps its own pauses inside the stage: the operator promotes it through them.
    let status = wait_status(operator, &payments, STEP_DEADLINE, |_| {}, awaiting_confirm).await?;
    print_status(&status);
    let mut promote = command(&payments, Some(status.batch));
    promote.full = true;
    let result = operator.r#continue(promote).await?.into_inner();
    println!("    promote --full: {}", result.message);
    let done = wait_pipeline(operator, "q4-payments", |s| s["phase"] == "Succeeded").await?;
    print_pipeline(&done);
    for reference in [&ledger, &payments] {
        let status = wait_status(operator, reference, STEP_DEADLINE, |_| {}, settled).await?;
        print_status(&status);
    }
    say("Pipeline complete: both applications run their new revision in every unit");
    Ok(())
}
