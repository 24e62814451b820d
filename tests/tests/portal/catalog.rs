//! The event catalog against the fake Odoo: schemas built from `fields_get` (labels,
//! selections, relations, what enrichment adds), cached; types seen at ingest with inferred
//! schemas, kept across a restart on both engines; an app's catalog cut to its grants and
//! sources; a subscription's filter checked against the schemas; the admin view and the CLI.

use odoo_gateway::cli::event_types::EventTypesCommand;
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{HttpClient, TestGateway};
use serde_json::{Value, json};

use super::common::*;

const SHOP_TOKEN: &str = "shop-token-0123456789";

fn catalog_config(engine: &Engine<'_>, odoo: &FakeOdoo) -> String {
    let source = format!(
        r#"actions = {{ "SO confirmed" = "confirmed" }}
[sources.odoo]
url = "{url}"
database = "{db}"
login = "{login}"
api_key = "{key}"
retries = 0
timeout = "2s"
[sources.odoo.enrich]
"sale.order" = [{{ field = "partner_id", fields = ["name", "zip", "country_id"] }}]
[sources.odoo.app_enrich]
"sale.order" = [{{ field = "order_line", model = "sale.order.line", fields = ["product_id", "product_uom_qty"] }}]
"#,
        url = odoo.url(),
        db = fake_odoo::DATABASE,
        login = fake_odoo::LOGIN,
        key = fake_odoo::API_KEY,
    );
    let apps = format!(
        "{}{}\n[[sources]]\nname = \"shop\"\ntokens = [\"{SHOP_TOKEN}\"]\n",
        app_toml(ACME, "events = [\"sale.order.*\"]\nsources = [\"odoo\"]"),
        app_toml(OTHER, "events = [\"*\", \"res.partner.confirmed\"]"),
    );
    config(engine, &source, &apps)
}

fn types(listed: &Value) -> Vec<String> {
    listed["event_types"]
        .as_array()
        .expect("event_types")
        .iter()
        .filter_map(|t| t["type"].as_str().map(str::to_owned))
        .collect()
}

