//! The TLS layer end to end: the files `init` and `issue-*` write, and a real tonic server over
//! mTLS on loopback that reads its peers' identities from their certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cafe_federation::names::ClusterName;
use cafe_federation::tls::{
    self, CafectlConfig, CertificateAuthority, HUB_TLS_DOMAIN, Identity, InitOptions, Role,
    TlsMaterial,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// How long any single connection attempt or call may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

const KEY_FILES: [&str; 5] = [
    "ca-key.pem",
    "hub-key.pem",
    "admin-key.pem",
    "operator-key.pem",
    "viewer-key.pem",
];
const PUBLIC_FILES: [&str; 8] = [
    "ca.pem",
    "hub.pem",
    "admin.pem",
    "operator.pem",
    "viewer.pem",
    "cafectl.yaml",
    "cafectl-operator.yaml",
    "cafectl-viewer.yaml",
];

fn init(dir: &Path) -> tls::InitReport {
    tls::init(&InitOptions::new(dir)).unwrap()
}

fn cluster(name: &str) -> ClusterName {
    name.parse().unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_every_file_with_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let report = init(&hub_dir);

    let mut expected: Vec<_> = KEY_FILES
        .iter()
        .chain(&PUBLIC_FILES)
        .map(|name| hub_dir.join(name))
        .collect();
    expected.sort();
    let mut written = report.files.clone();
    written.sort();
    assert_eq!(written, expected);
    assert_eq!(report.admin_config, hub_dir.join("cafectl.yaml"));
    #[cfg(unix)]
    {
        for name in KEY_FILES {
            assert_eq!(mode(&hub_dir.join(name)), 0o600, "{name}");
        }
        for name in PUBLIC_FILES {
            assert_eq!(mode(&hub_dir.join(name)), 0o644, "{name}");
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&hub_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    for (file, role) in [
        ("cafectl.yaml", Role::Admin),
        ("cafectl-operator.yaml", Role::Operator),
        ("cafectl-viewer.yaml", Role::Viewer),
    ] {
        assert_eq!(tls::config_file_name(role), file);
        let config = CafectlConfig::load(&hub_dir.join(file)).unwrap();
        assert_eq!(
            config,
            CafectlConfig {
                hub: tls::DEFAULT_HUB_URL.into(),
                hubs: Vec::new(),
                ca: hub_dir.join("ca.pem"),
                cert: hub_dir.join(format!("{role}.pem")),
                key: hub_dir.join(format!("{role}-key.pem")),
                tls_server_name: None,
            }
        );
        let material = TlsMaterial::load(&config.ca, &config.cert, &config.key).unwrap();
        assert_eq!(
            material.identity().unwrap(),
            Identity::User {
                name: role.as_str().into(),
                role
            }
        );
    }
    // The written config is relative, so the directory can move.
    let text = std::fs::read_to_string(hub_dir.join("cafectl.yaml")).unwrap();
    assert_eq!(
        text,
        "hub: https://127.0.0.1:7443\nca: ca.pem\ncert: admin.pem\nkey: admin-key.pem\n"
    );
}

#[test]
fn init_refuses_to_replace_a_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let before: Vec<_> = PUBLIC_FILES
        .iter()
        .chain(&KEY_FILES)
        .map(|name| std::fs::read(dir.path().join(name)).unwrap())
        .collect();

    let err = tls::init(&InitOptions::new(dir.path())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} already exists: refusing to replace the certificate authority (every certificate \
             it issued would stop working); pass --force to replace it",
            dir.path().join("ca.pem").display()
        )
    );
    let after: Vec<_> = PUBLIC_FILES
        .iter()
        .chain(&KEY_FILES)
        .map(|name| std::fs::read(dir.path().join(name)).unwrap())
        .collect();
    assert!(before == after, "a refused init changed files");

    // A lone CA key counts as a CA too.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("ca-key.pem"), "x").unwrap();
    let err = tls::init(&InitOptions::new(other.path())).unwrap_err();
    assert!(
        err.to_string().contains("ca-key.pem already exists"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 1);

    let forced = tls::init(&InitOptions {
        force: true,
        ..InitOptions::new(dir.path())
    })
    .unwrap();
    assert_eq!(forced.files.len(), PUBLIC_FILES.len() + KEY_FILES.len());
    assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), before[0]);
}

