#!/usr/bin/env bash
# Dogfooding: the example suite on the embedded SmolLM2 model, compared with the baselines
# committed in baselines/ (README, "Baselines and the regression gate"). Run as they were
# recorded: one engine thread (a shared 2-core machine) and 5 rounds per prompt.
#
# Report-only for now (--tokrate-gate=report): on this shared machine quiet runs still
# drift by up to ~10% between sessions for short answers (benchmarks/bench_gate.py), so a
# speed regression is a warning here; a baseline file that is missing fields, corrupted or
# from a newer schema still fails. Extra arguments go to pytest:
#   bash scripts/gate_examples.sh --tokrate-gate=enforce          # fail on regressions
#   bash scripts/gate_examples.sh --tokrate-update-baselines      # re-record (quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 \
  --tokrate-option num_thread=1 --tokrate-rounds=5 \
  --tokrate-gate=report --tokrate-missing-baseline=fail \
  -p no:cacheprovider "$@"
