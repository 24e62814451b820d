//! The typed job model: what a unit of queued work is, how it is named, and why it may end
//! in the dead-letter store.
//!
//! Pure data: no I/O here. [`super::queue`] stores these records.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// What a job does when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// POST the body to the destination.
    Deliver,
    /// Run the subscription's plugin for the event; its deliveries become `Deliver` jobs.
    Transform,
}

/// Which of an event's jobs for one subscription this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobPart {
    /// The n-th delivery the plugin (or pass-through) produced.
    Delivery(usize),
    /// The plugin call itself.
    Transform,
}

/// A job's stable id: `<event id>.<subscription id>.<n | transform>`. It is the `webhook-id`
/// header, the same on every attempt, so receivers can deduplicate.
///
/// Kept as its text (what is stored, signed and sent) with where its parts end, so that it is
/// valid by construction, borrowed as a `&str` for free, and its parts read without parsing.
/// Event ids never contain a dot; subscription ids may (`app.shop.orders`).
#[derive(Clone)]
pub struct JobId {
    text: String,
    /// Where the event id ends (the first dot).
    event_end: usize,
    /// Where the subscription id ends (the last dot).
    subscription_end: usize,
    part: JobPart,
}

impl JobId {
    /// The id of delivery `n` of `event` for `subscription`.
    pub fn delivery(event: &str, subscription: &str, n: usize) -> Self {
        Self::new(event, subscription, JobPart::Delivery(n))
    }

    /// The id of the plugin call of `event` for `subscription`.
    pub fn transform(event: &str, subscription: &str) -> Self {
        Self::new(event, subscription, JobPart::Transform)
    }

    fn new(event: &str, subscription: &str, part: JobPart) -> Self {
        debug_assert!(
            !event.is_empty() && !event.contains('.'),
            "an event id is never empty and has no dot: {event:?}"
        );
        let text = match part {
            JobPart::Delivery(n) => format!("{event}.{subscription}.{n}"),
            JobPart::Transform => format!("{event}.{subscription}.transform"),
        };
        Self {
            event_end: event.len(),
            subscription_end: event.len() + 1 + subscription.len(),
            text,
            part,
        }
    }

    /// The event the job came from.
    pub fn event(&self) -> &str {
        &self.text[..self.event_end]
    }

    /// The subscription the job belongs to.
    pub fn subscription(&self) -> &str {
        &self.text[self.event_end + 1..self.subscription_end]
    }