#[test]
fn init_rejects_bad_options_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let err = tls::init(&InitOptions {
        hub_hosts: vec!["hub_1".into()],
        ..InitOptions::new(dir.path())
    })
    .unwrap_err();
    assert!(err.to_string().starts_with("hub host \"hub_1\""), "{err}");
    let err = tls::init(&InitOptions {
        hub_url: "127.0.0.1:7443".into(),
        ..InitOptions::new(dir.path())
    })
    .unwrap_err();
    assert!(err.to_string().contains("invalid hub URL"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn issued_agents_and_users_carry_their_identity() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());

    let bundle = tls::issue_agent(dir.path(), &cluster("eu-1a"), None).unwrap();
    assert_eq!(bundle.dir, dir.path().join("agents/eu-1a"));
    let agent = TlsMaterial::load(&bundle.ca, &bundle.cert, &bundle.key).unwrap();
    assert_eq!(
        agent.identity().unwrap(),
        Identity::Agent {
            cluster: cluster("eu-1a")
        }
    );
    assert_eq!(
        agent.ca_pem,
        std::fs::read_to_string(dir.path().join("ca.pem")).unwrap()
    );
    #[cfg(unix)]
    assert_eq!(mode(&bundle.key), 0o600);

    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("tls");
    let bundle = tls::issue_agent(dir.path(), &cluster("us-2"), Some(&out)).unwrap();
    assert_eq!(bundle.dir, out);
    assert_eq!(bundle.cert, out.join("agent.pem"));

    let user = tls::issue_user(dir.path(), "alice", Role::Operator, None).unwrap();
    assert_eq!(user.dir, dir.path().join("users/alice"));
    let config = CafectlConfig::load(user.config.as_ref().unwrap()).unwrap();
    assert_eq!(config.hub, tls::DEFAULT_HUB_URL);
    let material = TlsMaterial::load(&config.ca, &config.cert, &config.key).unwrap();
    assert_eq!(
        material.identity().unwrap(),
        Identity::User {
            name: "alice".into(),
            role: Role::Operator
        }
    );

    let err = tls::issue_user(dir.path(), "../alice", Role::Admin, None).unwrap_err();
    assert!(err.to_string().starts_with("invalid user name"), "{err}");

    let no_ca = tempfile::tempdir().unwrap();
    let err = tls::issue_agent(no_ca.path(), &cluster("a"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read {}", no_ca.path().join("ca.pem").display())
    );
}

/// A hub stand-in: the standard health service over mTLS behind an interceptor that reads the
/// peer's identity, records it, and lets agents and operators through but not viewers.
struct TestHub {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Identity>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestHub {
    async fn start(dir: &Path) -> Self {
        Self::start_with(tls::hub_tls_files(dir)).await
    }

    /// A hub serving the TLS files `files` (CA, certificate, key) the way `cafe-hub serve` does:
    /// read again when they change.
    async fn start_with(files: [std::path::PathBuf; 3]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let interceptor = move |request: Request<()>| -> Result<Request<()>, Status> {
            let identity = tls::peer_identity(&request)?;
            recorder.lock().unwrap().push(identity.clone());
            if let Identity::User { .. } = identity {
                tls::authorize(&request, Role::Operator)?;
            }
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = Server::builder().add_service(InterceptedService::new(health, interceptor));
        let stop = tokio_util::sync::CancellationToken::new();
        let incoming = tls::tls_incoming(
            Arc::new(listener),
            Arc::new(tls::ReloadingServerTls::load(files).unwrap()),
            stop.clone(),
        );
        let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.await;
            stop.cancel();
        }));
        Self {
            addr,
            seen,
            shutdown: Some(shutdown),
            task,
        }
    }

    fn seen(&self) -> Vec<Identity> {
        self.seen.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Why a health check did not succeed.
#[derive(Debug)]
enum Refused {
    /// The connection (TCP or TLS) failed.
    Connect(tonic::transport::Error),
    /// The call failed: a handshake the server completed differently, or the interceptor.
    Call(Status),
}

async fn health_check(addr: SocketAddr, tls: ClientTlsConfig) -> Result<(), Refused> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    check_health(endpoint.connect()).await
}

/// Connects (`channel`) and asks for the server's health, within [`DEADLINE`].
async fn check_health(
    channel: impl std::future::Future<
        Output = Result<tonic::transport::Channel, tonic::transport::Error>,
    >,
) -> Result<(), Refused> {
    let attempt = async {
        let channel = channel.await.map_err(Refused::Connect)?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(drop)
            .map_err(Refused::Call)
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .expect("the health check finishes before the deadline")
}

fn config_for(dir: &Path, role: Role) -> ClientTlsConfig {
    CafectlConfig::load(&dir.join(tls::config_file_name(role)))
        .unwrap()
        .client_tls_config()
        .unwrap()
}

#[tokio::test]
async fn mtls_server_sees_and_checks_peer_identities() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let hub = TestHub::start(dir.path()).await;

    // An operator and an admin get through, and the server sees who they are.
    for role in [Role::Operator, Role::Admin] {
        health_check(hub.addr, config_for(dir.path(), role))
            .await
            .unwrap();
        assert_eq!(
            hub.seen().last(),
            Some(&Identity::User {
                name: role.as_str().into(),
                role
            })
        );
    }

    // A viewer is authenticated but not allowed by this interceptor.
    let err = health_check(hub.addr, config_for(dir.path(), Role::Viewer))
        .await
        .unwrap_err();
    match err {
        Refused::Call(status) => {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(
                status.message().contains("needs the operator role"),
                "{status:?}"
            );
        }
        Refused::Connect(err) => panic!("a viewer should connect: {err:?}"),
    }
    assert_eq!(
        hub.seen().last(),
        Some(&Identity::User {
            name: "viewer".into(),
            role: Role::Viewer
        })
    );

    // An agent certificate for cluster A is the agent of cluster A, from files and from memory.
    let bundle = tls::issue_agent(dir.path(), &cluster("a"), None).unwrap();
    let agent_tls =
        tls::client_tls_config(&bundle.ca, &bundle.cert, &bundle.key, Some(HUB_TLS_DOMAIN))
            .unwrap();
    health_check(hub.addr, agent_tls).await.unwrap();
    assert_eq!(
        hub.seen().last(),
        Some(&Identity::Agent {
            cluster: cluster("a")
        })
    );
    let ca = tls::load_ca(dir.path()).unwrap();
    let in_memory = ca
        .issue_client(&Identity::Agent {
            cluster: cluster("b"),
        })
        .unwrap();
    health_check(
        hub.addr,
        in_memory.client_tls_config(HUB_TLS_DOMAIN).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        hub.seen().last(),
        Some(&Identity::Agent {
            cluster: cluster("b")
        })
    );

    // The hub certificate is valid for its default hosts too.
    let admin = CafectlConfig::load(&dir.path().join("cafectl.yaml")).unwrap();
    let by_host =
        tls::client_tls_config(&admin.ca, &admin.cert, &admin.key, Some("localhost")).unwrap();
    health_check(hub.addr, by_host).await.unwrap();
    assert_eq!(hub.seen().len(), 6);
    hub.stop().await;
}

#[tokio::test]
async fn mtls_server_refuses_clients_without_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let hub = TestHub::start(dir.path()).await;
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();

    // No client certificate: the handshake fails (TLS 1.3 may report it on the first call).
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name(HUB_TLS_DOMAIN);
    let err = health_check(hub.addr, anonymous).await.unwrap_err();
    assert_refused_by_tls(&err, "CertificateRequired");

    // A certificate from another CA, with a perfectly good subject.
    let stranger = CertificateAuthority::generate()
        .unwrap()
        .issue_client(&Identity::User {
            name: "admin".into(),
            role: Role::Admin,
        })
        .unwrap();
    let stranger = TlsMaterial {
        ca_pem: ca_pem.clone(),
        ..stranger
    };
    let err = health_check(
        hub.addr,
        stranger.client_tls_config(HUB_TLS_DOMAIN).unwrap(),
    )
    .await
    .unwrap_err();
    // Same issuer name, different key: the signature does not verify.
    assert_refused_by_tls(&err, "DecryptError");

    // The hub's own certificate is for serving, not for clients.
    let hub_as_client = tls::client_tls_config(
        &dir.path().join("ca.pem"),
        &dir.path().join("hub.pem"),
        &dir.path().join("hub-key.pem"),
        Some(HUB_TLS_DOMAIN),
    )
    .unwrap();
    let err = health_check(hub.addr, hub_as_client).await.unwrap_err();
    // Its extended key usage is server-auth only.
    assert_refused_by_tls(&err, "UnsupportedCertificate");

    assert!(hub.seen().is_empty(), "{:?}", hub.seen());

    // And the client side: a client that trusts another CA, or expects another name, refuses
    // the hub.
    let admin = CafectlConfig::load(&dir.path().join("cafectl.yaml")).unwrap();
    let admin = TlsMaterial::load(&admin.ca, &admin.cert, &admin.key).unwrap();
    let wrong_ca = TlsMaterial {
        ca_pem: CertificateAuthority::generate()
            .unwrap()
            .cert_pem()
            .to_owned(),
        ..admin.clone()
    };
    let err = health_check(
        hub.addr,
        wrong_ca.client_tls_config(HUB_TLS_DOMAIN).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Refused::Connect(_)), "{err:?}");
    let err = health_check(
        hub.addr,
        admin.client_tls_config("hub.example.com").unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Refused::Connect(_)), "{err:?}");

    assert!(hub.seen().is_empty(), "{:?}", hub.seen());
    hub.stop().await;
}

