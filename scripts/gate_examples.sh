#!/usr/bin/env bash
# Dogfooding: the example suite on the embedded SmolLM2 model, compared with the baselines
# committed in baselines/ (README, "Baselines and the regression gate"), gate enforced.
# Run as they were recorded: one engine thread (a shared 2-core machine), 10 rounds per
# prompt against baselines of 40 (--tokrate-update-baselines measures 4x the rounds).
# Speed is judged relative to the machine reference (--tokrate-calibrate, the default);
# the one-word answers' decode rate is not judged (too few tokens, --tokrate-min-decode-tokens).
# Extra arguments go to pytest:
#   bash scripts/gate_examples.sh --tokrate-gate=report           # regressions as warnings
#   bash scripts/gate_examples.sh --tokrate-update-baselines      # re-record
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 \
  --tokrate-option num_thread=1 --tokrate-rounds=10 \
  --tokrate-missing-baseline=fail -p no:cacheprovider "$@"
