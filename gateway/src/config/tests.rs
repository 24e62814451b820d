//! Configuration errors name the file, the line and the key.

use super::*;

const GOOD: &str = r#"
[[sources]]
name = "odoo"
tokens = ["0123456789abcdef"]

[[destinations]]
name = "d"
url = "https://example.com/hook"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[subscriptions]]
id = "a"
events = ["sale.order.*"]
destinations = ["d"]

[[subscriptions]]
id = "b"
events = ["*.unlink"]
destinations = ["d"]
"#;

use super::build_for_test as build;

#[test]
fn a_good_file_builds() {
    let snapshot = build(GOOD).expect("valid");
    assert_eq!(snapshot.subscriptions.len(), 2);
    assert_eq!(
        snapshot.subscriptions[0].timeout,
        Duration::from_secs(5),
        "default timeout"
    );
    assert_eq!(snapshot.subscriptions[0].retries, 5, "default retries");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let text = GOOD.replace("id = \"b\"", "id = \"b\"\nretry = 3");
    let err = build(&text).expect_err("unknown key").to_string();
    assert!(err.starts_with("gw.toml:18:"), "{err}");
    assert!(err.contains("unknown field `retry`"), "{err}");
    assert!(err.contains("retries"), "says what is expected: {err}");
}

#[test]
fn a_wrong_type_is_refused_with_its_line() {
    let text = GOOD.replace(
        "[[sources]]",
        "[delivery]\nretries = \"five\"\n\n[[sources]]",
    );
    let err = build(&text).expect_err("wrong type").to_string();
    assert!(err.starts_with("gw.toml:3:"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn inconsistencies_name_line_and_key() {
    let text = GOOD.replace(
        "events = [\"*.unlink\"]\ndestinations = [\"d\"]",
        "events = [\"*.unlink\"]\ndestinations = [\"nope\"]",
    );
    let err = build(&text).expect_err("dangling reference").to_string();
    assert!(
        err.contains("line 19: subscriptions[1].destinations[0]: no destination is named `nope`"),
        "{err}"
    );

    let text = GOOD.replace(
        "url = \"https://example.com/hook\"",
        "url = \"ftp://example.com\"",
    );
    let err = build(&text).expect_err("bad url").to_string();
    assert!(err.contains("line 8: destinations[0].url"), "{err}");

    let text = GOOD.replace("events = [\"sale.order.*\"]", "events = [\"sale order\"]");
    let err = build(&text).expect_err("bad pattern").to_string();
    assert!(err.contains("line 13: subscriptions[0].events[0]"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("tokens = [\"0123456789abcdef\"]", "tokens = [\"short\"]")
        .replace(
            "secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
            "secrets = [\"nope\"]",
        );
    let Err(ConfigError::Invalid { problems, .. }) = build(&text) else {
        panic!("invalid")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("line 4: sources[0].tokens"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("line 9: destinations[0].secrets[0]"),
        "{problems:?}"
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let file = parse(GOOD, "gw.toml").expect("parses");
    let debug = format!("{file:?}");
    assert!(
        !debug.contains("0123456789abcdef") && !debug.contains("MfKQ9r8"),
        "{debug}"
    );
}

#[test]
fn an_empty_or_short_admin_token_is_refused() {
    for token in ["", "   ", "admin"] {
        let text = format!("[server]\nadmin_token = \"{token}\"\n{GOOD}");
        let err = build(&text).expect_err("short token").to_string();
        assert!(err.contains("server.admin_token"), "{token:?}: {err}");
        assert!(err.contains("line 2"), "names the line: {err}");
    }
    let text = format!("[server]\nadmin_token = \"{}\"\n{GOOD}", "x".repeat(16));
    assert!(build(&text).is_ok());
    assert!(build(GOOD).is_ok(), "no token: /admin/ is off");
}

#[test]
fn one_subscription_gets_half_the_plugin_calls_unless_told_otherwise() {
    let slots = |text: &str| parse(text, "gw.toml").expect("parses").plugins.slots();
    assert_eq!(slots("[plugins]\nconcurrency = 4\n"), (4, 2));
    assert_eq!(
        slots("[plugins]\nconcurrency = 1\n"),
        (1, 1),
        "at least one"
    );
    assert_eq!(
        slots("[plugins]\nconcurrency = 2\nper_subscription = 2\n"),
        (2, 2)
    );
    for (setting, problem) in [
        ("per_subscription = 0", "give at least 1"),
        (
            "concurrency = 2\nper_subscription = 3",
            "3 is more than the 2 plugin calls at once",
        ),
    ] {
        let text = format!("[plugins]\n{setting}\n{GOOD}");
        let err = build(&text).expect_err("refused").to_string();
        assert!(err.contains("plugins.per_subscription"), "{err}");
        assert!(err.contains(problem), "{err}");
    }
}

#[test]
fn a_subscription_sets_its_plugin_limits_within_the_maximum() {
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wat/echo.wat");
    let with = |limits: &str| {
        GOOD.replace(
            "id = \"a\"",
            &format!("id = \"a\"\nplugin = \"{echo}\"\nplugin_limits = {{ {limits} }}"),
        )
    };
    let snapshot = build(&with("cpu_time_ms = 500, memory_bytes = 134217728")).expect("valid");
    let plugin = snapshot.subscriptions[0].plugin.as_ref().expect("plugin");
    assert_eq!(plugin.limits().cpu_time, Duration::from_millis(500));
    assert_eq!(plugin.limits().memory_bytes, 128 << 20);

    let err = build(&with("cpu_time_ms = 60000"))
        .expect_err("too long")
        .to_string();
    assert!(err.contains("subscriptions[0].plugin_limits"), "{err}");
    assert!(err.contains("max_cpu_time_ms = 2000"), "{err}");
    let err = build(&with("fuel = 3"))
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("unknown field `fuel`"), "{err}");
}

#[test]
fn the_nats_engine_is_validated_with_the_rest_and_its_keys_are_located() {
    let nats =
        |table: &str| format!("[storage]\nengine = \"nats\"\n[storage.nats]\n{table}\n{GOOD}");
    let snapshot = build(&nats(
        "urls = [\"nats://127.0.0.1:4222\"]\ncreds_file = \"gw.creds\"",
    ))
    .expect("valid");
    assert_eq!(snapshot.storage.engine, nats::Engine::Nats);
    assert_eq!(
        snapshot.storage.nats.creds_file.as_deref(),
        Some(Path::new("/tmp/gw.creds")),
        "relative to the file"
    );
    let err = build(&nats("urls = []\nreplicas = 7"))
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("storage.nats.urls: give at least one server"),
        "{err}"
    );
    assert!(
        err.contains("storage.nats.replicas: 7 is not from 1 to 5"),
        "{err}"
    );
    let err = build(&nats("urls = [\"nats://n1:4222\"]\nsecret = \"x\""))
        .expect_err("unknown key")
        .to_string();
    assert!(err.starts_with("gw.toml:5:"), "{err}");
    assert!(err.contains("unknown field `secret`"), "{err}");
    let err = build(&format!("[storage]\nengine = \"etcd\"\n{GOOD}"))
        .expect_err("unknown engine")
        .to_string();
    assert!(err.contains("unknown variant `etcd`"), "{err}");
}

#[test]
fn a_metrics_token_is_one_or_a_list_never_the_admin_token_and_never_shown() {
    let one = build(&format!(
        "[server]\nmetrics_token = \"scrape-token-0123456789\"\n{GOOD}"
    ))
    .expect("one token");
    assert!(one.server.metrics_token.accepts("scrape-token-0123456789"));
    assert!(!one.server.metrics_token.accepts("scrape-token-012345678"));
    let two = build(&format!(
        "[server]\nmetrics_token = [\"scrape-token-0123456789\", \"rotated-token-0123456789\"]\n{GOOD}"
    ))
    .expect("a list");
    assert!(two.server.metrics_token.accepts("rotated-token-0123456789"));
    let shown = format!("{:?}", two.server);
    assert!(!shown.contains("scrape-token"), "{shown}");
    let err = build(&format!(
        "[server]\nadmin_token = \"admin-token-0123456789\"\nmetrics_token = [\"short\", \"admin-token-0123456789\"]\n{GOOD}"
    ))
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("server.metrics_token[0]: give at least 16"),
        "{err}"
    );
    assert!(
        err.contains("server.metrics_token[1]: the admin token"),
        "{err}"
    );
    let err = build(&format!("[telemetry.otlp]\nendpoint = \"nowhere\"\n{GOOD}"))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("telemetry.otlp.endpoint"), "{err}");
}

#[test]
fn a_subscription_without_an_id_is_refused() {
    // Its id names every one of its jobs (`<event>.<id>.<n>`).
    let text = GOOD.replace("id = \"b\"", "id = \"\"");
    let err = build(&text).expect_err("empty id").to_string();
    assert!(
        err.contains("subscriptions[1].id: give the subscription an id"),
        "{err}"
    );
}
