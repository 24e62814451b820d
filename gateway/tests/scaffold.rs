//! `odoo-gateway plugin new`: each language's project, written outside the repository, passes
//! its own test with only its own files (and the toolchains `./dev` installs); the C one is
//! built into a component end to end with `odoo-gateway plugin componentize` and run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> &'static str {
    env!("CARGO_BIN_EXE_odoo-gateway")
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

/// Runs `program` in `dir` with the gateway binary on the PATH; panics with its output unless
/// it succeeds.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let bin = Path::new(gateway())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let tools = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/toolchains/python/bin"
    ));
    let path = std::env::join_paths([bin, tools].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
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

#[test]
fn a_new_c_project_builds_into_a_plugin_that_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("c", dir.path());
    let out = run_in(&project, "sh", &["test.sh"]);
    assert!(out.contains("test passed"), "{out}");
    let check = run_in(&project, gateway(), &["plugin", "check", "big-orders.wasm"]);
    assert!(check.contains("language C (wasi-libc)"), "{check}");
}

#[test]
fn a_new_python_project_passes_its_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("python", dir.path());
    run_in(&project, "python3", &["-m", "unittest", "-q"]);
    assert!(project.join("wit/plugin.wit").exists());
}

#[test]
fn a_new_js_project_passes_its_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("js", dir.path());
    run_in(&project, "node", &["--test"]);
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

/// The Rust SDK used from another directory, as a path dependency: the project's own unit test
/// runs on the host (its own target folder under `target/`, kept between runs).
#[test]
fn a_new_rust_project_uses_the_sdk_from_outside_the_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = new_project("rust", dir.path());
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("plugin-sdk"), "{manifest}");
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/scaffold-rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run_in(
        &project,
        &cargo,
        &["test", "--quiet", "--target-dir", target],
    );
    assert!(out.contains("1 passed"), "{out}");
}
