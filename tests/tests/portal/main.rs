//! The apps' own side end to end: portal links and sessions (minted by the app with OAuth2 or
//! OAuth1 credentials or by the operator, exchanged once, bound to one app, expiring,
//! revocable, checked as API calls are) on both engines; the event catalog with schemas from
//! the fake Odoo's `fields_get`, inferred ones, and filters checked against them; secret
//! rotation and plugin dry-runs; and the portal itself driven in Chromium.

mod browser;
mod catalog;
mod common;
mod extras;
mod sessions;
