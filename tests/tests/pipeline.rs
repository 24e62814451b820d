//! End to end over real sockets: Odoo fixtures in, signed deliveries out, with retries,
//! timeouts, dead letters, replays, deduplication and plugin errors; every scenario on both
//! engines of the work plane.

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway::signing::SigningSecret;
use odoo_gateway_tests::harness::{Config, Engine, eventually};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, fixtures, on_both_engines, plugin};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "test-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    gateway: TestGateway,
    inbox: Inbox,
    client: HttpClient,
    _dir: tempfile::TempDir,
}

/// A gateway on `engine` with one source, three destinations (paths of the inbox), the given
/// `[delivery]` line and subscriptions.
async fn setup(
    engine: &Engine<'_>,
    subscriptions: &str,
    delivery: &str,
    inbox: InboxOptions,
) -> Setup {
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![SECRET.parse().expect("secret")],
        ..inbox
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::on(engine)
        .server(&format!("admin_token = \"{ADMIN}\""))
        .server("max_body_bytes = 65536")
        .delivery(delivery)
        .backoff(&["50ms"])
        .source(
            "odoo",
            TOKEN,
            "[sources.actions]\n\"SO confirmed\" = \"confirmed\"",
        )
        .destination("inbox", inbox.url("/inbox"), SECRET, "")
        .destination("fastfreight", inbox.url("/fastfreight"), SECRET, "")
        .destination("parcelpost", inbox.url("/parcelpost"), SECRET, "")
        .raw(subscriptions)
        .toml();
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway starts");
    Setup {
        gateway,
        inbox,
        client: HttpClient::new(),
        _dir: dir,
    }
}

const EVERYTHING: &str = r#"
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["inbox"]
"#;

impl Setup {
    async fn post_native(&self, body: &[u8], query: &str) -> odoo_gateway_tests::Reply {
        let url = self.gateway.url(&format!("/v1/odoo/odoo/{TOKEN}{query}"));
        self.client.post_json(&url, body).await.expect("post")
    }

    async fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        let auth = format!("Bearer {ADMIN}");
        let reply = self
            .client
            .send(
                method,
                &self.gateway.url(path),
                &[("authorization", &auth)],
                Vec::new(),
            )
            .await
            .expect("admin");
        assert!(
            reply.status < 300,
            "{path}: {} {:?}",
            reply.status,
            reply.body
        );
        reply.json()
    }

    async fn wait_dead_letters(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let letters = self.admin("GET", "/admin/dead-letters").await["dead_letters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if letters.len() >= n || tokio::time::Instant::now() > deadline {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

on_both_engines!(
    every_native_fixture_arrives_signed_with_its_payload_on_sled,
    every_native_fixture_arrives_signed_with_its_payload_on_nats,
    every_native_fixture_arrives_signed_with_its_payload
);

async fn every_native_fixture_arrives_signed_with_its_payload(engine: &Engine<'_>) {
    let s = setup(engine, EVERYTHING, "", InboxOptions::default()).await;
    let corpus = fixtures("native");
    let mut ids = Vec::new();
    for (name, body) in &corpus {
        let reply = s.post_native(body, "").await;
        assert_eq!(reply.status, 202, "{name}: {:?}", reply.body);
        ids.push(reply.json()["id"].as_str().expect("id").to_owned());
    }
    let received = s
        .inbox
        .wait_for(corpus.len(), WAIT)
        .await
        .expect("all delivered");
    assert_eq!(received.len(), corpus.len());
    for got in &received {
        assert!(got.verified(), "signature: {:?}", got.verification);
        let envelope: serde_json::Value = serde_json::from_slice(&got.body).expect("json body");
        let id = envelope["id"].as_str().expect("event id");
        let index = ids
            .iter()
            .position(|i| i == id)
            .expect("an acknowledged id");
        let sent: serde_json::Value =
            serde_json::from_slice(&corpus[index].1).expect("fixture json");
        assert_eq!(envelope["payload"], sent, "{}", corpus[index].0);
        assert_eq!(envelope["model"], sent["_model"]);
        assert!(got.webhook_id().expect("webhook-id").starts_with(id));
        assert_eq!(got.header("content-type"), Some("application/json"));
    }
    let confirmed = received
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).expect("json"))
        .find(|e| e["model"] == "sale.order")
        .expect("the order");
    assert_eq!(
        confirmed["action"], "confirmed",
        "mapped from `SO confirmed(#57)`"
    );
    s.gateway.stop().await.expect("clean stop");
}

on_both_engines!(
    a_failing_receiver_is_retried_until_it_recovers_on_sled,
    a_failing_receiver_is_retried_until_it_recovers_on_nats,
    a_failing_receiver_is_retried_until_it_recovers
);

