//! `/v1/plugins`: an app uploads a plugin component and lists its uploads.
//!
//! An upload is compiled and type-checked by the plugin host before anything is written: a
//! file that is not WebAssembly, a core module, a component of another world or one that
//! imports WASI is refused with the host's error code, and leaves no trace. Accepted bytes go
//! to `<storage>/plugins/<sha256>.wasm` (written to a temporary name, then renamed, so a
//! reader never sees half a file) and are recorded for the app.

use http::{Response, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::records::{self, StoredPlugin};
use super::{Call, internal};
use crate::http_error::{ApiError, Body, json};
use crate::plugin::PluginError;
use crate::time::now_ms;

/// Largest plugin upload.
pub(super) const MAX_PLUGIN_BYTES: usize = 10 * 1024 * 1024;

/// Uploads an app may keep.
const MAX_PER_APP: usize = 100;

pub(super) fn list(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let plugins = call
        .state
        .control
        .plugins(&call.app.app)
        .map_err(internal)?;
    Ok(json(StatusCode::OK, &json!({ "plugins": plugins })))
}

/// `POST /v1/plugins[?name=<name>]` with `Content-Type: application/wasm`.
pub(super) async fn upload(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let content_type = call
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/wasm") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component's bytes with Content-Type: application/wasm",
        ));
    }
    let name = call.query("name");
    if name
        .as_deref()
        .is_some_and(|n| !super::validate::valid_id(n))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "name: use 1 to 64 letters, digits, `-` or `_`",
        ));
    }
    let bytes = call.body.clone();
    if !bytes.starts_with(b"\0asm") {
        return Err(refused(&PluginError::Compile(
            "the body is not a WebAssembly binary (no `\\0asm` header)".into(),
        )));
    }
    // The cap first: an app at its limit cannot make the gateway compile (and cache) anything.
    let app = &call.app.app;
    let control = &call.state.control;
    let hash = hex::encode(Sha256::digest(&bytes));
    let at_cap = |existing: &[StoredPlugin]| {
        !existing.iter().any(|p| p.hash == hash) && existing.len() >= MAX_PER_APP
    };
    if at_cap(&control.plugins(app).map_err(internal)?) {
        return Err(too_many_plugins());
    }
    let host = call.state.plugins.host().clone();
    let loaded = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || host.load(&bytes).map(|p| p.hash().to_owned()))
            .await
            .map_err(|e| ApiError::internal("plugin load failed", &e))?
    };
    let loaded_hash = loaded.map_err(|e| refused(&e))?;
    debug_assert_eq!(loaded_hash, hash);

    let _one_write = super::WRITES.lock().await;
    // Again under the lock: a concurrent upload may have taken the last place.
    let existing = control.plugins(app).map_err(internal)?;
    let known = existing.iter().find(|p| p.hash == hash).cloned();
    if at_cap(&existing) {
        return Err(too_many_plugins());
    }
    let storage = call.state.snapshot.load().storage.path.clone();
    let file = records::plugin_file(&storage, &hash);
    if !file.exists() {
        records::write_atomically(&file, &bytes)
            .await
            .map_err(|e| ApiError::internal("cannot store a plugin", &e))?;
    }
    let record = StoredPlugin {
        hash: hash.clone(),
        name: name.or_else(|| known.as_ref().and_then(|k| k.name.clone())),
        size: bytes.len(),
        uploaded_ms: known.as_ref().map_or_else(now_ms, |k| k.uploaded_ms),
    };
    // The bytes where every instance finds them, then the record that names them.
    control
        .store_plugin_bytes(&hash, &bytes)
        .await
        .map_err(internal)?;
    control.put_plugin(app, &record).await.map_err(internal)?;
    call.state.store.durable().await.map_err(internal)?;
    let status = if known.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, &json!(record)))
}

fn too_many_plugins() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_plugins",
        format!("an app may keep at most {MAX_PER_APP} plugins"),
    )
}

/// 422 with the plugin host's code (`plugin_not_a_plugin`, `plugin_compile_failed`, ...).
fn refused(e: &PluginError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
}
