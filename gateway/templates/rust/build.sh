#!/usr/bin/env sh
# Builds {{name}}.wasm: the crate for wasm32-unknown-unknown, then wrapped into a component.
# Needs the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown).
set -eu
cd "$(dirname "$0")"
cargo build --release --target wasm32-unknown-unknown
odoo-gateway plugin componentize target/wasm32-unknown-unknown/release/{{crate}}.wasm -o {{name}}.wasm
