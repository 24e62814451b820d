#!/usr/bin/env sh
# Builds {{name}}.wasm: the crate for wasm32-unknown-unknown, then wrapped into a component by
# `odoo-gateway plugin componentize`. Uses whichever toolchain this machine has:
#   1. rustup's wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown);
#   2. Debian's rustc-web with its library sources and wasm-ld (apt-get install rustc-web
#      cargo-web rust-web-src lld-16), building the standard library from source.
set -eu
cd "$(dirname "$0")"
target=wasm32-unknown-unknown
command -v odoo-gateway >/dev/null 2>&1 || {
  echo "build.sh: odoo-gateway is not on the PATH (it wraps the module into a component)" >&2
  exit 1
}
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  cargo build --release --target "$target"
elif [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] \
  && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
  linker=$(command -v wasm-ld-16 || command -v wasm-ld || true)
  if [ -z "$linker" ]; then
    echo "build.sh: Debian's rustc is here but no wasm-ld: apt-get install lld-16" >&2
    exit 1
  fi
  # build-std is a nightly feature; Debian's stable rustc allows it under RUSTC_BOOTSTRAP.
  env -u RUSTC_WRAPPER RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
    /usr/bin/cargo build -Z build-std=std,panic_abort --release --target "$target"
else
  echo "build.sh: no toolchain here can build $target. Either" >&2
  echo "  rustup target add $target" >&2
  echo "or, on Debian:" >&2
  echo "  apt-get install rustc-web cargo-web rust-web-src lld-16" >&2
  exit 1
fi
odoo-gateway plugin componentize "${CARGO_TARGET_DIR:-target}/$target/release/{{crate}}.wasm" -o {{name}}.wasm
echo "built {{name}}.wasm"
