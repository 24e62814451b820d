//! `odoo-gateway event-types list|show [TYPE] [--app NAME]`: the event catalog of a running
//! gateway (`/admin/event-types`), as the operator sees it or as one app does.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::admin_client::Gateway;

/// The event catalog of a running gateway.
#[derive(Debug, Args)]
pub struct EventTypesCommand {
    #[command(flatten)]
    gateway: Gateway,
    /// The catalog as this app sees it (its grants, its sources).
    #[arg(long, global = true)]
    app: Option<String>,
    /// Print the gateway's JSON answer.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: EventTypesAction,
}

#[derive(Debug, Subcommand)]
enum EventTypesAction {
    /// Every event type, where its schema comes from and what it is.
    List,
    /// One event type: its description, schema and example.
    Show {
        /// `<model>.<action>`, as `list` shows it.
        event_type: String,
    },
}

impl EventTypesCommand {
    /// A command for `url` with `admin_token`, for tests and embedding.
    pub fn new(url: &str, admin_token: &str, args: &[&str]) -> anyhow::Result<Self> {
        super::admin_client::command_for("event-types", url, admin_token, args)
    }

    /// Runs the command, writing what it has to say to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let admin = self.gateway.client()?;
        let query = self
            .app
            .as_deref()
            .map(|a| format!("?app={a}"))
            .unwrap_or_default();
        match self.action {
            EventTypesAction::List => {
                let listed = admin
                    .call("GET", &format!("/admin/event-types{query}"), None)
                    .await?;
                if self.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
                    return Ok(());
                }
                let types = listed["event_types"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<36} {:<9} {:<16} DESCRIPTION",
                    "TYPE", "SCHEMA", "SOURCES"
                )?;
                for t in &types {
                    let sources: Vec<&str> = t["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    writeln!(
                        out,
                        "{:<36} {:<9} {:<16} {}",
                        text(&t["type"]),
                        text(&t["schema_origin"]),
                        sources.join(","),
                        text(&t["description"])
                    )?;
                }
                if types.is_empty() {
                    writeln!(out, "(no event type yet)")?;
                }
            }
            EventTypesAction::Show { event_type } => {
                let path = format!("/admin/event-types/{event_type}{query}");
                let entry = admin.call("GET", &path, None).await?;
                if self.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&entry)?)?;
                    return Ok(());
                }
                writeln!(out, "{}", text(&entry["type"]))?;
                writeln!(out, "  {}", text(&entry["description"]))?;
                writeln!(out, "  schema from: {}", text(&entry["schema_origin"]))?;
                if let Some(note) = entry["schema_note"].as_str() {
                    writeln!(out, "  note: {note}")?;
                }
                for e in entry["enrich"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "  enrich ({}): {} from {} {}",
                        text(&e["by"]),
                        text(&e["field"]),
                        text(&e["model"]),
                        e["fields"]
                    )?;
                }
                let fields = entry["schema"]["properties"].as_object();
                if let Some(fields) = fields {
                    writeln!(out, "\n  {:<28} {:<12} LABEL", "FIELD", "ODOO TYPE")?;
                    for (name, schema) in fields {
                        writeln!(
                            out,
                            "  {:<28} {:<12} {}",
                            name,
                            schema["x-odoo-type"].as_str().unwrap_or("-"),
                            schema["title"].as_str().unwrap_or("")
                        )?;
                    }
                }
                writeln!(
                    out,
                    "\nExample:\n{}",
                    serde_json::to_string_pretty(&entry["example"])?
                )?;
            }
        }
        Ok(())
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}