async fn a_failing_receiver_is_retried_until_it_recovers(engine: &Engine<'_>) {
    let s = setup(
        engine,
        EVERYTHING,
        "retries = 5",
        InboxOptions {
            fail_first: 2,
            ..Default::default()
        },
    )
    .await;
    let reply = s
        .post_native(&fixture("native/account.move.posted.json"), "")
        .await;
    assert_eq!(reply.status, 202);
    let received = s.inbox.wait_for(3, WAIT).await.expect("three attempts");
    let ids: Vec<_> = received
        .iter()
        .map(|r| r.webhook_id().expect("id").to_owned())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "the webhook-id is stable across retries: {ids:?}"
    );
    assert_eq!(
        received
            .iter()
            .filter_map(|r| r.answered)
            .map(|s| s.as_u16())
            .collect::<Vec<_>>(),
        [500, 500, 200]
    );
    // The last attempt is stored after the receiver's answer: read until it shows.
    let statuses = eventually(WAIT, "three stored attempts", || async {
        let attempts = s
            .admin("GET", &format!("/admin/jobs/{}/attempts", ids[0]))
            .await;
        let statuses: Vec<_> = attempts["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["status"].as_u64())
            .collect();
        (statuses.len() >= 3).then_some(statuses)
    })
    .await;
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    assert_eq!(s.inbox.received().len(), 3, "no delivery after the success");
}

on_both_engines!(
    a_hanging_receiver_times_out_and_is_dead_lettered_then_replayed_on_sled,
    a_hanging_receiver_times_out_and_is_dead_lettered_then_replayed_on_nats,
    a_hanging_receiver_times_out_and_is_dead_lettered_then_replayed
);

async fn a_hanging_receiver_times_out_and_is_dead_lettered_then_replayed(engine: &Engine<'_>) {
    let subs = r#"
[[subscriptions]]
id = "slow"
events = ["*"]
destinations = ["inbox"]
timeout = "200ms"
retries = 1
"#;
    let s = setup(engine, subs, "", InboxOptions::default()).await;
    s.inbox.set_hang(true);
    let started = std::time::Instant::now();
    assert_eq!(
        s.post_native(&fixture("native/res.partner.saved.json"), "")
            .await
            .status,
        202
    );
    let dead = s.wait_dead_letters(1).await;
    assert_eq!(dead.len(), 1, "dead-lettered after 2 timed-out attempts");
    assert!(started.elapsed() < Duration::from_secs(10));
    let reason = dead[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("gave up after 2 attempts") && reason.contains("timeout"),
        "{reason}"
    );
    assert_eq!(s.inbox.received().len(), 2);

    s.inbox.set_hang(false);
    let id = dead[0]["id"].as_str().expect("id");
    s.admin("POST", &format!("/admin/dead-letters/{id}/replay"))
        .await;
    let received = s.inbox.wait_for(3, WAIT).await.expect("replayed delivery");
    assert_eq!(received[2].webhook_id(), Some(id));
    assert!(s.wait_dead_letters(0).await.is_empty());
}

on_both_engines!(
    a_receiver_that_keeps_failing_is_dead_lettered_after_the_configured_retries_on_sled,
    a_receiver_that_keeps_failing_is_dead_lettered_after_the_configured_retries_on_nats,
    a_receiver_that_keeps_failing_is_dead_lettered_after_the_configured_retries
);

async fn a_receiver_that_keeps_failing_is_dead_lettered_after_the_configured_retries(
    engine: &Engine<'_>,
) {
    let s = setup(
        engine,
        EVERYTHING,
        "retries = 2",
        InboxOptions {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        s.post_native(&fixture("native/stock.quant.quantity_changed.json"), "")
            .await
            .status,
        202
    );
    let dead = s.wait_dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0]["reason"].as_str().expect("reason").contains("503"));
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(s.inbox.received().len(), 3);
}

on_both_engines!(
    the_same_event_twice_is_acknowledged_twice_and_delivered_once_on_sled,
    the_same_event_twice_is_acknowledged_twice_and_delivered_once_on_nats,
    the_same_event_twice_is_acknowledged_twice_and_delivered_once
);

async fn the_same_event_twice_is_acknowledged_twice_and_delivered_once(engine: &Engine<'_>) {
    let s = setup(engine, EVERYTHING, "", InboxOptions::default()).await;
    let body = fixture("native/product.template.price_changed.json");
    let first = s.post_native(&body, "").await.json();
    let second = s.post_native(&body, "").await.json();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["duplicate"].as_bool(), second["duplicate"].as_bool()),
        (Some(false), Some(true))
    );

    let envelope = br#"{"id": "ext-42", "model": "res.partner", "action": "create", "record_id": 9, "payload": {"name": "A"}}"#;
    let url = s.gateway.url(&format!("/v1/events/odoo/{TOKEN}"));
    let a = s
        .client
        .post_json(&url, envelope)
        .await
        .expect("post")
        .json();
    let changed = br#"{"id": "ext-42", "model": "res.partner", "action": "create", "record_id": 9, "payload": {"name": "B"}}"#;
    let b = s
        .client
        .post_json(&url, changed)
        .await
        .expect("post")
        .json();
    assert_eq!(a["id"], b["id"], "an explicit id decides");
    s.inbox.wait_for(2, WAIT).await.expect("two deliveries");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.inbox.received().len(), 2);
}

