//! `odoo-gateway plugin new`, as a new user runs it: a project in each language, written into
//! a temporary directory outside the repository, passes its own unit tests, builds with its own
//! `build.sh` using only the toolchains `./dev` installs (componentize-py in
//! `target/toolchains/python`, the componentize-js of `plugins/shipper-router-js`, clang-16 and
//! wasi-libc, Debian's rustc-web or rustup's wasm target), and the component it builds passes
//! `plugin check` and `plugin run` on an order that no fixture has.
//!
//! Kept cheap: the languages run side by side, compiled components go to a cache kept between
//! runs (`target/scaffold-cache`: the second run of the same component loads it), and the Rust
//! project builds into `target/scaffold-rust`, so the wasm standard library is built once.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> &'static str {
    env!("CARGO_BIN_EXE_odoo-gateway")
}

fn repository() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Writes a project with the real binary and returns its directory.
fn new_project(lang: &str, dir: &Path) -> PathBuf {
    let status = Command::new(gateway())
        .args(["plugin", "new", "--lang", lang, "big-orders", "--dir"])
        .arg(dir)
        .status()
        .expect("odoo-gateway runs");
    assert!(status.success(), "plugin new --lang {lang}");
    dir.join("big-orders")
}

/// The PATH a user who ran `./dev plugins` and installed the gateway would have: the gateway
/// binary, componentize-py and componentize-js, then the inherited PATH.
fn user_path() -> std::ffi::OsString {
    let bin = Path::new(gateway())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let root = repository();
    let js = root.join("plugins/shipper-router-js/node_modules/.bin");
    assert!(
        js.join("componentize-js").exists(),
        "{}: componentize-js is not installed; `./dev plugins` installs it",
        js.display()
    );
    let tools = [bin, root.join("target/toolchains/python/bin"), js];
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(tools.into_iter().chain(std::env::split_paths(&inherited))).expect("PATH")
}

/// Runs `program` in `dir` as the user would; panics with its output unless it succeeds.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", user_path())
        .env(
            "CARGO_TARGET_DIR",
            repository().join("target/scaffold-rust"),
        )
        // What cargo sets for this test binary is not the user's environment.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {}:\n{text}",
        dir.display()
    );
    text
}

/// An order no fixture has, as a full event: above a minimum of 100, below one of 1000.
const ORDER: &str = r#"{"id": "evt-scaffold-77", "model": "sale.order", "action": "confirmed",
  "record_id": 77, "received_at_ms": 1767225600000,
  "payload": {"id": 77, "name": "S00077", "state": "sale", "amount_total": 250.5,
              "partner_id": [14, "Azure Interior"], "order_line": [301, 302]}}"#;

/// Builds the project with its own script, then checks and runs what it built: one summary
/// above the minimum, nothing below it. Returns what `plugin check` and the run that kept the
/// order printed.
fn build_check_and_run(project: &Path, language: &str) -> (String, String) {
    run_in(project, "sh", &["build.sh"]);
    let cache = repository().join("target/scaffold-cache");
    let cache = cache.to_str().expect("UTF-8 path");
    let check = run_in(
        project,
        gateway(),
        &["plugin", "check", "big-orders.wasm", "--cache-dir", cache],
    );
    assert!(check.contains(&format!("language {language}")), "{check}");
    assert!(check.contains("loadable plugin of world"), "{check}");
    std::fs::write(project.join("order.json"), ORDER).unwrap();
    let run = |minimum: &str| {
        let config = format!("min_amount_total={minimum}");
        // Roomy bounds: this test is about building, on a busy machine with a debug build.
        let args = [
            "plugin",
            "run",
            "big-orders.wasm",
            "--event",
            "order.json",
            "--config",
            &config,
            "--cache-dir",
            cache,
            "--cpu-time-ms",
            "2000",
            "--memory-mib",
            "256",
        ];
        run_in(project, gateway(), &args)
    };
    let kept = run("100");
    assert!(kept.contains("handle: 1 deliveries"), "{kept}");
    assert!(
        kept.contains(r#"{"amount_total":250.5,"id":77,"name":"S00077"}"#),
        "{kept}"
    );
    let filtered = run("1000");
    assert!(filtered.contains("handle: 0 deliveries"), "{filtered}");
    (check, kept)
}

#[test]
fn a_new_python_project_builds_checks_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("python", dir.path());
    run_in(&project, "python3", &["-m", "unittest", "-q"]);
    let (check, kept) = build_check_and_run(&project, "Python");
    // Built against world 0.2.0, the SDK's ordering key reaches the host.
    assert!(check.contains("plugin@0.2.0"), "{check}");
    assert!(kept.contains("ordering key: customer-14"), "{kept}");
}

#[test]
fn a_new_js_project_builds_checks_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("js", dir.path());
    run_in(&project, "node", &["--test"]);
    let (check, kept) = build_check_and_run(&project, "JavaScript");
    assert!(check.contains("plugin@0.2.0"), "{check}");
    assert!(kept.contains("ordering key: customer-14"), "{kept}");
}

#[test]
fn a_new_c_project_builds_checks_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("c", dir.path());
    let out = run_in(&project, "sh", &["test.sh"]);
    assert!(out.contains("test passed"), "{out}");
    let (check, kept) = build_check_and_run(&project, "C");
    assert!(check.contains("plugin@0.2.0"), "{check}");
    assert!(kept.contains("ordering key: customer-14"), "{kept}");
}

/// The SDK by path from outside the workspace: the project's unit test on the host, then the
/// component with whichever wasm toolchain this machine has.
#[test]
fn a_new_rust_project_builds_checks_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("rust", dir.path());
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("plugin-sdk"), "{manifest}");
    build_check_and_run(&project, "Rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run_in(&project, &cargo, &["test", "--quiet"]);
    assert!(out.contains("1 passed"), "{out}");
}

#[test]
fn an_existing_directory_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("big-orders")).unwrap();
    let out = Command::new(gateway())
        .args(["plugin", "new", "--lang", "rust", "big-orders", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// The SDKs' own tests (the projects above carry a copy of each; the examples' tests, which use
/// them too, run in `languages.rs`).
#[test]
fn the_python_and_javascript_sdks_pass_their_tests() {
    let root = repository();
    run_in(
        &root.join("plugin-sdk-py"),
        "python3",
        &["-m", "unittest", "-q"],
    );
    run_in(&root.join("plugin-sdk-js"), "node", &["--test"]);
}
