//! Layers point one way: the modules below the stages, each with what it may use of the crate,
//! checked against the source. A module not listed here is a stage or above (see
//! ARCHITECTURE.md, "Layers"); a listed module that reaches past its list fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each lower module and the crate modules it may name, bottom first. Every name a module may
/// use is listed before it.
const LOWER: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("event", &[]),
    ("http_error", &[]),
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

/// `text` without its comment lines and its `#[cfg(test)]` items (a test module, a test-only
/// import or helper), wherever they are in the file.
fn without_tests(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item it guards: one line ending in `;`, or up to its closing brace.
            let mut depth = 0i32;
            let mut opened = false;
            for item in lines.by_ref() {
                depth += item.matches('{').count() as i32 - item.matches('}').count() as i32;
                opened |= item.contains('{');
                if (opened && depth <= 0) || (!opened && item.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

/// The crate's top-level modules that `text` names (`crate::x`, or `crate::{x, y::z}`), its
/// comments and test-only items left out.
fn named(text: &str) -> BTreeSet<String> {
    let code = without_tests(text);
    let single = regex::Regex::new(r"crate::(\w+)").expect("pattern");
    let group = regex::Regex::new(r"crate::\{([^}]*)\}").expect("pattern");
    let head = regex::Regex::new(r"(?:^|[,{])\s*(\w+)").expect("pattern");
    let mut out: BTreeSet<String> = single
        .captures_iter(&code)
        .map(|c| c[1].to_owned())
        .collect();
    for c in group.captures_iter(&code) {
        out.extend(head.captures_iter(&c[1]).map(|h| h[1].to_owned()));
    }
    out
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
            for used in named(&text) {
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
fn the_scan_finds_single_and_grouped_paths_and_skips_comments_and_tests() {
    let text = "use crate::store::Job;\nuse crate::{time, event::Event};\n// crate::state\n\
                #[cfg(test)]\nuse crate::admin;\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n\
                fn after() -> crate::trace::TraceParent {\n    todo!()\n}\n#[cfg(test)]\nmod more;";
    let found: Vec<String> = named(text).into_iter().collect();
    assert_eq!(found, ["event", "store", "time", "trace"]);
}