on_both_engines!(
    xml_in_and_xml_out_on_sled,
    xml_in_and_xml_out_on_nats,
    xml_in_and_xml_out
);

async fn xml_in_and_xml_out(engine: &Engine<'_>) {
    let subs = r#"
[[subscriptions]]
id = "xml"
events = ["res.partner.*"]
destinations = ["inbox"]
format = "xml"
"#;
    let s = setup(engine, subs, "", InboxOptions::default()).await;
    let xml = r#"<?xml version="1.0"?><event model="res.partner" action="write" record-id="9"><payload><id type="int">9</id><name>Déco Addict</name><vat type="bool">false</vat></payload></event>"#;
    let url = s.gateway.url("/v1/events/odoo");
    let auth = format!("Bearer {TOKEN}");
    let reply = s
        .client
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/xml"),
                ("authorization", &auth),
            ],
            xml.as_bytes().to_vec(),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let got = &s.inbox.wait_for(1, WAIT).await.expect("delivered")[0];
    assert_eq!(got.header("content-type"), Some("application/xml"));
    let root = odoo_gateway::xmljson::parse_document(&got.body).expect("xml body");
    assert_eq!(root.name, "event");
    assert_eq!(
        root.value["payload"],
        serde_json::json!({"id": 9, "name": "Déco Addict", "vat": false})
    );
}

on_both_engines!(
    plugins_route_filter_and_their_errors_are_honoured_on_sled,
    plugins_route_filter_and_their_errors_are_honoured_on_nats,
    plugins_route_filter_and_their_errors_are_honoured
);

async fn plugins_route_filter_and_their_errors_are_honoured(engine: &Engine<'_>) {
    let subs = format!(
        r#"
[[subscriptions]]
id = "shipping"
events = ["sale.order.*"]
destinations = ["fastfreight", "parcelpost", "inbox"]
plugin = "{router}"
[subscriptions.config]
"route.Ship: FastFreight" = "fastfreight"
"route.Ship: ParcelPost" = "parcelpost"
[[subscriptions]]
id = "rejecting"
events = ["res.partner.*"]
destinations = ["inbox"]
plugin = "{hostile}"
[subscriptions.config]
mode = "reject"
[[subscriptions]]
id = "retrying"
events = ["account.move.*"]
destinations = ["inbox"]
plugin = "{hostile}"
retries = 1
[subscriptions.config]
mode = "retry"
"#,
        router = plugin("shipper_router").display(),
        hostile = plugin("hostile_plugin").display(),
    );
    let s = setup(engine, &subs, "", InboxOptions::default()).await;
    let url = s.gateway.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = s
        .client
        .post_json(&url, &fixture("rich/sale.order.confirmed.json"))
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let received = s
        .inbox
        .wait_for(2, WAIT)
        .await
        .expect("one delivery per shipper");
    let mut paths: Vec<_> = received.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/fastfreight", "/parcelpost"]);
    assert!(received.iter().all(|r| r.verified()));

    assert_eq!(
        s.post_native(&fixture("native/res.partner.saved.json"), "")
            .await
            .status,
        202
    );
    assert_eq!(
        s.post_native(&fixture("native/account.move.posted.json"), "")
            .await
            .status,
        202
    );
    let dead = s.wait_dead_letters(2).await;
    let reasons: Vec<_> = dead
        .iter()
        .map(|d| d["reason"].as_str().expect("reason").to_owned())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("plugin_rejected")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("gave up after 2 attempts") && r.contains("plugin_retry")),
        "the plugin ran once and was retried once: {reasons:?}"
    );
    assert_eq!(s.inbox.received().len(), 2, "nothing else was delivered");
}

on_both_engines!(
    rotation_signs_with_old_and_new_secrets_on_sled,
    rotation_signs_with_old_and_new_secrets_on_nats,
    rotation_signs_with_old_and_new_secrets
);

async fn rotation_signs_with_old_and_new_secrets(engine: &Engine<'_>) {
    let s = setup(engine, EVERYTHING, "", InboxOptions::default()).await;
    let old: SigningSecret = SECRET.parse().expect("secret");
    assert!(!old.expose_whsec().is_empty());
    assert_eq!(
        s.post_native(&fixture("native/res.partner.minimal.json"), "")
            .await
            .status,
        202
    );
    let got = &s.inbox.wait_for(1, WAIT).await.expect("delivered")[0];
    assert!(got.verified());
    assert!(
        got.header("webhook-signature")
            .expect("signature")
            .starts_with("v1,")
    );
}
