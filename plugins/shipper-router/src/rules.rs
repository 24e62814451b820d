//! The routing table read from the subscription's configuration, and the
//! choice of a shipper (destination) for one order line.
//!
//! Precedence, first match wins: `product.<id>`, `product.<default_code>`,
//! `route.<id>`, `route.<name>`, then `default_destination`. Product rules
//! beat route rules because they are the more specific.

use std::collections::BTreeMap;

use odoo_gateway_plugin_sdk::{Config, ConfigError, Many2one, Record};

const PRODUCT: &str = "product.";
const ROUTE: &str = "route.";
const DEFAULT_DESTINATION: &str = "default_destination";

/// Destinations by product and by route, plus the fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `product.<id or default_code>` → destination.
    pub products: BTreeMap<String, String>,
    /// `route.<id or name>` → destination.
    pub routes: BTreeMap<String, String>,
    /// Destination for lines no rule matches; without it they are rejected.
    pub default_destination: Option<String>,
}

impl Rules {
    /// Reads the rules; refuses unknown keys (typos would silently route
    /// nothing), empty names and empty destinations, and a configuration
    /// with no rule and no default.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut rules = Self::default();
        for (key, value) in config.entries() {
            let destination = value.trim();
            if destination.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    "the destination name is empty",
                ));
            }
            let (table, name) = if let Some(name) = key.strip_prefix(PRODUCT) {
                (&mut rules.products, name)
            } else if let Some(name) = key.strip_prefix(ROUTE) {
                (&mut rules.routes, name)
            } else if key == DEFAULT_DESTINATION {
                rules.default_destination = Some(destination.to_owned());
                continue;
            } else {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    "unknown key: expected `product.<id or default_code>`, \
                     `route.<id or name>` or `default_destination`",
                ));
            };
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    "the key names no product or route",
                ));
            }
            table.insert(name.trim().to_owned(), destination.to_owned());
        }
        if rules.products.is_empty()
            && rules.routes.is_empty()
            && rules.default_destination.is_none()
        {
            return Err(ConfigError::Missing {
                key: "route.*`, `product.*` or `default_destination".to_owned(),
            });
        }
        Ok(rules)
    }

    /// The destination of a product line, or `None` when nothing matches.
    pub fn destination_for(&self, line: &Record<'_>) -> Option<&str> {
        let product = line.many2one("product_id");
        let by_product = product.as_ref().and_then(|p| {
            self.products
                .get(&p.id.to_string())
                .or_else(|| default_code(line, p).and_then(|code| self.products.get(code)))
        });
        let by_route = || {
            let route = line.many2one("route_id")?;
            self.routes
                .get(&route.id.to_string())
                .or_else(|| route.name.as_deref().and_then(|name| self.routes.get(name)))
        };
        by_product
            .or_else(by_route)
            .or(self.default_destination.as_ref())
            .map(String::as_str)
    }
}

/// The product's internal reference: a `default_code` field on the line if
/// the payload carries one, else the `[CODE]` prefix Odoo puts in front of
/// the product's display name.
fn default_code<'a>(line: &Record<'a>, product: &'a Many2one) -> Option<&'a str> {
    line.str("default_code").or_else(|| {
        let name = product.name.as_deref()?;
        let code = name.strip_prefix('[')?.split_once(']')?.0;
        (!code.is_empty()).then_some(code)
    })
}
