//! `[sources.odoo]`, its `poll` table and `enrich` lists: defaults, and every mistake named
//! by its key.

use std::path::Path;

use crate::config::{ConfigError, Snapshot, parse};
use crate::plugin::{PluginHost, PluginLimits};

const BASE: &str = r#"
[[sources]]
name = "odoo"
tokens = ["0123456789abcdef"]
[sources.odoo]
url = "https://odoo.example.com/"
database = "prod"
login = "gateway@example.com"
api_key = "secret-key-0123456789"
ODOO_EXTRA

[[destinations]]
name = "d"
url = "https://example.com/hook"

[[subscriptions]]
id = "a"
events = ["sale.order.*"]
destinations = ["d"]
SUB_EXTRA
"#;

fn build(odoo: &str, sub: &str) -> Result<Snapshot, ConfigError> {
    let text = BASE.replace("ODOO_EXTRA", odoo).replace("SUB_EXTRA", sub);
    let file = parse(&text, "gw.toml")?;
    let host = PluginHost::new(PluginLimits::default(), None).expect("host");
    Snapshot::build(file, Path::new("/tmp"), "gw.toml", &host, None)
        .map_err(|e| e.with_lines(&text))
}

#[test]
fn a_source_with_odoo_builds_with_defaults_and_hides_its_key() {
    let snapshot = build(
        "",
        r#"enrich = [{ field = "order_line", model = "sale.order.line", fields = ["name"] }]"#,
    )
    .expect("valid");
    let odoo = snapshot.sources["odoo"].odoo.as_ref().expect("odoo");
    assert!(odoo.poll.is_none());
    let shown = format!("{odoo:?}");
    assert!(
        shown.contains("gateway@example.com") && !shown.contains("secret-key"),
        "{shown}"
    );
    assert_eq!(snapshot.subscriptions[0].enrich.len(), 1);
    let file = parse(
        &BASE.replace("ODOO_EXTRA", "").replace("SUB_EXTRA", ""),
        "gw.toml",
    )
    .unwrap();
    let shown = format!("{:?}", file.sources[0]);
    assert!(!shown.contains("secret-key"), "{shown}");
}

#[test]
fn a_poll_table_gets_its_defaults() {
    let snapshot = build(
        "[sources.odoo.poll]\nmodels = [{ model = \"sale.order\" }]",
        "",
    )
    .expect("valid");
    let poll = snapshot.sources["odoo"]
        .odoo
        .as_ref()
        .unwrap()
        .poll
        .clone()
        .expect("poll");
    assert_eq!(poll.interval, std::time::Duration::from_secs(60));
    assert_eq!(poll.page_size, 200);
    assert_eq!(poll.start, super::Start::Now);
    assert!(!poll.reconcile);
}

#[test]
fn every_mistake_is_named_by_its_key() {
    let odoo = r#"timeout = "0s"
retries = 50
[sources.odoo.poll]
page_size = 0
start = "yesterday"
models = [{ model = "Sale Order" }, { model = "sale.order", fields = ["Name"] }]"#;
    let odoo = format!("{odoo}\n[sources.odoo.enrich]\n\"Sale\" = [{{ field = \"x-y\" }}]");
    let sub = r#"enrich = [{ field = "order-line" }, { field = "partner_id", model = ".x", fields = ["a b"] }]"#;
    let err = build(&odoo, sub).expect_err("invalid").to_string();
    for expected in [
        "sources[0].odoo.timeout",
        "sources[0].odoo.retries: at most 5",
        "sources[0].odoo.poll.page_size",
        "sources[0].odoo.poll.start: `yesterday`",
        "sources[0].odoo.poll.models[0].model: `Sale Order`",
        "sources[0].odoo.poll.models[1].fields[0]: `Name`",
        "subscriptions[0].enrich[0].field: `order-line`",
        "subscriptions[0].enrich[1].model: `.x`",
        "subscriptions[0].enrich[1].fields[0]: `a b`",
        "sources[0].odoo.enrich: `Sale` is not an Odoo model name",
        "sources[0].odoo.enrich.\"Sale\"[0].field: `x-y`",
    ] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
    // Lines are found inside the sub-tables.
    assert!(err.contains("line 10: sources[0].odoo.timeout"), "{err}");
    assert!(
        err.contains("line 13: sources[0].odoo.poll.page_size"),
        "{err}"
    );
    assert!(err.contains("line 14: sources[0].odoo.poll.start"), "{err}");
}

#[test]
fn a_bad_url_or_an_unknown_key_is_refused() {
    let text = BASE
        .replace("https://odoo.example.com/", "ftp://odoo")
        .replace("ODOO_EXTRA", "")
        .replace("SUB_EXTRA", "");
    let file = parse(&text, "gw.toml").unwrap();
    let host = PluginHost::new(PluginLimits::default(), None).expect("host");
    let err = Snapshot::build(file, Path::new("/tmp"), "gw.toml", &host, None)
        .expect_err("bad url")
        .to_string();
    assert!(err.contains("sources[0].odoo.url"), "{err}");
    let err = build("password = \"x\"", "")
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("unknown field `password`"), "{err}");
}

#[test]
fn enrichment_needs_a_source_with_odoo() {
    let text = BASE
        .replace("[sources.odoo]\nurl = \"https://odoo.example.com/\"\ndatabase = \"prod\"\nlogin = \"gateway@example.com\"\napi_key = \"secret-key-0123456789\"\nODOO_EXTRA\n", "")
        .replace("SUB_EXTRA", "enrich = [{ field = \"partner_id\" }]");
    let file = parse(&text, "gw.toml").unwrap();
    let host = PluginHost::new(PluginLimits::default(), None).expect("host");
    let err = Snapshot::build(file, Path::new("/tmp"), "gw.toml", &host, None)
        .expect_err("no odoo")
        .to_string();
    assert!(
        err.contains("subscriptions[0].enrich: no source has [sources.odoo]"),
        "{err}"
    );
}
