//! `odoo-gateway plugin new --lang rust|python|js|c NAME`: writes a ready-to-build plugin
//! project outside this repository: its sources, its own build script, the WIT contract, a
//! sample event, a test and a README.
//!
//! This module owns the templates (in `gateway/templates/`, embedded in the binary) and filling
//! them in. It writes only into the new project's directory, which must not exist yet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// The languages a project can be started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the gateway's plugin SDK.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by componentize-js.
    Js,
    /// C with wasi-libc, built by clang-16.
    C,
}

/// Arguments of `plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The plugin's name: lower-case letters, digits and dashes; also its directory.
    pub name: String,
    /// The directory to create the project in (default: the current directory).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// For Rust: the plugin SDK's directory (default: this gateway's checkout, when known).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

const README: &str = include_str!("../../templates/README.md");
const SAMPLE_EVENT: &str = include_str!("../../templates/sample-event.json");

impl NewArgs {
    /// Writes the project and says what to do next.
    pub fn execute(&self) -> anyhow::Result<ExitCode> {
        let root = self.dir.join(&self.name);
        let files = project(self.lang, &self.name, self.sdk.as_deref())?;
        if root.exists() {
            bail!("{} already exists", root.display());
        }
        for (path, text) in &files {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            if path.extension().is_some_and(|e| e == "sh") {
                make_executable(&path)?;
            }
        }
        println!(
            "wrote {} files into {}; next: cd {} && ./build.sh (see README.md)",
            files.len(),
            root.display(),
            root.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Every file of a new project: (path inside it, contents).
pub fn project(
    lang: Lang,
    name: &str,
    sdk: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "plugin name {name:?}: use lower-case letters, digits and dashes, starting with a letter"
        );
    }
    let crate_name = name.replace('-', "_");
    let sdk = match sdk {
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk")),
    };
    let sdk = std::fs::canonicalize(&sdk).unwrap_or(sdk);
    let (language, sources, toolchain): (&str, Vec<(&str, &str)>, &str) = match lang {
        Lang::Python => (
            "Python",
            vec![
                ("app.py", include_str!("../../templates/python/app.py")),
                ("logic.py", include_str!("../../templates/python/logic.py")),
                (
                    "odoo_gateway.py",
                    include_str!("../../../plugin-sdk-py/odoo_gateway.py"),
                ),
                (
                    "test_logic.py",
                    include_str!("../../templates/python/test_logic.py"),
                ),
                ("build.sh", include_str!("../../templates/python/build.sh")),
            ],
            "Toolchain: componentize-py 0.25.1 from PyPI (Python 3.10 or later): \
             `python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1` \
             (`build.sh` finds it on the PATH or in `.venv`). Test the logic with \
             `python3 -m unittest`.",
        ),
        Lang::Js => (
            "JavaScript",
            vec![
                ("plugin.js", include_str!("../../templates/js/plugin.js")),
                ("logic.js", include_str!("../../templates/js/logic.js")),
                (
                    "odoo-gateway.js",
                    include_str!("../../../plugin-sdk-js/odoo-gateway.js"),
                ),
                (
                    "logic.test.js",
                    include_str!("../../templates/js/logic.test.js"),
                ),
                (
                    "package.json",
                    include_str!("../../templates/js/package.json"),
                ),
                ("build.sh", include_str!("../../templates/js/build.sh")),
            ],
            "Toolchain: Node.js 20 or later with npm; `build.sh` installs componentize-js \
             (pinned in `package.json`) with `npm install` unless it is already there. Test the \
             logic with `npm test`.",
        ),
        Lang::C => (
            "C",
            vec![
                ("logic.c", include_str!("../../templates/c/logic.c")),
                (
                    "plugin.h",
                    include_str!("../../../plugins/shipper-router-c/plugin.h"),
                ),
                (
                    "plugin.c",
                    include_str!("../../../plugins/shipper-router-c/plugin.c"),
                ),
                (
                    "json.h",
                    include_str!("../../../plugins/shipper-router-c/json.h"),
                ),
                (
                    "json.c",
                    include_str!("../../../plugins/shipper-router-c/json.c"),
                ),
                ("build.sh", include_str!("../../templates/c/build.sh")),
                ("test.sh", include_str!("../../templates/c/test.sh")),
            ],
            "Toolchain: on Debian `apt-get install clang-16 wasi-libc libclang-rt-16-dev-wasm32`, \
             or a wasi-sdk named by `WASI_SDK_PATH`; `odoo-gateway` on the PATH. `./test.sh` \
             builds the plugin and runs it on the sample event.",
        ),
        Lang::Rust => (
            "Rust",
            vec![
                (
                    "Cargo.toml",
                    include_str!("../../templates/rust/Cargo.toml"),
                ),
                ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
                ("build.sh", include_str!("../../templates/rust/build.sh")),
            ],
            "Toolchain: rustup's target (`rustup target add wasm32-unknown-unknown`) or, on \
             Debian, `apt-get install rustc-web cargo-web rust-web-src lld-16` (`build.sh` uses \
             whichever is there and builds the standard library from source with the latter); \
             `odoo-gateway` on the PATH. Test the logic on the host with `cargo test`.",
        ),
    };
    let lang_flag = match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
        Lang::Js => "js",
        Lang::C => "c",
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{language}}", language)
            .replace("{{lang}}", lang_flag)
            .replace("{{toolchain}}", toolchain)
    };
    let file_rows: String = sources
        .iter()
        .filter(|(path, _)| *path != "build.sh")
        .map(|(path, _)| format!("| `{path}` | {} |\n", describe(path)))
        .collect();
    let mut files = vec![
        (
            "README.md".to_owned(),
            fill(&README.replace("{{files}}", file_rows.trim_end())),
        ),
        ("sample-event.json".to_owned(), SAMPLE_EVENT.to_owned()),
        (
            // The world every language's SDK or glue builds against: 0.2.0 (a delivery may
            // name its ordering key).
            "wit/plugin.wit".to_owned(),
            odoo_gateway_plugin_tools::PLUGIN_WIT_V0_2.to_owned(),
        ),
        (
            ".gitignore".to_owned(),
            "*.wasm\nnode_modules/\n__pycache__/\n.venv/\ntarget/\n".to_owned(),
        ),
    ];
    files.extend(
        sources
            .into_iter()
            .map(|(path, text)| (path.to_owned(), fill(text))),
    );
    Ok(files)
}

