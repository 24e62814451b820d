//! Log lines as an operator's collector sees them: the real binary, stderr to a pipe.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use odoo_gateway_tests::process::until_ready;

/// Starts the gateway with `format`, waits until it is ready, stops it, returns its stderr.
async fn logs_of(format: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"data\"\n\n[[sources]]\nname = \"odoo\"\ntokens = [\"logs-token-0123456789\"]\n",
    )
    .expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["--log-format", format, "serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    assert!(
        until_ready(port, Duration::from_secs(30)).await,
        "the gateway did not come up"
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    stderr
}

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let logs = logs_of("text").await;
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escape in {logs:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let logs = logs_of("json").await;
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}
