//! `odoo-gateway inbox`: a development receiver that prints every delivery it gets.
//!
//! This module owns the command's arguments and its output. The server itself lives in
//! `inbox/server.rs` (re-exported here) so integration tests can run the same receiver in-process.

mod server;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use http::StatusCode;

pub use server::{Inbox, InboxOptions, MAX_BODY, OnReceive, Received, Verification, WaitTimeout};

use crate::delivery::parse_duration;
use crate::signing::SigningSecret;

/// Body bytes shown per delivery; the rest is summarised.
const DISPLAY_BODY_LIMIT: usize = 2048;

/// Arguments of `odoo-gateway inbox`.
#[derive(Debug, Clone, clap::Args)]
pub struct InboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Signing secret (`whsec_...`) to verify signatures with; repeat during a rotation.
    #[arg(long = "secret", env = "ODOO_GATEWAY_INBOX_SECRET")]
    pub secrets: Vec<SigningSecret>,
    /// Status code to answer with.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,
    /// Wait this long before answering (e.g. 500ms, 2s).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub delay: Duration,
    /// Answer the first N deliveries with 500, to watch retries.
    #[arg(long, default_value_t = 0)]
    pub fail_first: u32,
    /// Print one JSON object per line instead of a readable block.
    #[arg(long)]
    pub json: bool,
}

/// Runs the receiver until Ctrl-C.
pub async fn run(args: InboxArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let json = args.json;
    let checking = !args.secrets.is_empty();
    let options = InboxOptions {
        secrets: args.secrets,
        status: StatusCode::from_u16(args.status).context("invalid --status")?,
        delay: args.delay,
        fail_first: args.fail_first,
        on_receive: Some(Arc::new(move |r: &Received| {
            let text = if json { render_json(r) } else { render_text(r) };
            // A closed stdout (piped into `head`) must not take the receiver down.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        })),
        ..InboxOptions::default()
    };
    let inbox = Inbox::start(listener, options)?;
    eprintln!(
        "inbox listening on http://{} ({})",
        inbox.addr(),
        if checking {
            "verifying signatures"
        } else {
            "not verifying: no --secret"
        }
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    inbox.shutdown().await;
    Ok(())
}

fn render_text(r: &Received) -> String {
    let mut out = format!("── {} {}\n", r.method, r.path);
    let id = r.webhook_id().unwrap_or("-");
    let timestamp = match r.header("webhook-timestamp") {
        Some(ts) => match (ts.parse::<i64>(), unix_now()) {
            (Ok(t), Some(now)) => format!("{ts} ({} s ago)", now - t),
            _ => ts.to_owned(),
        },
        None => "-".to_owned(),
    };
    out += &format!("   webhook-id: {id}   webhook-timestamp: {timestamp}\n");
    let signature = match &r.verification {
        Verification::Valid => "✓ verified".to_owned(),
        Verification::Invalid(why) => format!("✗ {why}"),
        Verification::Unchecked => "- not checked (no --secret)".to_owned(),
    };
    out += &format!("   signature: {signature}\n");
    let content_type = r.header("content-type").unwrap_or("-");
    out += &format!(
        "   content-type: {content_type}   ({} bytes)\n",
        r.body.len()
    );
    out += &indent(&display_body(r));
    match r.answered {
        Some(status) => out += &format!("\n   → {status}"),
        None => out += "\n   → (hanging)",
    }
    out
}

fn render_json(r: &Received) -> String {
    let (verified, verify_error) = match &r.verification {
        Verification::Valid => (Some(true), None),
        Verification::Invalid(why) => (Some(false), Some(why.as_str())),
        Verification::Unchecked => (None, None),
    };
    serde_json::json!({
        "method": r.method.as_str(),
        "path": r.path,
        "webhook_id": r.webhook_id(),
        "webhook_timestamp": r.header("webhook-timestamp"),
        "verified": verified,
        "verify_error": verify_error,
        "content_type": r.header("content-type"),
        "body": String::from_utf8_lossy(&r.body),
        "status": r.answered.map(|s| s.as_u16()),
    })
    .to_string()
}

/// The body for people: pretty JSON when it is JSON, cut at [`DISPLAY_BODY_LIMIT`].
fn display_body(r: &Received) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&r.body).into_owned(),
    };
    if text.len() <= DISPLAY_BODY_LIMIT {
        return text;
    }
    let mut cut = DISPLAY_BODY_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n… ({} more bytes)", &text[..cut], text.len() - cut)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   │ {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn unix_now() -> Option<i64> {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        inbox: InboxArgs,
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "inbox",
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "--status",
            "503",
            "--delay",
            "250ms",
            "--fail-first",
            "2",
            "--json",
        ])
        .unwrap();
        let a = cli.inbox;
        assert_eq!(a.secrets.len(), 1);
        assert_eq!((a.status, a.fail_first, a.json), (503, 2, true));
        assert_eq!(a.delay, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["inbox", "--status", "99"]).is_err());
        assert!(Cli::try_parse_from(["inbox", "--secret", "plain"]).is_err());
        assert!(Cli::try_parse_from(["inbox", "--delay", "5"]).is_err());
    }

    fn sample(body: &str, verification: Verification) -> Received {
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        Received {
            method: http::Method::POST,
            path: "/hook".into(),
            headers,
            body: Bytes::from(body.to_owned()),
            verification,
            answered: Some(StatusCode::OK),
            received_at: SystemTime::now(),
        }
    }

    #[test]
    fn text_output_shows_verdict_and_body() {
        let ok = render_text(&sample(r#"{"a":1}"#, Verification::Valid));
        assert!(
            ok.contains("POST /hook") && ok.contains("✓ verified"),
            "{ok}"
        );
        assert!(ok.contains("\"a\": 1") && ok.contains("msg_1"), "{ok}");
        let bad = render_text(&sample("x", Verification::Invalid("no".into())));
        assert!(bad.contains("✗ no"), "{bad}");
        let long = render_text(&sample(&"é".repeat(3000), Verification::Unchecked));
        assert!(long.contains("more bytes"), "truncated");
    }

    #[test]
    fn json_output_is_one_object_per_line() {
        let line = render_json(&sample("{}", Verification::Invalid("stale".into())));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["verified"], false);
        assert_eq!(v["verify_error"], "stale");
        assert_eq!(v["webhook_id"], "msg_1");
        assert_eq!(v["status"], 200);
    }
}