    /// Which of the pair's jobs it is.
    pub fn part(&self) -> JobPart {
        self.part
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

// The parts are functions of the text: comparing and hashing the text is comparing the ids.
impl PartialEq for JobId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JobId {}

impl std::hash::Hash for JobId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

// An id reads as its text wherever text is wanted (keys, headers, logs).
impl std::ops::Deref for JobId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialOrd for JobId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for JobId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<String> for JobId {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl PartialEq<&str> for JobId {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Why a string is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id (<event>.<subscription>.<n|transform>)")]
pub struct BadJobId(String);

impl FromStr for JobId {
    type Err = BadJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_text(s.to_owned())
    }
}

impl JobId {
    /// `text` as an id, kept as it is: only the form `new` writes is one (digits without sign
    /// or leading zero), so that the text and the parts always agree. The subscription part may
    /// be empty, as `new` writes it for a subscription whose id is (which the configuration
    /// refuses now, but earlier versions stored jobs of).
    fn parse_text(text: String) -> Result<Self, BadJobId> {
        let (Some(event_end), Some(subscription_end)) = (text.find('.'), text.rfind('.')) else {
            return Err(BadJobId(text));
        };
        if event_end == 0 || subscription_end <= event_end {
            return Err(BadJobId(text));
        }
        let part = match &text[subscription_end + 1..] {
            "transform" => Some(JobPart::Transform),
            n if n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0')) => {
                n.parse().ok().map(JobPart::Delivery)
            }
            _ => None,
        };
        match part {
            Some(part) => Ok(Self {
                text,
                event_end,
                subscription_end,
                part,
            }),
            None => Err(BadJobId(text)),
        }
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse_text(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One unit of work in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Stable id; the `webhook-id` header.
    pub id: JobId,
    /// What to do.
    pub kind: JobKind,
    /// The event it came from.
    pub event_id: String,
    /// The subscription it belongs to.
    pub subscription_id: String,
    /// Destination name.
    pub destination: String,
    /// MIME type of the body.
    pub content_type: String,
    /// The body, base64 in storage; empty when `envelope` says how to build it.
    #[serde(with = "body_b64", default)]
    pub body: Vec<u8>,
    /// The body is the stored event in this envelope format, built at delivery time: the
    /// event's payload is stored once, not copied into every job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Format>,
    /// Extra headers from the plugin.
    pub headers: Vec<(String, String)>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the job was created (ms since the epoch).
    pub created_ms: u64,
    /// When the job is due next (ms since the epoch).
    #[serde(default)]
    pub due_ms: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Its place in its key's order, for a subscription with `ordering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Where the job is stored while it has no record of its own: a slot of its event's group
    /// record (see the store's `groups.rs`). Known in memory only; `None` for a job with its own
    /// record.
    #[serde(skip)]
    pub member: Option<Member>,
}

/// A job's place in its event's group record: which record (an event's jobs take one per
/// [`super::GROUP_SIZE`]) and which slot in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// The group record of the event.
    pub chunk: u32,
    /// The slot in it.
    pub slot: u8,
}

pub(super) mod body_b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::store) fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(body))
    }

    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// One delivery attempt (or plugin call), kept for the attempt log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started (ms since the epoch).
    pub at_ms: u64,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// The start of the response body (bounded).
    pub excerpt: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Why a plugin-call job made no deliveries this time: typed, so that what follows (retry,
/// dead letter, whether it counts against the subscription's health, the metric's code) is
/// decided on the kind, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The plugin itself: a rejection, a retry it asked for, a trap, a limit.
    #[error("{code}: {0}", code = .0.code())]
    Plugin(#[from] crate::plugin::PluginError),
    /// Reading the related records from Odoo (enrichment) failed.
    #[error("{code}: {message}")]
    Odoo {
        /// The Odoo error's stable code.
        code: &'static str,
        /// What it said.
        message: String,
    },
    /// The task that ran the call died (a panic in the host).
    #[error("plugin_task_failed: {0}")]
    Task(String),
}

impl CallFailure {
    /// The stable code (the metric label, the start of the stored text).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Plugin(e) => e.code(),
            Self::Odoo { code, .. } => code,
            Self::Task(_) => "plugin_task_failed",
        }
    }

    /// Whether the plugin refused the event on purpose: its decision about the event, not a
    /// failure of the subscription.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Plugin(crate::plugin::PluginError::Rejected(_)))
    }
}

/// Why a job was given up. Stored as its text, which starts with its stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    /// The subscription is no longer configured.
    SubscriptionRemoved,
    /// The destination is no longer configured.
    DestinationRemoved,
    /// The event the job needs is no longer stored.
    EventMissing,
    /// The delivery could not be signed.
    Unsignable(String),
    /// The plugin refused the event, or its call failed in a way a retry cannot mend.
    Plugin(CallFailure),
    /// The plugin named a destination the subscription does not have.
    PluginInvalidOutput(String),
    /// The job with its event is larger than the shared queue's messages (NATS
    /// `max_payload`): it could never be queued. Its body is not kept in the letter.
    TooLarge {
        /// Its size, in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Every attempt failed.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
}

