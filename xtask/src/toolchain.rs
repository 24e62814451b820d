//! Chooses how to compile for `wasm32-unknown-unknown` on this machine and
//! runs that one cargo invocation.
//!
//! Two routes, tried in order: a rustup toolchain that has the target
//! installed, or Debian's `rustc-web` with `rust-src`, building std from
//! source (`-Z build-std` under `RUSTC_BOOTSTRAP`) and linking with
//! `wasm-ld`. Detection runs local commands only (with a timeout), never
//! anything that could download a toolchain.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const TARGET: &str = "wasm32-unknown-unknown";
/// Cargo profile for plugins (root Cargo.toml): size-optimised, `panic = "abort"`.
const PROFILE: &str = "plugin";
/// Kept apart from the host's `target/debug` so the two never invalidate
/// each other's artefacts.
const TARGET_DIR: &str = "target/wasm";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// `wasm-ld` as Debian's lld packages name it, newest first.
const LINKERS: &[&str] = &["wasm-ld-16", "wasm-ld"];
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the guest crates are compiled.
#[derive(Debug)]
pub(crate) enum Route {
    /// `cargo build --target wasm32-unknown-unknown` with rustup's target.
    Rustup,
    /// Debian's rustc with build-std and an explicit linker.
    DebianBuildStd { linker: String },
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Rustup => write!(f, "rustup target {TARGET}"),
            Route::DebianBuildStd { linker } => {
                write!(f, "{DEBIAN_RUSTC} with -Z build-std, linker {linker}")
            }
        }
    }
}

/// Picks the first route this machine supports, or says what to install.
pub(crate) fn choose() -> Result<Route> {
    if let Some(installed) = probe("rustup", &["target", "list", "--installed"])
        && installed.lines().any(|line| line.trim() == TARGET)
    {
        return Ok(Route::Rustup);
    }
    if let Some(sysroot) = probe(DEBIAN_RUSTC, &["--print", "sysroot"]) {
        let library = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
        let linker = LINKERS.iter().find(|l| probe(l, &["--version"]).is_some());
        if library.is_dir()
            && Path::new(DEBIAN_CARGO).exists()
            && let Some(linker) = linker
        {
            return Ok(Route::DebianBuildStd {
                linker: (*linker).to_owned(),
            });
        }
    }
    bail!(
        "no toolchain can build {TARGET} here: either `rustup target add {TARGET}`, or \
         `apt-get install rustc-web cargo-web rust-web-src lld-16` (Debian's rustc with the \
         standard library sources, and wasm-ld)"
    )
}

/// Builds `packages` in one cargo invocation; returns the directory holding
/// the core modules.
pub(crate) fn build(route: &Route, root: &Path, packages: &[&str]) -> Result<PathBuf> {
    let mut cargo = match route {
        Route::Rustup => {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.arg("build");
            cargo
        }
        Route::DebianBuildStd { linker } => {
            let mut cargo = Command::new(DEBIAN_CARGO);
            cargo
                .env("RUSTC", DEBIAN_RUSTC)
                // build-std is a nightly feature; Debian's stable rustc
                // allows it under RUSTC_BOOTSTRAP.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .args(["build", "-Z", "build-std=std,panic_abort"]);
            cargo
        }
    };
    // A wrapper set for host builds (sccache, clippy-driver) does not know
    // this rustc.
    cargo
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cargo
        .current_dir(root)
        .args(["--locked", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(root.join(TARGET_DIR));
    for package in packages {
        cargo.args(["-p", package]);
    }
    let status = cargo
        .status()
        .with_context(|| format!("running {:?}", cargo.get_program()))?;
    if !status.success() {
        bail!("cargo build for {TARGET} failed ({status})");
    }
    Ok(root.join(TARGET_DIR).join(TARGET).join(PROFILE))
}

/// Runs a local command with a timeout; its stdout when it succeeds,
/// `None` when it is missing, fails or hangs. The probed commands print a
/// few lines, far below a pipe's buffer, so polling before reading cannot
/// deadlock.
fn probe(program: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        // Never let rustup install a toolchain named by a toolchain file.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let output = child.wait_with_output().ok()?;
    String::from_utf8(output.stdout).ok()
}
