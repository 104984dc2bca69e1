//! Notifications of release and failover events to a webhook (`cafe-hub serve --notify-webhook
//! URL`), for chat rooms, paging and change records.
//!
//! The core notes what happened as it decides ([`Notice`]s, in the order of its transitions); the
//! writer hands a commit's notices over only once the commit succeeded, so that nothing is
//! announced that did not happen. A bounded queue separates the hub from the receiver: a slow or
//! dead receiver fills the queue, and what no longer fits is dropped (counted and logged), never
//! waited for. One task posts the notices one at a time, in order, each retried with backoff until
//! the receiver answers 2xx or the attempts run out.
//!
//! The JSON posted (documented in docs/decisions.md):
//!
//! ```json
//! {"id": "1764662400000-7", "type": "GroupDone", "time": "2026-12-02T08:00:00.000Z",
//!  "deployment": {"namespace": "finance", "name": "payments"}, "group": 0, "revision": "7794e04c84",
//!  "phase": "Paused", "reason": "AwaitingConfirm", "message": "group 0 is done; ..."}
//! {"id": "1764662400000-8", "type": "Evacuated", "time": "...", "unit": "sh-az1",
//!  "message": "datacenter down"}
//! ```

use crate::names::{DeploymentKey, UnitName};
use crate::release::{Phase, Reason, ReleaseState};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many notices wait for the receiver at most; more are dropped.
pub const QUEUE: usize = 1024;
/// How often one notice is posted before it is given up.
const ATTEMPTS: u32 = 6;
/// The wait before the first retry; it doubles with each.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NoticeType {
    /// A new revision started releasing (group 0).
    ReleaseStarted,
    /// A group's units are updated and healthy (and its analysis passed).
    GroupDone,
    /// The release waits for `continue`.
    AwaitingConfirmation,
    /// A group failed: pods failing or the progress deadline passed.
    ReleaseFailed,
    /// A group's analysis failed (the release then rolls back or stops).
    AnalysisFailed,
    /// The release is returning to the stable revision.
    RollingBack,
    /// Every unit runs the stable revision again.
    RolledBack,
    /// Every unit runs the new revision.
    ReleaseComplete,
    /// A unit was evacuated: its replicas move to the others.
    Evacuated,
    /// An evacuated unit takes its replicas back.
    FailedBack,
    /// A pipeline's stage started.
    PipelineStageStarted,
    /// A pipeline's stage is done and its gate waits for `approve`.
    PipelineAwaitingApproval,
    /// An operator paused a pipeline.
    PipelinePaused,
    /// An operator resumed a paused or stopped pipeline.
    PipelineResumed,
    /// A release of a pipeline failed and `onFailure: Stop` stopped it.
    PipelineFailed,
    /// A pipeline's releases go back, latest stage first.
    PipelineRollingBack,
    /// Every stage of a pipeline is done.
    PipelineSucceeded,
    /// Every release of a pipeline is back on its revision from before it.
    PipelineRolledBack,
    /// An operator aborted a pipeline.
    PipelineAborted,
}

/// The deployment a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeDeployment {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One event, as the webhook receives it (without `id`, which the sender numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: NoticeType,
    /// When (RFC 3339).
    pub time: String,
    /// The deployment, for release events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<NoticeDeployment>,
    /// The group (0-based), for release events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    /// The revision the units move to, for release events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The release's phase and reason after the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why, in a word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The unit, for failover events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The pipeline, for pipeline events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<NoticeDeployment>,
    /// The pipeline's stage, for pipeline events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// A readable account.
    pub message: String,
}

impl Notice {
    /// A notice of `kind` about nothing yet: the constructors fill in what it is about.
    fn about(kind: NoticeType, time: String, message: &str) -> Self {
        Self {
            kind,
            time,
            deployment: None,
            group: None,
            revision: None,
            phase: None,
            reason: None,
            unit: None,
            pipeline: None,
            stage: None,
            message: message.to_owned(),
        }
    }

    /// A failover event of `unit`.
    pub fn failover(kind: NoticeType, unit: &UnitName, message: &str, time: String) -> Self {
        Self {
            unit: Some(unit.to_string()),
            ..Self::about(kind, time, message)
        }
    }

