//! Command-line subcommands. `main.rs` parses arguments and calls into here.
