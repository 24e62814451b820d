//! `odoo-gateway storage compact`: gives the database folder's unused space back to the file
//! system, with the gateway stopped (see `store/compact.rs` for how and what it costs).
//!
//! This module owns the command's arguments and its output; it never runs beside a gateway
//! on the same folder (the database's lock refuses it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// `odoo-gateway storage ...`
#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// Copy the database into a fresh one and swap it in, so that the folder shrinks to what
    /// the records need. Stop the gateway first; needs free space for a copy of the live
    /// records, and reads and writes each once.
    Compact {
        /// Configuration file (TOML) naming the storage folder.
        #[arg(long, short, conflicts_with = "path")]
        config: Option<PathBuf>,
        /// The storage folder itself.
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

impl StorageCommand {
    /// Runs the command, printing what it did.
    pub fn execute(self, out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
        let StorageCommand::Compact { config, path } = self;
        let folder = match (config, path) {
            (_, Some(path)) => path,
            (Some(file), None) => {
                let (config, base) = crate::config::load(&file)?;
                config.storage_dir(&base)
            }
            (None, None) => anyhow::bail!("name the storage folder: --config FILE or --path DIR"),
        };
        let free = fs2::available_space(&folder).ok();
        let done = crate::store::compact(&folder)
            .with_context(|| format!("cannot compact the database in {}", folder.display()))?;
        writeln!(
            out,
            "compacted {}: {} → {} bytes on disk ({} records, {} bytes of keys and values) in {:.1} s",
            folder.display(),
            done.before_bytes,
            done.after_bytes,
            done.records,
            done.record_bytes,
            done.took.as_secs_f64()
        )?;
        if let Some(free) = free {
            writeln!(
                out,
                "free space before: {free} bytes; given back: {} bytes",
                done.before_bytes.saturating_sub(done.after_bytes)
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