    /// A pipeline event: it went from `before` (none for a new pipeline) to `progress`, at `stage`.
    pub fn pipeline(
        key: &DeploymentKey,
        before: Option<&crate::pipeline::Progress>,
        progress: &crate::pipeline::Progress,
        stage: Option<String>,
        message: &str,
        time: String,
    ) -> Self {
        use crate::pipeline::Progress;
        let kind = match progress {
            // Running again at the same stage is a resume, not a new stage.
            Progress::Running { .. } if before.is_some_and(|b| b.stage() == progress.stage()) => {
                NoticeType::PipelineResumed
            }
            Progress::Running { .. } => NoticeType::PipelineStageStarted,
            Progress::AwaitingApproval { .. } => NoticeType::PipelineAwaitingApproval,
            Progress::Paused { .. } => NoticeType::PipelinePaused,
            Progress::Failed { .. } => NoticeType::PipelineFailed,
            Progress::RollingBack { .. } => NoticeType::PipelineRollingBack,
            Progress::Succeeded => NoticeType::PipelineSucceeded,
            Progress::RolledBack { .. } => NoticeType::PipelineRolledBack,
            Progress::Aborted { .. } => NoticeType::PipelineAborted,
        };
        Self {
            phase: Some(progress.phase().to_owned()),
            pipeline: Some(NoticeDeployment::of(key)),
            stage,
            ..Self::about(kind, time, message)
        }
    }
}

impl NoticeDeployment {
    fn of(key: &DeploymentKey) -> Self {
        Self {
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
        }
    }
}

/// The notices of a release going from `before` to `next`, in the order they happened.
pub fn release_notices(
    key: &DeploymentKey,
    before: &ReleaseState,
    next: &ReleaseState,
    time: &str,
) -> Vec<Notice> {
    let (was, why, group) = (before.phase(), before.reason(), before.batch());
    let (now, reason, at) = (next.phase(), next.reason(), next.batch());
    let same_release = before.update_revision == next.update_revision;
    if (was, why, group) == (now, reason, at) && same_release {
        return Vec::new();
    }
    let notice = |kind, group: usize| Notice {
        deployment: Some(NoticeDeployment::of(key)),
        group: Some(group),
        revision: Some(next.update_revision.clone()),
        phase: Some(now.to_string()),
        reason: Some(reason.to_string()),
        ..Notice::about(kind, time.to_owned(), next.message())
    };
    let mut notices = Vec::new();
    if !same_release && now == Phase::Progressing {
        notices.push(notice(NoticeType::ReleaseStarted, at));
    }
    let finished_group = was == Phase::Progressing
        && same_release
        && ((now == Phase::Progressing && at == group + 1)
            || (now == Phase::Paused && reason == Reason::AwaitingConfirm && at == group)
            || (now == Phase::Stable && reason == Reason::Complete));
    if finished_group {
        notices.push(notice(NoticeType::GroupDone, group));
    }
    let entered = |phase: Phase, r: Option<Reason>| {
        now == phase && r.is_none_or(|r| r == reason) && (was, why) != (now, reason)
    };
    if entered(Phase::Paused, Some(Reason::AwaitingConfirm)) {
        notices.push(notice(NoticeType::AwaitingConfirmation, at));
    }
    if reason == Reason::AnalysisFailed && why != Reason::AnalysisFailed {
        notices.push(notice(NoticeType::AnalysisFailed, at));
    } else if entered(Phase::Failed, None) {
        notices.push(notice(NoticeType::ReleaseFailed, at));
    }
    if now == Phase::RollingBack && was != Phase::RollingBack {
        notices.push(notice(NoticeType::RollingBack, at));
    }
    if entered(Phase::Stable, Some(Reason::RolledBack)) {
        notices.push(notice(NoticeType::RolledBack, at));
    }
    if entered(Phase::Stable, Some(Reason::Complete)) {
        notices.push(notice(NoticeType::ReleaseComplete, at));
    }
    notices
}

/// The hub's end of the queue: never blocks.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Notice>,
    metrics: super::metrics::HubMetrics,
}

