//! The one harness of the end-to-end suites: which engine a gateway runs on ([`Engine`], and
//! [`on_both_engines!`](crate::on_both_engines) to hold both to one scenario), a configuration
//! built in code ([`Config`]) instead of TOML written out by every suite, [`eventually`] for
//! anything that happens in the background, and [`free_port`].

use std::fmt::Write as _;
use std::time::Duration;

pub use crate::nats::{Engine, NatsServer};

/// How long a suite waits for something that happens in the background, unless it says.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` until it returns `Some`, and panics naming `what` after `within`.
pub async fn eventually<T, F>(within: Duration, what: &str, mut f: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Runs the scenario `$scenario(&Engine)` as two tests: `$sled` on the embedded engine and
/// `$nats` on a NATS server of its own, so that both engines are held to one behaviour.
#[macro_export]
macro_rules! on_both_engines {
    ($sled:ident, $nats:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sled() {
            $scenario(&$crate::nats::Engine::Sled).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $nats() {
            let server = $crate::nats::NatsServer::start().expect("nats-server");
            $scenario(&server.engine("t")).await;
        }
    };
}

/// A gateway configuration, built in code and written out as the TOML the gateway reads. The
/// tables come out in the order TOML needs; every method adds to what is there.
#[derive(Debug, Clone)]
pub struct Config {
    storage: String,
    server: Vec<String>,
    delivery: Vec<String>,
    backoff: Vec<String>,
    plugins: Vec<String>,
    loopback: bool,
    rest: String,
}

impl Config {
    /// A configuration on `engine`, its sled folder `data` (relative to the gateway's base).
    pub fn on(engine: &Engine<'_>) -> Self {
        Self {
            storage: engine.storage_toml("data"),
            server: Vec::new(),
            delivery: Vec::new(),
            backoff: Vec::new(),
            // Every suite's gateways share one compilation cache: a plugin is compiled once
            // per run of the suites, not once per gateway.
            plugins: vec![format!(
                "cache_dir = \"{}\"",
                crate::workspace()
                    .join("target/test-plugin-cache")
                    .display()
            )],
            loopback: true,
            rest: String::new(),
        }
    }

    /// A line of `[server]` (`admin_token = "..."`).
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_owned());
        self
    }

    /// A line of `[storage]` (`retention = "1h"`).
    pub fn storage(mut self, line: &str) -> Self {
        // `[storage]` is the first line of the engine's table; the rest follows it.
        self.storage = self
            .storage
            .replacen("[storage]\n", &format!("[storage]\n{line}\n"), 1);
        self
    }

    /// A line of `[delivery]` (`retries = 2`).
    pub fn delivery(mut self, line: &str) -> Self {
        self.delivery.push(line.to_owned());
        self
    }

    /// `[delivery.backoff]`: the schedule, without jitter, so that retries come when asked.
    pub fn backoff(mut self, schedule: &[&str]) -> Self {
        let steps: Vec<String> = schedule.iter().map(|s| format!("\"{s}\"")).collect();
        self.backoff = vec![
            format!("schedule = [{}]", steps.join(", ")),
            "jitter = 0.0".to_owned(),
        ];
        self
    }

    /// A line of `[plugins]`.
    pub fn plugins(mut self, line: &str) -> Self {
        self.plugins.push(line.to_owned());
        self
    }

    /// A source `name` taking `token`, with more lines of its table (`actions`...).
    pub fn source(mut self, name: &str, token: &str, more: &str) -> Self {
        let _ = write!(
            self.rest,
            "\n[[sources]]\nname = \"{name}\"\ntokens = [\"{token}\"]\n{more}\n"
        );
        self
    }

    /// A destination `name` at `url`, signed with `secret`, with more lines of its table.
    pub fn destination(
        mut self,
        name: &str,
        url: impl std::fmt::Display,
        secret: &str,
        more: &str,
    ) -> Self {
        let _ = write!(
            self.rest,
            "\n[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{secret}\"]\n{more}\n"
        );
        self
    }

    /// A subscription `id` of `events` to `destinations`, with more lines of its table.
    pub fn subscription(
        mut self,
        id: &str,
        events: &[&str],
        destinations: &[&str],
        more: &str,
    ) -> Self {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            self.rest,
            "\n[[subscriptions]]\nid = \"{id}\"\nevents = [{}]\ndestinations = [{}]\n{more}\n",
            list(events),
            list(destinations)
        );
        self
    }

    /// TOML added as written, after everything else (array tables of its own).
    pub fn raw(mut self, toml: &str) -> Self {
        self.rest.push('\n');
        self.rest.push_str(toml);
        self.rest.push('\n');
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        let table = |out: &mut String, name: &str, lines: &[String]| {
            if !lines.is_empty() {
                let _ = writeln!(out, "[{name}]\n{}", lines.join("\n"));
            }
        };
        table(&mut out, "server", &self.server);
        out.push_str(&self.storage);
        table(&mut out, "delivery", &self.delivery);
        table(&mut out, "delivery.backoff", &self.backoff);
        if self.loopback {
            // The receivers of the suites listen on loopback.
            out.push_str("[delivery.client.ssrf]\nallow = [\"127.0.0.0/8\"]\n");
        }
        table(&mut out, "plugins", &self.plugins);
        out.push_str(&self.rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_configuration_is_one_the_gateway_reads() {
        let toml = Config::on(&Engine::Sled)
            .server("admin_token = \"admin-token-0123456789\"")
            .storage("retention = \"1h\"")
            .delivery("retries = 2")
            .backoff(&["50ms"])
            .source("odoo", "token-0123456789abcdef", "")
            .destination(
                "inbox",
                "http://127.0.0.1:9/hook",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "",
            )
            .subscription("all", &["*"], &["inbox"], "")
            .toml();
        let file = odoo_gateway::config::parse(&toml, "built.toml").expect(&toml);
        assert_eq!(file.subscriptions.len(), 1, "{toml}");
        assert_eq!(file.delivery.retries, 2, "{toml}");
    }
}
