//! A gateway in a process of its own (the `gateway-under-test` binary), for tests that kill it
//! with -9 and start it again on the same data.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::HttpClient;

/// A running gateway process; killed (and reaped) when dropped, so that a failed assertion
/// leaves none running.
#[derive(Debug)]
pub struct ProcessGateway {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for ProcessGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProcessGateway {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_gateway-under-test")`) on `config`,
    /// listening on `port`, and returns once it answers ready.
    pub async fn start(binary: &str, config: &Path, port: u16) -> Self {
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the gateway");
        assert!(
            until_ready(port, Duration::from_secs(30)).await,
            "the gateway did not come up"
        );
        Self { child, port }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// The URL of `path` on it (loopback).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Waits (up to `within`) until the gateway on loopback `port` answers `/readyz` with 200:
/// ready, not just alive (while it starts the port answers `503 starting`). False if it never
/// did.
pub async fn until_ready(port: u16, within: Duration) -> bool {
    let client = HttpClient::new();
    let deadline = Instant::now() + within;
    while !client
        .get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .is_ok_and(|r| r.status == 200)
    {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
