//! One gateway, one configuration, the shipper-router plugin in Rust, Python, JavaScript and C:
//! the confirmed order goes through all four, and each language's receivers get the same signed
//! bodies. The interpreted plugins run under their subscriptions' own `plugin_limits`.

use std::collections::BTreeMap;
use std::time::Duration;

use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin, workspace};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "test-token-0123456789";
/// Loading the Python and JavaScript components the first time compiles them.
const WAIT: Duration = Duration::from_secs(60);
const LANGUAGES: &[(&str, &str)] = &[
    ("rust", "shipper_router"),
    ("python", "shipper_router_py"),
    ("js", "shipper_router_js"),
    ("c", "shipper_router_c"),
];

#[tokio::test]
async fn the_gateway_serves_the_same_plugin_in_four_languages() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let mut config = format!(
        r#"
[server]
admin_token = "admin-token-0123456789"
[storage]
path = "data"
[plugins]
cache_dir = "{cache}"
[plugins.limits]
max_cpu_time_ms = 5000
max_memory_bytes = 268435456
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
"#,
        cache = workspace().join("target/plugin-test-cache").display()
    );
    for (lang, component) in LANGUAGES {
        for shipper in ["fastfreight", "parcelpost", "fragile-goods"] {
            config.push_str(&format!(
                "[[destinations]]\nname = \"{lang}-{shipper}\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\n",
                inbox.url(&format!("/{lang}/{shipper}"))
            ));
        }
        let limits = if matches!(*lang, "python" | "js") {
            "plugin_limits = { cpu_time_ms = 5000, memory_bytes = 268435456 }\n"
        } else {
            ""
        };
        config.push_str(&format!(
            r#"[[subscriptions]]
id = "shipping-{lang}"
events = ["sale.order.*"]
destinations = ["{lang}-fastfreight", "{lang}-parcelpost", "{lang}-fragile-goods"]
plugin = "{plugin}"
{limits}[subscriptions.config]
"route.Ship: FastFreight" = "{lang}-fastfreight"
"route.6" = "{lang}-parcelpost"
"product.FURN_8888" = "{lang}-fragile-goods"
"#,
            plugin = plugin(component).display(),
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("the gateway starts with all four plugins");
    let reply = HttpClient::new()
        .post_json(
            &gateway.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("rich/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);

    let received = inbox
        .wait_for(8, WAIT)
        .await
        .expect("two deliveries per language");
    assert!(
        received.iter().all(|r| r.verified()),
        "every delivery is signed"
    );
    let mut by_language: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for r in &received {
        let (lang, shipper) = r.path[1..].split_once('/').expect("/<lang>/<shipper>");
        let lang = LANGUAGES
            .iter()
            .find(|(l, _)| *l == lang)
            .expect("a language")
            .0;
        by_language
            .entry(lang)
            .or_default()
            .insert(shipper.to_owned(), r.body.to_vec());
    }
    let rust = by_language["rust"].clone();
    assert_eq!(
        rust.keys().collect::<Vec<_>>(),
        ["fragile-goods", "parcelpost"]
    );
    for (lang, bodies) in &by_language {
        assert_eq!(bodies, &rust, "{lang} delivered other bodies than rust");
    }
    assert_eq!(by_language.len(), 4);
    gateway.stop().await.expect("stops");
}
