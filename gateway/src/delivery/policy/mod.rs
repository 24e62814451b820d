//! The delivery policies' rules, pure: ordered delivery's key templates ([`order`]), rate
//! limits' cell rate algorithm ([`rate`]) and the circuit breaker of one receiver host
//! ([`circuit`]), with their settings. The work plane keeps their state and applies them to
//! both engines (`workplane::policy`).

pub mod circuit;
pub mod order;
pub mod rate;
