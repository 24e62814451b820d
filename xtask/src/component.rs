//! Turns a core module into a component and checks the result against the
//! plugin contract: the `handle` and `validate-config` exports of
//! `odoo-gateway:plugin@0.2.0` (or `@0.1.0`), and no import beyond its `log`
//! and `config` interfaces, all of one version (in particular no WASI, which
//! std on wasm32-unknown-unknown must not pull in).

use anyhow::{Context, Result, bail, ensure};
use wit_component::{ComponentEncoder, DecodedWasm};
use wit_parser::WorldItem;

/// Interfaces a plugin may import, by name without the version.
const ALLOWED_INTERFACES: &[&str] = &[
    "odoo-gateway:plugin/log",
    "odoo-gateway:plugin/config",
    // Types only: importing it grants nothing.
    "odoo-gateway:plugin/types",
];

/// Versions of the plugin world a component may implement.
const VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Functions every plugin must export, and the only items it may export.
const REQUIRED_EXPORTS: &[&str] = &["handle", "validate-config"];

/// Wraps `module` (with wit-bindgen's component-type section) into a
/// validated component.
pub(crate) fn wrap(module: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)?
        .encode()
}

/// Decodes the component's world and checks its imports and exports.
pub(crate) fn check(component: &[u8]) -> Result<()> {
    check_world(component, false)
}

/// [`check`] for a component built from another language: its runtime may also import WASI
/// 0.2 interfaces (the host decides at load which of them it provides).
pub(crate) fn check_foreign(component: &[u8]) -> Result<()> {
    check_world(component, true)
}

fn check_world(component: &[u8], wasi_allowed: bool) -> Result<()> {
    let decoded = wit_component::decode(component).context("decoding the component")?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        bail!("not a component");
    };
    let world = &resolve.worlds[world];
    let mut version: Option<String> = None;
    for (key, item) in &world.imports {
        let name = resolve.name_world_key(key);
        match item {
            // Type definitions carry no capability.
            WorldItem::Type { .. } => {}
            WorldItem::Interface { .. } if wasi_allowed && name.starts_with("wasi:") => {}
            WorldItem::Interface { .. } => {
                let ours = name.split_once('@').filter(|(interface, v)| {
                    ALLOWED_INTERFACES.contains(interface) && VERSIONS.contains(v)
                });
                let Some((_, v)) = ours else {
                    bail!(
                        "imports interface `{name}`; plugins may import only {ALLOWED_INTERFACES:?} at one of {VERSIONS:?}"
                    );
                };
                ensure!(
                    version.as_deref().is_none_or(|seen| seen == v),
                    "imports `{name}` beside interfaces of version {}: one version of the plugin world",
                    version.unwrap_or_default()
                );
                version = Some(v.to_owned());
            }
            WorldItem::Function(_) => bail!("imports a bare function `{name}`"),
        }
    }
    let mut exports = Vec::new();
    for (key, item) in &world.exports {
        let name = resolve.name_world_key(key);
        // An interpreter's componentizer may leave its own interfaces exported (componentize-py
        // keeps its pre-initialisation entry point): the gateway never calls them.
        if wasi_allowed && matches!(item, WorldItem::Interface { .. }) {
            continue;
        }
        ensure!(
            matches!(item, WorldItem::Function(_)) && REQUIRED_EXPORTS.contains(&name.as_str()),
            "exports `{name}`, which is not part of the plugin world"
        );
        exports.push(name);
    }
    for required in REQUIRED_EXPORTS {
        ensure!(
            exports.iter().any(|e| e == required),
            "does not export `{required}` (exports: {exports:?})"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_component::StringEncoding;
    use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};

    const PLUGIN_WIT: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit"));
    const WORLD_START: &str = "world plugin {";

    /// A component with do-nothing functions for the `plugin` world of `wit`.
    fn component_for(wit: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = resolve.push_source("plugin.wit", wit).unwrap();
        let world = resolve.select_world(&[package], Some("plugin")).unwrap();
        let mut module = wit_component::dummy_module(
            &resolve,
            world,
            ManglingAndAbi::Legacy(LiftLowerAbi::Sync),
        );
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .unwrap();
        wrap(&module).unwrap()
    }

    const PLUGIN_WIT_0_2: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wit/v0.2/plugin.wit"
    ));

    #[test]
    fn both_versions_of_the_plugin_world_pass() {
        check(&component_for(PLUGIN_WIT)).unwrap();
        check(&component_for(PLUGIN_WIT_0_2)).unwrap();
    }

    #[test]
    fn an_extra_import_is_refused() {
        let wit = format!(
            "{}\ninterface net {{ connect: func(host: string); }}\n",
            PLUGIN_WIT.replace(WORLD_START, &format!("{WORLD_START}\n    import net;"))
        );
        let err = check(&component_for(&wit)).unwrap_err().to_string();
        assert!(err.contains("odoo-gateway:plugin/net@0.1.0"), "{err}");
    }

    #[test]
    fn a_bare_function_import_is_refused() {
        let wit = PLUGIN_WIT.replace(
            WORLD_START,
            &format!("{WORLD_START}\n    import now: func() -> u64;"),
        );
        let err = check(&component_for(&wit)).unwrap_err().to_string();
        assert!(err.contains("bare function `now`"), "{err}");
    }

    #[test]
    fn missing_or_extra_exports_are_refused() {
        let wit = PLUGIN_WIT.replace("export validate-config: func() -> result<_, string>;", "");
        let err = check(&component_for(&wit)).unwrap_err().to_string();
        assert!(err.contains("does not export `validate-config`"), "{err}");

        let wit = PLUGIN_WIT.replace(
            WORLD_START,
            &format!("{WORLD_START}\n    export extra: func();"),
        );
        let err = check(&component_for(&wit)).unwrap_err().to_string();
        assert!(err.contains("exports `extra`"), "{err}");
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let module = b"\0asm\x01\0\0\0";
        assert!(check(module).is_err());
    }
}
