//! Matching events to subscriptions by event-type pattern.
//!
//! An event type is `<model>.<action>`, for example `sale.order.confirmed`. A pattern is an
//! exact type, a prefix ending in `.*` (`sale.order.*`), a suffix starting with `*.`
//! (`*.unlink`), or `*` alone. Matching is pure: no I/O, no allocation. A subscription may
//! also select events by their payload's fields ([`filter`]).

pub mod filter;

use std::fmt;

/// The app a subscription belongs to: `app.<app>.<id>` for those made through the API,
/// `None` for the operator's own.
pub fn owner_app(subscription_id: &str) -> Option<&str> {
    app_and_id(subscription_id).map(|(app, _)| app)
}

/// An app's subscription id split into the app and the app's own id for it
/// (`app.shop.orders` is `("shop", "orders")`); `None` for the operator's own.
pub fn app_and_id(subscription_id: &str) -> Option<(&str, &str)> {
    let rest = subscription_id.strip_prefix("app.")?;
    Some(rest.split_once('.').unwrap_or((rest, "")))
}

/// A parsed event-type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    /// Every event.
    Any,
    /// Exactly this type.
    Exact(String),
    /// Types starting with this text followed by a dot (stored without the `.*`).
    Prefix(String),
    /// Types ending with a dot and this text (stored without the `*.`).
    Suffix(String),
}

impl EventPattern {
    /// Parses a pattern, explaining what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.split('.').all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        let pattern = if text == "*" {
            Some(Self::Any)
        } else if let Some(prefix) = text.strip_suffix(".*") {
            valid(prefix).then(|| Self::Prefix(prefix.to_owned()))
        } else if let Some(suffix) = text.strip_prefix("*.") {
            valid(suffix).then(|| Self::Suffix(suffix.to_owned()))
        } else {
            (valid(text) && text.contains('.')).then(|| Self::Exact(text.to_owned()))
        };
        pattern.ok_or_else(|| {
            format!(
                "`{text}` is not an event pattern: use `model.action`, `model.*`, `*.action` or `*`"
            )
        })
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(t) => t == event_type,
            Self::Prefix(p) => event_type
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
            Self::Suffix(s) => event_type
                .strip_suffix(s.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        }
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(t) => f.write_str(t),
            Self::Prefix(p) => write!(f, "{p}.*"),
            Self::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

/// Whether any of `patterns` matches `event_type`.
impl EventPattern {
    /// Whether every event type `other` matches, this pattern matches too (a grant covering a
    /// subscription's pattern).
    pub fn covers(&self, other: &EventPattern) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (_, Self::Any) => false,
            (grant, Self::Exact(t)) => grant.matches(t),
            (Self::Prefix(g), Self::Prefix(p)) => {
                p == g
                    || p.strip_prefix(g.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            }
            (Self::Suffix(g), Self::Suffix(s)) => {
                s == g || s.strip_suffix(g.as_str()).is_some_and(|r| r.ends_with('.'))
            }
            _ => false,
        }
    }
}

/// Whether one of `grants` covers `pattern`.
pub fn granted(grants: &[EventPattern], pattern: &EventPattern) -> bool {
    grants.iter().any(|g| g.covers(pattern))
}

pub fn any_matches(patterns: &[EventPattern], event_type: &str) -> bool {
    patterns.iter().any(|p| p.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_subscription_is_its_app() {
        assert_eq!(owner_app("app.shop.orders"), Some("shop"));
        assert_eq!(owner_app("app.shop.a.b"), Some("shop"));
        assert_eq!(owner_app("orders"), None);
        assert_eq!(owner_app("application"), None);
        assert_eq!(app_and_id("app.shop.a.b"), Some(("shop", "a.b")));
        assert_eq!(app_and_id("orders"), None);
    }

    #[test]
    fn grants_cover_narrower_patterns_only() {
        let p = |s: &str| EventPattern::parse(s).unwrap();
        let cases = [
            ("*", "*", true),
            ("*", "sale.order.*", true),
            ("sale.order.*", "sale.order.confirmed", true),
            ("sale.order.*", "sale.order.*", true),
            ("sale.order.*", "sale.order.line.*", true),
            ("sale.order.*", "sale.*", false),
            ("sale.order.*", "*", false),
            ("sale.order.*", "*.confirmed", false),
            ("sale.order.*", "res.partner.write", false),
            ("*.unlink", "res.partner.unlink", true),
            ("*.unlink", "*.unlink", true),
            ("*.unlink", "sale.order.*", false),
            ("sale.order.confirmed", "sale.order.confirmed", true),
            ("sale.order.confirmed", "sale.order.*", false),
        ];
        for (grant, pattern, expected) in cases {
            assert_eq!(
                p(grant).covers(&p(pattern)),
                expected,
                "{grant} covers {pattern}"
            );
        }
    }

    fn p(text: &str) -> EventPattern {
        EventPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn exact_prefix_suffix_any() {
        assert!(p("sale.order.confirmed").matches("sale.order.confirmed"));
        assert!(!p("sale.order.confirmed").matches("sale.order.write"));
        assert!(p("sale.order.*").matches("sale.order.write"));
        assert!(!p("sale.order.*").matches("sale.order_line.write"));
        assert!(!p("sale.order.*").matches("sale.order"));
        assert!(p("*.unlink").matches("res.partner.unlink"));
        assert!(!p("*.unlink").matches("res.partner.xunlink"));
        assert!(p("*").matches("anything.at.all"));
    }

    #[test]
    fn bad_patterns_are_explained() {
        for bad in [
            "",
            "sale",
            "sale.*.write",
            "sale..order",
            "*.",
            ".*",
            "sale order.write",
        ] {
            let err = EventPattern::parse(bad).expect_err(bad);
            assert!(err.contains("not an event pattern"), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "sale.order.write", "sale.order.*", "*.unlink"] {
            assert_eq!(p(text).to_string(), text);
        }
    }
}
