//! Operator commands against a running gateway: `status`, `events show`, `dead-letters
//! list|replay`, `subscriptions list|pause|enable`, `deliveries list`. Human tables by
//! default, `--json` for scripts.
//!
//! They talk to the admin API with the admin token (the CLI's admin client); nothing
//! here opens the database.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::admin_client::Gateway;

/// Where the running gateway is and how to answer.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    gateway: Gateway,
    /// Print the gateway's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// One operator command.
#[derive(Debug, Subcommand)]
pub enum Operate {
    /// What the gateway holds and how it runs: stored counts, the schedule, room on disk, and
    /// whether ingest is paused for lack of room.
    Status(Target),
    /// Events.
    Events {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Dead letters.
    DeadLetters {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Subscriptions.
    Subscriptions {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: SubscriptionsAction,
    },
    /// Delivery attempts.
    Deliveries {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: DeliveriesAction,
    },
}

/// `events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// One event's journey: its jobs still queued, every attempt, its dead letters.
    Show {
        /// The event id (`evt_…`), as ingest answered it.
        id: String,
    },
}

/// `dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersAction {
    /// Dead letters, oldest first.
    List,
    /// Queue a dead letter again, with a fresh attempt count.
    Replay {
        /// The job id.
        id: String,
    },
}

/// `subscriptions ...`.
#[derive(Debug, Subcommand)]
pub enum SubscriptionsAction {
    /// Every subscription in force, with its health, state and queued jobs.
    List,
    /// Pause a subscription: its jobs wait (and it stays paused across restarts) until it is
    /// enabled.
    Pause {
        /// The subscription id.
        id: String,
    },
    /// Clear a subscription's flag and pause, and resume its paused deliveries.
    Enable {
        /// The subscription id.
        id: String,
    },
}

/// `deliveries ...`.
#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// A subscription's recent attempts (deliveries and plugin calls), newest first.
    List {
        /// The subscription id.
        #[arg(long)]
        subscription: String,
        /// Only the attempts that failed.
        #[arg(long)]
        failed: bool,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

impl Operate {
    /// Parses `args` (without the binary name), for tests and embedding.
    pub fn parse_from(args: &[&str]) -> anyhow::Result<Self> {
        use clap::FromArgMatches as _;
        let command = <Self as Subcommand>::augment_subcommands(clap::Command::new("operate"))
            .no_binary_name(true);
        let matches = command.try_get_matches_from(args)?;
        Ok(Self::from_arg_matches(&matches)?)
    }

    /// Runs the command, writing what it has to say to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let (target, method, path) = match &self {
            Self::Status(t) => (t, "GET", "/admin/status".to_owned()),
            Self::Events {
                target,
                action: EventsAction::Show { id },
            } => (target, "GET", format!("/admin/events/{id}")),
            Self::DeadLetters {
                target,
                action: DeadLettersAction::List,
            } => (target, "GET", "/admin/dead-letters".to_owned()),
            Self::DeadLetters {
                target,
                action: DeadLettersAction::Replay { id },
            } => (target, "POST", format!("/admin/dead-letters/{id}/replay")),
            Self::Subscriptions {
                target,
                action: SubscriptionsAction::List,
            } => (target, "GET", "/admin/subscriptions".to_owned()),
            Self::Subscriptions {
                target,
                action: SubscriptionsAction::Pause { id },
            } => (target, "POST", format!("/admin/subscriptions/{id}/pause")),
            Self::Subscriptions {
                target,
                action: SubscriptionsAction::Enable { id },
            } => (target, "POST", format!("/admin/subscriptions/{id}/enable")),
            Self::Deliveries {
                target,
                action:
                    DeliveriesAction::List {
                        subscription,
                        failed,
                        limit,
                    },
            } => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("subscription", subscription)
                    .append_pair("failed", if *failed { "true" } else { "false" })
                    .append_pair("limit", &limit.to_string())
                    .finish();
                (target, "GET", format!("/admin/deliveries?{query}"))
            }
        };
        let admin = target.gateway.client()?;
        let answer = admin.call(method, &path, None).await?;
        if target.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            return Ok(());
        }
        match self {
            Self::Status(_) => status(out, &answer),
            Self::Events { .. } => journey(out, &answer),
            Self::DeadLetters {
                action: DeadLettersAction::List,
                ..
            } => dead_letters(out, &answer),
            Self::DeadLetters {
                action: DeadLettersAction::Replay { id },
                ..
            } => Ok(writeln!(out, "Replayed `{id}`: it is queued again.")?),
            Self::Subscriptions {
                action: SubscriptionsAction::List,
                ..
            } => subscriptions(out, &answer),
            Self::Subscriptions {
                action: SubscriptionsAction::Pause { id },
                ..
            } => Ok(writeln!(
                out,
                "Paused `{id}`{}: its jobs wait until `subscriptions enable {id}`.",
                if answer["was_paused"] == true {
                    " (it already was)"
                } else {
                    ""
                }
            )?),
            Self::Subscriptions {
                action: SubscriptionsAction::Enable { id },
                ..
            } => Ok(writeln!(
                out,
                "Enabled `{id}`; {} paused jobs resumed.",
                answer["resumed_jobs"].as_u64().unwrap_or(0)
            )?),
            Self::Deliveries { .. } => deliveries(out, &answer),
        }
    }
}

