//! `openapi.json` against the running gateway, by a schema-based fuzzer: schemathesis (from
//! PyPI, pinned and installed by `./dev` into `target/toolchains/python`) generates requests
//! from the document, valid and invalid, and checks every answer against it: status codes,
//! headers and bodies as documented, valid data accepted, invalid data refused, no 5xx, links
//! followed from a created subscription (stateful phase), credentials never ignored.
//!
//! Deterministic (`--generation-deterministic`, which also keeps no example database) and bounded
//! (`--max-examples`), so CI sees the same run every time.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use odoo_gateway_tests::{HttpClient, TestGateway, workspace};
use sha2::Digest as _;

/// Test cases per operation and phase: enough to walk every constraint of the document,
/// small enough for about a minute on 2 cores.
const MAX_EXAMPLES: &str = "75";
/// The whole run may not take longer than this.
const DEADLINE: Duration = Duration::from_secs(300);

const CLIENT: (&str, &str) = ("fuzz-client", "fuzz-secret-0123456789");

fn config() -> String {
    let hash = hex::encode(sha2::Sha256::digest(CLIENT.1.as_bytes()));
    format!(
        r#"
[server]
admin_token = "admin-token-0123456789"
[storage]
path = "data"
[delivery]
retries = 0
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["fuzz-token-0123456789"]
[[apps]]
name = "fuzz"
scopes = ["read", "write"]
oauth2_client_id = "{id}"
oauth2_client_secret_sha256 = "{hash}"
rate_limit_per_minute = 1000000
token_rate_limit_per_minute = 1000000
events = ["*"]
"#,
        id = CLIENT.0,
    )
}

fn schemathesis() -> PathBuf {
    let path = workspace().join("target/toolchains/python/bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: `./dev test` installs it (pinned, from PyPI)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_gateway_answers_as_openapi_json_says() {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1));
    let reply = client
        .send(
            "POST",
            &gateway.url("/oauth2/token"),
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials".to_vec(),
        )
        .await
        .expect("token");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let token = reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();

    let root = workspace();
    let run = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(root.join("openapi.json"))
        .args(["--url", &gateway.url("")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        // Uploads need a real component; tests/tests/api/plugins.rs covers them.
        .args(["--exclude-operation-id", "uploadPlugin"])
        .args(["--max-examples", MAX_EXAMPLES])
        .arg("--generation-deterministic")
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--no-color", "--output-truncate", "false"])
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/schemathesis/hooks.py"),
        )
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("schemathesis finished in time")
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found mismatches:\n{report}"
    );
    // A run that tested nothing would also succeed: it must have reached the operations.
    assert!(report.contains("Tested: 23"), "{report}");
    gateway.stop().await.expect("stop");
}
