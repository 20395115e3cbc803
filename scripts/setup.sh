#!/usr/bin/env bash
# Creates .venv and installs pytest-tokrate with every extra and the dev tools.
# The first run compiles llama.cpp (llama-cpp-python) from source: a few minutes;
# pip caches the wheel for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
stamp=.venv/.tokrate-installed
want="$(cat pyproject.toml scripts/constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pytest-tokrate and its extras into .venv (first time: llama.cpp compiles, ~4-7 min)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[embedded,ollama,openai,tokens,plots,gpu,dev]"
  echo "$want" > "$stamp"
fi
