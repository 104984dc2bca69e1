//! The wire protocol shared by the hub and the agents (package `cafe.federation.v1`).
//!
//! - [`v1::agent_link_client`] / [`v1::agent_link_server`]: the hub <-> agent stream (DESIGN section 6).
//! - [`v1::federation_client`] / [`v1::federation_server`]: the operators' API used by `cafectl`.
//!
//! This crate holds generated code only; conversions to domain types live at each side's boundary.

/// Generated types and services of `cafe.federation.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("cafe.federation.v1");
}

/// The parts of etcd's v3 API the hub's etcd store uses (KV, Watch, Lease, Maintenance status),
/// compiled from `proto/etcd/` by protox like the rest: no system `protoc`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcd {
    /// etcd's key-value and event messages.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcd's services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// The encoded `FileDescriptorSet` of every .proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cafe_descriptor.bin"));

/// Separates a slice id's deployment part from its unit: `namespace/name@unit`.
pub const SLICE_ID_UNIT_SEPARATOR: char = '@';

/// The constants of the hub <-> agent protocol (DESIGN section 6), defined once for both sides.
/// How the hub and the agent write their logs: `--log-format text|json` (`CAFE_LOG_FORMAT`),
/// filtered by `RUST_LOG` (default `info`), to standard error.
pub mod logging {
    /// The log format.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
    pub enum LogFormat {
        /// Human-readable lines.
        #[default]
        Text,
        /// One JSON object per line, for a log pipeline.
        Json,
    }

    /// Installs the process's log subscriber.
    pub fn init(format: LogFormat) {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
    }
}

pub mod protocol {
    use sha2::Digest as _;
    use std::time::Duration;

    /// The longest label value, which the InPlaceSet name also becomes (on its pods).
    const MAX_LABEL_VALUE: usize = 63;

    /// The InPlaceSet name of a deployment's slice in a unit: `deployment-unit`, shortened with a hash
    /// when longer than a label value may be.
    pub fn inplaceset_name(deployment: &str, unit: &str) -> String {
        let name = format!("{deployment}-{unit}");
        if name.len() <= MAX_LABEL_VALUE {
            return name;
        }
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
        let keep = MAX_LABEL_VALUE - hash.len() - 1;
        format!("{}-{hash}", name[..keep].trim_end_matches('-'))
    }

    pub use super::SLICE_ID_UNIT_SEPARATOR;

    /// The files of a `--tls-dir`, CA certificate first, then the certificate and its key. A
    /// directory holding `tls.crt` has the layout of a Kubernetes TLS Secret as cert-manager writes
    /// it (`ca.crt`, `tls.crt`, `tls.key`); any other has ours (`ca.pem`, then `cert` and `key`:
    /// `hub.pem`/`hub-key.pem` for the hub, `agent.pem`/`agent-key.pem` for an agent).
    pub fn tls_dir_files(dir: &std::path::Path, cert: &str, key: &str) -> [std::path::PathBuf; 3] {
        if dir.join("tls.crt").exists() {
            ["ca.crt", "tls.crt", "tls.key"].map(|f| dir.join(f))
        } else {
            ["ca.pem", cert, key].map(|f| dir.join(f))
        }
    }

    /// How often each side sends a heartbeat by default. The hub announces the interval it uses in
    /// `Welcome.heartbeat_interval_ms`, and the agent follows it.
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
    /// Heartbeats the hub may miss from an agent before it marks the cluster Unknown.
    pub const MISSED_HEARTBEATS: u32 = 3;
    /// Heartbeat intervals an agent waits without any message before it takes the hub for gone and
    /// dials again: one more than the hub allows the agent, so the hub notices first.
    pub const HUB_SILENT_HEARTBEATS: u32 = 4;
    /// The largest gRPC message either side sends or accepts (a snapshot of many slices is one
    /// stream of messages, each far smaller).
    pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
    /// Separates a slice id's namespace from the deployment's name: `namespace/name@unit`.
    pub const SLICE_ID_NAMESPACE_SEPARATOR: char = '/';

