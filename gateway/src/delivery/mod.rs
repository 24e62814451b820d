//! Outbound delivery: the HTTP client, the SSRF guard, retry timing and concurrency limits.
//!
//! This module owns one attempt at one destination: connect (only to allowed addresses),
//! POST, read the answer's head and a bounded excerpt. It does not sign (see
//! [`crate::signing`]), does not retry by itself and keeps no state across attempts; the
//! queue calls it and decides what happens next using [`Backoff`].

pub mod backoff;
mod client;
mod connector;
mod error;
mod limits;
mod outbound;
pub mod outbound_auth;
pub mod policy;
mod ssrf;
mod url;

pub use backoff::{Backoff, DurationParseError, format_duration, parse_duration};
pub use client::{
    BODY_EXCERPT_LIMIT, ClientOptions, DeliveryClient, DeliveryResponse, parse_retry_after,
};
pub use connector::SsrfBlocked;
pub use error::{ClientBuildError, DeliveryError};
pub use limits::{ConcurrencyLimits, DestinationPermit, GlobalPermit, Permit};
pub use outbound::{DeliveryLimits, Outbound, Slots};
pub use ssrf::{Cidr, CidrParseError, SsrfPolicy};
pub use url::{HTTP_URL_PATTERN, is_http_url};
