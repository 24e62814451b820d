//! `openapi.json` against the router, in both directions.

use odoo_gateway_tests::{HttpClient, TestGateway, workspace};
use serde_json::Value;

use super::common::*;

/// Every documented operation is routed (answers something other than the router's 404 or
/// 405) and every route of [`odoo_gateway::api::API_ROUTES`] is documented.
#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_server_has() {
    let text = std::fs::read_to_string(workspace().join("openapi.json"))
        .expect("openapi.json at the repository root");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in odoo_gateway::api::API_ROUTES {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in openapi.json"
        );
    }
    for (method, path) in &documented {
        let under_api = [
            "/v1/subscriptions",
            "/v1/plugins",
            "/v1/deliveries",
            "/v1/dead-letters",
            "/v1/event-types",
            "/v1/portal-sessions",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        if under_api {
            assert!(
                odoo_gateway::api::API_ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not routed"
            );
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "x")
            .replace("{type}", "x.y")
            .replace("{source}", "odoo")
            .replace("{token}", "t");
        let reply = client
            .send(method, &gateway.url(&concrete), &[], Vec::new())
            .await
            .expect("request");
        let unrouted = reply.status == 405
            || (reply.status == 404
                && serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|v| v["error"]["code"] == "not_found"));
        assert!(
            !unrouted,
            "{method} {path} is documented but the server answers {}",
            reply.status
        );
    }
    gateway.stop().await.expect("stop");
}

/// The gateway serves the same document at `/openapi.json`, with no credentials.
#[tokio::test]
async fn the_document_is_served_as_it_is_in_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let served = client
        .get(&gateway.url("/openapi.json"))
        .await
        .expect("get");
    assert_eq!(served.status, 200);
    let on_disk = std::fs::read_to_string(workspace().join("openapi.json")).expect("read");
    assert_eq!(served.body, on_disk.as_bytes());
    let doc: Value = serde_json::from_slice(&served.body).expect("JSON");
    assert!(doc["paths"].is_object());
}
