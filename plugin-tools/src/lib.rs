//! Build-side tools for plugin components, shared by `odoo-gateway plugin` and `xtask`:
//!
//! - [`componentize`]: wraps a core WebAssembly module (what clang with wasi-libc, or another
//!   compiler, produces) into a component of the plugin world, embedding the world when the
//!   module does not carry it and adapting WASI preview 1 imports to WASI 0.2;
//! - [`inspect`]: what a component imports and exports, and which language and runtime it was
//!   built from (from the producers sections its toolchain wrote).
//!
//! It runs no plugin code and does no I/O: bytes in, bytes or a description out.

use wit_component::{ComponentEncoder, DecodedWasm, StringEncoding};
use wit_parser::{Resolve, WorldItem};

/// The plugin contract, version 0.1.0, as the gateway's `wit/plugin.wit`: what
/// [`componentize`] embeds.
pub const PLUGIN_WIT: &str = include_str!("../../wit/plugin.wit");

/// The plugin contract, version 0.2.0 (`wit/v0.2/plugin.wit`: a delivery may name its
/// ordering key), which the SDKs build against.
pub const PLUGIN_WIT_V0_2: &str = include_str!("../../wit/v0.2/plugin.wit");

/// A version of the plugin world, as a module's imports name it (`odoo-gateway:plugin/log@0.2.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldVersion {
    /// `wit/plugin.wit`.
    V0_1,
    /// `wit/v0.2/plugin.wit`: a delivery's optional ordering key.
    V0_2,
}

impl WorldVersion {
    /// The world's WIT text.
    pub fn wit(self) -> &'static str {
        match self {
            Self::V0_1 => PLUGIN_WIT,
            Self::V0_2 => PLUGIN_WIT_V0_2,
        }
    }

    /// `0.1.0` or `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
        }
    }
}

impl std::str::FromStr for WorldVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0.1.0" => Ok(Self::V0_1),
            "0.2.0" => Ok(Self::V0_2),
            _ => Err(format!(
                "`{s}` is not a plugin world version (0.1.0 or 0.2.0)"
            )),
        }
    }
}

impl std::fmt::Display for WorldVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a module could not become a component, or a component could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The input is not the kind of WebAssembly the operation needs.
    #[error("{0}")]
    WrongKind(String),
    /// wit-component refused the module (a missing export, a mistyped import, ...).
    #[error("cannot build a plugin component: {0:#}")]
    Encode(#[source] anyhow::Error),
    /// The component's structure could not be decoded.
    #[error("cannot read the component: {0:#}")]
    Decode(#[source] anyhow::Error),
}

const CORE_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";

/// Wraps a core module into a component of the plugin world.
///
/// A module without a `component-type` section gets the plugin world embedded, so it only has
/// to export `handle`, `validate-config` and `cabi_realloc` with the canonical ABI; imports of
/// `wasi_snapshot_preview1` are adapted to WASI 0.2 (reactor adapter of wasmtime 48). The
/// world's version is `world`, else the one the module's plugin imports name; a module that
/// imports neither `log` nor `config` must be told (the versions lay out a delivery
/// differently, so a guess could garble every result).
pub fn componentize(core: &[u8], world: Option<WorldVersion>) -> Result<Vec<u8>, ToolError> {
    if !core.starts_with(&CORE_HEADER) {
        return Err(ToolError::WrongKind(
            "not a core WebAssembly module (a component is already a plugin: `plugin check` it)"
                .into(),
        ));
    }
    let mut module = core.to_vec();
    let carries_world = has_custom_section(core, "component-type");
    if carries_world && world.is_some() {
        return Err(ToolError::WrongKind(
            "the module carries its world already (a `component-type` section, from its bindings \
             generator): a version cannot be given for it"
                .into(),
        ));
    }
    if !carries_world {
        let world = match world {
            Some(world) => world,
            None => imported_world(core)?,
        };
        let mut resolve = Resolve::default();
        let package = resolve
            .push_str("plugin.wit", world.wit())
            .map_err(ToolError::Encode)?;
        let world = resolve
            .select_world(&[package], Some("plugin"))
            .map_err(ToolError::Encode)?;
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .map_err(ToolError::Encode)?;
    }
    let mut encoder = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(ToolError::Encode)?;
    if imports_module(
        core,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
    ) {
        encoder = encoder
            .adapter(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(ToolError::Encode)?;
    }
    encoder.encode().map_err(ToolError::Encode)
}

/// What a component is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The language and runtime it was built from, as far as its producers sections tell.
    pub language: String,
    /// Every interface it imports, fully qualified (`wasi:clocks/wall-clock@0.2.0`).
    pub imports: Vec<String>,
    /// Every item it exports.
    pub exports: Vec<String>,
}

/// Reads a component's imports, exports and producers.
pub fn inspect(component: &[u8]) -> Result<Inspection, ToolError> {
    let decoded = wit_component::decode(component).map_err(ToolError::Decode)?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        return Err(ToolError::WrongKind(
            "a WIT package, not a component".into(),
        ));
    };
    let world = &resolve.worlds[world];
    let name = |key| resolve.name_world_key(key);
    let imports = world
        .imports
        .iter()
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, _)| name(key))
        .collect();
    let exports = world.exports.keys().map(name).collect();
    Ok(Inspection {
        language: language(&traces(component)),
        imports,
        exports,
    })
}

/// What the toolchain left in the component: every (field, name, version) of every producers
/// section, and the names of the core modules (from their name sections).
#[derive(Debug, Default)]
struct Traces {
    producers: Vec<(String, String, String)>,
    modules: Vec<String>,
}