/// The server refused the client's certificate during the handshake with the TLS alert `alert`:
/// the client saw it either while connecting or (TLS 1.3, where the client finishes its part of
/// the handshake first) on its first call, which then never reached the service.
fn assert_refused_by_tls(err: &Refused, alert: &str) {
    if let Refused::Call(status) = err {
        assert_eq!(status.code(), Code::Unknown, "{status:?}");
    }
    // The alert is only visible deep in the source chain; its debug form shows it all.
    let expected = format!("received fatal alert: {alert}");
    assert!(
        format!("{err:?}").contains(&expected),
        "expected {expected}, got {err:?}"
    );
}

/// Dials `addr` whatever host the URL names: the test's stand-in for DNS resolving a bank's hub
/// name to this machine.
#[derive(Clone)]
struct ResolveTo(SocketAddr);

impl tower_service::Service<tonic::codegen::http::Uri> for ResolveTo {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(
                tokio::net::TcpStream::connect(addr).await?,
            ))
        })
    }
}

/// cafectl's own endpoint for a configuration naming `url` (and `server_name`), dialled at `addr`:
/// whether a health check gets through.
async fn cafectl_reaches(
    dir: &Path,
    url: &str,
    server_name: Option<&str>,
    addr: SocketAddr,
) -> Result<(), Refused> {
    let mut config = CafectlConfig::load(&dir.join("cafectl.yaml")).unwrap();
    config.hub = url.to_owned();
    config.tls_server_name = server_name.map(str::to_owned);
    let path = dir.join(format!("cafectl-{}.yaml", rand_suffix()));
    tls::write_cafectl_config(&path, &config).unwrap();
    let args = cafe_federation::cli::HubArgs {
        config: Some(path),
        hub: None,
        insecure: false,
    };
    let (_, endpoint) = args.replica_endpoints().unwrap().remove(0);
    check_health(endpoint.connect_with_connector(ResolveTo(addr))).await
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn cafectl_verifies_the_hub_as_the_url_host_or_its_tls_server_name() {
    let dir = tempfile::tempdir().unwrap();
    tls::init(&InitOptions {
        hub_hosts: vec!["hub.bank.example".into()],
        hub_url: "https://hub.bank.example:7443".into(),
        ..InitOptions::new(dir.path())
    })
    .unwrap();
    let hub = TestHub::start(dir.path()).await;
    let port = hub.addr.port();

    // The bank's name in the URL, resolved to this machine: accepted.
    let url = format!("https://hub.bank.example:{port}");
    cafectl_reaches(dir.path(), &url, None, hub.addr)
        .await
        .unwrap();
    // Another name, the same server: refused by cafectl before any call.
    let other = format!("https://hub.other.example:{port}");
    let refused = cafectl_reaches(dir.path(), &other, None, hub.addr).await;
    assert!(matches!(refused, Err(Refused::Connect(_))), "{refused:?}");
    // An address the certificate does not carry fails, unless tlsServerName names the hub.
    let by_address = format!("https://127.0.0.1:{port}");
    let refused = cafectl_reaches(dir.path(), &by_address, None, hub.addr).await;
    assert!(matches!(refused, Err(Refused::Connect(_))), "{refused:?}");
    cafectl_reaches(dir.path(), &by_address, Some("hub.bank.example"), hub.addr)
        .await
        .unwrap();
    let refused =
        cafectl_reaches(dir.path(), &by_address, Some("hub.other.example"), hub.addr).await;
    assert!(matches!(refused, Err(Refused::Connect(_))), "{refused:?}");
    assert_eq!(hub.seen().len(), 2);
    hub.stop().await;
}

#[tokio::test]
async fn a_rotated_hub_certificate_serves_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let hub = TestHub::start(dir.path()).await;
    let admin = CafectlConfig::load(&dir.path().join("cafectl.yaml")).unwrap();
    let as_name = |name: &str| {
        tls::client_tls_config(&admin.ca, &admin.cert, &admin.key, Some(name)).unwrap()
    };
    health_check(hub.addr, as_name("localhost")).await.unwrap();
    let refused = health_check(hub.addr, as_name("hub.rotated.example")).await;
    assert!(matches!(refused, Err(Refused::Connect(_))), "{refused:?}");

    // A renewed certificate for another name, from the same CA, written over the old files.
    let renewed = tls::load_ca(dir.path())
        .unwrap()
        .issue_hub(&["hub.rotated.example".to_owned()])
        .unwrap();
    std::fs::write(dir.path().join("hub-key.pem"), &renewed.key_pem).unwrap();
    std::fs::write(dir.path().join("hub.pem"), &renewed.cert_pem).unwrap();

    // The very next connection gets it; the server never restarted.
    health_check(hub.addr, as_name("hub.rotated.example"))
        .await
        .unwrap();
    let refused = health_check(hub.addr, as_name("localhost")).await;
    assert!(matches!(refused, Err(Refused::Connect(_))), "{refused:?}");

    // A broken file keeps the last good certificate serving.
    std::fs::write(dir.path().join("hub.pem"), "not a certificate").unwrap();
    health_check(hub.addr, as_name("hub.rotated.example"))
        .await
        .unwrap();
    hub.stop().await;
}

