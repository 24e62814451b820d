//! `odoo-gateway odoo cursor show|reset SOURCE MODEL [--to TIME]`: where a polled model
//! stands, and moving it, through the running gateway's admin API
//! (`/admin/odoo/cursors/{source}/{model}`).

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::admin_client::Gateway;

/// The Odoo connector of a running gateway.
#[derive(Debug, Args)]
pub struct OdooCommand {
    #[command(flatten)]
    gateway: Gateway,
    /// Print the gateway's JSON answer.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: OdooAction,
}

#[derive(Debug, Subcommand)]
enum OdooAction {
    /// The polling cursors.
    #[command(subcommand)]
    Cursor(CursorAction),
}

#[derive(Debug, Subcommand)]
enum CursorAction {
    /// Where a polled model stands: every change before the cursor's second was read.
    Show {
        /// The source's name.
        source: String,
        /// The polled model (`sale.order`).
        model: String,
    },
    /// Move a polled model's cursor (at its next poll): without `--to`, forget it (the next
    /// poll starts from the source's `start`); with `--to`, read the changes from that time
    /// on. Changes delivered before are recognised while their events are kept.
    Reset {
        /// The source's name.
        source: String,
        /// The polled model (`sale.order`).
        model: String,
        /// A UTC time, `YYYY-MM-DD HH:MM:SS`.
        #[arg(long)]
        to: Option<String>,
    },
}

impl OdooCommand {
    /// A command for `url` with `admin_token`, for tests and embedding.
    pub fn new(url: &str, admin_token: &str, args: &[&str]) -> anyhow::Result<Self> {
        super::admin_client::command_for("odoo", url, admin_token, args)
    }

    /// Runs the command, writing what it has to say to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let admin = self.gateway.client()?;
        let OdooAction::Cursor(action) = self.action;
        let (answer, verb) = match action {
            CursorAction::Show { source, model } => {
                let path = format!("/admin/odoo/cursors/{source}/{model}");
                (admin.call("GET", &path, None).await?, None)
            }
            CursorAction::Reset { source, model, to } => {
                let path = format!("/admin/odoo/cursors/{source}/{model}/reset");
                let body = json!({ "to": to });
                let verb = if to.is_some() { "Moved" } else { "Forgot" };
                (admin.call("POST", &path, Some(body)).await?, Some(verb))
            }
        };
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            return Ok(());
        }
        let name = format!(
            "{} {}",
            answer["source"].as_str().unwrap_or(""),
            answer["model"].as_str().unwrap_or("")
        );
        match verb {
            Some("Forgot") => writeln!(
                out,
                "Forgot the cursor of {name}: its next poll starts from the source's `start`."
            )?,
            Some(_) => writeln!(
                out,
                "Moved the cursor of {name}: its next poll reads from {}.",
                second(&answer["cursor"])
            )?,
            None => match answer["cursor"] {
                Value::Null => writeln!(out, "{name}: not polled yet.")?,
                ref at => writeln!(
                    out,
                    "{name}: read up to {} (id {} of that second so far; the next poll reads it again).",
                    second(at),
                    at["id"]
                )?,
            },
        }
        Ok(())
    }
}

fn second(at: &Value) -> &str {
    at["write_date"].as_str().unwrap_or("?")
}