fn traces(component: &[u8]) -> Traces {
    let mut out = Traces::default();
    for payload in wasmparser::Parser::new(0).parse_all(component).flatten() {
        let wasmparser::Payload::CustomSection(reader) = payload else {
            continue;
        };
        match reader.as_known() {
            wasmparser::KnownCustom::Producers(_) => {
                let Ok(producers) =
                    wasm_metadata::Producers::from_bytes(reader.data(), reader.data_offset())
                else {
                    continue;
                };
                for (field, values) in producers.iter() {
                    for (name, version) in values.iter() {
                        out.producers
                            .push((field.clone(), name.clone(), version.clone()));
                    }
                }
            }
            wasmparser::KnownCustom::Name(names) => {
                for name in names.into_iter().flatten() {
                    if let wasmparser::Name::Module { name, .. } = name {
                        out.modules.push(name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The language and runtime, from what the toolchains wrote. An interpreter's componentizer
/// says more than the languages its runtime is written in, and every component built on WASI
/// preview 1 carries the (Rust) adapter, so the order of the checks matters.
fn language(traces: &Traces) -> String {
    let producer = |needle: &str| {
        traces
            .producers
            .iter()
            .find(|(_, name, _)| name.to_ascii_lowercase().contains(needle))
            .map(|(_, name, version)| format!("{name} {version}"))
    };
    let has_language = |wanted: &str| {
        traces
            .producers
            .iter()
            .any(|(field, name, _)| field == "language" && name.starts_with(wanted))
    };
    if let Some(python) = traces.modules.iter().find(|m| m.starts_with("libpython")) {
        let version = python
            .trim_start_matches("libpython")
            .trim_end_matches(".so");
        return format!("Python {version} (CPython, componentize-py)");
    }
    if let Some(tool) = producer("componentizejs").or_else(|| producer("componentize-js")) {
        return format!("JavaScript (SpiderMonkey, {tool})");
    }
    if let Some(tool) = producer("componentize-py") {
        return format!("Python (CPython, {tool})");
    }
    if let Some(bindgen) = producer("wit-bindgen-rust") {
        return format!("Rust (no runtime, {bindgen})");
    }
    if has_language("C_plus_plus") {
        return "C++ (wasi-libc)".into();
    }
    if has_language("C") {
        return "C (wasi-libc)".into();
    }
    if has_language("Rust") {
        return "Rust (no runtime)".into();
    }
    "unknown (no producers section names a language)".into()
}

fn has_custom_section(module: &[u8], wanted: &str) -> bool {
    sections(module).any(|s| matches!(s, Section::Custom(name) if name.starts_with(wanted)))
}

/// The plugin world version a module's imports name: `odoo-gateway:plugin/<interface>@<version>`.
fn imported_world(module: &[u8]) -> Result<WorldVersion, ToolError> {
    let mut versions: Vec<&str> = sections(module)
        .filter_map(|s| match s {
            Section::ImportModule(name) => name.strip_prefix("odoo-gateway:plugin/"),
            Section::Custom(_) => None,
        })
        .filter_map(|interface| interface.rsplit_once('@').map(|(_, version)| version))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    match versions.as_slice() {
        [version] => version.parse().map_err(ToolError::WrongKind),
        [] => Err(ToolError::WrongKind(
            "the module imports nothing of the plugin world, so its version cannot be told: \
             name it (`plugin componentize --world 0.2.0`, or 0.1.0 for glue of that version)"
                .into(),
        )),
        several => Err(ToolError::WrongKind(format!(
            "the module imports several versions of the plugin world ({})",
            several.join(", ")
        ))),
    }
}

fn imports_module(module: &[u8], wanted: &str) -> bool {
    sections(module).any(|s| matches!(s, Section::ImportModule(name) if name == wanted))
}

enum Section<'a> {
    Custom(&'a str),
    ImportModule(&'a str),
}

/// Custom section names and import module names of a core module, read with wit-component's
/// own parser.
fn sections(module: &[u8]) -> impl Iterator<Item = Section<'_>> {
    wasmparser::Parser::new(0)
        .parse_all(module)
        .filter_map(Result::ok)
        .flat_map(|payload| -> Vec<Section<'_>> {
            match payload {
                wasmparser::Payload::CustomSection(reader) => vec![Section::Custom(reader.name())],
                wasmparser::Payload::ImportSection(reader) => reader
                    .into_imports()
                    .filter_map(Result::ok)
                    .map(|import| Section::ImportModule(import.module))
                    .collect(),
                _ => Vec::new(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with nothing but a custom section `name` holding `content`.
    fn module_with_section(name: &str, content: &[u8]) -> Vec<u8> {
        let mut body = vec![u8::try_from(name.len()).unwrap()];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(content);
        let mut module = CORE_HEADER.to_vec();
        module.push(0);
        module.push(u8::try_from(body.len()).unwrap());
        module.extend(body);
        module
    }

    #[test]
    fn the_world_version_is_named_or_read_and_never_both() {
        let carrying = module_with_section("component-type", b"");
        let err = componentize(&carrying, Some(WorldVersion::V0_2)).unwrap_err();
        assert!(err.to_string().contains("carries its world"), "{err}");
        let bare = module_with_section("other", b"");
        let err = componentize(&bare, None).unwrap_err();
        assert!(err.to_string().contains("--world"), "{err}");
        assert_eq!("0.2.0".parse(), Ok(WorldVersion::V0_2));
        assert!("0.3.0".parse::<WorldVersion>().is_err());
    }
}
