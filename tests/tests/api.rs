//! The third-party app API end to end over real sockets: subscriptions (CRUD, persistence
//! across a restart, tenant isolation, scopes, filters, rollback), plugin uploads (hostile ones
//! refused), test events, the delivery log, replays, dead letters, outbound OAuth2, OAuth1 and
//! static-header authentication, and `openapi.json` against the real router.

#[path = "api/common.rs"]
mod common;
#[path = "api/deliveries.rs"]
mod deliveries;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/outbound.rs"]
mod outbound;
#[path = "api/plugins.rs"]
mod plugins;
#[path = "api/receiver.rs"]
mod receiver;
#[path = "api/subscriptions.rs"]
mod subscriptions;
