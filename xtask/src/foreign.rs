//! Plugins written in languages other than Rust: each directory has its own `build.sh OUT`
//! (what its README tells a newcomer to run), and this module runs it and checks the result.
//!
//! The toolchains come from the registries and are installed by `./dev` (componentize-py in
//! `target/toolchains/python`, componentize-js by each JavaScript plugin's `npm ci`, clang and
//! wasi-libc from Debian); this module only finds them. A component is rebuilt only when a file
//! of its directory or the WIT contract is newer than it: building a Python or JavaScript
//! component takes the better part of a minute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// (directory from the workspace root, component name written to `<release dir>/<name>.wasm`,
/// the other directories its sources come from).
pub(crate) const FOREIGN: &[(&str, &str, &[&str])] = &[
    (
        "plugins/shipper-router-py",
        "shipper_router_py",
        &["plugin-sdk-py"],
    ),
    (
        "plugins/shipper-router-js",
        "shipper_router_js",
        &["plugin-sdk-js"],
    ),
    ("plugins/shipper-router-c", "shipper_router_c", &[]),
    ("tests/hostile-plugin-py", "hostile_plugin_py", &[]),
    // After shipper-router-js, whose componentize-js it uses.
    ("tests/hostile-plugin-js", "hostile_plugin_js", &[]),
];

/// Where `./dev` installs componentize-py.
const PYTHON_TOOLS: &str = "target/toolchains/python/bin";

/// Builds (or finds up to date) every foreign plugin; returns the components written.
pub(crate) fn build_all(root: &Path, release_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut built = Vec::new();
    for (dir, name, sdks) in FOREIGN {
        let source = root.join(dir);
        let out = release_dir.join(format!("{name}.wasm"));
        let mut inputs = vec![source.clone(), root.join("wit")];
        inputs.extend(sdks.iter().map(|sdk| root.join(sdk)));
        if up_to_date(&out, &inputs) {
            println!("{:>9}  {}  (up to date)", "", out.display());
        } else {
            run_build(root, &source, &out)?;
            let component =
                std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
            if let Err(e) = crate::component::check_foreign(&component) {
                // Not left behind to look up to date next time.
                let _ = std::fs::remove_file(&out);
                return Err(e.context(format!("checking the component built in {dir}")));
            }
            println!("{:>9} bytes  {}", component.len(), out.display());
        }
        built.push(out);
    }
    Ok(built)
}

fn run_build(root: &Path, source: &Path, out: &Path) -> Result<()> {
    let script = source.join("build.sh");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![root.join(PYTHON_TOOLS)];
    paths.extend(std::env::split_paths(&path));
    let status = Command::new("sh")
        .arg(&script)
        .arg(out)
        .env("PATH", std::env::join_paths(paths)?)
        // The C plugins' last step; the gateway binary may not be built yet.
        .env(
            "COMPONENTIZE",
            format!("{} componentize", std::env::current_exe()?.display()),
        )
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!(
            "{} failed ({status}); `./dev plugins` installs the toolchains it needs",
            script.display()
        );
    }
    Ok(())
}

/// Whether `out` exists and is newer than every file under `inputs` (build products,
/// `node_modules` and caches aside).
fn up_to_date(out: &Path, inputs: &[PathBuf]) -> bool {
    let Some(built) = modified(out) else {
        return false;
    };
    inputs
        .iter()
        .all(|dir| newest(dir).is_none_or(|t| t <= built))
}

fn newest(path: &Path) -> Option<SystemTime> {
    let name = path.file_name()?.to_string_lossy();
    if matches!(name.as_ref(), "node_modules" | "__pycache__" | "build")
        || name.ends_with(".wasm")
        || name.ends_with(".o")
    {
        return None;
    }
    if path.is_dir() {
        std::fs::read_dir(path)
            .ok()?
            .flatten()
            .filter_map(|entry| newest(&entry.path()))
            .max()
    } else {
        modified(path)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
