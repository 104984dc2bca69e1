//! Who may talk to the hub: an agent presenting another cluster's certificate is refused, a viewer
//! cannot continue a release, and a client without a certificate cannot connect.

mod common;

use cafe_federation::tls::{CafectlConfig, Role};
use cafe_proto::v1 as pb;
use cafe_proto::v1::agent_link_client::AgentLinkClient;
use cafe_proto::v1::federation_client::FederationClient;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{apply_yaml, command, deployment};
use common::{cafectl, start};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_and_roles_are_enforced() {
    let setup = start().await;
    let pg = &setup.playground;

    // hz-dc1's agent certificate claiming to be sh-dc1.
    let bundle = &pg.clusters["hz-dc1"].tls_dir;
    let read = |file: &str| std::fs::read_to_string(bundle.join(file)).expect("bundle file");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("agent.pem"), read("agent-key.pem")));
    let channel = Endpoint::from_shared(pg.hub_url.clone())
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS handshake");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            cluster: "sh-dc1".into(),
            agent_version: "test".into(),
            inventory: vec![],
            accepts_batches: false,
        })),
    })
    .await
    .expect("queue hello");
    let refused = AgentLinkClient::new(channel.clone())
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let status = refused.expect_err("another cluster's identity must be refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains("hz-dc1"), "{status}");
    // An agent certificate cannot use the operators' API either.
    let denied = FederationClient::new(channel)
        .list_clusters(pb::ListClustersRequest {})
        .await
        .expect_err("agents are not operators");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // A viewer reads but cannot continue (nor apply).
    let mut operator = pg.client(Role::Operator).await.expect("operator");
    apply_yaml(&mut operator, DEMO_YAML).await.expect("apply");
    let mut viewer = pg.client(Role::Viewer).await.expect("viewer");
    let reference = deployment("finance", "payments");
    viewer
        .get_status(reference.clone())
        .await
        .expect("viewers read");
    let denied = viewer
        .r#continue(command(&reference, None))
        .await
        .expect_err("viewers cannot continue");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let (code, _, stderr) = cafectl(pg, Role::Viewer, &["continue", "payments", "-n", "finance"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("permission denied"), "{stderr}");

    // No client certificate: the TLS handshake fails, so no call gets through.
    let config = CafectlConfig::load(&pg.cafectl_config(Role::Admin)).expect("config");
    let ca = std::fs::read_to_string(&config.ca).expect("ca");
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(cafe_federation::tls::HUB_TLS_DOMAIN);
    let result = async {
        let channel = Endpoint::from_shared(pg.hub_url.clone())?
            .tls_config(anonymous)?
            .connect()
            .await?;
        FederationClient::new(channel)
            .list_clusters(pb::ListClustersRequest {})
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    assert!(
        result.is_err(),
        "a client without a certificate got an answer"
    );
    setup.playground.shutdown().await;
}
