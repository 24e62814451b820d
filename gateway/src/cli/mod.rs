//! Command-line subcommands. `main.rs` parses arguments and calls into here.
pub mod inbox;
pub mod plugin;
