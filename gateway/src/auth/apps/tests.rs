//! App validation, the sled registry, and redaction.

use std::time::Duration;

use super::*;
use crate::config::file::AppConfig;
use crate::control::apps::AppStore;

fn config(toml_text: &str) -> Vec<AppConfig> {
    crate::config::parse(toml_text, "t.toml")
        .expect("parses")
        .apps
}

const HASH: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"; // sha256("secret")

#[test]
fn config_apps_are_validated_with_keys_named() {
    let mut problems = Vec::new();
    let apps = ConfigApps::build(
        &config(&format!(
            r#"
            [[apps]]
            name = "crm"
            scopes = ["write", "read"]
            oauth2_client_id = "crm-client"
            oauth2_client_secret_sha256 = "{HASH}"
            token_ttl = "2s"

            [[apps]]
            name = "bad name"
            scopes = ["admin"]
            oauth2_client_id = "crm-client"
            oauth2_client_secret_sha256 = "abc"
            oauth1_consumer_key = "k"
            "#
        )),
        &mut problems,
    );
    let crm = apps.get("crm").expect("crm");
    assert_eq!(crm.scopes, ["read", "write"]);
    assert_eq!(crm.token_ttl, Duration::from_secs(2));
    assert_eq!(crm.rate_limit_per_minute, 600);
    assert!(crm.oauth2.as_ref().unwrap().secret_matches("secret"));
    assert!(!crm.oauth2.as_ref().unwrap().secret_matches("Secret"));
    let text = problems.join("\n");
    for expected in [
        "apps[1].name",
        "apps[1].scopes",
        "apps[1].oauth2_client_secret_sha256",
        "apps[1].oauth2_client_id",
        "apps[1].oauth1_consumer_key",
    ] {
        assert!(text.contains(expected), "{expected} missing in {text}");
    }
    assert!(!text.contains("apps[0]"), "{text}");
}

#[test]
fn an_app_needs_some_credentials_and_unknown_keys_are_refused() {
    let mut problems = Vec::new();
    ConfigApps::build(&config("[[apps]]\nname = \"x\"\n"), &mut problems);
    assert!(
        problems[0].contains("give OAuth2 client credentials"),
        "{problems:?}"
    );
    assert!(
        crate::config::parse(
            "[[apps]]\nname = \"x\"\noauth2_client_secret = \"s\"\n",
            "t"
        )
        .is_err()
    );
}

#[test]
fn stored_apps_are_indexed_by_credential_and_removed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .temporary(true)
        .open()
        .unwrap();
    let store = AppStore::open(&db).unwrap();
    let (app, issued) = generate("erp", vec!["read".into()]);
    assert!(store.insert(&app).unwrap());
    assert!(!store.insert(&app).unwrap(), "the name is taken");
    let by_id = store
        .get(Lookup::ClientId(&issued.oauth2_client_id))
        .unwrap()
        .expect("by client id");
    assert!(
        by_id
            .oauth2
            .as_ref()
            .unwrap()
            .secret_matches(&issued.oauth2_client_secret)
    );
    let by_key = store
        .get(Lookup::ConsumerKey(&issued.oauth1_consumer_key))
        .unwrap()
        .expect("by consumer key");
    assert_eq!(
        by_key.oauth1.as_ref().unwrap().consumer_secret,
        issued.oauth1_consumer_secret
    );
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(store.remove("erp").unwrap());
    assert!(!store.remove("erp").unwrap());
    assert!(
        store
            .get(Lookup::ClientId(&issued.oauth2_client_id))
            .unwrap()
            .is_none()
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn generated_credentials_are_random_and_never_shown_by_debug() {
    let (app, issued) = generate("a", vec![]);
    let (_, other) = generate("a", vec![]);
    assert_ne!(issued.oauth2_client_secret, other.oauth2_client_secret);
    assert!(issued.oauth2_client_secret.len() >= 43);
    let shown = format!("{app:?} {issued:?}");
    for secret in [
        &issued.oauth2_client_secret,
        &issued.oauth1_consumer_secret,
        &issued.oauth1_token_secret,
    ] {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    let stored = serde_json::to_string(&app).unwrap();
    assert!(
        !stored.contains(&issued.oauth2_client_secret),
        "only the hash is kept"
    );
}

#[test]
fn scopes_are_checked_and_ordered() {
    assert_eq!(
        normalize_scopes(&["write".into(), "read".into(), "write".into()]).unwrap(),
        ["read", "write"]
    );
    assert!(normalize_scopes(&["admin".into()]).is_err());
}

#[test]
fn config_debug_hides_secrets() {
    let apps = config(
        r#"
        [[apps]]
        name = "crm"
        oauth2_client_id = "id"
        oauth2_client_secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        oauth1_consumer_key = "ck"
        oauth1_consumer_secret = "consumer-secret-value"
        oauth1_token = "tk"
        oauth1_token_secret = "token-secret-value"
        "#,
    );
    let mut problems = Vec::new();
    let built = ConfigApps::build(&apps, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let shown = format!("{apps:?} {built:?}");
    for secret in ["2bb80d537b", "consumer-secret-value", "token-secret-value"] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("crm") && shown.contains("ck"));
}
