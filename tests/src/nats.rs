//! A real NATS server with JetStream for the tests of the shared control plane: Debian's
//! `nats-server`, on a free loopback port, its store in a temporary folder, killed on drop.
//!
//! A missing `nats-server` is a failure, not a skip (`./dev test` installs it).

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long the server may take to accept connections with JetStream on.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections and announces JetStream.
    pub fn start() -> anyhow::Result<Self> {
        let store = tempfile::tempdir()?;
        let mut last = None;
        // A port the kernel just gave out and took back; another process taking it in between
        // makes the server exit, and the next try picks another.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut child = spawn(port, store.path())?;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return Ok(Self { child, port, store });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// Kills the server (SIGKILL), as a crash would; its store stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store (killing it first if it runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn(self.port, self.store.path())?;
        wait_ready(&mut self.child, self.port)
    }

    /// The engine of gateways sharing this server's buckets under `prefix`.
    pub fn engine<'a>(&'a self, prefix: &'a str) -> Engine<'a> {
        Engine::Nats {
            server: self,
            prefix,
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16, store: &std::path::Path) -> anyhow::Result<Child> {
    Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run `nats-server`: install it (Debian's nats-server; ./dev test does)")
}

/// Waits for the server's `INFO` line with JetStream enabled.
fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("nats-server exited at start-up: {status}");
        }
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok()
                && line.starts_with("INFO ")
                && line.contains("\"jetstream\":true")
            {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nats-server did not accept connections within {READY_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which control plane a test gateway runs on.
#[derive(Debug, Clone, Copy)]
pub enum Engine<'a> {
    /// The instance's own sled database (the default).
    Sled,
    /// The shared buckets of `server` under `prefix` (instances with one prefix share them).
    Nats {
        /// The server.
        server: &'a NatsServer,
        /// The bucket prefix.
        prefix: &'a str,
    },
}

impl Engine<'_> {
    /// The `[storage]` table (and `[storage.nats]`) for this engine, with the sled folder
    /// `path`.
    pub fn storage_toml(&self, path: &str) -> String {
        match self {
            Self::Sled => format!("[storage]\npath = \"{path}\"\n"),
            Self::Nats { server, prefix } => format!(
                "[storage]\npath = \"{path}\"\nengine = \"nats\"\n[storage.nats]\nurls = [\"{}\"]\nbucket_prefix = \"{prefix}\"\n",
                server.url()
            ),
        }
    }

    /// A short name, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Nats { .. } => "nats",
        }
    }
}