async fn post_cart(gw: &TestGateway) {
    let envelope = json!({"model": "cart", "action": "abandoned", "record_id": 4,
        "payload": {"id": 4, "total": 99.5, "customer": "A", "items": [{"sku": "X-1", "qty": 2}]}});
    let reply = HttpClient::new()
        .send(
            "POST",
            &gw.url("/v1/events/shop"),
            &[
                ("authorization", &format!("Bearer {SHOP_TOKEN}")),
                ("content-type", "application/json"),
            ],
            envelope.to_string().into_bytes(),
        )
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_come_from_odoo_fields_get_with_what_enrichment_adds() {
    let odoo = FakeOdoo::start().await.expect("fake Odoo");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&catalog_config(&Engine::Sled, &odoo), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;

    let listed = acme.call("GET", "/v1/event-types", None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let listed = listed.json();
    // The webhook's mapped action and the default one, on the model the source enriches.
    assert_eq!(types(&listed), ["sale.order.confirmed", "sale.order.write"]);
    let confirmed = acme
        .call("GET", "/v1/event-types/sale.order.confirmed", None)
        .await
        .json();
    assert_eq!(confirmed["schema_origin"], "odoo", "{confirmed}");
    assert!(
        confirmed["description"]
            .as_str()
            .is_some_and(|d| d.contains("`SO confirmed`")),
        "{confirmed}"
    );
    let schema = &confirmed["schema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let p = &schema["properties"];
    // As Odoo describes them: labels, selection values, relations, required.
    assert_eq!(p["name"]["title"], "Order Reference");
    assert_eq!(p["name"]["type"], "string", "required: never false");
    assert_eq!(
        p["state"]["anyOf"][0]["enum"],
        json!(["draft", "sent", "sale", "cancel"])
    );
    assert_eq!(p["amount_total"]["type"], "number");
    assert_eq!(p["validity_date"]["anyOf"][0]["format"], "date");
    assert_eq!(p["order_line"]["x-odoo-relation"], "sale.order.line");
    assert_eq!(p["_model"]["const"], "sale.order");
    assert_eq!(
        p["locked"]["description"],
        "Locked orders cannot be modified."
    );
    // What enrichment adds: the operator's always, an app's on request.
    assert_eq!(p["partner_id"]["title"], "Customer");
    assert_eq!(p["partner_id"]["x-enrich"]["by"], "source");
    assert_eq!(p["partner_id"]["x-enrich"]["model"], "res.partner");
    let partner = &p["partner_id"]["anyOf"][1]["anyOf"][0]["properties"];
    assert_eq!(partner["zip"]["title"], "Zip");
    assert_eq!(partner["country_id"]["x-odoo-relation"], "res.country");
    assert_eq!(p["order_line"]["x-enrich"]["by"], "app_allowance");
    let line = &p["order_line"]["anyOf"][1]["items"]["properties"];
    assert_eq!(line["product_uom_qty"]["title"], "Quantity");
    let enrich: Vec<&str> = confirmed["enrich"]
        .as_array()
        .expect("enrich")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(enrich, ["partner_id", "order_line"]);
    // An example in Odoo's webhook shape, the partner as enrichment delivers it.
    let example = &confirmed["example"];
    assert_eq!(example["_model"], "sale.order");
    assert_eq!(example["_action"], "SO confirmed(#1)");
    assert_eq!(example["name"], "Order Reference");
    assert_eq!(example["partner_id"]["zip"], "Zip");

    // Asked once per model, then cached.
    let asked = odoo.calls("sale.order.fields_get");
    acme.call("GET", "/v1/event-types", None).await;
    assert_eq!(odoo.calls("sale.order.fields_get"), asked);
    assert_eq!(asked, 1);
    assert_eq!(odoo.calls("res.partner.fields_get"), 1);

    // A filter is checked against the schema of what the subscription receives.
    let create = |filter: Value| {
        let acme = &acme;
        async move {
            acme.call(
                "POST",
                "/v1/subscriptions",
                Some(json!({"events": ["sale.order.confirmed"], "destination": {"url": "http://127.0.0.1:9/x"}, "filter": filter})),
            )
            .await
        }
    };
    let unknown = create(json!({"match": {"colour": "red"}})).await;
    assert_eq!(
        (unknown.status, code(&unknown)),
        (422, "unknown_field".into())
    );
    let message = unknown.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        message.starts_with("filter.match.colour: `colour` is not a field of `sale.order`"),
        "{message}"
    );
    let typo = create(json!({"fields": ["id", "nme"]})).await;
    assert_eq!((typo.status, code(&typo)), (422, "unknown_field".into()));
    assert!(
        typo.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("filter.fields[1]"))
    );
    let lines = create(json!({"match": {"order_line.0.product_uom_qty": 2}})).await;
    assert_eq!(
        lines.status, 201,
        "the app may enrich order_line: {:?}",
        lines.body
    );
    let not_allowed = create(json!({"match": {"order_line.0.name": "x"}})).await;
    assert_eq!(
        (not_allowed.status, code(&not_allowed)),
        (422, "unknown_field".into()),
        "name is not among the line fields an app may have"
    );
    let unreachable = create(json!({"match": {"user_id.login": "x"}})).await;
    assert_eq!(
        (unreachable.status, code(&unreachable)),
        (422, "unknown_field".into()),
        "user_id is sent as an id"
    );
    let fine = create(json!({"match": {"state": ["sale"], "partner_id.zip": "94523"}, "fields": ["id", "name", "partner_id"]})).await;
    assert_eq!(fine.status, 201, "{:?}", fine.body);
    let patched = acme
        .call(
            "PATCH",
            &format!(
                "/v1/subscriptions/{}",
                fine.json()["id"].as_str().expect("id")
            ),
            Some(json!({"filter": {"match": {"colour": "red"}}})),
        )
        .await;
    assert_eq!(patched.status, 422, "an update is checked too");

    // An app sees only its grants and sources; the operator sees every type.
    post_cart(&gw).await;
    let other = Api::new(&gw, OTHER, "read write").await;
    let theirs = eventually(WAIT, "the cart type in the catalog", || async {
        let listed = other.call("GET", "/v1/event-types", None).await.json();
        types(&listed)
            .contains(&"cart.abandoned".to_owned())
            .then_some(listed)
    })
    .await;
    assert!(types(&theirs).contains(&"sale.order.confirmed".to_owned()));
    assert!(
        types(&theirs).contains(&"res.partner.confirmed".to_owned()),
        "an exact grant names a model the webhook action may run on"
    );
    let hidden = acme
        .call("GET", "/v1/event-types/cart.abandoned", None)
        .await;
    assert_eq!(hidden.status, 404);
    let cart = other
        .call("GET", "/v1/event-types/cart.abandoned", None)
        .await
        .json();
    assert_eq!(cart["schema_origin"], "inferred", "{cart}");
    assert_eq!(cart["origins"], json!(["seen"]));
    assert_eq!(cart["schema"]["properties"]["total"]["type"], "number");
    assert_eq!(
        cart["schema"]["properties"]["items"]["items"]["properties"]["sku"]["type"],
        "string"
    );
    assert_eq!(
        cart["example"]["customer"], "text",
        "placeholders, not the payload"
    );
    // A filter on an inferred schema is not refused: a later payload may have the field.
    let open = other
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["cart.abandoned"], "destination": {"url": "http://127.0.0.1:9/x"}, "filter": {"match": {"coupon": "X"}}})),
        )
        .await;
    assert_eq!(open.status, 201, "{:?}", open.body);

    let operator = gw.admin(ADMIN, "GET", "/admin/event-types", None).await;
    for t in [
        "cart.abandoned",
        "sale.order.confirmed",
        "res.partner.confirmed",
    ] {
        assert!(types(&operator).contains(&t.to_owned()), "{t}");
    }
    let as_acme = gw
        .admin(ADMIN, "GET", "/admin/event-types?app=acme", None)
        .await;
    assert_eq!(
        types(&as_acme),
        ["sale.order.confirmed", "sale.order.write"]
    );
    let no_app = HttpClient::new()
        .send(
            "GET",
            &gw.url("/admin/event-types?app=nope"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("admin");
    assert_eq!((no_app.status, code(&no_app)), (404, "no_such_app".into()));

    // The CLI shows the same.
    let mut out = Vec::new();
    EventTypesCommand::new(&gw.url(""), ADMIN, &["list"])
        .expect("args")
        .run(&mut out)
        .await
        .expect("list");
    let out = String::from_utf8(out).expect("UTF-8");
    let row = out
        .lines()
        .find(|l| l.starts_with("sale.order.confirmed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("odoo"), "{row}");
    let mut shown = Vec::new();
    EventTypesCommand::new(
        &gw.url(""),
        ADMIN,
        &["show", "sale.order.confirmed", "--app", "acme"],
    )
    .expect("args")
    .run(&mut shown)
    .await
    .expect("show");
    let shown = String::from_utf8(shown).expect("UTF-8");
    for expected in [
        "schema from: odoo",
        "Customer",
        "Example:",
        "\"_model\": \"sale.order\"",
    ] {
        assert!(shown.contains(expected), "{expected}:\n{shown}");
    }
    gw.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odoo_that_does_not_answer_leaves_a_note_and_is_asked_again_later() {
    let odoo = FakeOdoo::start().await.expect("fake Odoo");
    odoo.set_down(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&catalog_config(&Engine::Sled, &odoo), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;
    let entry = acme
        .call("GET", "/v1/event-types/sale.order.confirmed", None)
        .await
        .json();
    assert_eq!(entry["schema_origin"], "none", "{entry}");
    assert!(
        entry["schema_note"]
            .as_str()
            .is_some_and(|n| n.contains("did not describe `sale.order`")),
        "{entry}"
    );
    // Without a schema from Odoo, nothing is refused.
    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["sale.order.*"], "destination": {"url": "http://127.0.0.1:9/x"}, "filter": {"match": {"colour": "red"}}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    gw.stop().await.expect("stop");
}

/// Types seen are kept in the control plane: a restarted gateway (or another instance) knows
/// them.
async fn seen_types_are_kept(engine: &Engine<'_>) {
    let odoo = FakeOdoo::start().await.expect("fake Odoo");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = catalog_config(engine, &odoo);
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway");
    post_cart(&gw).await;
    post_order(&gw, json!({"x_priority": "high"})).await;
    gw.stop().await.expect("stop");

    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway again");
    let listed = gw.admin(ADMIN, "GET", "/admin/event-types", None).await;
    assert!(
        types(&listed).contains(&"cart.abandoned".to_owned()),
        "{listed}"
    );
    let cart = gw
        .admin(ADMIN, "GET", "/admin/event-types/cart.abandoned", None)
        .await;
    assert_eq!(cart["schema_origin"], "inferred");
    assert_eq!(
        cart["schema"]["required"],
        json!(["customer", "id", "items", "total"])
    );
    // The order's own type has Odoo's schema; its example shows the fields seen in payloads.
    let order = gw
        .admin(
            ADMIN,
            "GET",
            "/admin/event-types/sale.order.confirmed",
            None,
        )
        .await;
    assert_eq!(order["schema_origin"], "odoo");
    assert!(
        order["origins"]
            .as_array()
            .expect("origins")
            .contains(&json!("seen"))
    );
    assert!(order["seen_ms"].as_u64().is_some(), "{order}");
    assert_eq!(order["example"]["amount_total"], 100.0, "{order}");
    gw.stop().await.expect("stop");
}

on_both_engines!(
    seen_event_types_outlive_a_restart_on_sled,
    seen_event_types_outlive_a_restart_on_nats,
    seen_types_are_kept
);