impl DeadReason {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SubscriptionRemoved => "subscription_removed",
            Self::DestinationRemoved => "destination_removed",
            Self::EventMissing => "event_missing",
            Self::Unsignable(_) => "unsignable",
            Self::Plugin(_) => "plugin_failed",
            Self::PluginInvalidOutput(_) => "plugin_invalid_output",
            Self::TooLarge { .. } => "too_large",
            Self::GaveUp { .. } => "gave_up",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubscriptionRemoved => {
                f.write_str("subscription_removed: the subscription is no longer configured")
            }
            Self::DestinationRemoved => {
                f.write_str("destination_removed: the destination is no longer configured")
            }
            Self::EventMissing => f.write_str("event_missing: the event is no longer stored"),
            Self::Unsignable(e) => write!(f, "unsignable: {e}"),
            // The failure's text starts with its own code (`plugin_rejected: ...`).
            Self::Plugin(e) => write!(f, "{e}"),
            Self::PluginInvalidOutput(e) => write!(f, "plugin_invalid_output: {e}"),
            Self::TooLarge { size, limit } => write!(
                f,
                "too_large: the delivery with its event is {size} bytes, over the queue's message limit of {limit}"
            ),
            Self::GaveUp {
                attempts,
                last_error,
            } => write!(
                f,
                "gave up after {attempts} attempts; last error: {last_error}"
            ),
        }
    }
}

/// A job that will not be retried any more; kept until replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job as it was.
    pub job: Job,
    /// Why it was given up ([`DeadReason`] as text).
    pub reason: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// What the per-subscription index keeps of a job: enough to list it after it left the queue,
/// and to show what it sent (its own body, or the envelope its body is built in from the
/// stored event) until retention removes it with its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job id.
    pub id: String,
    /// The event it came from.
    pub event_id: String,
    /// Destination name.
    pub destination: String,
    /// When the job was created (ms since the epoch).
    pub created_ms: u64,
    /// MIME type of the body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// The body is the stored event in this envelope format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Format>,
    /// The job's own body (a plugin's delivery), base64 in storage.
    #[serde(with = "body_b64", default, skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<u8>,
}

impl From<&Job> for JobSummary {
    fn from(job: &Job) -> Self {
        Self {
            id: job.id.to_string(),
            event_id: job.event_id.clone(),
            destination: job.destination.clone(),
            created_ms: job.created_ms,
            content_type: job.content_type.clone(),
            envelope: job.envelope,
            body: job.body.clone(),
        }
    }
}

/// A job's place in its key's order (ordered delivery, `delivery/policy/order.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The key: jobs with the same key (of one subscription) go one at a time.
    pub key: String,
    /// Acceptance order of its event (a replayed job: when it was replayed).
    pub seq: u64,
    /// On NATS, while its key is held and it is the key's head: the sequence of its entry on
    /// the key's held subject (see `workplane/nats/ordered.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

/// Body format of a subscription without a plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The payload as JSON.
    #[default]
    Json,
    /// The payload converted to XML.
    Xml,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_with_dotted_subscriptions() {
        for id in [
            JobId::delivery("evt_1", "orders", 0),
            JobId::delivery("evt_1", "app.shop.orders", 12),
            JobId::transform("evt_2", "app.shop.orders"),
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<JobId>(), Ok(id), "{text}");
        }
        assert_eq!(
            JobId::transform("e", "s").to_string(),
            "e.s.transform",
            "the stored form"
        );
        let id = JobId::delivery("evt_1", "app.shop.orders", 3);
        assert_eq!(
            (id.event(), id.subscription(), id.part()),
            ("evt_1", "app.shop.orders", JobPart::Delivery(3))
        );
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, r#""evt_1.app.shop.orders.3""#, "stored as its text");
        assert_eq!(serde_json::from_str::<JobId>(&json).expect("parse"), id);
        assert!(serde_json::from_str::<JobId>(r#""nope""#).is_err());
        // An empty subscription id (which earlier configurations allowed) reads back.
        let bare = JobId::delivery("evt_1", "", 0);
        assert_eq!(bare.to_string().parse::<JobId>(), Ok(bare.clone()));
        assert_eq!(bare.subscription(), "");
        for bad in [
            "",
            "evt",
            "evt.sub",
            ".sub.1",
            "evt.sub.x",
            "evt.sub.+1",
            "evt.sub.01",
            "evt.sub.",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dead_reasons_start_with_their_code() {
        for reason in [
            DeadReason::SubscriptionRemoved,
            DeadReason::DestinationRemoved,
            DeadReason::EventMissing,
            DeadReason::Unsignable("x".into()),
            DeadReason::PluginInvalidOutput("x".into()),
        ] {
            assert!(reason.to_string().starts_with(reason.code()), "{reason}");
        }
    }
}
