#!/usr/bin/env sh
# Builds {{name}}.wasm from the C sources: clang for wasm32-wasi, then wrapped into a component
# by `odoo-gateway plugin componentize`. Uses $CC if set, else the wasi-sdk in $WASI_SDK_PATH,
# else Debian's clang-16 with wasi-libc (apt-get install clang-16 wasi-libc
# libclang-rt-16-dev-wasm32).
set -eu
cd "$(dirname "$0")"
if [ -n "${CC:-}" ]; then
  cc=$CC
elif [ -n "${WASI_SDK_PATH:-}" ]; then
  cc="$WASI_SDK_PATH/bin/clang --sysroot=$WASI_SDK_PATH/share/wasi-sysroot"
elif command -v clang-16 >/dev/null 2>&1 && [ -f /usr/lib/wasm32-wasi/libc.a ]; then
  cc=clang-16
else
  echo "build.sh: no C compiler for wasm32-wasi here. On Debian:" >&2
  echo "  apt-get install clang-16 wasi-libc libclang-rt-16-dev-wasm32" >&2
  echo "or set WASI_SDK_PATH to a wasi-sdk (https://github.com/WebAssembly/wasi-sdk)" >&2
  exit 1
fi
command -v odoo-gateway >/dev/null 2>&1 || {
  echo "build.sh: odoo-gateway is not on the PATH (it wraps the module into a component)" >&2
  exit 1
}
$cc --target=wasm32-wasi -O2 -std=c11 -Wall -Wextra -mexec-model=reactor -o {{name}}.core.wasm plugin.c json.c logic.c
# plugin.c is the glue of plugin world 0.2.0.
odoo-gateway plugin componentize {{name}}.core.wasm -o {{name}}.wasm --world 0.2.0
echo "built {{name}}.wasm"
