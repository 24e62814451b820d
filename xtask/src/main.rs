//! Developer tasks that cargo alone cannot do. The only one:
//!
//! ```text
//! cargo run -p xtask -- build-plugins [--release-dir target/plugins]
//! ```
//!
//! builds every guest crate for `wasm32-unknown-unknown` in one cargo
//! invocation ([`toolchain`]), wraps each core module into a component and
//! checks that it exports the plugin world and imports nothing but `log` and
//! `config` ([`component`]); then runs the build script of each plugin written
//! in another language ([`foreign`]: Python, JavaScript, C), whose runtime may
//! also import WASI. The Rust build never touches the network nor rewrites
//! `Cargo.lock` (`--locked`); `--rust-only` skips the other languages.

mod component;
mod foreign;
mod toolchain;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Guest crates built to `<release dir>/<crate_name>.wasm`: (package, crate name).
const GUESTS: &[(&str, &str)] = &[
    ("order-filter", "order_filter"),
    ("xml-transform", "xml_transform"),
    ("shipper-router", "shipper_router"),
    ("hostile-plugin", "hostile_plugin"),
];

const USAGE: &str = "usage: cargo run -p xtask -- build-plugins [--release-dir DIR] [--rust-only]\n\
    DIR defaults to target/plugins; a relative DIR is taken from the workspace root\n\
    or:    cargo run -p xtask -- componentize CORE.wasm -o COMPONENT.wasm [--world 0.2.0]";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("build-plugins") => {}
        Some("componentize") => return componentize(args),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => bail!("{USAGE}"),
    }
    let root = workspace_root();
    let mut release_dir = root.join("target/plugins");
    let mut rust_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--release-dir" => {
                let dir = args.next().context("--release-dir needs a directory")?;
                release_dir = root.join(dir); // an absolute `dir` replaces `root`
            }
            "--rust-only" => rust_only = true,
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    build_plugins(&root, &release_dir)?;
    if !rust_only {
        println!(
            "building {} plugins in other languages",
            foreign::FOREIGN.len()
        );
        foreign::build_all(&root, &release_dir)?;
    }
    Ok(())
}

/// `componentize CORE -o OUT [--world VERSION]`: what `odoo-gateway plugin componentize` does,
/// for the C plugins' build scripts, which run before the gateway is built.
fn componentize(args: impl Iterator<Item = String>) -> Result<()> {
    let args: Vec<String> = args.collect();
    let (core, out, world) = match args.as_slice() {
        [core, o, out] if o == "-o" || o == "--output" => (core, out, None),
        [core, o, out, w, version] if (o == "-o" || o == "--output") && w == "--world" => {
            let world = version
                .parse::<odoo_gateway_plugin_tools::WorldVersion>()
                .map_err(anyhow::Error::msg)?;
            (core, out, Some(world))
        }
        _ => bail!("{USAGE}"),
    };
    let module = std::fs::read(core).with_context(|| format!("reading {core}"))?;
    let component = odoo_gateway_plugin_tools::componentize(&module, world)
        .with_context(|| format!("componentizing {core}"))?;
    std::fs::write(out, &component).with_context(|| format!("writing {out}"))?;
    Ok(())
}

/// The workspace root: the parent of this crate, wherever cargo runs from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

fn build_plugins(root: &Path, release_dir: &Path) -> Result<()> {
    let route = toolchain::choose()?;
    println!("building {} guest crates ({route})", GUESTS.len());
    let packages: Vec<&str> = GUESTS.iter().map(|(package, _)| *package).collect();
    let modules_dir = toolchain::build(&route, root, &packages)?;

    std::fs::create_dir_all(release_dir)
        .with_context(|| format!("creating {}", release_dir.display()))?;
    for (_, crate_name) in GUESTS {
        let module_path = modules_dir.join(format!("{crate_name}.wasm"));
        let module = std::fs::read(&module_path)
            .with_context(|| format!("reading {}", module_path.display()))?;
        let component = component::wrap(&module)
            .with_context(|| format!("componentizing {}", module_path.display()))?;
        component::check(&component)
            .with_context(|| format!("checking the component built from {crate_name}"))?;
        let out = release_dir.join(format!("{crate_name}.wasm"));
        std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "{:>9} bytes  {}  (core module {} bytes)",
            component.len(),
            out.display(),
            module.len()
        );
    }
    Ok(())
}
