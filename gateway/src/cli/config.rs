//! `odoo-gateway config check`: validate a configuration file the way the server would.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Snapshot, load};
use crate::plugin::PluginHost;

/// Loads `file`, builds its snapshot (loading and validating every plugin) and prints a
/// summary; errors name the file, the line or key, and what was expected.
pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let (config, base) = load(file)?;
    let host = PluginHost::new(
        config.plugins.limits.clone(),
        Some(config.plugin_cache_dir(&base)),
    )?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let snapshot = Snapshot::build(config, &base, &file.display().to_string(), &host, None)
        .map_err(|e| e.with_lines(&text))?;
    println!("{}: ok", file.display());
    println!("  listen      {}", snapshot.server.listen);
    println!("  storage     {}", snapshot.storage.path.display());
    let mut sources: Vec<_> = snapshot.sources.keys().collect();
    sources.sort();
    println!(
        "  sources     {}",
        sources
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for name in &sources {
        let Some(odoo) = snapshot.sources[*name].odoo.as_ref() else {
            continue;
        };
        println!("  odoo        {name} -> {}", odoo.client.describe());
        if let Some(poll) = &odoo.poll {
            let models: Vec<_> = poll.models.iter().map(|m| m.model.as_str()).collect();
            println!(
                "  polling     {name}: {} every {}",
                models.join(", "),
                crate::delivery::format_duration(poll.interval)
            );
        }
    }
    let mut dests: Vec<_> = snapshot.destinations.values().collect();
    dests.sort_by(|a, b| a.name.cmp(&b.name));
    for d in dests {
        println!(
            "  destination {} -> {} ({} signing secret(s))",
            d.name,
            d.url,
            d.secrets.len()
        );
    }
    for s in &snapshot.subscriptions {
        let patterns: Vec<_> = s.patterns.iter().map(ToString::to_string).collect();
        let how = match &s.plugin {
            Some(p) => format!("plugin {}", p.hash().get(..12).unwrap_or("")),
            None => format!("{:?} pass-through", s.format).to_lowercase(),
        };
        let enriched: Vec<_> = s.enrich.iter().map(|e| e.field.as_str()).collect();
        println!(
            "  subscription {} [{}] -> {} via {how}{}{}",
            s.id,
            patterns.join(", "),
            s.destinations.join(", "),
            if enriched.is_empty() {
                String::new()
            } else {
                format!(", enriching {}", enriched.join(", "))
            },
            if s.enabled { "" } else { " (disabled)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