/// A JSON value as table text: strings bare, absent values as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status(out: &mut impl Write, answer: &Value) -> anyhow::Result<()> {
    let rows = [
        ("configuration", &answer["config"]),
        ("events stored", &answer["stored"]["events"]),
        ("jobs queued", &answer["stored"]["queued"]),
        ("awaiting fan-out", &answer["stored"]["pending"]),
        ("dead letters", &answer["stored"]["dead"]),
        ("due now", &answer["schedule"]["due"]),
        ("waiting for a retry", &answer["schedule"]["later"]),
        ("paused", &answer["schedule"]["parked"]),
        ("delivered since start", &answer["delivered_since_start"]),
        ("stage restarts", &answer["stage_restarts"]),
        ("live data (bytes)", &answer["storage"]["live"]["bytes"]),
        ("database on disk", &answer["storage"]["size_on_disk"]),
        ("free on its disk", &answer["storage"]["room"]["free_bytes"]),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<24} {}", cell(value))?;
    }
    // Said last and in words: the one line an operator must not miss.
    let paused = &answer["storage"]["paused"];
    if !paused.is_null() {
        writeln!(
            out,
            "INGEST PAUSED ({}): {}",
            cell(&paused["reason"]),
            cell(&paused["message"])
        )?;
    }
    Ok(())
}

fn journey(out: &mut impl Write, answer: &Value) -> anyhow::Result<()> {
    let e = &answer["event"];
    writeln!(
        out,
        "event {} from `{}`: {}.{} (record {}), received at {} ms",
        cell(&e["id"]),
        cell(&e["source"]),
        cell(&e["model"]),
        cell(&e["action"]),
        cell(&e["record_id"]),
        cell(&e["received_at_ms"])
    )?;
    writeln!(out, "trace {}", cell(&e["trace_id"]))?;
    let list = |key: &str| answer[key].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "\nATTEMPTS\n{:<56} {:<7} {:<9} ERROR",
        "JOB", "STATUS", "MS"
    )?;
    for a in list("attempts") {
        writeln!(
            out,
            "{:<56} {:<7} {:<9} {}",
            cell(&a["job"]),
            cell(&a["status"]),
            cell(&a["latency_ms"]),
            cell(&a["error"])
        )?;
    }
    writeln!(
        out,
        "\nQUEUED\n{:<56} {:<10} {:<8} LAST ERROR",
        "JOB", "KIND", "TRIES"
    )?;
    for j in list("queued") {
        writeln!(
            out,
            "{:<56} {:<10} {:<8} {}",
            cell(&j["id"]),
            cell(&j["kind"]),
            cell(&j["attempts"]),
            cell(&j["last_error"])
        )?;
    }
    writeln!(out, "\nDEAD LETTERS\n{:<56} REASON", "JOB")?;
    for d in list("dead_letters") {
        writeln!(out, "{:<56} {}", cell(&d["id"]), cell(&d["reason"]))?;
    }
    Ok(())
}

fn dead_letters(out: &mut impl Write, answer: &Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<56} {:<28} {:<6} REASON",
        "JOB", "SUBSCRIPTION", "TRIES"
    )?;
    for d in answer["dead_letters"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<56} {:<28} {:<6} {}",
            cell(&d["id"]),
            cell(&d["subscription"]),
            cell(&d["attempts"]),
            cell(&d["reason"])
        )?;
    }
    Ok(())
}

fn subscriptions(out: &mut impl Write, answer: &Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<28} {:<10} {:<12} {:<8} {:<8} LAST ERROR",
        "SUBSCRIPTION", "HEALTH", "STATE", "FAILURES", "QUEUED"
    )?;
    for s in answer["subscriptions"].as_array().into_iter().flatten() {
        let health = if s["flagged"] == true {
            "flagged"
        } else if s["consecutive_failures"].as_u64().unwrap_or(0) > 0 {
            "failing"
        } else {
            "healthy"
        };
        let state = if s["enabled"] == false {
            "disabled"
        } else if s["paused"] == true {
            "paused"
        } else {
            "delivering"
        };
        writeln!(
            out,
            "{:<28} {health:<10} {state:<12} {:<8} {:<8} {}",
            cell(&s["id"]),
            cell(&s["consecutive_failures"]),
            cell(&s["queued"]),
            cell(&s["last_error"])
        )?;
    }
    Ok(())
}

fn deliveries(out: &mut impl Write, answer: &Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<29} {:<56} {:<7} {:<7} {:<7} ERROR",
        "AT", "JOB", "STATUS", "MS", "NOW"
    )?;
    for a in answer["attempts"].as_array().into_iter().flatten() {
        let at = a["at_ms"]
            .as_u64()
            .and_then(|ms| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)))
            .map_or_else(|| "-".to_owned(), httpdate::fmt_http_date);
        writeln!(
            out,
            "{at:<29} {:<56} {:<7} {:<7} {:<7} {}",
            cell(&a["job"]),
            cell(&a["status"]),
            cell(&a["latency_ms"]),
            cell(&a["job_state"]),
            cell(&a["error"])
        )?;
    }
    Ok(())
}
