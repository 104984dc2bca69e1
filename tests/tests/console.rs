//! `cafectl dashboard` in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser/console.cjs`), against consoles with an admin's and a viewer's
//! credentials on the playground. The page lists the paused release, a confirmed Continue moves
//! it to group 1 without a reload and at the cost of that one call, a viewer's Continue is refused
//! with the hub's message, and an evacuation shows on the map. Closing the page releases its
//! watch streams.
//!
//! scripts/test.sh installs Chromium and playwright-core and sets `CAFE_NODE_MODULES`.

mod common;

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{apply_yaml, awaiting_confirm, deployment, settled, wait_status};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::{BINARY, STEP, cafectl};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The unit the page evacuates.
const UNIT: &str = "hz-az2";

/// The browser's whole run may take this long.
const BROWSER_DEADLINE: Duration = Duration::from_secs(400);

/// A `cafectl dashboard` process, stopped when dropped.
struct Console {
    child: Child,
    url: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a console with `role`'s credentials on a free port, and reads its URL from the line it
/// prints once it listens.
fn console(playground: &Playground, role: Role) -> Console {
    let mut child = Command::new(BINARY)
        .arg("ctl")
        .arg("--config")
        .arg(playground.cafectl_config(role))
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cafectl dashboard starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the console's first line");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    Console { child, url }
}

/// Opens the event stream as a page does, waits for its first status, sends SIGINT, and waits for
/// the console to exit.
async fn stops_on_ctrl_c_with_a_stream_open(console: &mut Console) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = console
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the console");
    let request =
        format!("GET /api/watch?deployments=finance/payments HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(STEP, async {
        while !String::from_utf8_lossy(&seen).contains("event: status") {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(
                n > 0,
                "the stream ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("a status event");
    let pid = console.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = console.child.try_wait().expect("wait") {
            assert!(exit.success(), "the console exited with {exit}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console did not stop on SIGINT with a stream open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where the screenshots go: `CAFE_SCREENSHOTS` (the README's come from `docs/console`), else a
/// temporary directory.
fn screenshots(dir: &Path) -> PathBuf {
    std::env::var_os("CAFE_SCREENSHOTS").map_or_else(|| dir.join("screenshots"), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_drives_a_release_live() {
    let Some(node_modules) = std::env::var_os("CAFE_NODE_MODULES") else {
        eprintln!("skipped: CAFE_NODE_MODULES (where playwright-core is installed) is not set");
        return;
    };
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "CAFE_NODE_MODULES is set but /usr/bin/chromium is missing: scripts/test.sh installs it"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_port = cafe_sim::control_plane::free_port().expect("port");
    let mut options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    options.hub_args = vec![
        "--metrics-listen".to_owned(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let pg = Playground::start(options)
        .await
        .expect("the playground starts");
    let mut client = pg.client(Role::Operator).await.expect("client");

    // Two deployments: the demo's, which the page releases, and a second one it only lists.
    let ledger = DEMO_YAML
        .replace("name: payments", "name: ledger")
        .replace("app: payments", "app: ledger")
        .replace("replicas: 10", "replicas: 4")
        .replace("payments:1.0.0", "ledger:1.0.0");
    apply_yaml(&mut client, DEMO_YAML).await.expect("apply");
    apply_yaml(&mut client, &ledger)
        .await
        .expect("apply ledger");
    let payments = deployment("finance", "payments");
    for reference in [&payments, &deployment("finance", "ledger")] {
        wait_status(&mut client, reference, STEP, |_| {}, settled)
            .await
            .expect("1.0.0 everywhere");
    }
    apply_yaml(
        &mut client,
        &DEMO_YAML.replace("payments:1.0.0", "payments:1.1.0"),
    )
    .await
    .expect("apply 1.1.0");
    wait_status(&mut client, &payments, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 0 waits for confirmation");
    // A blue-green release whose group 0 preview is ready.
    let checkout = deployment("finance", "checkout");
    apply_yaml(&mut client, cafe_tests::demo::BLUE_GREEN_YAML)
        .await
        .expect("apply checkout");
    wait_status(&mut client, &checkout, STEP, |_| {}, settled)
        .await
        .expect("checkout 1.0.0 everywhere");
    apply_yaml(
        &mut client,
        &cafe_tests::demo::BLUE_GREEN_YAML.replace("checkout:1.0.0", "checkout:2.0.0"),
    )
    .await
    .expect("apply checkout 2.0.0");
    wait_status(
        &mut client,
        &checkout,
        STEP,
        |_| {},
        |s| s.reason == "AwaitingSwitch" && s.batch == 0,
    )
    .await
    .expect("checkout's preview waits for its switch");
    // A pipeline over the ledger, at its approval gate: Hangzhou first, then the rest.
    apply_yaml(&mut client, cafe_tests::demo::LEDGER_PIPELINE_YAML)
        .await
        .expect("apply the pipeline");
    cafe_tests::driver::poll_until(
        std::time::Instant::now(),
        STEP,
        "the pipeline's gate",
        || async {
            let (_, out, _) = cafectl(
                &pg,
                Role::Viewer,
                &["pipeline", "status", "finance/ledger-q4", "-o", "json"],
            );
            out.contains("\"AwaitingApproval\"")
        },
    )
    .await
    .expect("the pipeline waits for approval");

    let admin = console(&pg, Role::Admin);
    let viewer = console(&pg, Role::Viewer);
    let shots = screenshots(dir.path());
    std::fs::create_dir_all(&shots).expect("the screenshots' directory");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/console.cjs");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let browser = tokio::process::Command::new("node")
        .arg(&script)
        .env("CAFE_NODE_MODULES", &node_modules)
        .env("CONSOLE_URL", &admin.url)
        .env("VIEWER_URL", &viewer.url)
        .env("METRICS_URL", &metrics)
        .env("DEPLOYMENT", "finance/payments")
        .env("OTHER_DEPLOYMENT", "finance/ledger")
        .env("EVACUATE_UNIT", UNIT)
        .env("BLUE_GREEN", "finance/checkout")
        .env("BLUE_GREEN_UNITS", "hz-az1,sh-az1")
        .env("PIPELINE", "finance/ledger-q4")
        .env("SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_DEADLINE, browser)
        .await
        .expect("the browser's run ends in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser's run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("the browser saw: {stdout}");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("its JSON line");

    // The viewer's page showed what cafectl shows a viewer: the hub's own refusal.
    let (code, _, refusal) = cafectl(&pg, Role::Viewer, &["continue", "finance/payments"]);
    assert_eq!(code, 1);
    let refusal = refusal.trim().trim_start_matches("error: ");
    assert_eq!(seen["viewerRefusal"].as_str(), Some(refusal));

    // What the page did, the hub did: group 1 done, the unit evacuated.
    let status = wait_status(&mut client, &payments, STEP, |_| {}, |s| s.batch == 1)
        .await
        .expect("group 1");
    assert_eq!(status.phase, "Paused");
    assert!(
        status.units.iter().any(|u| u.unit == UNIT && u.evacuated),
        "{status:?}"
    );
    let (code, audit, err) = cafectl(&pg, Role::Viewer, &["audit", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("audit JSON");
    let whats: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(
        whats
            .iter()
            .any(|w| w.starts_with("continue finance/payments")),
        "{whats:?}"
    );
    assert!(
        whats.contains(&format!("failover evacuate {UNIT} (console test: evacuate)").as_str()),
        "{whats:?}"
    );
    // The pipeline the page approved: audited with the page's reason, and done in both stages.
    assert!(
        whats.contains(&"pipeline approve finance/ledger-q4 (console test: approve)"),
        "{whats:?}"
    );
    let rows: Vec<&str> = seen["pipeline"]
        .as_array()
        .expect("the pipeline's rows")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.contains("Done") && r.contains("Stable")),
        "{rows:?}"
    );

    // The blue-green switch the page asked for: audited, and group 0 switched.
    assert!(
        whats
            .iter()
            .any(|w| w.starts_with("continue finance/checkout")),
        "{whats:?}"
    );
    assert_eq!(
        seen["blueGreenBefore"],
        serde_json::json!(["PreviewReady", "PreviewReady", "Waiting", "Waiting"])
    );

    // Ctrl-C stops a console even while a page holds its event stream open.
    let mut admin = admin;
    stops_on_ctrl_c_with_a_stream_open(&mut admin).await;

    // With the browser gone, so are its streams.
    cafe_tests::driver::poll_until(
        std::time::Instant::now(),
        STEP,
        "the page's watches closed",
        || {
            let metrics = metrics.clone();
            async move {
                let text = cafe_federation::http_client::get(&metrics, Duration::from_secs(5))
                    .await
                    .map(|r| r.body)
                    .unwrap_or_default();
                text.lines().any(|l| l == "cafe_hub_status_watches 0")
            }
        },
    )
    .await
    .expect("no watch left");
}
