#!/usr/bin/env bash
# Dogfooding: the example suite on the embedded SmolLM2 model, compared with the baselines
# committed in baselines/ (README, "Baselines and the regression gate"), gate enforced: a
# speed or quality regression fails its test. Run as they were recorded: one engine thread
# (a shared 2-core machine) and 20 rounds per prompt, where benchmarks/bench_gate.py
# measured no false alarm for 64-token answers and 0.4-0.6% for 8-token ones. Speed is
# judged relative to the machine reference (--tokrate-calibrate, the default), and withheld
# with a warning when the engine was kept off the CPU. Extra arguments go to pytest:
#   bash scripts/gate_examples.sh --tokrate-gate=report           # regressions only warn
#   bash scripts/gate_examples.sh --tokrate-update-baselines      # re-record
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 \
  --tokrate-option num_thread=1 --tokrate-rounds=20 \
  --tokrate-gate=enforce --tokrate-missing-baseline=fail \
  -p no:cacheprovider "$@"
