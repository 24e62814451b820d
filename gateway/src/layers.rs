//! Layers point one way: every module below the HTTP front, each with what it may use of the
//! crate, checked against the source. A module not listed here is the front or above (the
//! servers, the CLI, `lib.rs`, which wires the stages; see ARCHITECTURE.md, "Layers"); a
//! listed module that reaches past its list fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each module below the front and the crate modules it may name, bottom first. Every name a
/// module may use is listed before it.
const LOWER: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("event", &["time"]),
    ("http_error", &[]),
    ("inbound", &["http_error"]),
    ("xmljson", &[]),
    ("subscriptions", &[]),
    ("plugin_threads", &[]),
    ("signing", &["time"]),
    ("plugin", &["event"]),
    ("samples", &["event"]),
    ("console", &["http_error"]),
    ("store", &["event", "http_error", "plugin", "time"]),
    ("trace", &["event", "store"]),
    ("apps", &["signing", "subscriptions", "time"]),
    ("delivery", &["event", "signing", "time"]),
    ("telemetry", &["store", "subscriptions", "time", "trace"]),
    ("odoo", &["delivery", "time", "trace"]),
    (
        "config",
        &[
            "apps",
            "delivery",
            "odoo",
            "plugin",
            "signing",
            "store",
            "subscriptions",
            "telemetry",
            "time",
        ],
    ),
    ("tls", &["config"]),
    (
        "control",
        &[
            "apps",
            "config",
            "odoo",
            "signing",
            "store",
            "subscriptions",
            "time",
        ],
    ),
    ("health", &["config", "control", "store"]),
    ("reloader", &["config", "control", "plugin"]),
    ("guards", &["store"]),
    (
        "catalog",
        &[
            "apps",
            "config",
            "control",
            "event",
            "odoo",
            "store",
            "subscriptions",
            "time",
        ],
    ),
    (
        "transform",
        &[
            "config",
            "event",
            "odoo",
            "plugin",
            "store",
            "subscriptions",
            "trace",
            "xmljson",
        ],
    ),
    ("fanout", &["config", "event", "store", "transform"]),
    (
        "workplane",
        &[
            "config",
            "control",
            "delivery",
            "event",
            "fanout",
            "health",
            "plugin",
            "plugin_threads",
            "signing",
            "store",
            "subscriptions",
            "telemetry",
            "time",
            "trace",
            "transform",
        ],
    ),
    // Odoo polling, which runs with its own handles (`connector::Handles`).
    (
        "connector",
        &[
            "config",
            "control",
            "event",
            "odoo",
            "store",
            "time",
            "workplane",
        ],
    ),
    // Ingest, lent what it needs per request (`ingest::Intake`).
    (
        "ingest",
        &[
            "catalog",
            "config",
            "event",
            "http_error",
            "store",
            "telemetry",
            "time",
            "trace",
            "workplane",
            "xmljson",
        ],
    ),
    // The state the stages share, and the stages over it.
    (
        "state",
        &[
            "catalog",
            "config",
            "control",
            "delivery",
            "guards",
            "health",
            "reloader",
            "store",
            "telemetry",
            "workplane",
        ],
    ),
    (
        "reload",
        &["control", "reloader", "state", "telemetry", "time"],
    ),
    (
        "auth",
        &[
            "apps",
            "config",
            "control",
            "guards",
            "http_error",
            "inbound",
            "reload",
            "signing",
            "state",
            "store",
            "subscriptions",
            "time",
        ],
    ),
    (
        "api",
        &[
            "auth",
            "catalog",
            "config",
            "control",
            "delivery",
            "event",
            "http_error",
            "inbound",
            "ingest",
            "odoo",
            "plugin",
            "reload",
            "samples",
            "signing",
            "state",
            "store",
            "subscriptions",
            "time",
            "transform",
            "workplane",
        ],
    ),
];

/// The source files of top-level module `name`, test files left out.
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `line` begins an item (or its attributes) that a `#[cfg(test)]` line may guard.
fn starts_item(line: &str) -> bool {
    let line = line.trim_start();
    let line = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    [
        "#[",
        "mod ",
        "use ",
        "fn ",
        "async fn ",
        "impl",
        "struct ",
        "enum ",
        "const ",
        "static ",
        "type ",
        "trait ",
        "macro_rules!",
    ]
    .iter()
    .any(|k| line.starts_with(k))
}

