#!/usr/bin/env sh
# Builds {{name}}.wasm from app.py, logic.py and odoo_gateway.py with componentize-py
# (pip install componentize-py==0.25.1; a virtual environment in .venv is found too).
set -eu
cd "$(dirname "$0")"
if command -v componentize-py >/dev/null 2>&1; then
  componentize=componentize-py
elif [ -x .venv/bin/componentize-py ]; then
  componentize=.venv/bin/componentize-py
else
  echo "build.sh: componentize-py is not on the PATH. With Python 3.10 or later:" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1" >&2
  exit 1
fi
"$componentize" --wit-path wit --world plugin componentize app -p . --output {{name}}.wasm
