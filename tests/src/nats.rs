//! A real NATS server with JetStream for the tests of the shared control plane: Debian's
//! `nats-server`, on a free loopback port, its store in a temporary folder, killed on drop.
//!
//! A missing `nats-server` is a failure, not a skip (`./dev test` installs it).

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::harness::free_port;

/// How long the server may take to accept connections with JetStream on.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a cluster may take to elect its JetStream leader.
const CLUSTER_READY_WITHIN: Duration = Duration::from_secs(30);

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
            let port = free_port();
            let mut child = spawn(port, store.path(), &[])?;
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

    /// What the server says of JetStream stream `stream` (`$JS.API.STREAM.INFO`), if it
    /// answers.
    pub fn stream_info(&self, stream: &str) -> Option<serde_json::Value> {
        request(self.port, &format!("$JS.API.STREAM.INFO.{stream}"))
    }

    /// What the server says of consumer `consumer` of stream `stream`, if it answers.
    pub fn consumer_info(&self, stream: &str, consumer: &str) -> Option<serde_json::Value> {
        request(
            self.port,
            &format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
        )
    }

    /// The server's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL), as a crash would; its store stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store (killing it first if it runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn(self.port, self.store.path(), &[])?;
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

fn spawn(port: u16, store: &std::path::Path, extra: &[String]) -> anyhow::Result<Child> {
    Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
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

/// Three `nats-server -js` nodes in one JetStream cluster, for buckets with three replicas.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    child: Child,
    port: u16,
    args: Vec<String>,
    store: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts the three nodes, routed to each other, and waits until each accepts clients.
    pub fn start() -> anyhow::Result<Self> {
        // Ports the kernel just gave out and took back; another process (or one of the nodes'
        // own route connections) taking one in between makes a node exit, and the next try
        // picks others.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the nats-server cluster did not start")))
    }

    fn start_once() -> anyhow::Result<Self> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (port, cluster)) in ports.iter().enumerate() {
            let args = vec![
                "--server_name".to_owned(),
                format!("n{i}"),
                "--cluster_name".to_owned(),
                "gateway-tests".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{cluster}"),
                "--routes".to_owned(),
                routes.clone(),
            ];
            let store = tempfile::tempdir()?;
            let child = spawn(*port, store.path(), &args)?;
            nodes.push(Node {
                child,
                port: *port,
                args,
                store,
            });
        }
        let mut cluster = Self { nodes };
        for node in &mut cluster.nodes {
            wait_ready(&mut node.child, node.port)?;
        }
        cluster.wait_jetstream()?;
        Ok(cluster)
    }

    /// Waits until every live node answers JetStream requests (the cluster has elected its
    /// leader) and the cluster can place a stream on all its nodes (each has told the leader
    /// it is there: until then creating a three-replica stream fails with "no suitable peers
    /// for placement").
    fn wait_jetstream(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_WITHIN;
        for node in &self.nodes {
            while !jetstream_answers(node.port) {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the JetStream cluster did not elect a leader within {CLUSTER_READY_WITHIN:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let probe = format!(
            r#"{{"name":"ready_probe","subjects":["ready_probe.>"],"storage":"memory","num_replicas":{}}}"#,
            self.nodes.len()
        );
        let port = self.nodes[0].port;
        loop {
            let answer = request_with(port, "$JS.API.STREAM.CREATE.ready_probe", &probe);
            if answer.as_ref().is_some_and(|a| a.get("error").is_none()) {
                let _ = request(port, "$JS.API.STREAM.DELETE.ready_probe");
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the JetStream cluster cannot place a stream on its {} nodes within {CLUSTER_READY_WITHIN:?}: {answer:?}",
                self.nodes.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Kills node `i` (SIGKILL); its store stays.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let _ = node.child.kill();
        let _ = node.child.wait();
    }

    /// Starts node `i` again on its ports and store, and waits until it answers JetStream
    /// requests again.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let node = &mut self.nodes[i];
        node.child = spawn(node.port, node.store.path(), &node.args)?;
        wait_ready(&mut node.child, node.port)?;
        self.wait_jetstream()
    }

    /// Which node leads JetStream stream `stream` (asked of the first live node), if one does.
    pub fn leader_of(&self, stream: &str) -> Option<usize> {
        let info = self
            .nodes
            .iter()
            .find_map(|n| request(n.port, &format!("$JS.API.STREAM.INFO.{stream}")))?;
        let leader = info["cluster"]["leader"].as_str()?;
        let index = leader.strip_prefix('n')?.parse().ok()?;
        (index < self.nodes.len()).then_some(index)
    }

    /// The engine of gateways sharing the cluster's buckets under `prefix`, three replicas.
    pub fn engine<'a>(&'a self, prefix: &'a str) -> Engine<'a> {
        Engine::NatsCluster {
            cluster: self,
            prefix,
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
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
    /// The buckets of a three-node `cluster`, three replicas each, under `prefix`.
    NatsCluster {
        /// The cluster.
        cluster: &'a NatsCluster,
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
            Self::NatsCluster { cluster, prefix } => format!(
                "[storage]\npath = \"{path}\"\nengine = \"nats\"\n[storage.nats]\nurls = [{}]\nbucket_prefix = \"{prefix}\"\nreplicas = 3\n",
                cluster
                    .urls()
                    .iter()
                    .map(|u| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// A short name, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Nats { .. } | Self::NatsCluster { .. } => "nats",
        }
    }
}

/// Whether the server on `port` answers a JetStream account request without an error, over
/// the plain NATS protocol.
fn jetstream_answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = b"CONNECT {\"verbose\":false}\r\nSUB _INBOX.ready 1\r\nPUB $JS.API.INFO _INBOX.ready 0\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&seen);
        if text.contains("account_info_response") {
            return !text.contains("\"error\"");
        }
    }
    false
}

/// A request with an empty body to `subject` on the server on `port`, over the plain NATS
/// protocol; the JSON answer, or `None` when none came within a second.
fn request(port: u16, subject: &str) -> Option<serde_json::Value> {
    request_with(port, subject, "")
}

/// A request with `body` to `subject` on the server on `port`, as [`request`].
fn request_with(port: u16, subject: &str, body: &str) -> Option<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let request = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.ask 1\r\nPUB {subject} _INBOX.ask {}\r\n{body}\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        // `MSG _INBOX.ask 1 <length>\r\n<payload>\r\n`
        let Some(start) = find(&seen, b"MSG _INBOX.ask 1 ") else {
            continue;
        };
        let Some(eol) = find(&seen[start..], b"\r\n").map(|e| start + e) else {
            continue;
        };
        let header = std::str::from_utf8(&seen[start..eol]).ok()?;
        let length: usize = header.rsplit(' ').next()?.parse().ok()?;
        let payload = eol + 2;
        if seen.len() >= payload + length {
            return serde_json::from_slice(&seen[payload..payload + length]).ok();
        }
    }
    None
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