#[tokio::test]
async fn the_hub_serves_a_cert_manager_secret_and_an_existing_ca() {
    // The bank's CA, from outside cafe: init issues from it, and copies it for issue-agent.
    let outside = tempfile::tempdir().unwrap();
    let bank_ca = CertificateAuthority::generate().unwrap();
    let (ca_cert, ca_key) = (outside.path().join("ca.crt"), outside.path().join("ca.key"));
    std::fs::write(&ca_cert, bank_ca.cert_pem()).unwrap();
    std::fs::write(&ca_key, bank_ca.key_pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tls::init(&InitOptions {
        ca: Some((ca_cert.clone(), ca_key)),
        ..InitOptions::new(dir.path())
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        bank_ca.cert_pem()
    );

    // The hub's certificate as a kubernetes.io/tls Secret mounts it (cert-manager's layout).
    let secret = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("ca.pem", "ca.crt"),
        ("hub.pem", "tls.crt"),
        ("hub-key.pem", "tls.key"),
    ] {
        std::fs::copy(dir.path().join(from), secret.path().join(to)).unwrap();
    }
    assert_eq!(
        tls::hub_tls_files(secret.path()),
        ["ca.crt", "tls.crt", "tls.key"].map(|f| secret.path().join(f))
    );
    let hub = TestHub::start(secret.path()).await;
    // Clients from the same CA (an agent issued later included) reach it.
    health_check(hub.addr, config_for(dir.path(), Role::Operator))
        .await
        .unwrap();
    let bundle = tls::issue_agent(dir.path(), &cluster("a"), None).unwrap();
    let agent = tls::client_tls_config(&bundle.ca, &bundle.cert, &bundle.key, None).unwrap();
    health_check(hub.addr, agent).await.unwrap();
    // Verified by the bank's CA certificate itself.
    let material = TlsMaterial::load(&ca_cert, &bundle.cert, &bundle.key).unwrap();
    health_check(hub.addr, material.client_tls_config("localhost").unwrap())
        .await
        .unwrap();
    hub.stop().await;
}
