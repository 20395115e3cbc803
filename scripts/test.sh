#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite (unit, plugin, backends, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# llama.cpp's own llama-server and llama-bench, built from the engine's source for the
# tests against a real server (the first time ~8-15 min on 2 cores, then cached).
TOKRATE_LLAMA_TOOLS="$(bash scripts/llamacpp_tools.sh)"
export TOKRATE_LLAMA_TOOLS
.venv/bin/python -m ruff check pytest_tokrate tests benchmarks
.venv/bin/python -m ruff format --check pytest_tokrate tests benchmarks
.venv/bin/python -m mypy
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict  # the manual (docs/): a broken link fails
.venv/bin/python -m pytest tests --durations=15 "$@"  # the slowest 15, to keep CI in its time
# Dogfooding: the example suite against the baselines committed in baselines/.
exec bash scripts/gate_examples.sh