impl Notifier {
    /// Starts the task that posts to `url`; it ends when the last [`Notifier`] is dropped.
    pub fn start(url: String, metrics: super::metrics::HubMetrics) -> Self {
        let (queue, notices) = mpsc::channel(QUEUE);
        tokio::spawn(post_all(url, notices, metrics.clone()));
        Self { queue, metrics }
    }

    /// Queues `notice`; when the queue is full it is dropped.
    pub fn send(&self, notice: Notice) {
        if let Err(error) = self.queue.try_send(notice) {
            let notice = match error {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(kind = ?notice.kind, "the notification queue is full: a notification is dropped");
            self.metrics.notification("dropped");
        }
    }
}

/// Posts every notice in order, each with its retries.
async fn post_all(
    url: String,
    mut notices: mpsc::Receiver<Notice>,
    metrics: super::metrics::HubMetrics,
) {
    // Ids are unique across this hub's processes: a receiver can drop a repeated delivery (a
    // retry after an answer that got lost) by its id.
    let epoch = super::server::now_ms();
    let mut sequence = 0_u64;
    while let Some(notice) = notices.recv().await {
        sequence += 1;
        let mut body = match serde_json::to_value(&notice) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "cannot encode a notification");
                continue;
            }
        };
        if let Some(object) = body.as_object_mut() {
            object.insert("id".to_owned(), format!("{epoch}-{sequence}").into());
        }
        let mut wait = FIRST_RETRY;
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            match crate::http_client::post_json(&url, &body, POST_TIMEOUT).await {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    delivered = true;
                    break;
                }
                Ok(answer) => {
                    tracing::warn!(%url, attempt, status = answer.status, kind = ?notice.kind, "the notification webhook refused a notification");
                }
                Err(error) => {
                    tracing::warn!(%url, attempt, %error, kind = ?notice.kind, "cannot post a notification");
                }
            }
            if attempt < ATTEMPTS {
                // The backoff between retries of one notice (not a synchronisation).
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        if delivered {
            metrics.notification("delivered");
        } else {
            tracing::error!(%url, kind = ?notice.kind, "a notification was given up after {ATTEMPTS} attempts");
            metrics.notification("failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_running_again_at_its_stage_is_resumed_and_at_the_next_one_started() {
        use crate::pipeline::Progress;
        let key = DeploymentKey {
            namespace: crate::names::Namespace::new("finance").unwrap(),
            name: crate::names::DeploymentName::new("q4").unwrap(),
        };
        let notice = |before: Option<&Progress>, next: Progress| {
            Notice::pipeline(&key, before, &next, None, "", String::new()).kind
        };
        let running = |stage| Progress::Running { stage };
        assert_eq!(
            notice(Some(&Progress::Paused { stage: 1 }), running(1)),
            NoticeType::PipelineResumed
        );
        assert_eq!(
            notice(Some(&Progress::AwaitingApproval { stage: 0 }), running(1)),
            NoticeType::PipelineStageStarted
        );
        assert_eq!(notice(None, running(0)), NoticeType::PipelineStageStarted);
    }

    fn evacuated(n: usize) -> Notice {
        Notice::failover(
            NoticeType::Evacuated,
            &"sh-az1".parse().unwrap(),
            &format!("drill {n}"),
            String::new(),
        )
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_costs_the_hub_a_full_queue_not_a_wait() {
        // It accepts connections and never answers them.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let metrics = crate::hub::metrics::HubMetrics::default();
        let notifier = Notifier::start(url, metrics.clone());
        // send() is synchronous: however many, none waits for the receiver.
        let sent = QUEUE + 500;
        for n in 0..sent {
            notifier.send(evacuated(n));
        }
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let dropped: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("cafe_hub_notifications_total{result=\"dropped\"} "))
            .unwrap()
            .parse()
            .unwrap();
        // The queue holds QUEUE, and the sender may have taken one out already.
        assert!(
            (sent - QUEUE - 1..=sent - QUEUE).contains(&dropped),
            "{dropped} dropped of {sent}"
        );
        held.abort();
    }
}
