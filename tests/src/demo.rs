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
/// How long one step of the demo may take.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

fn say(text: &str) {
    println!("\n==> {text}");
}

fn with_image(image: &str) -> String {
    DEMO_YAML.replace("registry.example/payments:1.0.0", image)
}

/// Runs the demo on a started playground. Fails when anything does not go as narrated.
pub async fn run(playground: &Playground) -> anyhow::Result<()> {
    let reference = deployment("finance", "payments");
    let mut operator = playground.client(Role::Operator).await?;
    let print = |s: &cafe_federation::release::DeploymentStatusView| println!("    {}", summary(s));

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

    let (sent, lost) = playground.traffic();
    say(&format!(
        "Traffic during the whole demo: {sent} requests sent, {lost} lost"
    ));
    if lost > 0 {
        bail!("{lost} requests were lost");
    }
    Ok(())
}