/// `text` without its comment lines and its `#[cfg(test)]` items (a test module, a test-only
/// import or helper), wherever they are in the file. Only a `#[cfg(test)]` alone on its line
/// before an item drops the item; anywhere else it drops its own line only.
fn without_tests(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed == "#[cfg(test)]" && lines.peek().is_some_and(|next| starts_item(next)) {
            // The item it guards: up to its first `;` outside braces, or its closing brace.
            let mut depth = 0i32;
            let mut opened = false;
            for item in lines.by_ref() {
                if item.trim_start().starts_with("#[") && !opened {
                    continue;
                }
                depth += item.matches('{').count() as i32 - item.matches('}').count() as i32;
                opened |= item.contains('{');
                if (opened && depth <= 0) || (!opened && item.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

/// The names a path starting at byte `at` of `code` takes from the module it starts in: `x`
/// for `x::...`, and the first name of each part of a group, `x` and `y` for `{x::a, y}`
/// (nested groups and line breaks included).
fn heads(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut part_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => part_start = true,
            c if part_start && !c.is_whitespace() => {
                out.push(ident(&group[i..]));
                part_start = false;
            }
            _ => {}
        }
    }
    out
}

/// The crate's top-level modules that `text` names, its comments and test-only items left
/// out: through `crate::` (`crate::x`, `crate::{x, y::z}`, with any spacing around `::`), or
/// through a chain of `super::` that reaches the crate's root from a module `depth` levels
/// below it.
fn named(text: &str, depth: usize) -> BTreeSet<String> {
    let spaced = regex::Regex::new(r"\s*::\s*").expect("pattern");
    let code = spaced.replace_all(&without_tests(text), "::").into_owned();
    let root = regex::Regex::new(r"\b(crate|(?:super::)+)").expect("pattern");
    let mut out = BTreeSet::new();
    for m in root.find_iter(&code) {
        let path = m.as_str();
        let at = if path == "crate" {
            match code[m.end()..].strip_prefix("::") {
                Some(_) => m.end() + 2,
                None => continue,
            }
        } else if path.matches("super::").count() == depth {
            m.end()
        } else {
            continue;
        };
        out.extend(heads(&code, at).into_iter().filter(|h| !h.is_empty()));
    }
    out
}

/// How many modules below the crate's root the file `path` (under `src`) is: `time.rs` and
/// `control/mod.rs` are 1, `control/local.rs` and `control/nats/mod.rs` are 2.
fn depth_of(src: &Path, path: &Path) -> usize {
    let relative = path.strip_prefix(src).unwrap_or(path);
    let parts = relative.components().count();
    if relative.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

#[test]
fn lower_modules_name_only_the_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let modules: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    let mut below = BTreeSet::new();
    let mut wrong = Vec::new();
    for (name, allowed) in LOWER {
        assert!(
            modules.contains(name),
            "`{name}` is not a module of the crate"
        );
        for a in *allowed {
            assert!(
                below.contains(a),
                "`{name}` may use `{a}`, which is not below it"
            );
        }
        let sources = files(&src, name);
        assert!(!sources.is_empty(), "no source for `{name}`");
        for file in sources {
            let text = std::fs::read_to_string(&file).expect("source");
            for used in named(&text, depth_of(&src, &file)) {
                if used != *name && modules.contains(used.as_str()) && !allowed.contains(&&*used) {
                    wrong.push(format!("{} names crate::{used}", file.display()));
                }
            }
        }
        below.insert(*name);
    }
    assert!(
        wrong.is_empty(),
        "lower modules reaching up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_finds_every_form_of_path_and_skips_comments_and_tests() {
    let text = "use crate::store::Job;\nuse crate::{time, event::Event};\n// crate::state\n\
                #[cfg(test)]\nuse crate::admin;\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n\
                fn after() -> crate::trace::TraceParent {\n    todo!()\n}\n#[cfg(test)]\nmod more;";
    let found: Vec<String> = named(text, 1).into_iter().collect();
    assert_eq!(found, ["event", "store", "time", "trace"]);
    let nested = "use crate::{\n    config::{Snapshot, Subscription},\n    state::State,\n};";
    assert_eq!(
        named(nested, 1).into_iter().collect::<Vec<_>>(),
        ["config", "state"]
    );
    assert_eq!(
        named("let s: crate :: state :: State;", 1)
            .into_iter()
            .collect::<Vec<_>>(),
        ["state"]
    );
    // From `control/local.rs` (two below the root), `super::super::x` is the root's `x`;
    // `super::x` is a sibling.
    let supers = "use super::super::state::State;\nuse super::records;";
    assert_eq!(named(supers, 2).into_iter().collect::<Vec<_>>(), ["state"]);
    assert_eq!(
        named(supers, 1).into_iter().collect::<Vec<_>>(),
        ["records"]
    );
    // A test-only field or an attribute on the item's own line drops that line only.
    let field = "struct S {\n    #[cfg(test)]\n    hook: u32,\n    state: crate::state::State,\n}\n\
                 #[cfg(test)] use crate::admin;\nuse crate::config::Snapshot;";
    assert_eq!(
        named(field, 1).into_iter().collect::<Vec<_>>(),
        ["config", "state"]
    );
    let src = Path::new("/x/src");
    assert_eq!(depth_of(src, Path::new("/x/src/time.rs")), 1);
    assert_eq!(depth_of(src, Path::new("/x/src/control/mod.rs")), 1);
    assert_eq!(depth_of(src, Path::new("/x/src/control/local.rs")), 2);
    assert_eq!(depth_of(src, Path::new("/x/src/control/nats/mod.rs")), 2);
}