    /// The id of a deployment's slice in a unit: `namespace/name@unit`.
    pub fn slice_id(namespace: &str, name: &str, unit: &str) -> String {
        format!("{namespace}{SLICE_ID_NAMESPACE_SEPARATOR}{name}{SLICE_ID_UNIT_SEPARATOR}{unit}")
    }

    /// A slice id's namespace, deployment name and unit; `None` unless it is
    /// `namespace/name@unit`. The unit is after the last `@`, the namespace before the first `/`.
    pub fn split_slice_id(id: &str) -> Option<(&str, &str, &str)> {
        let (deployment, unit) = id.rsplit_once(SLICE_ID_UNIT_SEPARATOR)?;
        let (namespace, name) = deployment.split_once(SLICE_ID_NAMESPACE_SEPARATOR)?;
        Some((namespace, name, unit))
    }

    /// The response metadata in which a follower hub replica names the leader's URL, on the
    /// UNAVAILABLE it answers agents and cafectl with.
    pub const LEADER_METADATA: &str = "cafe-leader";
    /// The response metadata that marks a hub replica's refusal as a follower's.
    pub const ROLE_METADATA: &str = "cafe-role";
    /// The value of [`ROLE_METADATA`] on a follower's refusal.
    pub const FOLLOWER_ROLE: &str = "follower";

    /// Most items in one batch message (`SliceBatch`, `StatusBatch`, `AckBatch`).
    pub const BATCH_MAX_ITEMS: usize = 256;
    /// The encoded size a batch message stays under, unless a single item is larger (it then goes
    /// alone): far below [`MAX_MESSAGE_BYTES`], so that one batch never holds a stream up for long.
    pub const BATCH_MAX_BYTES: usize = 1024 * 1024;

    /// Cuts `items` into batches of at most [`BATCH_MAX_ITEMS`] whose `size`s add up to at most
    /// [`BATCH_MAX_BYTES`] (an item larger than that is a batch of its own). Order is kept.
    pub fn batches<T>(
        items: impl IntoIterator<Item = T>,
        size: impl Fn(&T) -> usize,
    ) -> Vec<Vec<T>> {
        let mut batches = Vec::new();
        let mut current = Vec::new();
        let mut bytes = 0;
        for item in items {
            let item_bytes = size(&item);
            let full = current.len() >= BATCH_MAX_ITEMS || bytes + item_bytes > BATCH_MAX_BYTES;
            if full && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += item_bytes;
            current.push(item);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// The interval a `Welcome` announces, or the default when it announces none.
    pub fn announced_heartbeat(heartbeat_interval_ms: u32) -> Duration {
        if heartbeat_interval_ms == 0 {
            HEARTBEAT_INTERVAL
        } else {
            Duration::from_millis(u64::from(heartbeat_interval_ms))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn batches_keep_order_and_stay_within_both_bounds() {
            let items: Vec<usize> = (0..600).collect();
            let cut = batches(items.clone(), |_| 10);
            assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
            assert_eq!(cut.concat(), items);
            // By size: 400 KiB items, two to a batch; a 3 MiB item goes alone.
            let sizes = [400 * 1024, 400 * 1024, 400 * 1024, 3 * 1024 * 1024, 1];
            let cut = batches(sizes, |s| *s);
            assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1, 1]);
            assert!(batches(Vec::<u8>::new(), |_| 1).is_empty());
        }

        #[test]
        fn slice_ids_round_trip() {
            let id = slice_id("finance", "payments", "sh-az1");
            assert_eq!(id, "finance/payments@sh-az1");
            assert_eq!(split_slice_id(&id), Some(("finance", "payments", "sh-az1")));
            assert_eq!(split_slice_id("payments@sh-az1"), None);
            assert_eq!(split_slice_id("finance/payments"), None);
        }

        #[test]
        fn a_welcome_without_an_interval_means_the_default() {
            assert_eq!(announced_heartbeat(0), HEARTBEAT_INTERVAL);
            assert_eq!(announced_heartbeat(500), Duration::from_millis(500));
        }
    }
}