fn describe(path: &str) -> &'static str {
    match path {
        "app.py" | "plugin.js" => "the world's exports: reads the configuration, calls the logic",
        "plugin.h" | "plugin.c" => "the plugin world for C (canonical ABI glue; leave as is)",
        "json.h" | "json.c" => "a small JSON reader and writer",
        "odoo_gateway.py" | "odoo-gateway.js" => {
            "the gateway's plugin SDK (a copy): event, config, deliveries, errors, Odoo fields"
        }
        "package.json" => "componentize-js, pinned",
        p if p.contains("test") => "the test",
        _ => "the plugin's logic: change it",
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_gets_sources_a_build_script_the_wit_and_a_test() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
            let files = project(lang, "big-orders", None).unwrap();
            let names: Vec<_> = files.iter().map(|(p, _)| p.as_str()).collect();
            for needed in [
                "README.md",
                "sample-event.json",
                "wit/plugin.wit",
                "build.sh",
            ] {
                assert!(names.contains(&needed), "{lang:?}: {names:?}");
            }
            assert!(
                names
                    .iter()
                    .any(|n| n.contains("test") || *n == "src/lib.rs"),
                "{lang:?}: {names:?}"
            );
            for (path, text) in &files {
                for placeholder in [
                    "name",
                    "crate",
                    "sdk",
                    "language",
                    "lang",
                    "toolchain",
                    "files",
                ] {
                    let left = format!("{{{{{placeholder}}}}}");
                    assert!(!text.contains(&left), "{lang:?} {path}: {left} is left");
                }
            }
        }
    }

    #[test]
    fn names_must_be_usable_as_directories_and_crates() {
        for bad in ["", "Big", "9lives", "a b", "x-", "../up"] {
            assert!(project(Lang::C, bad, None).is_err(), "{bad:?}");
        }
        let files = project(Lang::Rust, "big-orders", None).unwrap();
        let build = &files.iter().find(|(p, _)| p == "build.sh").unwrap().1;
        assert!(build.contains("release/big_orders.wasm"), "{build}");
    }
}
